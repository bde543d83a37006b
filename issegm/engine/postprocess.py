"""Post-processing of the network's low-resolution output (docs/behaviour.md 6.3-6.6 and 9), on the host or the device.

Everything after the forward pass, written once as *recipes* over a small
set of operations, and run by one of two backends:

- ``pil`` (:class:`HostOps`): PIL bicubic upsampling and NumPy on the host,
  as the reference computes it;
- ``device`` (:class:`DeviceOps`): MXNet operators on the network's context.
  PIL's separable resampling is two matrix products per class map,
  ``A_h . X . A_w^T``, with PIL's own coefficients (:func:`resample_matrix`)
  for the stride upsampling, the padding cut-off and the resize to the image
  size composed into one pair (:func:`upsample_matrices`, cached); then
  argmax, max, the spatial-prior product, the threshold ratios, the
  confusion counts (a histogram) and the every-4th confidence subsampling
  stay on the device. Only small results cross to the host: uint8 label
  maps, the kept confidences, per-image counts.

The recipes (:class:`Postprocessor`): :meth:`~Postprocessor.evaluate`
(evaluation: prediction and confusion counts), :meth:`~Postprocessor.collect`
(pseudo-label pass 1: plain and prior argmax, kept confidences, counts) and
:meth:`~Postprocessor.label` (pass 2: pseudo-labels from class thresholds).
Each returns a :class:`Pending` at once: the device backend has only queued
its operators (MXNet runs them asynchronously), the host backend defers its
work to :meth:`Pending.result`, so a loop launches image i+1 before it
waits for image i either way.

Same numbers: the matrices hold PIL's coefficients exactly (float64, cast to
float32 on the device); the device's float32 products differ from PIL's
float64 sums by float32 rounding (about 1e-7 of the largest value);
predictions, thresholds and labels agree to that rounding. CRST-LRENT's
labels (float64, :mod:`issegm.method.crst`) are computed on the host on either path;
its training iterator upsamples each crop's window alone with the same
matrices in float64 on the host (:func:`upsample_window`).
"""
import collections
import functools

import numpy as np
from PIL import Image

from issegm.engine.metrics import confusion_counts
from issegm.flags import POSTPROCESS_MODES
from issegm.storage.probmaps import LowRes
from issegm.method.thresholds import SUBSAMPLE, confidence_map, effective_thresholds, kept_confidences, pseudo_label
from issegm.storage.datasets import IGNORE_LABEL
from util.image import interp_method, resize
from util.parallel import class_argmax, thread_pool

__all__ = ['resample_matrix', 'resample_support', 'upsample_matrices', 'upsample_window', 'upsample_probs',
           'apply_prior', 'HostOps', 'DeviceOps', 'Postprocessor', 'Source', 'Pending', 'LowRes', 'MODES',
           'default_mode', 'resolved_mode', 'lowres_to_probmap']

MODES = POSTPROCESS_MODES



# ---------------------------------------------------------------------------- PIL's resampling as matrices
def _bicubic(x):
    a = -0.5
    x = np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _sinc(x):
    safe = np.where(x == 0, 1.0, np.pi * x)
    return np.where(x == 0, 1.0, np.sin(safe) / safe)


def _lanczos(x):
    return np.where((x >= -3) & (x < 3), _sinc(x) * _sinc(x / 3), 0.0)


def _bilinear(x):
    x = np.abs(x)
    return np.where(x < 1, 1 - x, 0.0)


# PIL filter -> (kernel, support at scale 1)
_FILTERS = {Image.BICUBIC: (_bicubic, 2.0), Image.LANCZOS: (_lanczos, 3.0), Image.BILINEAR: (_bilinear, 1.0)}


def _coefficients(n_in, n_out, method):
    """PIL's taps of a 1-D resampling: ``(xmin, inside, weights)``, each output's window and its coefficients.

    Output sample ``i`` reads inputs ``xmin[i] + j`` for the ``j`` where
    ``inside[i, j]``, with weights ``weights[i, j]`` (Pillow's
    ``precompute_coeffs``).
    """
    kernel, base_support = _FILTERS[method]
    scale = float(n_in) / n_out
    filterscale = max(scale, 1.0)
    support = base_support * filterscale
    ksize = int(np.ceil(support)) * 2 + 1
    center = (np.arange(n_out) + 0.5) * scale
    # C's (int) cast truncates toward zero; negative starts are clamped to 0 anyway.
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), n_in)
    taps = xmin[:, None] + np.arange(ksize)[None, :]
    inside = taps < xmax[:, None]
    weights = np.where(inside, kernel((taps - center[:, None] + 0.5) / filterscale), 0.0)
    total = weights.sum(1, keepdims=True)
    weights = np.where(total != 0, weights / np.where(total != 0, total, 1.0), weights)
    return xmin, inside, weights


def resample_matrix(n_in, n_out, method):
    """PIL's 1-D resampling from ``n_in`` to ``n_out`` samples as a float64 (n_out, n_in) matrix.

    The coefficients of Pillow's ``ImagingResample`` (``precompute_coeffs``):
    output sample ``i`` is centred at ``(i + 0.5) * n_in / n_out``; when
    shrinking, the kernel is stretched by the scale (its support grows and
    its argument is divided by the scale); taps run over the rounded window
    inside the input; each row is normalised to sum to 1. Equal sizes are the
    identity (PIL skips that pass).
    """
    n_in, n_out = int(n_in), int(n_out)
    if n_in == n_out:
        return np.eye(n_out)
    xmin, inside, weights = _coefficients(n_in, n_out, method)
    taps = xmin[:, None] + np.arange(inside.shape[1])[None, :]
    out = np.zeros((n_out, n_in))
    rows = np.broadcast_to(np.arange(n_out)[:, None], taps.shape)
    out[rows[inside], taps[inside]] = weights[inside]
    return out


def resample_support(n_in, n_out, method, outputs):
    """bool (n_in,): the input samples that PIL's resampling reads for the output samples ``outputs``.

    Every sample of the tap windows counts, whatever its coefficient (a tap
    whose weight is 0 here may be a tiny non-zero in PIL's C arithmetic), so
    inputs outside the mask have no influence on those outputs in PIL or in
    :func:`resample_matrix`.
    """
    n_in, n_out = int(n_in), int(n_out)
    mask = np.zeros(n_in, bool)
    if n_in == n_out:
        mask[outputs] = True
        return mask
    xmin, inside, _ = _coefficients(n_in, n_out, method)
    taps = xmin[outputs, None] + np.arange(inside.shape[1])[None, :]
    mask[taps[inside[outputs]]] = True
    return mask


def _upsample_matrices(lowres_hw, stride, im_hw, orig_hw):
    """``(A_h, A_w)``: the whole upsampling of a (h, w) map as ``A_h . X . A_w^T`` (float64, read-only).

    Bicubic by ``stride``, the padding cut off to ``im_hw``, then (when the
    sizes differ) the resize to ``orig_hw`` with the reference filter rule
    (:func:`util.image.interp_method`).
    """
    (h, w), (imh, imw) = lowres_hw, im_hw
    if imh > h * stride or imw > w * stride:
        raise ValueError('a %dx%d map at stride %d does not cover the %dx%d image' % (h, w, stride, imh, imw))
    a_h = resample_matrix(h, h * stride, Image.BICUBIC)[:imh]
    a_w = resample_matrix(w, w * stride, Image.BICUBIC)[:imw]
    # The reference compares heights only, so a scale that rounds the height back to
    # the original (2047 on 1024 x 2048) left the width wrong; compare both sides.
    if tuple(orig_hw) != (imh, imw):
        method = interp_method(im_hw, orig_hw)
        a_h = resample_matrix(imh, orig_hw[0], method).dot(a_h)
        a_w = resample_matrix(imw, orig_hw[1], method).dot(a_w)
    a_h.flags.writeable = False
    a_w.flags.writeable = False
    return a_h, a_w


# Cached by wrapping rather than with a decorator, so that the mutation check
# (scripts/mutation_check.sh: mutmut leaves decorated functions alone) reaches the body.
upsample_matrices = functools.lru_cache(maxsize=32)(_upsample_matrices)


def _band(a):
    """``a`` restricted to the columns between its first and last non-zero ones, and their slice."""
    used = np.flatnonzero(a.any(axis=0))
    cut = slice(used[0], used[-1] + 1) if used.size else slice(0, 0)
    return a[:, cut], cut


def upsample_window(probs, stride, im_hw, orig_hw, rows, cols):
    """Rows ``rows`` x columns ``cols`` of the full-resolution map, at a cost that follows the window.

    ``A_h[rows] . X . A_w[cols]^T`` with the matrices of
    :func:`upsample_matrices`, over the low-resolution cells those rows and
    columns read only, in float64, rounded to float32 (C, len(rows),
    len(cols)). The whole image through this function is the reference
    full-resolution map of the matrix path; a window of it differs from
    that by float64 summation order (a float32 result moves by at most one
    unit in the last place, and rarely), and from PIL's
    :func:`upsample_probs` by float32 rounding.
    """
    c, h, w = probs.shape
    a_h, a_w = upsample_matrices((h, w), int(stride), tuple(im_hw), tuple(orig_hw))
    (a_h, r), (a_w, k) = _band(a_h[rows]), _band(a_w[cols])
    x = np.asarray(probs[:, r, k], np.float64)
    (nr, kh), (nc, kw) = a_h.shape, a_w.shape
    # Contract the axis whose product is cheaper first (as DeviceOps.upsample).
    if kh * kw * nc + nr * kh * nc <= nr * kh * kw + nr * kw * nc:
        out = np.matmul(a_h, x.reshape(c * kh, kw).dot(a_w.T).reshape(c, kh, nc))
    else:
        out = np.matmul(a_h, x).reshape(c * nr, kw).dot(a_w.T).reshape(c, nr, nc)
    return out.astype(np.float32)


# ---------------------------------------------------------------------------- host (PIL) operations
def _upsample_one(prob, stride, im_hw, orig_hw):
    h, w = prob.shape
    up = np.asarray(Image.fromarray(prob, mode='F').resize((w * stride, h * stride), Image.BICUBIC))
    up = up[:im_hw[0], :im_hw[1]]
    if tuple(orig_hw) != tuple(im_hw):  # both sides: see upsample_matrices
        up = resize(up, orig_hw)
    return up


def upsample_probs(probs, stride, im_hw, orig_hw):
    """Low-resolution class maps (C, h, w) -> float32 (C, H, W) at the original image size, with PIL."""
    probs = np.ascontiguousarray(probs, dtype=np.float32)
    out = np.empty((probs.shape[0],) + tuple(orig_hw), np.float32)

    def one(c):
        # Each class lands in its slot: one full-resolution copy, not two.
        out[c] = _upsample_one(probs[c], stride, im_hw, orig_hw)

    list(thread_pool().map(one, range(probs.shape[0])))
    return out


def _check_prior(prior, probs):
    if prior.shape != probs.shape:
        raise ValueError('spatial prior has shape %s but the probability map is %s (classes x H x W); '
                         'build the prior at the target image size' % (prior.shape, probs.shape))


def apply_prior(prior, probs):
    """``prior * probs`` in float32 (reference ``np.multiply(prior_array, interp_preds)``)."""
    _check_prior(prior, probs)
    return np.multiply(prior, probs).astype(np.float32, copy=False)


class HostOps(object):
    """The recipes' operations in PIL and NumPy on the host (the reference's arithmetic)."""

    asynchronous = False

    def __init__(self, num_classes, prior=None):
        self.num_classes = int(num_classes)
        self.prior = prior

    def lowres_of(self, job):
        return [LowRes(*low) for low in job.lowres()]

    def stored(self, probs):
        return np.ascontiguousarray(probs, dtype=np.float32)

    def upsample(self, probs, stride, im_hw, orig_hw):
        return upsample_probs(probs, stride, im_hw, orig_hw)

    def add(self, a, b):
        a += b
        return a

    def divide(self, a, n):
        a /= np.float32(n)
        return a

    def times_prior(self, probs):
        return apply_prior(self.prior, probs)

    def argmax(self, probs):
        return class_argmax(probs)

    def argmax_max(self, probs):
        return confidence_map(probs)

    def confusion(self, gt, pred):
        return confusion_counts(gt, pred, self.num_classes)[0]

    def kept(self, pred, conf):
        return kept_confidences(pred, conf, self.num_classes)

    def pseudo(self, probmap, thresholds):
        return pseudo_label(probmap, thresholds, return_argmax=True)

    def fetch(self, x):
        return x


# ---------------------------------------------------------------------------- device (MXNet) operations
class DeviceOps(object):
    """The recipes' operations as MXNet operators on ``ctx`` (asynchronous; float32).

    Counts what it launches: :attr:`flops` (multiply-adds x 2 of the matrix
    products) and :attr:`bytes` (device memory read and written, operator by
    operator), so that a benchmark can price the device work at an assumed
    GPU speed.
    """

    asynchronous = True
    BLOCK = 4096  # pixels per lane of the blocked prefix sum (kept confidences)

    def __init__(self, num_classes, ctx=None, prior=None):
        import mxnet as mx
        self.mx = mx
        self.num_classes = int(num_classes)
        if self.num_classes > 255:
            raise ValueError('the device post-processing stores labels as uint8 (at most 255 classes)')
        self.ctx = ctx if ctx is not None else mx.cpu()
        self.prior = None if prior is None else mx.nd.array(prior, ctx=self.ctx, dtype=np.float32)
        self._matrices = collections.OrderedDict()
        self.flops = 0
        self.bytes = 0

    def _count(self, nbytes, flops=0):
        self.bytes += int(nbytes)
        self.flops += int(flops)

    def lowres_of(self, job):
        if hasattr(job, 'lowres_device'):
            return job.lowres_device()
        return [LowRes(self.stored(low[0]), low[1], low[2]) for low in job.lowres()]

    def stored(self, probs):
        return self.mx.nd.array(probs, ctx=self.ctx, dtype=np.float32)

    def _device_matrices(self, lowres_hw, stride, im_hw, orig_hw):
        key = (tuple(lowres_hw), int(stride), tuple(im_hw), tuple(orig_hw))
        mats = self._matrices.pop(key, None)
        if mats is None:
            a_h, a_w = upsample_matrices(*key)
            c = self.num_classes
            # batch_dot takes one matrix per class map: A_h repeated over the classes.
            a_h = np.ascontiguousarray(np.broadcast_to(a_h.astype(np.float32), (c,) + a_h.shape))
            mats = (self.mx.nd.array(a_h, ctx=self.ctx), self.mx.nd.array(a_w.T.astype(np.float32), ctx=self.ctx))
        self._matrices[key] = mats
        while len(self._matrices) > 8:  # GTA-5 images vary in size: keep the recent ones
            self._matrices.popitem(last=False)
        return mats

    def upsample(self, probs, stride, im_hw, orig_hw):
        nd = self.mx.nd
        c, h, w = probs.shape
        a_h, a_wt = self._device_matrices((h, w), stride, im_hw, orig_hw)
        big_h, big_w = a_h.shape[1], a_wt.shape[1]
        # Contract the axis whose product is cheaper first (wide images: the width).
        width_first = h * w * big_w + big_h * h * big_w <= big_h * h * w + big_h * w * big_w
        if width_first:
            mid = nd.dot(probs.reshape((c * h, w)), a_wt).reshape((c, h, big_w))
            out = nd.batch_dot(a_h, mid)
            flops = 2 * c * (h * w * big_w + big_h * h * big_w)
            mid_size = c * h * big_w
        else:
            mid = nd.batch_dot(a_h, probs)
            out = nd.dot(mid.reshape((c * big_h, w)), a_wt).reshape((c, big_h, big_w))
            flops = 2 * c * (big_h * h * w + big_h * w * big_w)
            mid_size = c * big_h * w
        self._count(4 * (2 * probs.size + a_h.size + a_wt.size + 2 * mid_size + out.size), flops)
        return out

    def add(self, a, b):
        self._count(4 * 3 * a.size)
        return a + b

    def divide(self, a, n):
        self._count(4 * 2 * a.size)
        return a / float(n)

    def times_prior(self, probs):
        _check_prior(self.prior, probs)  # float32 products: the same bits as on the host
        self._count(4 * 3 * probs.size)
        return self.prior * probs

    def argmax(self, probs):
        # MXNet's argmax keeps the first maximum, as NumPy's (tested).
        self._count(4 * probs.size + 9 * probs[0].size)
        return self.mx.nd.argmax(probs, axis=0).astype(np.uint8)

    def argmax_max(self, probs):
        self._count(4 * probs.size + 4 * probs[0].size)
        return self.argmax(probs), self.mx.nd.max(probs, axis=0)

    def confusion(self, gt, pred):
        """Flat (C*C,) counts of (ground truth, prediction) pairs; ``gt`` holds train ids (255 ignored)."""
        nd, c = self.mx.nd, self.num_classes
        gt = gt if isinstance(gt, nd.NDArray) else nd.array(gt, ctx=self.ctx, dtype=np.uint8)
        g = gt.astype(np.float32)
        key = nd.where(g < c, g * c + pred.astype(np.float32), -nd.ones_like(g))
        self._count(2 * gt.size + 4 * 8 * gt.size)
        # Integer keys, bins centred on them; -1 (ignored ground truth) falls outside.
        return nd.histogram(key, bins=c * c, range=(-0.5, c * c - 0.5))[0]

    def kept(self, pred, conf):
        """``(values, counts)``: every 4th confidence of each class in row-major order, class after class.

        ``counts[c]`` pixels were predicted as class c; its kept values are the
        next ``ceil(counts[c] / 4)`` entries of ``values`` (the buffer is
        longer; the tail is unused). Computed with a blocked prefix sum of the
        one-hot prediction (each pixel's rank among its class's pixels) and
        one scatter.
        """
        nd, c = self.mx.nd, self.num_classes
        n = pred.size
        lanes = -(-n // self.BLOCK)
        flat = pred.reshape((-1,)).astype(np.int32)
        padded = nd.concat(flat, nd.full((lanes * self.BLOCK - n,), c, ctx=self.ctx, dtype=np.int32), dim=0) \
            if lanes * self.BLOCK > n else flat
        # Class c's running count inside each block, then block offsets (exclusive).
        onehot = nd.one_hot(padded, c, dtype=np.uint8).reshape((lanes, self.BLOCK, c))
        within = nd.cumsum(onehot, axis=1, dtype=np.int32)
        totals = nd.slice_axis(within, axis=1, begin=self.BLOCK - 1, end=self.BLOCK).reshape((lanes, c))
        before = nd.cumsum(totals, axis=0, dtype=np.int32) - totals
        within = nd.pick(within.reshape((-1, c)), padded, axis=1, mode='clip')
        lane = nd.repeat(nd.arange(lanes, ctx=self.ctx, dtype=np.int32), repeats=self.BLOCK)
        rank = within + nd.take(before.reshape((-1,)), lane * c + nd.minimum(padded, c - 1)) - 1
        rank = nd.slice_axis(rank, axis=0, begin=0, end=n)
        counts = nd.sum(totals, axis=0)
        # int32 division truncates, which is floor for these non-negative counts.
        kept_counts = (counts + SUBSAMPLE - 1) / SUBSAMPLE
        offsets = nd.cumsum(kept_counts, dtype=np.int32) - kept_counts
        size = n // SUBSAMPLE + c + 1
        dest = nd.where(rank % SUBSAMPLE == 0, nd.take(offsets, flat) + rank / SUBSAMPLE,
                        nd.full((n,), size - 1, ctx=self.ctx, dtype=np.int32))
        values = nd.scatter_nd(conf.reshape((-1,)), dest.reshape((1, -1)), shape=(size,))
        m = lanes * self.BLOCK
        # one-hot (1 byte), blocked sums (4 bytes) written and read, picks, takes, the scatter
        self._count(m * c * (1 + 1 + 4 + 4) + 4 * (8 * m + 6 * n) + 4 * size)
        return values, counts

    def pseudo(self, probmap, thresholds):
        """``(label, argmax)``: argmax of the ratios to the thresholds; 255 where the best ratio is below 1."""
        nd, c = self.mx.nd, self.num_classes
        thresh = nd.array(effective_thresholds(thresholds).astype(np.float32).reshape((c, 1, 1)), ctx=self.ctx)
        ratio = nd.broadcast_div(probmap, thresh)
        argmax, best = self.argmax_max(ratio)
        label = nd.where(best < 1, nd.full(best.shape, IGNORE_LABEL, ctx=self.ctx), argmax.astype(np.float32))
        self._count(4 * 2 * probmap.size + 4 * 3 * best.size)
        return label.astype(np.uint8), argmax

    def fetch(self, x):
        return x.asnumpy()


# ---------------------------------------------------------------------------- recipes
class Pending(object):
    """One image's post-processing, launched; :meth:`result` waits and returns host arrays (a dict)."""

    def __init__(self, ops, work):
        self._ops = ops
        self._work = None
        self._out = None
        if ops.asynchronous:
            self._out = work()  # queues the operators; returns at once
        else:
            self._work = work

    def result(self):
        out = self._out if self._work is None else self._work()
        fetch = self._ops.fetch
        return {k: tuple(fetch(v) for v in val) if isinstance(val, tuple) else fetch(val)
                for k, val in out.items()}


class Source(object):
    """One image's low-resolution maps for a recipe: the operations to run on and how to load them."""

    def __init__(self, ops, load):
        self.ops, self.load = ops, load

    def __call__(self):
        """``(lowres list, orig_hw)`` on ``ops``' backend."""
        return self.load()


class Postprocessor(object):
    """The post-processing of evaluation and pseudo-labelling, on the host (``pil``) or the device.

    Parameters
    ----------
    num_classes : int
    mode : 'pil', 'device' or 'auto' (:func:`default_mode` of ``ctx``)
    ctx : the network's mx.Context, or a list of them (device mode: each
        image is post-processed where its forward ran; stored maps go to the
        contexts in turn)
    prior : float32 (C, H, W) spatial prior, or None
    """

    def __init__(self, num_classes, mode='auto', ctx=None, prior=None):
        contexts = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
        if mode == 'auto':
            mode = default_mode(contexts[0])
        if mode not in ('pil', 'device'):
            raise ValueError('--postprocess takes pil, device or auto; got %r' % (mode,))
        self.mode = mode
        self.num_classes = int(num_classes)
        if mode == 'pil':
            self._ops = [HostOps(num_classes, prior)]
        else:
            self._ops = [DeviceOps(num_classes, c, prior) for c in contexts]
        self.ops = self._ops[0]
        self._turn = 0

    @property
    def devices(self):
        """How many devices post-process in turn (1 on the host)."""
        return len(self._ops)

    def _ops_for(self, ctx=None):
        if ctx is not None:
            for ops in self._ops:
                if getattr(ops, 'ctx', None) == ctx:
                    return ops
        ops = self._ops[self._turn % len(self._ops)]
        self._turn += 1
        return ops

    def source(self, job=None, stored=None):
        """A :class:`Source` of a launched :class:`issegm.engine.inference.Job` or of a stored map.

        ``stored`` is ``(LowRes, orig_hw)`` as ``probmaps.load_lowres`` returns it.
        """
        if job is not None:
            ops = self._ops_for(getattr(job, 'ctx', None))
            return Source(ops, lambda: (ops.lowres_of(job), tuple(job.orig_hw)))
        low, orig_hw = stored
        ops = self._ops_for()
        return Source(ops, lambda: ([LowRes(ops.stored(low.probs), tuple(low.im_hw), int(low.stride))],
                                    tuple(orig_hw)))

    def probmap(self, source, prior=False):
        """Full-resolution probabilities on the backend: upsampled, averaged over scales, times the prior."""
        ops = source.ops
        lowres, orig_hw = source()
        total = None
        for low in lowres:
            up = ops.upsample(low.probs, low.stride, low.im_hw, orig_hw)
            total = up if total is None else ops.add(total, up)
        if len(lowres) > 1:
            total = ops.divide(total, len(lowres))
        return ops.times_prior(total) if prior else total

    def evaluate(self, job, gt=None):
        """Evaluation: ``{'pred'}`` (uint8 train ids) and with ``gt`` (train ids) ``'confusion'`` (C*C counts)."""
        source = self.source(job=job)
        ops = source.ops

        def work():
            pred = ops.argmax(self.probmap(source))
            out = {'pred': pred}
            if gt is not None:
                out['confusion'] = ops.confusion(gt, pred)
            return out
        return Pending(ops, work)

    def collect(self, source, gt=None):
        """Pseudo-label pass 1 of one image (``source`` from :meth:`source`).

        ``'pred_np'``: argmax of the upsampled probabilities; with a prior also
        ``'pred_sp'``, the argmax after the prior product; ``'kept'``:
        ``(values, counts)`` of the confidences the thresholds need (of the
        prior argmax when there is a prior); with ``gt``, ``'confusion_np'``
        (and ``'confusion_sp'``).
        """
        ops = source.ops

        def work():
            up = self.probmap(source)
            if ops.prior is None:
                pred, conf = ops.argmax_max(up)
                out = {'pred_np': pred}
            else:
                out = {'pred_np': ops.argmax(up)}
                pred, conf = ops.argmax_max(ops.times_prior(up))
                out['pred_sp'] = pred
            del up
            out['kept'] = ops.kept(pred, conf)
            if gt is not None:
                out['confusion_np'] = ops.confusion(gt, out['pred_np'])
                if 'pred_sp' in out:
                    out['confusion_sp'] = ops.confusion(gt, pred)
            return out
        return Pending(ops, work)

    def label(self, source, thresholds, alpha=0.):
        """Pseudo-label pass 2: ``{'label', 'argmax'}`` uint8 (255 where no class reaches its threshold).

        ``alpha`` > 0 is CRST-LRENT (:func:`issegm.method.crst.lrent_pseudo_label`),
        float64 on the host: the full-resolution map comes back from the
        device, and the work waits for :meth:`Pending.result`.
        """
        ops = source.ops
        prior = ops.prior is not None
        if alpha:
            from issegm.method.crst import lrent_pseudo_label

            def lrent():
                probmap = ops.fetch(self.probmap(source, prior=prior))
                label, argmax = lrent_pseudo_label(probmap, thresholds, alpha, return_argmax=True)
                return {'label': label, 'argmax': argmax}
            return Pending(HostOps(self.num_classes), lrent)

        def work():
            label, argmax = ops.pseudo(self.probmap(source, prior=prior), thresholds)
            return {'label': label, 'argmax': argmax}
        return Pending(ops, work)


def resolved_mode(mode, gpus):
    """The path ``--postprocess mode`` takes with ``--gpus gpus`` (``auto`` resolved)."""
    if mode != 'auto':
        return mode
    from util.device import get_contexts
    return default_mode(get_contexts(gpus)[0])


def default_mode(ctx):
    """``device`` on a GPU; on a CPU context the faster path here (``bench/postprocess.py``)."""
    if ctx is not None and getattr(ctx, 'device_type', 'cpu') == 'gpu':
        return 'device'
    return CPU_DEFAULT


# Measured by bench/postprocess.py on the CPU (see README).
CPU_DEFAULT = 'pil'


def lowres_to_probmap(low, orig_hw, prior=None):
    """Full-resolution ``probmap`` (C, H, W) float32 of a stored ``LowRes`` on the host (PIL), times the prior.

    The host recipe of :class:`Postprocessor`, for callers
    that need the whole map (CRST's soft labels, tests).
    """
    post = Postprocessor(low.probs.shape[0], 'pil', prior=prior)
    return post.probmap(post.source(stored=(low, orig_hw)), prior=prior is not None)
