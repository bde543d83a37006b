"""Test-time forward pass: scaling, padding, flipping and upsampling (spec 6.1-6.3).

This is the one implementation used by evaluation (``evaluate.py``) and by
pseudo-label generation (``solve_ST.py --phase val``). It is split in two so
that pseudo-labelling can keep only the network's low-resolution output on
disk and redo the deterministic upsampling later:

- :meth:`Predictor.predict_lowres` scales the image so that its longer side is
  the test scale, normalises it, zero-pads bottom/right to a multiple of the
  stride, runs the network (and, with flipping, the horizontally flipped
  padded input, whose output is flipped back and averaged), and returns the
  class probabilities at 1/stride resolution;
- the upsampling (bicubic by the stride, the padding cut off, the resize to
  the original image size with the reference interpolation rule) and all
  that follows is :mod:`issegm.postprocess`, on the host or on the device;
  :meth:`Predictor.finish` / :meth:`Predictor.predict` return the host
  (PIL) result.

Loops over images keep the device busy: :meth:`Predictor.prepare` is the
host work (scaling, normalising, padding; thread-safe, for reader threads),
:meth:`Predictor.launch` only launches the forwards (MXNet runs them
asynchronously) and :func:`ahead` launches image i+1 before image i's results
are awaited, so on a GPU the host work hides behind the next forward. The
numbers are the same as one image at a time.
"""
import collections

import mxnet as mx
import numpy as np

from issegm.postprocess import upsample_probs
from util.image import longer_side_shape, normalize, resize

__all__ = ['Predictor', 'Inputs', 'Job', 'ahead', 'Launched', 'upsample_probs', 'padded_shape']


def padded_shape(hw, stride):
    """Smallest multiple of ``stride`` at least ``hw`` in both axes."""
    return tuple(int(-(-int(v) // stride) * stride) for v in hw)


class Inputs(object):
    """The network inputs of one image, prepared on the host (:meth:`Predictor.prepare`).

    ``data``: per scale, the normalised zero-padded float32 (1, 3, H', W')
    array; ``im_hws``: per scale, the scaled size before padding;
    ``orig_hw``: the image size.
    """

    def __init__(self, data, im_hws, orig_hw):
        self.data, self.im_hws, self.orig_hw = data, im_hws, tuple(orig_hw)


class Job(object):
    """The forwards of one image, launched and not yet waited for.

    MXNet runs them asynchronously (on the GPU, or on the CPU engine's
    threads), so the caller can post-process the previous image meanwhile.
    :meth:`lowres_device` keeps the maps on the device (flipping averaged
    there); :meth:`lowres` waits for them and copies them to the host.
    """

    def __init__(self, outputs, im_hws, orig_hw, flip, stride=8):
        self._outputs = outputs      # per scale: [NDArray] or [NDArray, NDArray of the flipped input]
        self._device = None
        self.im_hws = im_hws
        self.orig_hw = orig_hw
        self.flip = flip
        self.stride = stride         # of the low-resolution maps

    def lowres_device(self):
        """Per scale ``(probs, (imh, imw))`` with ``probs`` a (C, h, w) NDArray on the network's context."""
        if self._device is None:
            self._device = []
            for outs, im_hw in zip(self._outputs, self.im_hws):
                probs = outs[0][0]
                if self.flip:
                    # The flipped input's output, flipped back, averaged (float32, as on the host).
                    probs = 0.5 * (probs + mx.nd.flip(outs[1][0], axis=2))
                self._device.append((probs, im_hw))
        return self._device

    def lowres(self):
        """Per scale ``(probs, (imh, imw))``, as :meth:`Predictor.predict_lowres` returns them."""
        return [(np.ascontiguousarray(p.asnumpy(), dtype=np.float32), im_hw) for p, im_hw in self.lowres_device()]


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
    ctx : mx.Context
        Where the network lives.

    :meth:`predict` is :meth:`start` then :meth:`finish`; callers that loop
    over images use the two halves through :func:`ahead` so that the next
    image's forward runs while this one is upsampled.
    """

    def __init__(self, net, num_classes, stride=8, flip=False, ctx=None):
        self.net = net
        self.num_classes = num_classes
        self.stride = stride
        self.flip = flip
        self.ctx = ctx if ctx is not None else mx.cpu()

    def _input(self, image, scale):
        im = resize(image, longer_side_shape(image.shape[:2], int(scale)))
        imh, imw = im.shape[:2]
        data = np.zeros((1, 3) + padded_shape((imh, imw), self.stride), np.float32)
        normalize(im, out=data[0, :, :imh, :imw])
        return data, (imh, imw)

    def prepare(self, image, scales):
        """The host half of :meth:`start` (scale, normalise, pad): thread-safe, for reader threads."""
        scales = [scales] if np.isscalar(scales) else list(scales)
        data, im_hws = zip(*[self._input(image, scale) for scale in scales])
        return Inputs(list(data), list(im_hws), image.shape[:2])

    def launch(self, inputs):
        """Launch the forwards of prepared :class:`Inputs`; returns a :class:`Job` at once."""
        outputs = []
        for data in inputs.data:
            data = mx.nd.array(data, ctx=self.ctx)
            outs = [self.net(data)]
            if self.flip:
                # The padded input is flipped as a whole, as in the reference.
                outs.append(self.net(mx.nd.flip(data, axis=3)))
            outputs.append(outs)
        return Job(outputs, inputs.im_hws, inputs.orig_hw, self.flip, self.stride)

    def start(self, image, scales):
        """Launch the forwards of ``image`` at each of ``scales``; returns a :class:`Job`."""
        return self.launch(self.prepare(image, scales))

    def predict_lowres(self, image, scale):
        """Class probabilities at 1/stride of the scaled, padded image.

        Returns ``(probs, (imh, imw))``: float32 (C, H'/stride, W'/stride),
        where H' x W' is the padded size, and the scaled size before padding.
        """
        return self.start(image, [scale]).lowres()[0]

    def finish(self, job):
        """Wait for ``job`` and return full-resolution probabilities averaged over its scales (host, PIL)."""
        from issegm.postprocess import Postprocessor
        post = Postprocessor(self.num_classes, 'pil')
        return post.probmap(post.source(job))

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
