"""Test-time forward pass: scaling, padding, sub-stride steps and flipping (docs/behaviour.md 6.1-6.2).

This is the one implementation used by evaluation (``evaluate.py``) and by
pseudo-label generation (``solve_ST.py --phase val``). It is split so that
pseudo-labelling can keep only the network's low-resolution output on disk
and redo the deterministic upsampling later:

- :meth:`Predictor.predict_lowres` scales the image so that its longer side is
  the test scale, normalises it, zero-pads bottom/right to a multiple of the
  stride, runs the network (and, with flipping, the horizontally flipped
  padded input, whose output is flipped back and averaged), and returns a
  :class:`LowRes`: the class probabilities with the stride they are at;
- the upsampling (bicubic by that stride, the padding cut off, the resize to
  the original image size with the reference interpolation rule) and all
  that follows is :mod:`issegm.engine.postprocess`, on the host or on the device;
  :meth:`Predictor.finish` / :meth:`Predictor.predict` return the host
  (PIL) result.

Sub-stride prediction (``steps`` > 1, the reference's ``--test-steps``): the
image sits at offset stride/2 in a zero canvas one stride larger; for k <
steps in each axis the image-sized window starting at ``sub/2 + k * sub``
(``sub = stride / steps``) is forwarded (with flipping, as above), and the
outputs are interleaved (``map[:, ky::steps, kx::steps]``) into one map at
stride ``sub``, which is then upsampled by ``sub``. One step is the plain
forward.

Loops over images keep the device busy: :meth:`Predictor.prepare` is the
host work (scaling, normalising, padding; thread-safe, for reader threads),
:meth:`Predictor.launch` only launches the forwards (MXNet runs them
asynchronously; flipping and interleaving are averaged on the device too)
and :func:`ahead` launches image i+1 before image i's results are awaited,
so on a GPU the host work hides behind the next forward. The numbers are the
same as one image at a time. With several devices (``ctx`` a list, the network's
parameters on each) images go to the devices in turn and
:attr:`Predictor.depth` images are launched ahead, two a device.
"""
import collections

import mxnet as mx
import numpy as np

from issegm.engine.postprocess import upsample_probs
from issegm.storage.probmaps import LowRes
from util.image import longer_side_shape, normalize, resize

__all__ = ['Predictor', 'Inputs', 'Job', 'ahead', 'Launched', 'upsample_probs', 'padded_shape',
           'check_steps', 'LOOP_DEPTH']

#: Images a loop keeps launched beyond the one it waits for: two, so that a
#: late host step (a slow read, a busy core) does not leave the device idle.
LOOP_DEPTH = 2


def padded_shape(hw, stride):
    """Smallest multiple of ``stride`` at least ``hw`` in both axes.

    Parameters
    ----------
    hw : tuple of int
        Height and width.
    stride : int
        The network stride.

    Returns
    -------
    tuple of int
        The padded height and width.
    """
    return tuple(int(-(-int(v) // stride) * stride) for v in hw)


def check_steps(steps, stride):
    """Raise ValueError unless ``steps`` (``--test-steps``) divides the network stride.

    Parameters
    ----------
    steps : int
        Sub-stride steps per axis.
    stride : int
        The network stride.

    Raises
    ------
    ValueError
        Naming the divisors of ``stride`` to use instead.
    """
    if steps < 1 or stride % steps:
        divisors = ', '.join(str(d) for d in range(1, stride + 1) if stride % d == 0)
        raise ValueError('--test-steps %d does not divide the network stride %d; use one of %s'
                         % (steps, stride, divisors))


class Inputs(object):
    """The network inputs of one image, prepared on the host (:meth:`Predictor.prepare`).

    Parameters
    ----------
    data : list of list of numpy.ndarray
        Per scale, per window (one without sub-stride steps), the normalised
        zero-padded float32 (1, 3, H', W') array.
    im_hws : list of tuple
        Per scale, the scaled size before padding.
    orig_hw : tuple of int
        The image size.
    """

    def __init__(self, data, im_hws, orig_hw):
        self.data, self.im_hws, self.orig_hw = data, im_hws, tuple(orig_hw)


class Job(object):
    """The forwards of one image, launched and not yet waited for.

    MXNet runs them asynchronously (on the GPU, or on the CPU engine's
    threads), so the caller can post-process the previous image meanwhile.
    :meth:`lowres_device` keeps the maps on the device (flipped outputs
    averaged and sub-stride windows interleaved there); :meth:`lowres` waits
    for them and copies them to the host.
    """

    def __init__(self, outputs, im_hws, orig_hw, flip, steps=1, stride=8, ctx=None):
        # per scale, per window (ky, kx) in row-major order: [NDArray] or
        # [NDArray, NDArray of the flipped input]
        self._outputs = outputs
        self.ctx = ctx               # where the outputs are
        self._device = None
        self.im_hws = im_hws
        self.orig_hw = orig_hw
        self.flip = flip
        self.steps = steps
        self.stride = stride         # of the maps lowres() returns

    def _window(self, outs):
        probs = outs[0][0]
        if self.flip:
            # The flipped input's output, flipped back, averaged (float32, as on the host).
            probs = 0.5 * (probs + mx.nd.flip(outs[1][0], axis=2))
        return probs

    def lowres_device(self):
        """Per scale a :class:`LowRes` whose ``probs`` is a (C, h, w) NDArray on the network's context."""
        if self._device is None:
            self._device = []
            n = self.steps
            for windows, im_hw in zip(self._outputs, self.im_hws):
                maps = [self._window(outs) for outs in windows]
                probs = maps[0]
                if n > 1:
                    # map[:, y * n + ky, x * n + kx] = window (ky, kx)[:, y, x]
                    c, h, w = probs.shape
                    probs = mx.nd.stack(*maps).reshape((n, n, c, h, w)).transpose((2, 3, 0, 4, 1))
                    probs = probs.reshape((c, h * n, w * n))
                self._device.append(LowRes(probs, im_hw, self.stride))
        return self._device

    def lowres(self):
        """Per scale a :class:`LowRes` on the host, as :meth:`Predictor.predict_lowres` returns it."""
        return [LowRes(np.ascontiguousarray(low.probs.asnumpy(), dtype=np.float32), low.im_hw, low.stride)
                for low in self.lowres_device()]


class Predictor(object):
    """Runs a segmentation network on whole images.

    :meth:`predict` is :meth:`start` then :meth:`finish`; callers that loop
    over images use :meth:`prepare` (in reader threads), :meth:`launch` and
    :func:`ahead` so that the next image's forward runs while this one is
    post-processed.

    Parameters
    ----------
    net : callable
        Maps normalised NCHW float32 NDArray data to softmax probabilities
        (N, C, H/stride, W/stride), e.g. :func:`issegm.engine.model.get_model`.
    num_classes : int
        Number of classes C.
    stride : int
        Output stride of the network (8 for the published models).
    flip : bool
        Average with the prediction on the horizontally flipped input.
    ctx : mx.Context or list of them
        Where the network lives; images are dealt to the contexts in turn.
    steps : int
        Sub-stride prediction (``--test-steps``): steps x steps shifted
        forwards interleaved into maps at ``stride / steps``; must divide the stride.
    normalizer : callable, optional
        The network's input normalisation, ``(uint8 HxWx3, out=float32 3xHxW)``:
        :func:`issegm.engine.model.preprocessing` of its label (default: the
        reference's, ResNet-38's). Padding is zero after it, i.e. the mean colour.

    Raises
    ------
    ValueError
        When ``steps`` does not divide ``stride`` (:func:`check_steps`).
    """

    def __init__(self, net, num_classes, stride=8, flip=False, ctx=None, steps=1, normalizer=None):
        check_steps(steps, stride)
        self.net = net
        self.normalize = normalize if normalizer is None else normalizer
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
        """Images to launch ahead of the one being finished (:func:`ahead`): :data:`LOOP_DEPTH` a device."""
        return LOOP_DEPTH * len(self.contexts)

    def _inputs(self, image, scale):
        """The padded network inputs of ``image`` at ``scale``, one per window, and the scaled size."""
        im = resize(image, longer_side_shape(image.shape[:2], int(scale)))
        imh, imw = im.shape[:2]
        shape = (1, 3) + padded_shape((imh, imw), self.stride)
        if self.steps == 1:
            data = np.zeros(shape, np.float32)
            self.normalize(im, out=data[0, :, :imh, :imw])
            return [data], (imh, imw)
        s, sub = self.stride, self.map_stride
        canvas = np.zeros((3, imh + s, imw + s), np.float32)
        self.normalize(im, out=canvas[:, s // 2:s // 2 + imh, s // 2:s // 2 + imw])
        starts = [sub // 2 + k * sub for k in range(self.steps)]   # one step: the image itself
        inputs = []
        for oy in starts:
            for ox in starts:
                data = np.zeros(shape, np.float32)
                data[0, :, :imh, :imw] = canvas[:, oy:oy + imh, ox:ox + imw]
                inputs.append(data)
        return inputs, (imh, imw)

    def prepare(self, image, scales):
        """The host half of :meth:`start` (scale, normalise, pad): thread-safe, for reader threads.

        Parameters
        ----------
        image : numpy.ndarray
            The uint8 HxWx3 image.
        scales : int or sequence of int
            Test scales (the longer side after scaling).

        Returns
        -------
        Inputs
            The network inputs.
        """
        scales = [scales] if np.isscalar(scales) else list(scales)
        data, im_hws = zip(*[self._inputs(image, scale) for scale in scales])
        return Inputs(list(data), list(im_hws), image.shape[:2])

    def _forward(self, data, ctx):
        data = mx.nd.array(data, ctx=ctx)
        outs = [self.net(data)]
        if self.flip:
            # The padded input is flipped as a whole, as in the reference.
            outs.append(self.net(mx.nd.flip(data, axis=3)))
        return outs

    def launch(self, inputs):
        """Launch the forwards of prepared inputs on the next device in turn.

        Parameters
        ----------
        inputs : Inputs
            From :meth:`prepare`.

        Returns
        -------
        Job
            Returned at once, the forwards not waited for.
        """
        ctx = self.contexts[self._turn % len(self.contexts)]
        self._turn += 1
        outputs = [[self._forward(data, ctx) for data in windows] for windows in inputs.data]
        return Job(outputs, inputs.im_hws, inputs.orig_hw, self.flip, self.steps, self.map_stride, ctx)

    def start(self, image, scales):
        """Launch the forwards of ``image`` at each of ``scales``.

        Parameters
        ----------
        image : numpy.ndarray
            The uint8 HxWx3 image.
        scales : int or sequence of int
            Test scales.

        Returns
        -------
        Job
            The launched forwards.
        """
        return self.launch(self.prepare(image, scales))

    def predict_lowres(self, image, scale):
        """Class probabilities of the scaled, padded image before upsampling.

        Parameters
        ----------
        image : numpy.ndarray
            The uint8 HxWx3 image.
        scale : int
            The test scale.

        Returns
        -------
        LowRes
            ``probs`` is float32 (C, H' / s, W' / s) where H' x W' is the padded
            size and ``s`` = :attr:`map_stride`; ``im_hw`` the scaled size before padding.
        """
        return self.start(image, [scale]).lowres()[0]

    def finish(self, job):
        """Wait for ``job`` and return full-resolution probabilities averaged over its scales (host, PIL).

        Parameters
        ----------
        job : Job
            From :meth:`start` or :meth:`launch`.

        Returns
        -------
        numpy.ndarray
            The probability map.
        """
        from issegm.engine.postprocess import Postprocessor
        post = Postprocessor(self.num_classes, 'pil')
        return post.probmap(post.source(job))

    def predict(self, image, scales):
        """Full-resolution float32 probabilities (C, H, W), averaged over ``scales``.

        One scale gives exactly the single-scale result.

        Parameters
        ----------
        image : numpy.ndarray
            The uint8 HxWx3 image.
        scales : int or sequence of int
            Test scales.

        Returns
        -------
        numpy.ndarray
            float32 (C, H, W).
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

    The consumer's post-processing of item i then overlaps the device's work
    on item i+1.

    Parameters
    ----------
    items : iterable
        The items, in order.
    launch : callable
        Starts asynchronous work on an item (e.g. :meth:`Predictor.start`).
    depth : int
        Items launched beyond the one yielded.

    Yields
    ------
    Launched
        In the order of ``items``. An exception in ``launch`` is kept and
        raised by :meth:`Launched.get`, so it is reported against its own item.
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
