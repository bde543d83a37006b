"""CRST's training on the engine: the network ending in CRST's loss, its metric, and per-crop targets.

The method's formulas are in :mod:`issegm.method.crst`; this module puts them
on the network (:class:`Objective`, injected into
:func:`issegm.engine.training.train` instead of SoftmaxOutput) and makes the
targets the CRST loss reads inside the iterator's workers
(:class:`TrainingTargets`). With LRENT, CRST stored one H x W x C float32 map
per target image (159 MB per Cityscapes image); here the pseudo-label phase
keeps the network's low-resolution output and the recipe
(``{output}/{r}/soft_labels.json``), and :class:`SoftLabelStore` recomputes the
soft labels of each training crop: only the window rows and columns that the
crop's resize reads at its kept stride centres (:func:`crop_support`), so the
cost follows the crop, not the image.
"""
import functools
import json
import logging
import os

import mxnet as mx
import numpy as np

from issegm.method.crst import DOMAIN_NAME, EPS, _soft, loss_symbol
from issegm.storage.datasets import IGNORE_LABEL, sample_name
from util.image import interp_method
from util.io import atomic_write

__all__ = ['Objective', 'SoftNllMetric', 'training_symbol', 'SoftLabelStore', 'TrainingTargets',
           'training_targets', 'crop_soft_labels', 'crop_support', 'one_hot', 'RECIPE']

logger = logging.getLogger(__name__)

#: Per-round recipe of the LRENT soft labels, beside the round's low-resolution maps.
RECIPE = 'soft_labels.json'
# Values per block of the soft labels of a crop: float64 temporaries of about 1 MB (an L2 cache).
_CACHE_VALUES = 1 << 17


def training_symbol(model_label, weights, label_size=None):
    """The network of ``model_label`` ending in the CRST loss.

    Parameters
    ----------
    model_label : str
        The model's label.
    weights : issegm.method.crst.CrstWeights
        The loss's weights.
    label_size : tuple of int, optional
        (h, w): the logits are first upsampled to it bilinearly with aligned
        corners, as CRST's ``crst_seg.py`` trains (labels at the crop's full
        resolution, :mod:`issegm.engine.crst_data`); None keeps the stride.

    Returns
    -------
    mxnet.symbol.Symbol
        A group with the outputs ``[probs (no gradient), loss]``.
    """
    from issegm.engine.model import get_scores, parse_label
    # CRST's way (label_size): the network's own grid, its logits upsampled to the crop.
    scores = get_scores(model_label, native=label_size is not None)
    if label_size is not None:
        scores = mx.sym.contrib.BilinearResize2D(scores, height=int(label_size[0]), width=int(label_size[1]),
                                                 align_corners=True, name='upsample_scores')
    classes = parse_label(model_label).classes
    is_source = mx.sym.var(DOMAIN_NAME)
    loss = loss_symbol(scores, mx.sym.var('softmax_label'), is_source, classes, weights, weights.soft)
    if not weights.regularisers:
        # LRENT alone reads no domain; the iterator still feeds it, so the graph takes it (times 0).
        loss = loss + 0. * mx.sym.sum(is_source)
    probs = mx.sym.BlockGrad(mx.sym.softmax(scores, axis=1), name='prob')
    return mx.sym.Group([probs, mx.sym.MakeLoss(loss, name='crst_loss')])


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
        logp = np.log(probs.reshape(n, c, -1).astype(np.float64) + EPS)
        if label.ndim == 3:
            valid = label.sum(axis=1) != 0
            self.sum_metric += float(-(label * logp).sum())
        else:
            valid = label != IGNORE_LABEL
            picked = np.take_along_axis(logp, np.where(valid, label, 0).astype(np.int64)[:, None], axis=1)[:, 0]
            self.sum_metric += float(-(picked * valid).sum())
        self.num_inst += max(int(valid.sum()), 1)


class Objective(object):
    """What :func:`issegm.engine.training.train` needs to train with the CRST loss instead of SoftmaxOutput.

    Parameters
    ----------
    weights : issegm.method.crst.CrstWeights
        The loss's weights.
    label_size : tuple of int, optional
        (h, w) of the labels when they are the crop's full resolution
        (``crst_seg.py``): the logits are upsampled to it (:func:`training_symbol`).
    """

    def __init__(self, weights, label_size=None):
        self.weights = weights
        self.label_size = label_size

    def module(self, model_label, contexts):
        from issegm.engine.model import get_module
        return get_module(model_label, contexts, symbol=training_symbol(model_label, self.weights, self.label_size),
                          label_names=('softmax_label', DOMAIN_NAME))

    def metric(self):
        return SoftNllMetric()


# ---------------------------------------------------------------------------- soft labels in the iterator
def one_hot(label, num_classes):
    """Train ids to one-hot vectors.

    Parameters
    ----------
    label : array_like
        (n,) train ids with 255.
    num_classes : int
        C.

    Returns
    -------
    numpy.ndarray
        float32 (C, n) one-hot vectors, all-zero where 255.
    """
    label = np.asarray(label).ravel()
    out = np.zeros((num_classes, label.size), np.float32)
    valid = label != IGNORE_LABEL
    out[label[valid].astype(np.int64), np.nonzero(valid)[0]] = 1.
    return out


def crop_soft_labels(window, label, crop_size, stride, flip):
    """Training targets of a crop from its soft-label window, as the iterator makes its labels.

    Each class map is resized to ``crop_size`` with the reference's filter rule
    (as probabilities are) and kept at the stride centres, like the label crop;
    negative filter lobes are clipped, the vectors renormalised to sum 1 (as
    CRST does after resizing), flipped with the crop, and set all-zero where
    ``label`` is 255.

    The resize is PIL's (its coefficients, :func:`issegm.engine.postprocess.resample_matrix`)
    evaluated at the kept centres only, in float64: PIL's float32 passes
    differ by float32 rounding. Only the window rows and columns
    :func:`crop_support` lists are read.

    Parameters
    ----------
    window : numpy.ndarray
        (C, crop, crop) float: the soft labels under the crop window of the
        canvas (all-zero off the image).
    label : numpy.ndarray
        The crop's (T/s)^2 train ids, already flipped.
    crop_size : int
        T, the size the crop is resized to.
    stride : int
        s, the network's stride.
    flip : bool
        Whether the crop is flipped.

    Returns
    -------
    numpy.ndarray
        float32 (C, (T/s)^2).
    """
    support = crop_support(window.shape[1], crop_size, stride)
    values = np.asarray(window)[:, support][:, :, support]
    return _support_targets(values, window.shape[1], label, crop_size, stride, flip)


@functools.lru_cache(maxsize=1024)
def _kept_resize(crop, crop_size, stride):
    """``(support, R)``: window offsets the kept centres read, and the resize from them (CSR, float64)."""
    import scipy.sparse
    from issegm.engine.postprocess import resample_matrix, resample_support
    method = interp_method((crop, crop), (crop_size, crop_size))
    kept = np.arange(stride // 2, crop_size, stride)
    support = np.flatnonzero(resample_support(crop, crop_size, method, kept))
    return support, scipy.sparse.csr_matrix(resample_matrix(crop, crop_size, method)[kept][:, support])


def crop_support(crop, crop_size, stride):
    """The window rows (and columns) whose values reach :func:`crop_soft_labels`' output.

    The crop is resized to ``crop_size`` and only the stride centres are
    kept, so the other rows and columns of the window carry no weight: all
    but one in ``stride`` at scale 1, a third when a 387-pixel crop grows to
    504, a quarter when a 720-pixel one shrinks to it (scales 1.3 and 0.7).

    Parameters
    ----------
    crop : int
        The window's size.
    crop_size : int
        The size it is resized to.
    stride : int
        The network's stride.

    Returns
    -------
    numpy.ndarray
        int (n,) window offsets.
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

    :meth:`values` gives the soft labels of chosen rows and columns of a crop
    window (:meth:`window`: all of them), upsampling those alone: the numbers
    of a stored full-resolution map of the matrix path
    (:func:`issegm.engine.postprocess.upsample_window`), to float32 rounding.
    Kept picklable for the iterator's worker processes.

    Parameters
    ----------
    folder : str
        The folder of ``{name}.npz`` maps written by the pseudo-label phase.
    thresholds : array_like
        The class thresholds.
    alpha : float
        ``--lr-weight-ent``.
    stride : int
        The network's stride (of maps stored without one).
    prior : numpy.ndarray, optional
        The spatial prior, if the round used one.
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
        """Write ``{round_dir}/soft_labels.json`` (thresholds as float64 text: exact).

        Parameters
        ----------
        round_dir : str
            The round's folder.
        folder : str
            The folder of the low-resolution maps (stored relative to ``round_dir``).
        thresholds : array_like
            The class thresholds.
        alpha : float
            ``--lr-weight-ent``.
        stride : int
            The network's stride.
        prior_dataset : str, optional
            The source dataset of the spatial prior, if the round used one.
        """
        with atomic_write(os.path.join(round_dir, RECIPE)) as f:
            json.dump({'probmap': os.path.relpath(folder, round_dir), 'alpha': float(alpha),
                       'stride': int(stride), 'prior_dataset': prior_dataset,
                       'thresholds': [float(t) for t in thresholds]}, f, indent=1)

    @classmethod
    def load(cls, round_dir, alpha, num_classes):
        """The store of a round.

        Parameters
        ----------
        round_dir : str
            The round's folder.
        alpha : float
            Training's ``--lr-weight-ent``.
        num_classes : int
            The model's classes.

        Returns
        -------
        SoftLabelStore
            The store, with the round's spatial prior if any.

        Raises
        ------
        FileNotFoundError
            One line when the pseudo-label phase did not make the recipe.
        ValueError
            One line when the recipe has another alpha or number of thresholds.
        """
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
            from issegm.method.prior import load_prior
            prior = load_prior(recipe['prior_dataset'], num_classes)
        return cls(os.path.join(round_dir, recipe['probmap']), recipe['thresholds'], recipe['alpha'],
                   recipe['stride'], prior)

    def path(self, name):
        return os.path.join(self.folder, name + '.npz')

    def check(self, names):
        """Raise one line naming the first image whose low-resolution map is missing.

        Parameters
        ----------
        names : list of str
            The target images' sample names.

        Raises
        ------
        FileNotFoundError
            When some map is missing.
        """
        missing = [n for n in names if not os.path.isfile(self.path(n))]
        if missing:
            raise FileNotFoundError('%d of %d target images have no low-resolution map in %s (first: %s.npz); '
                                    'run --phase val of this round again' % (len(missing), len(names),
                                                                              self.folder, missing[0]))

    def window(self, name, top, left, crop):
        """Soft labels of the image rows/cols ``[top, top+crop) x [left, left+crop)``.

        Coordinates are in the image (negative or past its end on the
        canvas margins, which get all-zero vectors).

        Parameters
        ----------
        name : str
            The sample name.
        top : int
            First row.
        left : int
            First column.
        crop : int
            The window's size.

        Returns
        -------
        numpy.ndarray
            float32 (C, crop, crop).
        """
        return self.values(name, top, left, np.arange(crop))

    def values(self, name, top, left, offsets):
        """Soft labels of the image rows ``top + offsets`` x columns ``left + offsets``.

        Pixels off the image get all-zero vectors. Only those rows and
        columns are upsampled (:func:`issegm.engine.postprocess.upsample_window`,
        the matrix path), so the cost follows the crop, not the image; the
        values are those of the whole map upsampled by that path, to float32
        rounding.

        Parameters
        ----------
        name : str
            The sample name.
        top : int
            The window's first row in the image.
        left : int
            The window's first column in the image.
        offsets : array_like
            (n,) sorted window offsets, e.g. :func:`crop_support`.

        Returns
        -------
        numpy.ndarray
            float32 (C, n, n).
        """
        from issegm.engine.postprocess import apply_prior, upsample_window
        from issegm.storage.probmaps import load_lowres
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


def training_targets(weights, num_classes, round_dir, target_names):
    """The iterator's :class:`TrainingTargets` for CRST ``weights``, or None for CBST.

    With LRENT, the round's :class:`SoftLabelStore` is opened and every target
    image's low-resolution map checked before training starts.

    Parameters
    ----------
    weights : issegm.method.crst.CrstWeights
        The CRST weights.
    num_classes : int
        C.
    round_dir : str
        The round's folder.
    target_names : list of str
        The target images' sample names.

    Returns
    -------
    TrainingTargets or None
        None when no CRST variant is active.
    """
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

    Parameters
    ----------
    num_classes : int
        C.
    soft_labels : SoftLabelStore, optional
        The round's soft labels (LRENT).
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
        """Target of one sample from the iterator's label crop and :class:`issegm.engine.iterator.Geometry`.

        Parameters
        ----------
        sample : object
            The sample (its ``image`` path names the soft labels).
        label : numpy.ndarray
            The crop's train ids.
        geometry : issegm.engine.iterator.Geometry
            The crop's window and flip.
        crop_size : int
            The size the crop is resized to.
        stride : int
            The network's stride.
        is_target : bool
            Whether the sample is a target image.

        Returns
        -------
        numpy.ndarray
            ``label`` itself without soft labels; else float32 (C, n) vectors.
        """
        if not self.soft:
            return label
        if not is_target:
            return one_hot(label, self.num_classes)
        g = geometry
        values = self.soft_labels.values(sample_name(sample.image), g.y0 - g.d0, g.x0 - g.d0,
                                         crop_support(g.crop, crop_size, stride))
        return _support_targets(values, g.crop, label, crop_size, stride, g.flip)
