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

CRST stored one H x W x C float32 map per target image for LRENT; the soft
labels of each training crop are recomputed instead
(:mod:`issegm.engine.objective`), which also puts :func:`loss_symbol` on the
network. This module takes values (:class:`CrstWeights`), never flags.
"""
import collections

import mxnet as mx
import numpy as np

from issegm.storage.datasets import IGNORE_LABEL

__all__ = ['CrstWeights', 'describe', 'soft_pseudo_labels', 'lrent_pseudo_label', 'loss_symbol', 'loss_and_grad',
           'DOMAIN_NAME', 'EPS']

#: Label input of the CRST loss telling, per sample, whether it comes from the source domain.
DOMAIN_NAME = 'is_source'
#: log(p + 1e-32) as CRST writes it, so that zero probabilities stay finite.
EPS = 1e-32

#: The five weights; ``kld``/``ent``/``l2``/``lr_ent``/``src`` are the flags of :data:`issegm.flags.CRST_FLAGS`, in order.
CrstWeights = collections.namedtuple('CrstWeights', ['kld', 'ent', 'l2', 'lr_ent', 'src'])
CrstWeights.mr_active = property(lambda w: w.kld > 0 or w.ent > 0 or w.l2 > 0)
CrstWeights.soft = property(lambda w: w.lr_ent > 0)
CrstWeights.active = property(lambda w: w.mr_active or w.soft)
CrstWeights.regularisers = property(
    lambda w: [(name, value) for name, value in (('kld', w.kld), ('ent', w.ent), ('l2', w.l2)) if value > 0])


def describe(weights):
    """Log lines naming the variant and the effective coefficient of each regulariser.

    Parameters
    ----------
    weights : CrstWeights
        The CRST weights.

    Returns
    -------
    list of str
        The lines; empty when no CRST variant is active.
    """
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
    Bicubic upsampling (docs/behaviour.md 6.3) overshoots slightly below 0 near sharp
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
        Class thresholds (:func:`issegm.method.thresholds.effective_thresholds`).
    alpha : float > 0
        ``--lr-weight-ent``.

    Returns
    -------
    soft : numpy.ndarray
        float32 (C, H, W) soft labels (each pixel's vector sums to 1).
    hard : numpy.ndarray
        uint8 (H, W) train ids, the argmax of ``soft``, 255 where the LRENT
        selection ignores the pixel.

    Raises
    ------
    ValueError
        When the shapes do not match (C thresholds, C x H x W probabilities) or ``alpha`` is not > 0.
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

    The counterpart of :func:`issegm.method.thresholds.pseudo_label` for the
    pseudo-label phase.

    Parameters
    ----------
    probs : float32 (C, H, W)
        Class probabilities at full resolution (spatial prior applied, if any).
    cls_thresh : (C,)
        Class thresholds.
    alpha : float > 0
        ``--lr-weight-ent``.
    return_argmax : bool
        Also return the argmax of the soft labels.

    Returns
    -------
    label : numpy.ndarray
        uint8 (H, W) train ids with 255 where ignored.
    rw : numpy.ndarray
        The argmax of the soft labels (``rwlabelIds``); only with ``return_argmax``.

    Raises
    ------
    ValueError
        As :func:`soft_pseudo_labels`.
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

    ``ce / N + sum_X w_X * sum(s_X * r_X over labelled pixels) / N_X`` (see
    the module docstring); the divisions use at least 1, so a batch without
    labels gives 0 instead of NaN, and a term whose samples all have
    ``s_X = 0`` drops out.

    Parameters
    ----------
    scores : mxnet.symbol.Symbol
        (B, C, h, w) logits.
    label : mxnet.symbol.Symbol
        (B, h*w) train ids with 255 (``soft`` False) or (B, C, h*w) soft
        vectors, all-zero where unlabelled (``soft`` True).
    is_source : mxnet.symbol.Symbol
        (B,), 1 for source samples.
    num_classes : int
        C.
    weights : CrstWeights
        The CRST weights.
    soft : bool
        Whether ``label`` holds soft vectors.

    Returns
    -------
    mxnet.symbol.Symbol
        The loss.
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


def loss_and_grad(logits, target, is_source, mr_weight_kld=0., mr_weight_ent=0., mr_weight_l2=0.,
                  mr_weight_src=0.):
    """The CRST loss and its gradient with respect to the logits, by the operators training uses.

    Parameters
    ----------
    logits : float32 (N, C, H, W)
        The scores.
    target : int (N, H, W) or float32 (N, C, H, W)
        Train ids with 255, or soft labels (all-zero = unlabelled).
    is_source : bool (N,)
        Which samples come from the source domain.
    mr_weight_kld, mr_weight_ent, mr_weight_l2, mr_weight_src : float
        The model-regularisation weights (``--mr-weight-*``).

    Returns
    -------
    loss : float
        The loss.
    grad : numpy.ndarray
        float32 (N, C, H, W) ``d loss / d logits``.

    Raises
    ------
    ValueError
        When ``target``'s shape does not fit ``logits``.
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


