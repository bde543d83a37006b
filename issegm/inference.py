"""Test-time forward pass: scaling, padding, flipping and upsampling (spec 6.1-6.3).

This is the one implementation used by evaluation (``evaluate.py``) and by
pseudo-label generation (``solve_ST.py --phase val``). It is split in two so
that pseudo-labelling can keep only the network's low-resolution output on
disk and redo the deterministic upsampling later:

- :meth:`Predictor.predict_lowres` scales the image so that its longer side is
  the test scale, normalises it, zero-pads bottom/right to a multiple of the
  stride, runs the network (and, with flipping, the horizontally flipped
  padded input, whose output is flipped back and averaged), and returns a
  :class:`LowRes`: the class probabilities with the stride they are at;
- :func:`upsample_probs` (:meth:`Predictor.upsample`) resizes each class map
  bicubically by that stride, cuts the padding off, and resizes to the
  original image size with the reference interpolation rule.

Sub-stride prediction (``steps`` > 1, the reference's ``--test-steps``): the
image sits at offset stride/2 in a zero canvas one stride larger; for k <
steps in each axis the image-sized window starting at ``sub/2 + k * sub``
(``sub = stride / steps``) is forwarded (with flipping, as above), and the
outputs are interleaved (``map[:, ky::steps, kx::steps]``) into one map at
stride ``sub``, which is then upsampled by ``sub``. One step is the plain
forward.

Loops over images keep the device busy: :meth:`Predictor.start` only
launches the forwards (MXNet runs them asynchronously) and :func:`ahead`
launches image i+1 before image i is upsampled, scored and saved, so on a GPU
that host work hides behind the next forward. The numbers are the same as
one image at a time. With several devices (``ctx`` a list, the network's
parameters on each) images go to the devices in turn and
:attr:`Predictor.depth` images are launched ahead, one a device.
"""
import collections

import mxnet as mx
import numpy as np
from PIL import Image

from util.image import longer_side_shape, normalize, resize
from util.parallel import thread_pool

__all__ = ['Predictor', 'Job', 'LowRes', 'ahead', 'Launched', 'upsample_probs', 'padded_shape',
           'check_steps']

#: A network output before upsampling: class probabilities (C, h, w) float32 at
#: ``stride`` pixels of the scaled image per cell (the network's stride, or
#: stride / steps for sub-stride prediction), and the scaled image's size
#: ``im_hw`` before padding. :func:`upsample_probs` takes exactly these.
LowRes = collections.namedtuple('LowRes', ['probs', 'im_hw', 'stride'])


def padded_shape(hw, stride):
    """Smallest multiple of ``stride`` at least ``hw`` in both axes."""
    return tuple(int(-(-int(v) // stride) * stride) for v in hw)


def check_steps(steps, stride):
    """Raise ValueError unless ``steps`` (``--test-steps``) divides the network stride."""
    if steps < 1 or stride % steps:
        divisors = ', '.join(str(d) for d in range(1, stride + 1) if stride % d == 0)
        raise ValueError('--test-steps %d does not divide the network stride %d; use one of %s'
                         % (steps, stride, divisors))


def _upsample_one(prob, stride, im_hw, orig_hw):
    h, w = prob.shape
    up = np.asarray(Image.fromarray(prob, mode='F').resize((w * stride, h * stride), Image.BICUBIC))
    up = up[:im_hw[0], :im_hw[1]]
    # The reference compares heights only, so a scale that rounds the height back to
    # the original (2047 on 1024 x 2048) left the width wrong; compare both sides.
    if tuple(orig_hw) != tuple(im_hw):
        up = resize(up, orig_hw)
    return up


def upsample_probs(probs, stride, im_hw, orig_hw):
    """Low-resolution class maps (C, h, w) at ``stride`` -> float32 (C, H, W) at the original image size.

    The one upsampling of evaluation and pseudo-labelling; ``stride`` is the
    map's own (:attr:`LowRes.stride`), below the network's with sub-stride steps.
    """
    probs = np.ascontiguousarray(probs, dtype=np.float32)
    out = np.empty((probs.shape[0],) + tuple(orig_hw), np.float32)

    def one(c):
        # Each class lands in its slot: one full-resolution copy, not two.
        out[c] = _upsample_one(probs[c], stride, im_hw, orig_hw)

    list(thread_pool().map(one, range(probs.shape[0])))
    return out


class Job(object):
    """The forwards of one image, launched and not yet waited for.

    MXNet runs them asynchronously (on the GPU, or on the CPU engine's
    threads), so the caller can post-process the previous image meanwhile.
    :meth:`lowres` waits for them.
    """

    def __init__(self, outputs, im_hws, orig_hw, flip, steps=1, stride=8):
        # per scale, per window (ky, kx) in row-major order: [NDArray] or
        # [NDArray, NDArray of the flipped input]
        self._outputs = outputs
        self.im_hws = im_hws
        self.orig_hw = orig_hw
        self.flip = flip
        self.steps = steps
        self.stride = stride         # of the maps lowres() returns

    def _window(self, outs):
        probs = outs[0].asnumpy()[0]
        if self.flip:
            flipped = outs[1].asnumpy()[0]
            probs = 0.5 * (probs + flipped[:, :, ::-1])
        return probs

    def lowres(self):
        """Per scale a :class:`LowRes`, as :meth:`Predictor.predict_lowres` returns it."""
        out = []
        n = self.steps
        for windows, im_hw in zip(self._outputs, self.im_hws):
            maps = [self._window(outs) for outs in windows]
            probs = maps[0]
            if n > 1:
                c, h, w = probs.shape
                probs = np.empty((c, h * n, w * n), np.float32)
                for k, window in enumerate(maps):
                    probs[:, k // n::n, k % n::n] = window
            out.append(LowRes(np.ascontiguousarray(probs, dtype=np.float32), im_hw, self.stride))
        return out


class Predictor(object):
    """Runs a segmentation network on whole images.

    Parameters
    ----------
    net : callable
        Maps normalised NCHW float32 NDArray data to softmax probabilities
        (N, C, H/stride, W/stride), e.g. :func:`issegm.model.get_model`.
    num_classes : int
    stride : int
        Output stride of the network (8 for the published models).
    flip : bool
        Average with the prediction on the horizontally flipped input.
    ctx : mx.Context or list of them
        Where the network lives; images are dealt to the contexts in turn.
    steps : int
        Sub-stride prediction (``--test-steps``): steps x steps shifted
        forwards interleaved into maps at ``stride / steps``; must divide the stride.

    :meth:`predict` is :meth:`start` then :meth:`finish`; callers that loop
    over images use the two halves through :func:`ahead` so that the next
    image's forward runs while this one is upsampled.
    """

    def __init__(self, net, num_classes, stride=8, flip=False, ctx=None, steps=1):
        check_steps(steps, stride)
        self.net = net
        self.num_classes = num_classes
        self.stride = stride
        self.flip = flip
        self.contexts = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx if ctx is not None else mx.cpu()]
        self.ctx = self.contexts[0]
        self._turn = 0
        self.steps = steps
        self.map_stride = stride // steps   # the stride of the maps predict_lowres returns

    @property
    def depth(self):
        """Images to launch ahead of the one being finished (:func:`ahead`): one a device."""
        return len(self.contexts)

    def _inputs(self, image, scale):
        """The padded network inputs of ``image`` at ``scale``, one per window, and the scaled size."""
        im = normalize(resize(image, longer_side_shape(image.shape[:2], int(scale))))
        _, imh, imw = im.shape
        shape = (1, 3) + padded_shape((imh, imw), self.stride)
        if self.steps == 1:
            data = np.zeros(shape, np.float32)
            data[0, :, :imh, :imw] = im
            return [data], (imh, imw)
        s, sub = self.stride, self.map_stride
        canvas = np.zeros((3, imh + s, imw + s), np.float32)
        canvas[:, s // 2:s // 2 + imh, s // 2:s // 2 + imw] = im
        starts = [sub // 2 + k * sub for k in range(self.steps)]   # one step: the image itself
        inputs = []
        for oy in starts:
            for ox in starts:
                data = np.zeros(shape, np.float32)
                data[0, :, :imh, :imw] = canvas[:, oy:oy + imh, ox:ox + imw]
                inputs.append(data)
        return inputs, (imh, imw)

    def _forward(self, data, ctx):
        outs = [self.net(mx.nd.array(data, ctx=ctx))]
        if self.flip:
            # The padded input is flipped as a whole, as in the reference.
            outs.append(self.net(mx.nd.array(np.ascontiguousarray(data[:, :, :, ::-1]), ctx=ctx)))
        return outs

    def start(self, image, scales):
        """Launch the forwards of ``image`` at each of ``scales``; returns a :class:`Job`."""
        scales = [scales] if np.isscalar(scales) else list(scales)
        ctx = self.contexts[self._turn % len(self.contexts)]
        self._turn += 1
        outputs, im_hws = [], []
        for scale in scales:
            inputs, im_hw = self._inputs(image, scale)
            outputs.append([self._forward(data, ctx) for data in inputs])
            im_hws.append(im_hw)
        return Job(outputs, im_hws, image.shape[:2], self.flip, self.steps, self.map_stride)

    def predict_lowres(self, image, scale):
        """Class probabilities of the scaled, padded image before upsampling: a :class:`LowRes`.

        ``probs`` is float32 (C, H' / s, W' / s) where H' x W' is the padded
        size and ``s`` = :attr:`map_stride`; ``im_hw`` the scaled size before padding.
        """
        return self.start(image, [scale]).lowres()[0]

    def upsample(self, low, orig_hw):
        """Deterministic upsampling of a :class:`LowRes` to ``orig_hw``."""
        return upsample_probs(low.probs, low.stride, low.im_hw, orig_hw)

    def finish(self, job):
        """Wait for ``job`` and return full-resolution probabilities averaged over its scales."""
        total = None
        lowres = job.lowres()
        for low in lowres:
            up = self.upsample(low, job.orig_hw)
            total = up if total is None else total + up
        if len(lowres) > 1:
            total /= np.float32(len(lowres))
        return total

    def predict(self, image, scales):
        """Full-resolution float32 probabilities (C, H, W), averaged over ``scales``.

        One scale gives exactly the single-scale result.
        """
        return self.finish(self.start(image, scales))


class Launched(object):
    """What :func:`ahead` yields: an item and its launch result (or the launch's error)."""

    __slots__ = ('item', '_value', '_error')

    def __init__(self, item, value=None, error=None):
        self.item, self._value, self._error = item, value, error

    def get(self):
        """The launch's return value; re-raises its exception here, where the item is handled."""
        if self._error is not None:
            raise self._error
        return self._value


def ahead(items, launch, depth=1):
    """Yield :class:`Launched` ``(item, launch(item))``, launching ``depth`` items ahead.

    ``launch`` starts asynchronous work (e.g. :meth:`Predictor.start`); the
    consumer's post-processing of item i then overlaps the device's work on
    item i+1. An exception in ``launch`` is kept and raised by
    :meth:`Launched.get`, so it is reported against its own item.
    """
    pending = collections.deque()
    for item in items:
        try:
            pending.append(Launched(item, launch(item)))
        except Exception as exc:  # noqa: BLE001 - re-raised by Launched.get
            pending.append(Launched(item, error=exc))
        if len(pending) > depth:
            yield pending.popleft()
    while pending:
        yield pending.popleft()
