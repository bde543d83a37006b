"""Confidence-regularised self-training (CRST; Zou, Yu, Liu, Kumar, Wang, ICCV 2019) on top of CBST.

Each variant is a weight flag of ``solve_AO.py`` / ``solve_ST.py``; all default
to 0, which is CBST exactly (none of this module runs):

* **LRENT**, label regularisation (``--lr-weight-ent`` = alpha): soft
  pseudo-labels ``yhat_k = (p_k / lambda_k)^(1/alpha) / sum_j (p_j / lambda_j)^(1/alpha)``
  from the probability map ``p`` (spatial prior applied if any) and the class
  thresholds ``lambda``; a pixel is kept where
  ``sum_k [-yhat_k log p_k + alpha yhat_k log yhat_k] < sum_k [-yhat_k log lambda_k]``
  (:func:`soft_pseudo_labels`). Training uses the soft vectors.
* **MRKLD / MRENT / MRL2**, model regularisation (``--mr-weight-kld``,
  ``--mr-weight-ent``, ``--mr-weight-l2``): per labelled pixel
  ``r_kld = sum_k -log p_k / C``, ``r_ent = sum_k p_k log p_k``, ``r_l2 = sum_k p_k^2``,
  added to the cross-entropy with per-sample weights (``--mr-weight-src`` on
  source samples) by :func:`loss_symbol`.

The loss is ``ce / N + sum_X w_X * sum(s_X * r_X) / N_X`` with ``s_X = w_X``
on target samples: the target weight counts twice, as in CRST's released code
(``reg_loss_calc``: ``mr_weight_kld * kld`` where ``kld`` already carries the
per-sample weight ``mr_weight_kld``), so ``--mr-weight-kld 0.1`` (its
``mrkld.sh``) regularises target pixels with 0.01. :func:`describe` says it.

CRST stores one H x W x C float32 map per target image for LRENT (159 MB per
Cityscapes image). Here the pseudo-label phase keeps the network's
low-resolution output (``{output}/{r}/probmap/{name}.npz``, ~2 MB) and the
recipe (thresholds, alpha, prior; ``{output}/{r}/soft_labels.json``), and
:class:`SoftLabelStore` recomputes the soft labels of each training crop in
the iterator's workers: only the window rows and columns that the crop's
resize reads at its kept stride centres (:func:`crop_support`), so the cost
follows the crop, not the image. The numbers are those of a stored
full-resolution map upsampled by the matrix path, to float32 rounding (the
hard labels they imply agree exactly in ``bench/crst.py`` at Cityscapes size).
"""
import collections
import functools
import json
import logging
import os

import mxnet as mx
import numpy as np

from issegm.cli import CRST_FLAGS
from issegm.datasets import IGNORE_LABEL, sample_name
from util.image import interp_method
from util.io import atomic_write

__all__ = ['CrstWeights', 'FLAG_NAMES', 'weights_from_args', 'flag_argv', 'describe',
           'soft_pseudo_labels', 'lrent_pseudo_label', 'loss_symbol', 'training_symbol', 'loss_and_grad',
           'Objective', 'SoftNllMetric', 'SoftLabelStore', 'TrainingTargets', 'training_targets', 'crop_soft_labels',
           'crop_support', 'one_hot', 'DOMAIN_NAME', 'RECIPE']

logger = logging.getLogger('cbst')

#: The flags (declared in :data:`issegm.cli.FLAGS`), in :class:`CrstWeights` order.
FLAG_NAMES = tuple(CRST_FLAGS)
#: Label input of the CRST loss telling, per sample, whether it comes from the source domain.
DOMAIN_NAME = 'is_source'
#: Per-round recipe of the LRENT soft labels, beside the round's low-resolution maps.
RECIPE = 'soft_labels.json'
# log(p + 1e-32) as CRST writes it, so that zero probabilities stay finite.
_EPS = 1e-32
# Values per block of the soft labels of a crop: float64 temporaries of about 1 MB (an L2 cache).
_CACHE_VALUES = 1 << 17

#: The five weights; ``kld``/``ent``/``l2``/``lr_ent``/``src`` are the flags in :data:`FLAG_NAMES` order.
CrstWeights = collections.namedtuple('CrstWeights', ['kld', 'ent', 'l2', 'lr_ent', 'src'])
CrstWeights.mr_active = property(lambda w: w.kld > 0 or w.ent > 0 or w.l2 > 0)
CrstWeights.soft = property(lambda w: w.lr_ent > 0)
CrstWeights.active = property(lambda w: w.mr_active or w.soft)
CrstWeights.regularisers = property(
    lambda w: [(name, value) for name, value in (('kld', w.kld), ('ent', w.ent), ('l2', w.l2)) if value > 0])


def _dest(flag):
    return flag.lstrip('-').replace('-', '_')


def weights_from_args(args):
    """The :class:`CrstWeights` of parsed arguments (absent flags are 0); a negative one is an error."""
    values = [float(getattr(args, _dest(flag), 0.) or 0.) for flag in FLAG_NAMES]
    for flag, value in zip(FLAG_NAMES, values):
        if not value >= 0:
            raise ValueError('%s must be >= 0 (0 turns it off), got %r' % (flag, value))
    weights = CrstWeights(*values)
    if weights.soft and getattr(args, 'kc_policy', 'cb') not in (None, 'cb'):
        raise ValueError('--lr-weight-ent (CRST-LRENT) needs --kc-policy cb (class-balanced thresholds), '
                         'got --kc-policy %s' % args.kc_policy)
    return weights


def flag_argv(args):
    """The non-zero CRST flags of ``args`` as command-line words (none for CBST, so its commands stay)."""
    argv = []
    for flag, value in zip(FLAG_NAMES, weights_from_args(args)):
        if value:
            argv += [flag, '%.12g' % value]
    return argv


def describe(weights):
    """Log lines naming the variant and the effective coefficient of each regulariser."""
    if not weights.active:
        return []
    lines = []
    if weights.soft:
        lines.append('CRST-LRENT: soft pseudo-labels with alpha = %g (--lr-weight-ent)' % weights.lr_ent)
    for name, w in weights.regularisers:
        lines.append('CRST-MR%s: --mr-weight-%s %g -> effective coefficient %g on target pixels (the weight '
                     'is applied twice, as in CRST\'s released code) and %g on source pixels '
                     '(--mr-weight-src %g), each divided by the regularised labelled pixels'
                     % (name.upper(), name, w, w * w, w * weights.src, weights.src))
    return lines


# ---------------------------------------------------------------------------- soft pseudo-labels
def _soft(probs, thresh, alpha):
    """Soft labels (float64, shape of ``probs``) of class maps ``probs`` (C, ...), and which pixels LRENT keeps.

    Pixel by pixel with exactly rounded operations and libm's ``pow`` on
    contiguous data, so a window of an image gives the same numbers as the
    whole image. Scaling by the pixel's largest ratio before the power keeps
    small alphas finite (CRST's ``np.power(p / lambda, 1 / alpha)`` overflows
    below alpha ~ 0.01); pixels with no probability get all-zero vectors.
    Bicubic upsampling (spec 6.3) overshoots slightly below 0 near sharp
    edges, where CRST's bilinear maps cannot: such values count as 0.

    The selection ``sum_k [-y_k log p_k + alpha y_k log y_k] >= sum_k [-y_k log lambda_k]``
    (ignore) is evaluated in its equivalent form: the left side minus the
    right is ``-alpha log Z`` with ``Z = sum_k (p_k / lambda_k)^(1/alpha)``,
    so a pixel is kept where ``Z > 1`` -- one logarithm per pixel instead of
    two per class (CRST adds 1e-32 inside its logarithms; that moves the
    sides by less than 1e-15).
    """
    shape = (-1,) + (1,) * (probs.ndim - 1)
    ratio = np.maximum(np.ascontiguousarray(probs, np.float64), 0.) / np.asarray(thresh, np.float64).reshape(shape)
    top = ratio.max(axis=0)
    alive = top > 0
    ratio /= np.where(alive, top, 1.)
    np.power(ratio, 1. / alpha, out=ratio)
    total = ratio.sum(axis=0)
    ratio /= np.where(alive, total, 1.)
    ratio *= alive
    with np.errstate(divide='ignore'):
        # log Z = log(total) + log(top) / alpha, since the ratios were divided by top before the power.
        keep = alive & (np.log(np.where(alive, total, 1.)) + np.log(np.where(alive, top, 1.)) / alpha > 0)
    return ratio, keep


def _lrent_rows(probs, thresh, alpha):
    """``(soft float32, argmax uint8, keep bool)`` of a block of rows."""
    soft, keep = _soft(probs, thresh, alpha)
    soft = soft.astype(np.float32)
    return soft, soft.argmax(axis=0).astype(np.uint8), keep


def _lrent_blocks(probs, thresh, alpha, each):
    """Run ``each(rows, soft, label, keep)`` over blocks of rows, spread over the cores."""
    from util.parallel import thread_pool
    c, h, w = probs.shape
    rows = max(1, (1 << 21) // max(1, w * c))

    def one(y):
        block = slice(y, min(h, y + rows))
        each(block, *_lrent_rows(probs[:, block], thresh, alpha))
    list(thread_pool().map(one, range(0, h, rows)))


def _checked(probs, cls_thresh, alpha):
    probs, thresh = np.asarray(probs), np.asarray(cls_thresh, np.float64)
    if probs.ndim != 3 or thresh.shape != (probs.shape[0],):
        raise ValueError('thresholds of shape %s for probabilities of shape %s (expected C and C x H x W)'
                         % (thresh.shape, probs.shape))
    if not alpha > 0:
        raise ValueError('alpha (--lr-weight-ent) must be > 0, got %r' % (alpha,))
    return probs, thresh


def soft_pseudo_labels(probs, cls_thresh, alpha):
    """CRST-LRENT pseudo-labels of one image.

    Parameters
    ----------
    probs : float32 (C, H, W)
        Class probabilities at full resolution (spatial prior applied, if any).
    cls_thresh : (C,)
        Class thresholds (:func:`issegm.pseudo_label.effective_thresholds`).
    alpha : float > 0
        ``--lr-weight-ent``.

    Returns ``(soft, hard)``: float32 (C, H, W) soft labels (each pixel's
    vector sums to 1) and uint8 (H, W) train ids, the argmax of ``soft``, 255
    where the LRENT selection ignores the pixel.
    """
    probs, thresh = _checked(probs, cls_thresh, alpha)
    c, h, w = probs.shape
    soft = np.empty(probs.shape, np.float32)
    hard = np.empty((h, w), np.uint8)

    def each(rows, soft_rows, label, keep):
        soft[:, rows] = soft_rows
        label[~keep] = IGNORE_LABEL
        hard[rows] = label
    _lrent_blocks(probs, thresh, alpha, each)
    return soft, hard


def lrent_pseudo_label(probs, cls_thresh, alpha, return_argmax=False):
    """The hard LRENT labels alone, block by block (no full-size soft map kept).

    The counterpart of :func:`issegm.pseudo_label.pseudo_label` for the
    pseudo-label phase: train ids with 255 where ignored, and with
    ``return_argmax`` the argmax of the soft labels (``rwlabelIds``).
    """
    probs, thresh = _checked(probs, cls_thresh, alpha)
    c, h, w = probs.shape
    label = np.empty((h, w), np.uint8)
    keep = np.empty((h, w), bool)

    def each(rows, _, label_rows, keep_rows):
        label[rows], keep[rows] = label_rows, keep_rows
    _lrent_blocks(probs, thresh, alpha, each)
    rw = label.copy() if return_argmax else None
    label[~keep] = IGNORE_LABEL
    return (label, rw) if return_argmax else label


# ---------------------------------------------------------------------------- loss
def loss_symbol(scores, label, is_source, num_classes, weights, soft):
    """The CRST objective as an MXNet symbol (a scalar of shape (1,)).

    ``scores`` (B, C, h, w) are the logits; ``label`` is (B, h*w) train ids
    with 255 (``soft`` False) or (B, C, h*w) soft vectors, all-zero where
    unlabelled (``soft`` True); ``is_source`` (B,) is 1 for source samples.
    ``ce / N + sum_X w_X * sum(s_X * r_X over labelled pixels) / N_X`` (see
    the module docstring); the divisions use at least 1, so a batch without
    labels gives 0 instead of NaN, and a term whose samples all have
    ``s_X = 0`` drops out.
    """
    logits = mx.sym.reshape(scores, shape=(0, 0, -1))  # (B, C, n)
    logp = mx.sym.log_softmax(logits, axis=1)
    if soft:
        valid = mx.sym.sum(label, axis=1) != 0
        ce = -mx.sym.sum(label * logp)
    else:
        valid = label != IGNORE_LABEL
        ce = -mx.sym.sum(mx.sym.pick(logp, label * valid, axis=1) * valid)
    total = ce / mx.sym.maximum(mx.sym.sum(valid), 1.)
    regs = weights.regularisers
    if not regs:
        return total
    src = mx.sym.reshape(is_source, shape=(-1, 1))
    # N_X: labelled pixels of the samples whose weight is non-zero (source ones only with --mr-weight-src).
    regularised = valid if weights.src else mx.sym.broadcast_mul(valid, 1. - src)
    n_reg = mx.sym.maximum(mx.sym.sum(regularised), 1.)
    prob = None
    for name, w in regs:
        if name == 'kld':
            r = -mx.sym.sum(logp, axis=1) / float(num_classes)
        else:
            prob = mx.sym.exp(logp) if prob is None else prob
            r = mx.sym.sum(prob * logp, axis=1) if name == 'ent' else mx.sym.sum(mx.sym.square(prob), axis=1)
        per_sample = w * (1. - src) + weights.src * src  # s_X
        total = total + w * mx.sym.sum(mx.sym.broadcast_mul(valid * r, per_sample)) / n_reg
    return total


def training_symbol(model_label, weights):
    """The network of ``model_label`` ending in the CRST loss: outputs ``[probs (no gradient), loss]``."""
    from issegm.model import get_scores, parse_label
    scores = get_scores(model_label)
    classes = parse_label(model_label).classes
    is_source = mx.sym.var(DOMAIN_NAME)
    loss = loss_symbol(scores, mx.sym.var('softmax_label'), is_source, classes, weights, weights.soft)
    if not weights.regularisers:
        # LRENT alone reads no domain; the iterator still feeds it, so the graph takes it (times 0).
        loss = loss + 0. * mx.sym.sum(is_source)
    probs = mx.sym.BlockGrad(mx.sym.softmax(scores, axis=1), name='prob')
    return mx.sym.Group([probs, mx.sym.MakeLoss(loss, name='crst_loss')])


def loss_and_grad(logits, target, is_source, mr_weight_kld=0., mr_weight_ent=0., mr_weight_l2=0.,
                  mr_weight_src=0.):
    """The CRST loss and its gradient with respect to the logits, by the operators training uses.

    Parameters
    ----------
    logits : float32 (N, C, H, W)
    target : int (N, H, W) train ids with 255, or float32 (N, C, H, W) soft labels (all-zero = unlabelled)
    is_source : bool (N,)

    Returns ``(loss, grad)``: a float and float32 (N, C, H, W) ``d loss / d logits``.
    """
    logits = np.asarray(logits, np.float32)
    target = np.asarray(target)
    n, c = logits.shape[:2]
    soft = target.ndim == 4
    if target.shape != ((n, c) if soft else (n,)) + logits.shape[2:]:
        raise ValueError('target of shape %s does not fit logits %s' % (target.shape, logits.shape))
    weights = CrstWeights(float(mr_weight_kld), float(mr_weight_ent), float(mr_weight_l2), 0.,
                          float(mr_weight_src))
    sym = mx.sym.MakeLoss(loss_symbol(mx.sym.var('scores'), mx.sym.var('softmax_label'), mx.sym.var(DOMAIN_NAME),
                                      c, weights, soft))
    label = target.reshape((n, c, -1) if soft else (n, -1)).astype(np.float32)
    args = {'scores': mx.nd.array(logits), 'softmax_label': mx.nd.array(label),
            DOMAIN_NAME: mx.nd.array(np.asarray(is_source, np.float32).reshape(n))}
    grad = mx.nd.zeros(logits.shape)
    exe = sym.bind(mx.cpu(), args, args_grad={'scores': grad},
                   grad_req={'scores': 'write', 'softmax_label': 'null', DOMAIN_NAME: 'null'})
    exe.forward(is_train=True)
    exe.backward()
    return float(exe.outputs[0].asnumpy()[0]), grad.asnumpy()


class SoftNllMetric(mx.metric.EvalMetric):
    """The logged training loss with CRST targets: mean cross-entropy over labelled pixels.

    Hard labels give the reference's metric (mean -log p of the true class);
    soft labels give ``sum_k -yhat_k log p_k`` per labelled pixel.
    """

    def __init__(self):
        # Picked by name: iterators may list the labels in another order.
        super(SoftNllMetric, self).__init__('loss', output_names=['prob_output'], label_names=['softmax_label'])

    def update(self, labels, preds):
        label = labels[0].asnumpy()
        probs = preds[0].asnumpy()
        n, c = probs.shape[:2]
        logp = np.log(probs.reshape(n, c, -1).astype(np.float64) + _EPS)
        if label.ndim == 3:
            valid = label.sum(axis=1) != 0
            self.sum_metric += float(-(label * logp).sum())
        else:
            valid = label != IGNORE_LABEL
            picked = np.take_along_axis(logp, np.where(valid, label, 0).astype(np.int64)[:, None], axis=1)[:, 0]
            self.sum_metric += float(-(picked * valid).sum())
        self.num_inst += max(int(valid.sum()), 1)


class Objective(object):
    """What :func:`issegm.training.train` needs to train with the CRST loss instead of SoftmaxOutput."""

    def __init__(self, weights):
        self.weights = weights

    def module(self, model_label, contexts):
        from issegm.model import get_module
        return get_module(model_label, contexts, symbol=training_symbol(model_label, self.weights),
                          label_names=('softmax_label', DOMAIN_NAME))

    def metric(self):
        return SoftNllMetric()


# ---------------------------------------------------------------------------- soft labels in the iterator
def one_hot(label, num_classes):
    """(n,) train ids with 255 -> float32 (C, n) one-hot vectors, all-zero where 255."""
    label = np.asarray(label).ravel()
    out = np.zeros((num_classes, label.size), np.float32)
    valid = label != IGNORE_LABEL
    out[label[valid].astype(np.int64), np.nonzero(valid)[0]] = 1.
    return out


def crop_soft_labels(window, label, crop_size, stride, flip):
    """Training targets of a crop from its soft-label window, as the iterator makes its labels.

    ``window`` (C, crop, crop) float: the soft labels under the crop window of
    the canvas (all-zero off the image). Each class map is resized to
    ``crop_size`` with the reference's filter rule (as probabilities are) and
    kept at the stride centres, like the label crop; negative filter lobes are
    clipped, the vectors renormalised to sum 1 (as CRST does after resizing),
    flipped with the crop, and set all-zero where ``label`` (the crop's
    (T/s)^2 train ids, already flipped) is 255. Returns float32 (C, (T/s)^2).

    The resize is PIL's (its coefficients, :func:`issegm.postprocess.resample_matrix`)
    evaluated at the kept centres only, in float64: PIL's float32 passes
    differ by float32 rounding. Only the window rows and columns
    :func:`crop_support` lists are read.
    """
    support = crop_support(window.shape[1], crop_size, stride)
    values = np.asarray(window)[:, support][:, :, support]
    return _support_targets(values, window.shape[1], label, crop_size, stride, flip)


@functools.lru_cache(maxsize=1024)
def _kept_resize(crop, crop_size, stride):
    """``(support, R)``: window offsets the kept centres read, and the resize from them (CSR, float64)."""
    import scipy.sparse
    from issegm.postprocess import resample_matrix, resample_support
    method = interp_method((crop, crop), (crop_size, crop_size))
    kept = np.arange(stride // 2, crop_size, stride)
    support = np.flatnonzero(resample_support(crop, crop_size, method, kept))
    return support, scipy.sparse.csr_matrix(resample_matrix(crop, crop_size, method)[kept][:, support])


def crop_support(crop, crop_size, stride):
    """int (n,): the window rows (and columns) whose values reach :func:`crop_soft_labels`' output.

    The crop is resized to ``crop_size`` and only the stride centres are
    kept, so the other rows and columns of the window carry no weight: all
    but one in ``stride`` at scale 1, a third when a 387-pixel crop grows to
    504, a quarter when a 720-pixel one shrinks to it (scales 1.3 and 0.7).
    """
    return _kept_resize(int(crop), int(crop_size), int(stride))[0]


def _support_targets(values, crop, label, crop_size, stride, flip):
    """:func:`crop_soft_labels` of a window given by its values at the :func:`crop_support` rows x columns."""
    resize_kept = _kept_resize(int(crop), int(crop_size), int(stride))[1]
    c, n = values.shape[:2]
    k = resize_kept.shape[0]
    # R . V_c . R^T for every class: rows as one sparse product, then columns as another.
    rows = resize_kept.dot(values.transpose(1, 0, 2).reshape(n, c * n))  # (k, C * n)
    rows = rows.reshape(k, c, n).transpose(1, 0, 2).reshape(c * k, n)
    out = resize_kept.dot(rows.T).T.reshape(c, k, k).astype(np.float32)
    np.maximum(out, 0., out=out)
    total = out.sum(axis=0)
    out /= np.where(total > 0, total, 1.)
    if flip:
        out = out[:, :, ::-1]
    out = out.reshape(c, -1)
    return np.ascontiguousarray(out * (np.asarray(label).ravel() != IGNORE_LABEL), dtype=np.float32)


def _on_image(start, offsets, size):
    """The slice of ``offsets`` (sorted) whose image coordinate ``start + offset`` lies in ``[0, size)``."""
    return slice(np.searchsorted(offsets, -start), np.searchsorted(offsets, size - start))


class SoftLabelStore(object):
    """Recomputes a round's LRENT soft labels from its low-resolution network outputs.

    Holds the class thresholds, alpha, the stride, the spatial prior (if the
    round used one) and the folder of ``{name}.npz`` maps written by the
    pseudo-label phase; :meth:`values` gives the soft labels of chosen rows
    and columns of a crop window (:meth:`window`: all of them), upsampling
    those alone: the numbers of a stored full-resolution map of the matrix
    path (:func:`issegm.postprocess.upsample_window`), to float32 rounding.
    Kept picklable for the iterator's worker processes.
    """

    def __init__(self, folder, thresholds, alpha, stride, prior=None):
        self.folder = folder
        self.thresholds = np.asarray(thresholds, np.float64)
        self.alpha = float(alpha)
        self.stride = int(stride)
        self.prior = prior

    @property
    def num_classes(self):
        return self.thresholds.size

    # -- the recipe, written by the pseudo-label phase
    @staticmethod
    def save_recipe(round_dir, folder, thresholds, alpha, stride, prior_dataset=None):
        """Write ``{round_dir}/soft_labels.json`` (thresholds as float64 text: exact)."""
        with atomic_write(os.path.join(round_dir, RECIPE)) as f:
            json.dump({'probmap': os.path.relpath(folder, round_dir), 'alpha': float(alpha),
                       'stride': int(stride), 'prior_dataset': prior_dataset,
                       'thresholds': [float(t) for t in thresholds]}, f, indent=1)

    @classmethod
    def load(cls, round_dir, alpha, num_classes):
        """The store of a round; one-line errors when the pseudo-label phase did not make it."""
        path = os.path.join(round_dir, RECIPE)
        try:
            with open(path) as f:
                recipe = json.load(f)
        except (OSError, ValueError) as exc:
            raise FileNotFoundError('CRST-LRENT training needs %s (%s); run --phase val of this round with '
                                    'the same --lr-weight-ent first' % (path, exc))
        if abs(recipe['alpha'] - alpha) > 1e-12 * max(1., alpha):
            raise ValueError('%s was made with --lr-weight-ent %g but training has %g; run --phase val of this '
                             'round again with %g' % (path, recipe['alpha'], alpha, alpha))
        if len(recipe['thresholds']) != num_classes:
            raise ValueError('%s holds %d thresholds for a %d-class model' % (path, len(recipe['thresholds']),
                                                                             num_classes))
        prior = None
        if recipe.get('prior_dataset'):
            from issegm.spatial_prior import load_prior
            prior = load_prior(recipe['prior_dataset'], num_classes)
        return cls(os.path.join(round_dir, recipe['probmap']), recipe['thresholds'], recipe['alpha'],
                   recipe['stride'], prior)

    def path(self, name):
        return os.path.join(self.folder, name + '.npz')

    def check(self, names):
        """Raise one line naming the first image whose low-resolution map is missing."""
        missing = [n for n in names if not os.path.isfile(self.path(n))]
        if missing:
            raise FileNotFoundError('%d of %d target images have no low-resolution map in %s (first: %s.npz); '
                                    'run --phase val of this round again' % (len(missing), len(names),
                                                                              self.folder, missing[0]))

    def window(self, name, top, left, crop):
        """float32 (C, crop, crop): soft labels of the image rows/cols ``[top, top+crop) x [left, left+crop)``.

        Coordinates are in the image (negative or past its end on the
        canvas margins, which get all-zero vectors).
        """
        return self.values(name, top, left, np.arange(crop))

    def values(self, name, top, left, offsets):
        """float32 (C, n, n): soft labels of the image rows ``top + offsets`` x columns ``left + offsets``.

        ``offsets`` (n,) sorted window offsets, e.g. :func:`crop_support`;
        pixels off the image get all-zero vectors. Only those rows and
        columns are upsampled (:func:`issegm.postprocess.upsample_window`,
        the matrix path), so the cost follows the crop, not the image; the
        values are those of the whole map upsampled by that path, to float32
        rounding.
        """
        from issegm.postprocess import apply_prior, upsample_window
        from issegm.probmaps import load_lowres
        low, orig_hw = load_lowres(self.path(name), self.stride)
        offsets = np.asarray(offsets)
        out = np.zeros((self.num_classes, offsets.size, offsets.size), np.float32)
        on_r, on_c = _on_image(top, offsets, orig_hw[0]), _on_image(left, offsets, orig_hw[1])
        rows, cols = top + offsets[on_r], left + offsets[on_c]
        if rows.size and cols.size:
            up = upsample_window(low.probs, low.stride, low.im_hw, orig_hw, rows, cols)
            if self.prior is not None:
                up = apply_prior(self.prior[:, rows[:, None], cols[None, :]], up)
            inside = out[:, on_r, on_c]
            # Rows in blocks whose float64 temporaries stay in the cache (pixel by pixel: the same numbers).
            step = max(1, _CACHE_VALUES // (up.shape[0] * up.shape[2]))
            for y in range(0, up.shape[1], step):
                inside[:, y:y + step] = _soft(up[:, y:y + step], self.thresholds, self.alpha)[0]
        return out


def training_targets(args, num_classes, round_dir, target_names):
    """The iterator's :class:`TrainingTargets` for the CRST flags of ``args``, or None for CBST.

    With LRENT, the round's :class:`SoftLabelStore` is opened and every target
    image's low-resolution map checked before training starts.
    """
    weights = weights_from_args(args)
    if not weights.active:
        return None
    store = None
    if weights.soft:
        store = SoftLabelStore.load(round_dir, weights.lr_ent, num_classes)
        store.check(target_names)
    return TrainingTargets(num_classes, store)


class TrainingTargets(object):
    """The labels the CRST loss reads, made per sample inside the iterator's workers.

    Without soft labels: the train ids as they are (the loss adds the
    regularisers). With a :class:`SoftLabelStore`: (C, (T/s)^2) vectors --
    soft labels of the crop for target samples, one-hot for source samples,
    all-zero where the (pseudo-)label is 255.
    """

    def __init__(self, num_classes, soft_labels=None):
        self.num_classes = int(num_classes)
        self.soft_labels = soft_labels

    @property
    def soft(self):
        return self.soft_labels is not None

    def label_shape(self, batch, n):
        return (batch, self.num_classes, n) if self.soft else (batch, n)

    def __call__(self, sample, label, geometry, crop_size, stride, is_target):
        """Target of one sample from the iterator's label crop and :class:`issegm.data.Geometry`."""
        if not self.soft:
            return label
        if not is_target:
            return one_hot(label, self.num_classes)
        g = geometry
        values = self.soft_labels.values(sample_name(sample.image), g.y0 - g.d0, g.x0 - g.d0,
                                         crop_support(g.crop, crop_size, stride))
        return _support_targets(values, g.crop, label, crop_size, stride, g.flip)
