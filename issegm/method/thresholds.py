"""Class-balanced pseudo-labels (docs/behaviour.md section 6): confidences, thresholds, labels, mining.

Pure numpy. The numbers reproduce the reference ``solve_ST.py --phase val``:

* :class:`ConfidenceCollector` keeps, per class, every 4th confidence of the
  pixels predicted as that class (row-major order), in float32 chunks.
  Reference quirk kept on purpose: each class's collection starts with one
  extra 0.0 that counts in ``n``; the ``global`` pool is one more 0.0 plus
  every class's collection, predicted or not (so ``1 + classes`` extra zeros).
* :func:`threshold_stats` / :func:`class_thresholds` pick the k-th largest
  confidence, ``k = floor(n * portion)``, with ``np.partition`` (linear time)
  instead of the reference's full sort of a Python list; the value is the
  same element, so thresholds are bit-identical.
* :func:`pseudo_label` divides each class map by its threshold in float32 (as
  the reference's float32-array / float64-scalar division does) and labels the
  argmax where the ratio reaches 1.
* :func:`mining_ids` gives ``mine_id`` and ``mine_id_priority``.
"""
import math

import numpy as np

from issegm.storage.datasets import IGNORE_LABEL
from util.parallel import class_argmax

__all__ = ['ConfidenceCollector', 'kept_confidences', 'confidence_map', 'threshold_stats', 'class_thresholds',
           'pseudo_label', 'mining_ids', 'SUBSAMPLE']

# The reference keeps every 4th confidence of a class in each image.
SUBSAMPLE = 4


def confidence_map(probmap):
    """Argmax and max of a (C, H, W) probability map.

    Parameters
    ----------
    probmap : array_like
        The (C, H, W) class probabilities.

    Returns
    -------
    pred : numpy.ndarray
        The (H, W) argmax (uint8).
    conf : numpy.ndarray
        The (H, W) max (float32).
    """
    pred, conf = class_argmax(np.asarray(probmap), with_max=True)
    return pred, conf.astype(np.float32, copy=False)


class ConfidenceCollector(object):
    """Per-class pools of kept confidences, grown image by image.

    Each pool is a list of float32 numpy chunks (one per image), never a list
    of Python floats, so 500 Cityscapes images cost about 4 bytes per kept
    pixel (2.6e8 pixels / 4 -> ~0.26 GB) instead of the reference's boxed floats.

    Parameters
    ----------
    num_classes : int
        Number of classes (one pool each).
    """

    def __init__(self, num_classes):
        self.num_classes = int(num_classes)
        # The leading 0.0 of every pool is the reference's initial value.
        self._chunks = [[np.zeros(1, np.float32)] for _ in range(self.num_classes)]
        self._sizes = np.ones(self.num_classes, np.int64)
        # A class "exists" once some pixel was predicted as it (cls_exist_array).
        self.exists = np.zeros(self.num_classes, bool)
        self.num_images = 0

    def add(self, pred, conf):
        """Add one image from its argmax and max.

        Parameters
        ----------
        pred : numpy.ndarray
            The (H, W) train ids of the argmax.
        conf : numpy.ndarray
            The (H, W) max probability.
        """
        self.add_kept(*kept_confidences(pred, conf, self.num_classes))

    def add_kept(self, values, counts):
        """Add one image from :func:`kept_confidences`'s ``(values, counts)`` (or the device's).

        Parameters
        ----------
        values : array_like
            The kept confidences, class after class.
        counts : array_like
            Pixels of each class in the image (one per class).

        Raises
        ------
        ValueError
            When ``counts`` is not one per class or ``values`` is too short for them.
        """
        counts = np.asarray(counts, dtype=np.int64)
        kept = -(-counts // SUBSAMPLE)
        values = np.asarray(values, dtype=np.float32)
        if counts.shape != (self.num_classes,) or kept.sum() > values.size:
            raise ValueError('kept confidences: %d counts and %d values for %d classes'
                             % (counts.size, values.size, self.num_classes))
        start = 0
        for c in np.nonzero(counts)[0]:
            self._chunks[c].append(values[start:start + kept[c]])
            self._sizes[c] += kept[c]
            self.exists[c] = True
            start += kept[c]
        self.num_images += 1

    def to_arrays(self):
        """The pools as a dict of arrays.

        What a worker of a distributed job hands over; :meth:`merge_arrays` adds it to another collector.

        Returns
        -------
        dict
            ``pool{c}`` (float32, without the leading 0.0) for each class, ``exists``
            and ``num_images``.
        """
        arrays = {'pool%d' % c: np.concatenate(self._chunks[c][1:] or [np.zeros(0, np.float32)])
                  for c in range(self.num_classes)}
        arrays.update(exists=self.exists.copy(), num_images=np.int64(self.num_images))
        return arrays

    def merge_arrays(self, arrays):
        """Add another collector's :meth:`to_arrays` (e.g. another worker's images).

        Thresholds are order statistics and sizes are counts, so the merged
        pools give a one-process run's thresholds exactly, in any order.

        Parameters
        ----------
        arrays : dict
            Another collector's :meth:`to_arrays`.

        Returns
        -------
        ConfidenceCollector
            ``self``.

        Raises
        ------
        ValueError
            When the other pools are for another number of classes.
        """
        if len(arrays['exists']) != self.num_classes:
            raise ValueError('cannot merge %d-class and %d-class pools' % (len(arrays['exists']), self.num_classes))
        for c in range(self.num_classes):
            pool = np.asarray(arrays['pool%d' % c], np.float32)
            if pool.size:
                self._chunks[c].append(pool)
                self._sizes[c] += pool.size
        self.exists |= np.asarray(arrays['exists'], bool)
        self.num_images += int(arrays['num_images'])
        return self

    def add_probmap(self, probmap):
        """Add one image from its (C, H, W) probability map.

        Parameters
        ----------
        probmap : array_like
            The (C, H, W) class probabilities.

        Returns
        -------
        tuple of numpy.ndarray
            ``(pred, conf)`` as :func:`confidence_map` gives them.
        """
        pred, conf = confidence_map(probmap)
        self.add(pred, conf)
        return pred, conf

    @property
    def sizes(self):
        """n per class: kept values plus the extra leading 0.0 (int64)."""
        return self._sizes.copy()

    def values(self, c):
        """The pool of class ``c`` as a new float32 array (leading 0.0 included).

        A fresh copy each call (not cached), so threshold selection can
        partition it in place and only one class's pool is duplicated at a time.

        Parameters
        ----------
        c : int
            The class.

        Returns
        -------
        numpy.ndarray
            The pool (float32).
        """
        return np.concatenate(self._chunks[c])

    def global_values(self):
        """The ``global`` pool: one 0.0 then every class's pool.

        The reference's pool is float64 (``np.append`` onto the Python float
        0.0), but every value in it is a float32 number, so the k-th largest
        is the same number; float32 halves the memory.

        Returns
        -------
        numpy.ndarray
            A new float32 array.
        """
        parts = [np.zeros(1, np.float32)] + [chunk for chunks in self._chunks for chunk in chunks]
        return np.concatenate(parts)


def kept_confidences(pred, conf, num_classes):
    """Every 4th confidence of each class's pixels (row-major), class after class.

    Parameters
    ----------
    pred : array_like
        The argmax train ids, any shape.
    conf : array_like
        The confidences, the same size as ``pred``.
    num_classes : int
        Number of classes; ``pred`` holds ids below it.

    Returns
    -------
    values : numpy.ndarray
        The kept confidences (float32): those of class c are the next
        ``ceil(counts[c] / 4)`` entries.
    counts : numpy.ndarray
        ``counts[c]`` pixels of ``pred`` are class c.

    Raises
    ------
    ValueError
        When ``pred`` and ``conf`` differ in size or ``pred`` holds ids outside ``0..num_classes - 1``.
    """
    pred = np.asarray(pred).ravel()
    conf = np.asarray(conf, dtype=np.float32).ravel()
    if pred.shape != conf.shape:
        raise ValueError('pred %s and conf %s differ in size' % (pred.shape, conf.shape))
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError('pred holds ids outside 0..%d' % (num_classes - 1))
    # One stable (radix, for uint8) sort groups the pixels by class while
    # keeping their row-major order inside each class.
    order = np.argsort(pred.astype(np.uint8 if num_classes <= 256 else np.int32), kind='stable')
    counts = np.bincount(pred, minlength=num_classes)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    keep = (np.arange(pred.size) - starts) % SUBSAMPLE == 0
    return conf[order[keep]], counts


def _kth_largest(values, k):
    """The element at index ``k - 1`` of ``values`` sorted descending (``k = 0`` -> index -1).

    ``k = 0`` wraps to the smallest value, as Python indexing does in the
    reference's global branch. Partitions ``values`` in place (linear time).
    """
    n = values.size
    pos = n - k if k > 0 else 0
    values.partition(pos)
    return values[pos]


def threshold_stats(collector, portion, policy='cb'):
    """``(cls_size, cls_thresh)`` exactly as the reference saves them (float64).

    ``cb``: for each predicted class, ``k = floor(n * portion)``; the threshold
    is the k-th largest of its pool, left 0 when ``k = 0``; classes never
    predicted have size 0 and threshold 0. ``global``: every class gets the
    pool size and the k-th largest of the global pool (``k = 0`` takes the
    smallest value, as the reference's index -1 does).

    Parameters
    ----------
    collector : ConfidenceCollector
        The pooled confidences.
    portion : float
        Share of each pool kept above the threshold.
    policy : {'cb', 'global'}
        Class-balanced or global thresholds.

    Returns
    -------
    cls_size : numpy.ndarray
        Pool size n per class (float64).
    cls_thresh : numpy.ndarray
        Threshold per class (float64); 0 here means "none" (:func:`class_thresholds` turns it into 1.0).

    Raises
    ------
    ValueError
        For an unknown ``policy``.
    """
    portion = float(portion)
    num_classes = collector.num_classes
    cls_size = np.zeros(num_classes)
    cls_thresh = np.zeros(num_classes)
    if policy == 'global':
        pool = collector.global_values()
        n = pool.size
        k = int(math.floor(n * portion))
        cls_size[:] = n
        cls_thresh[:] = float(_kth_largest(pool, k))
    elif policy == 'cb':
        for c in range(num_classes):
            if not collector.exists[c]:
                continue
            pool = collector.values(c)
            n = pool.size
            cls_size[c] = n
            k = int(math.floor(n * portion))
            if k != 0:
                cls_thresh[c] = float(_kth_largest(pool, k))
    else:
        raise ValueError("unknown --kc-policy %r: use 'cb' (class-balanced) or 'global'" % (policy,))
    return cls_size, cls_thresh


def effective_thresholds(cls_thresh):
    """Thresholds used for labelling: 0 (no prediction / k = 0) becomes 1.0.

    Parameters
    ----------
    cls_thresh : array_like
        Thresholds as :func:`threshold_stats` gives them.

    Returns
    -------
    numpy.ndarray
        A float64 copy with the zeros replaced.
    """
    thresh = np.array(cls_thresh, dtype=np.float64)
    thresh[thresh == 0] = 1.0
    return thresh


def class_thresholds(collector, portion, policy='cb'):
    """Per-class confidence thresholds (float64) used to select pseudo-labels.

    Parameters
    ----------
    collector : ConfidenceCollector
        The pooled confidences.
    portion : float
        Share of each pool kept above the threshold.
    policy : {'cb', 'global'}
        As in :func:`threshold_stats`.

    Returns
    -------
    numpy.ndarray
        :func:`threshold_stats`'s thresholds through :func:`effective_thresholds`.
    """
    return effective_thresholds(threshold_stats(collector, portion, policy)[1])


def pseudo_label(probs, thresholds, return_argmax=False):
    """Pseudo-label train ids from (C, H, W) probabilities and per-class thresholds.

    Each class map is divided by its threshold (float32, as in the reference);
    the label is the argmax of the ratios and pixels whose best ratio is below
    1 get :data:`IGNORE_LABEL`. Works class by class so that no second
    (C, H, W) array is allocated.

    Parameters
    ----------
    probs : array_like
        The (C, H, W) class probabilities.
    thresholds : array_like
        One threshold per class (0 counts as 1.0).
    return_argmax : bool
        Also return the unthresholded argmax of the ratios.

    Returns
    -------
    label : numpy.ndarray
        The (H, W) pseudo-label (uint8).
    rw : numpy.ndarray
        The unthresholded argmax of the ratios (the reference's ``rwlabelIds``);
        only with ``return_argmax``.

    Raises
    ------
    ValueError
        When the number of thresholds is not the number of classes.
    """
    probs = np.asarray(probs)
    thresh = effective_thresholds(thresholds).astype(np.float32)
    if thresh.shape != (probs.shape[0],):
        raise ValueError('%d thresholds for %d classes' % (thresh.size, probs.shape[0]))
    best = np.true_divide(probs[0], thresh[0], dtype=np.float32)
    label = np.zeros(best.shape, np.uint8)
    ratio = np.empty_like(best)
    for c in range(1, probs.shape[0]):
        np.true_divide(probs[c], thresh[c], out=ratio, dtype=np.float32)
        # Strictly greater keeps the first class on ties, as np.argmax does.
        better = ratio > best
        label[better] = c
        np.copyto(best, ratio, where=better)
    rw = label.copy() if return_argmax else None
    label[best < 1] = IGNORE_LABEL
    return (label, rw) if return_argmax else label


def mining_ids(cls_size, mine_id_number, mine_thresh):
    """``(mine_id, mine_id_priority)`` from the class sizes, as the reference.

    Parameters
    ----------
    cls_size : array_like
        Pool size per class (:func:`threshold_stats`).
    mine_id_number : int
        How many classes ``mine_id`` lists.
    mine_thresh : float
        Share below which a class is in ``mine_id_priority``.

    Returns
    -------
    mine_id : numpy.ndarray
        The ``mine_id_number`` classes with the smallest share of the pooled
        values, in ``np.argsort`` order (default sort kind, so ties resolve as
        in the reference).
    mine_id_priority : numpy.ndarray
        Classes whose share is below ``mine_thresh``, in increasing id.
    """
    cls_size = np.asarray(cls_size, dtype=np.float64)
    with np.errstate(invalid='ignore', divide='ignore'):
        share = cls_size / np.sum(cls_size)
    mine_id_priority = np.nonzero(share < mine_thresh)[0]
    mine_id = np.argsort(share)[:int(mine_id_number)]
    return mine_id, mine_id_priority
