"""A plain transcription of the reference's pseudo-label procedure (behaviour, not code).

The oracle the tests compare the lean implementation with, and the baseline
``bench/pseudo_label.py`` times: confidences appended to per-class arrays with
``np.append`` (each pool starting with one 0.0), ``sorted(..., reverse=True)``,
Python indexing for the k-th largest, and thresholded ratios for the labels.
"""
import math

import numpy as np

IGNORE_LABEL = 255


def new_pools(num_classes):
    """Empty per-class pools (each holding the reference's leading 0.0) and presence flags."""
    return [np.float32(0) for _ in range(num_classes)], np.zeros(num_classes, bool)


def collect(pools, exists, probmap):
    """Add one image: every 4th max-probability of the pixels predicted as each class."""
    pred = probmap.argmax(0)
    conf = np.amax(probmap, axis=0)
    for c in range(len(pools)):
        mask = pred == c
        if mask.any():
            exists[c] = True
            vals = conf[mask].astype(np.float32)
            pools[c] = np.append(pools[c], vals[0:vals.size:4])


def thresholds(pools, exists, portion, policy, release=False):
    """``(cls_size, cls_thresh)``: the k-th largest of each pool (cb) or of all pools (global).

    ``release`` drops each class's pool once used (the memory a long run holds).
    """
    num_classes = len(pools)
    cls_size, cls_thresh = np.zeros(num_classes), np.zeros(num_classes)
    if policy == 'global':
        pool = 0.0
        for c in range(num_classes):
            pool = np.append(pool, pools[c])
        pool = sorted(pool, reverse=True)
        k = int(math.floor(len(pool) * portion))
        cls_size[:] = len(pool)
        cls_thresh[:] = pool[k - 1]
    else:
        for c in range(num_classes):
            if exists[c]:
                pool = sorted(np.atleast_1d(pools[c]), reverse=True)
                cls_size[c] = len(pool)
                k = int(math.floor(len(pool) * portion))
                if k != 0:
                    cls_thresh[c] = pool[k - 1]
                if release:
                    pools[c] = pool = 0
    return cls_size, cls_thresh


def reference_stats(probmaps, portion, policy):
    """Thresholds of a list of (C, H, W) probability maps."""
    pools, exists = new_pools(probmaps[0].shape[0])
    for probmap in probmaps:
        collect(pools, exists, probmap.astype(np.float32))
    return thresholds(pools, exists, portion, policy)


def reference_labels(probmap, cls_thresh):
    """``(pseudo-label, unthresholded argmax)`` of one map: ratios to thresholds (0 -> 1.0)."""
    thresh = cls_thresh.copy()
    thresh[thresh == 0] = 1.0
    rw = np.zeros(probmap.shape, np.single)
    for c in range(probmap.shape[0]):
        rw[c] = np.true_divide(probmap[c], thresh[c])  # float32 array / float64 scalar
    label = rw.argmax(0).astype(np.uint8)
    argmax = label.copy()
    label[rw.max(0) < 1] = IGNORE_LABEL
    return label, argmax
