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
- :meth:`Predictor.upsample` resizes each class map bicubically by the stride,
  cuts the padding off, and resizes to the original image size with the
  reference interpolation rule.
"""
import mxnet as mx
import numpy as np
from PIL import Image

from util.image import longer_side_shape, normalize, resize
from util.parallel import thread_pool

__all__ = ['Predictor', 'upsample_probs', 'padded_shape']


def padded_shape(hw, stride):
    """Smallest multiple of ``stride`` at least ``hw`` in both axes."""
    return tuple(int(-(-int(v) // stride) * stride) for v in hw)


def _upsample_one(prob, stride, im_hw, orig_hw):
    h, w = prob.shape
    up = np.asarray(Image.fromarray(prob, mode='F').resize((w * stride, h * stride), Image.BICUBIC))
    up = up[:im_hw[0], :im_hw[1]]
    # The reference compares heights only: scaling keeps the aspect ratio.
    if orig_hw[0] != im_hw[0]:
        up = resize(up, orig_hw)
    return up


def upsample_probs(probs, stride, im_hw, orig_hw):
    """Low-resolution class maps (C, h, w) -> float32 (C, H, W) at the original image size."""
    probs = np.ascontiguousarray(probs, dtype=np.float32)
    out = np.empty((probs.shape[0],) + tuple(orig_hw), np.float32)

    def one(c):
        # Each class lands in its slot: one full-resolution copy, not two.
        out[c] = _upsample_one(probs[c], stride, im_hw, orig_hw)

    list(thread_pool().map(one, range(probs.shape[0])))
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
    ctx : mx.Context
        Where the network lives.
    """

    def __init__(self, net, num_classes, stride=8, flip=False, ctx=None):
        self.net = net
        self.num_classes = num_classes
        self.stride = stride
        self.flip = flip
        self.ctx = ctx if ctx is not None else mx.cpu()

    def _forward(self, data):
        return self.net(mx.nd.array(data, ctx=self.ctx)).asnumpy()[0]

    def predict_lowres(self, image, scale):
        """Class probabilities at 1/stride of the scaled, padded image.

        Returns ``(probs, (imh, imw))``: float32 (C, H'/stride, W'/stride),
        where H' x W' is the padded size, and the scaled size before padding.
        """
        im = resize(image, longer_side_shape(image.shape[:2], int(scale)))
        imh, imw = im.shape[:2]
        data = np.zeros((1, 3) + padded_shape((imh, imw), self.stride), np.float32)
        data[0, :, :imh, :imw] = normalize(im)
        probs = self._forward(data)
        if self.flip:
            # The padded input is flipped as a whole, as in the reference.
            flipped = self._forward(np.ascontiguousarray(data[:, :, :, ::-1]))
            probs = 0.5 * (probs + flipped[:, :, ::-1])
        return np.ascontiguousarray(probs, dtype=np.float32), (imh, imw)

    def upsample(self, probs, im_hw, orig_hw):
        """Deterministic upsampling of :meth:`predict_lowres` output to ``orig_hw``."""
        return upsample_probs(probs, self.stride, im_hw, orig_hw)

    def predict(self, image, scales):
        """Full-resolution float32 probabilities (C, H, W), averaged over ``scales``.

        One scale gives exactly the single-scale result.
        """
        scales = [scales] if np.isscalar(scales) else list(scales)
        total = None
        for scale in scales:
            probs, im_hw = self.predict_lowres(image, scale)
            up = self.upsample(probs, im_hw, image.shape[:2])
            total = up if total is None else total + up
        if len(scales) > 1:
            total /= np.float32(len(scales))
        return total
