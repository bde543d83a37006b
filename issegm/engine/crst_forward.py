"""CRST's forward pass: its preprocessing, its upsampling and its softmax, on our networks.

CRST's ``crst_seg.py`` (``val`` and ``test``, with ``GTA5TestDataSet``)
differs from CBST's inference (:mod:`issegm.engine.inference`) in each step:

* the image is resized with OpenCV's bilinear filter (``cv2.resize``,
  ``INTER_LINEAR``, output size rounded as OpenCV rounds ``w * fx``), not
  PIL's, and normalised in float32 as ``(x / 255 - mean) / std`` with
  ImageNet's statistics, RGB (:func:`crst_input`);
* the network's logits are upsampled bilinearly with ``align_corners=True``
  to ``--test-image-size`` and the softmax comes after
  (:func:`upsample_align_corners`, :func:`probabilities_from_lowres`);
* the flipped image's probabilities, flipped back, are averaged in;
* no spatial prior, no padding to a fixed size.

Our models (:func:`issegm.engine.model.get_model`) end in a softmax. The
logits are recovered as ``log p``: ``log p = z - logsumexp(z)`` differs from
the logits ``z`` by one number per pixel, bilinear weights are the same for
every class and sum to 1, so after upsampling the difference is still one
number per pixel, which the softmax (and an argmax) ignores. Probabilities
that underflow to 0 are floored at the smallest float32 (a logit gap above
~100, where CRST's softmax also gives 0).
"""
import math

import cv2
import mxnet as mx
import numpy as np

__all__ = ['IMG_MEAN_RGB', 'IMG_STD_RGB', 'crst_input', 'normalize', 'upsample_align_corners', 'log_probs',
           'LowResOutput', 'forward_lowres', 'probabilities_from_lowres', 'test_scores']

#: CRST's ``IMG_MEAN`` / ``IMG_STD`` (written there in BGR order), here in RGB order.
IMG_MEAN_RGB = np.array((0.485, 0.456, 0.406), dtype=np.float32)
IMG_STD_RGB = np.array((0.229, 0.224, 0.225), dtype=np.float32)
_TINY = np.float32(np.finfo(np.float32).tiny)


def normalize(image_rgb):
    """uint8 or float (H, W, 3) RGB -> float32 (3, H, W): ``(x / 255 - mean) / std`` in float32."""
    x = np.asarray(image_rgb, np.float32) / np.float32(255.0)
    x -= IMG_MEAN_RGB
    x /= IMG_STD_RGB
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def crst_input(image_rgb, scale):
    """CRST's test input: the image resized by ``scale`` with ``cv2.resize`` (bilinear), normalised.

    Parameters
    ----------
    image_rgb : numpy.ndarray
        uint8 (H, W, 3) RGB (OpenCV resizes each channel alike, so the channel
        order does not change the numbers).
    scale : float
        ``--eval-scale`` (CRST resizes even at 1.0, where OpenCV copies).

    Returns
    -------
    numpy.ndarray
        float32 (1, 3, h, w).
    """
    resized = cv2.resize(np.ascontiguousarray(image_rgb), None, fx=scale, fy=scale,
                         interpolation=cv2.INTER_LINEAR)
    return normalize(resized)[None]


def upsample_align_corners(x, size, ctx=None):
    """Bilinear resize of (N, C, h, w) to ``size`` = (H, W) with ``align_corners=True`` (float32).

    PyTorch's ``nn.Upsample(size, mode='bilinear', align_corners=True)``:
    output pixel i samples the input at ``i (h - 1) / (H - 1)``. Runs on
    ``ctx`` (default CPU) with MXNet's ``BilinearResize2D``; returns an
    NDArray.
    """
    ctx = ctx or mx.cpu()
    nd = x if isinstance(x, mx.nd.NDArray) else mx.nd.array(np.asarray(x, np.float32), ctx=ctx)
    return mx.nd.contrib.BilinearResize2D(nd, height=int(size[0]), width=int(size[1]), align_corners=True)


def log_probs(probs):
    """``log p`` in float32, floored at the smallest float32 (the logits up to one number per pixel)."""
    return np.log(np.maximum(np.asarray(probs, np.float32), _TINY))


class LowResOutput(object):
    """The network's outputs of one image before upsampling: what we store instead of CRST's ``prob/``.

    ``probs`` float32 (C, h, w), and ``probs_flip`` (the flipped image's, not
    flipped back) or None. A few MB per Cityscapes image instead of CRST's
    159 MB full-resolution map; :func:`probabilities_from_lowres` gives that
    map again.
    """

    def __init__(self, probs, probs_flip=None):
        self.probs = np.asarray(probs, np.float32)
        self.probs_flip = None if probs_flip is None else np.asarray(probs_flip, np.float32)

    def save(self, path):
        arrays = {'probs': self.probs}
        if self.probs_flip is not None:
            arrays['probs_flip'] = self.probs_flip
        from util.io import atomic_path
        with atomic_path(path) as tmp:
            with open(tmp, 'wb') as f:
                np.savez(f, **arrays)

    @classmethod
    def load(cls, path):
        with np.load(path) as data:
            return cls(data['probs'], data['probs_flip'] if 'probs_flip' in data.files else None)


def _forward(net, data, ctx):
    out = net(mx.nd.array(data, ctx=ctx))
    return out.asnumpy()[0]


def forward_lowres(net, image_rgb, scale, flip, ctx=None):
    """The network's probabilities (and the flipped image's) of CRST's input at ``scale``."""
    ctx = ctx or mx.cpu()
    data = crst_input(image_rgb, scale)
    probs = _forward(net, data, ctx)
    probs_flip = _forward(net, np.ascontiguousarray(data[:, :, :, ::-1]), ctx) if flip else None
    return LowResOutput(probs, probs_flip)


def _softmax_up(probs, size, ctx):
    up = upsample_align_corners(log_probs(probs)[None], size, ctx)
    return mx.nd.softmax(up, axis=1).asnumpy()[0]


def probabilities_from_lowres(low, size, ctx=None):
    """CRST's ``val`` map: logits upsampled (align corners) to ``size``, softmax, flip averaged.

    Returns float32 (C, H, W).
    """
    out = _softmax_up(low.probs, size, ctx)
    if low.probs_flip is not None:
        out = np.float32(0.5) * (out + _softmax_up(low.probs_flip, size, ctx)[:, :, ::-1])
    return np.ascontiguousarray(out, np.float32)


def test_scores(net, image_rgb, scales, size, flip, ctx=None):
    """CRST's ``test`` scores: per scale, the normalised image resized (align corners) to
    ``floor(H s) x floor(W s)``, logits upsampled to ``size``, flip averaged; the mean over scales.

    No softmax, as CRST's ``test``; the argmax is the prediction. Returns
    float32 (C, H, W).
    """
    ctx = ctx or mx.cpu()
    base = crst_input(image_rgb, 1.0)
    total = None
    for s in scales:
        hw = (int(math.floor(base.shape[2] * s)), int(math.floor(base.shape[3] * s)))
        data = upsample_align_corners(base, hw, ctx).asnumpy()
        score = upsample_align_corners(log_probs(_forward(net, data, ctx))[None], size, ctx).asnumpy()[0]
        if flip:
            flipped = _forward(net, np.ascontiguousarray(data[:, :, :, ::-1]), ctx)
            score = np.float32(0.5) * (score + upsample_align_corners(log_probs(flipped)[None], size,
                                                                       ctx).asnumpy()[0][:, :, ::-1])
        total = score if total is None else total + score
    return total / np.float32(len(scales))
