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
    """``(pred, conf)`` of a (C, H, W) probability map: argmax (uint8) and max (float32)."""
    pred, conf = class_argmax(np.asarray(probmap), with_max=True)
    return pred, conf.astype(np.float32, copy=False)


class ConfidenceCollector(object):
    """Per-class pools of kept confidences, grown image by image.

    Each pool is a list of float32 numpy chunks (one per image), never a list
    of Python floats, so 500 Cityscapes images cost about 4 bytes per kept
    pixel (2.6e8 pixels / 4 -> ~0.26 GB) instead of the reference's boxed floats.
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
        """Add one image: ``pred`` (H, W) train ids of the argmax, ``conf`` (H, W) its max prob."""
        self.add_kept(*kept_confidences(pred, conf, self.num_classes))

    def add_kept(self, values, counts):
        """Add one image from :func:`kept_confidences`'s ``(values, counts)`` (or the device's)."""
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
        """The pools as a dict of arrays (``pool{c}`` without the leading 0.0, ``exists``, ``num_images``).

        What a worker of a distributed job hands over; :meth:`merge_arrays` adds it to another collector.
        """
        arrays = {'pool%d' % c: np.concatenate(self._chunks[c][1:] or [np.zeros(0, np.float32)])
                  for c in range(self.num_classes)}
        arrays.update(exists=self.exists.copy(), num_images=np.int64(self.num_images))
        return arrays

    def merge_arrays(self, arrays):
        """Add another collector's :meth:`to_arrays` (e.g. another worker's images). Returns ``self``.

        Thresholds are order statistics and sizes are counts, so the merged
        pools give a one-process run's thresholds exactly, in any order.
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
        """Add one image from its (C, H, W) probability map; returns ``(pred, conf)``."""
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
        """
        return np.concatenate(self._chunks[c])

    def global_values(self):
        """The ``global`` pool: one 0.0 then every class's pool (a new float32 array).

        The reference's pool is float64 (``np.append`` onto the Python float
        0.0), but every value in it is a float32 number, so the k-th largest
        is the same number; float32 halves the memory.
        """
        parts = [np.zeros(1, np.float32)] + [chunk for chunks in self._chunks for chunk in chunks]
        return np.concatenate(parts)


def kept_confidences(pred, conf, num_classes):
    """``(values, counts)``: every 4th confidence of each class's pixels (row-major), class after class.

    ``counts[c]`` pixels of ``pred`` are class c; their kept confidences are
    the next ``ceil(counts[c] / 4)`` entries of ``values``.
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
    Thresholds of 0 here mean "none"; :func:`class_thresholds` turns them into 1.0.
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
    """Thresholds used for labelling: 0 (no prediction / k = 0) becomes 1.0."""
    thresh = np.array(cls_thresh, dtype=np.float64)
    thresh[thresh == 0] = 1.0
    return thresh


def class_thresholds(collector, portion, policy='cb'):
    """Per-class confidence thresholds (float64) used to select pseudo-labels."""
    return effective_thresholds(threshold_stats(collector, portion, policy)[1])


def pseudo_label(probs, thresholds, return_argmax=False):
    """Pseudo-label train ids from (C, H, W) probabilities and per-class thresholds.

    Each class map is divided by its threshold (float32, as in the reference);
    the label is the argmax of the ratios and pixels whose best ratio is below
    1 get :data:`IGNORE_LABEL`. With ``return_argmax`` also returns the
    unthresholded argmax of the ratios (the reference's ``rwlabelIds``).
    Works class by class so that no second (C, H, W) array is allocated.
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

    ``mine_id``: the ``mine_id_number`` classes with the smallest share of the
    pooled values, in ``np.argsort`` order (default sort kind, so ties resolve
    as in the reference). ``mine_id_priority``: classes whose share is below
    ``mine_thresh``, in increasing id.
    """
    cls_size = np.asarray(cls_size, dtype=np.float64)
    with np.errstate(invalid='ignore', divide='ignore'):
        share = cls_size / np.sum(cls_size)
    mine_id_priority = np.nonzero(share < mine_thresh)[0]
    mine_id = np.argsort(share)[:int(mine_id_number)]
    return mine_id, mine_id_priority
