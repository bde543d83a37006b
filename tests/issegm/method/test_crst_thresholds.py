"""CRST's pooled class-balanced selection (method/crst_selection.py) against CRST's formulas written out.

Each expectation is computed the way CRST's ``crst_seg.py`` (``val``,
``kc_parameters``, ``label_selection``) states it: Python lists of per-class
confidences, extended image by image with every ``ds_rate``-th entry, sorted
in descending order, the entry ``floor(n p) - 1``, 1.0 otherwise.
"""
import math

import numpy as np
import pytest

from issegm.method.crst_selection import (ConfidencePool, crst_mining_ids, crst_thresholds, sampled_confidences,
                                          select_labels)

C = 4


def crst_formula(images, portion, ds_rate, num_classes=C):
    """CRST's conf_dict / kc_parameters transcribed: (cls_thresh, cls_sel_size, pred_cls_num)."""
    conf_dict = {k: [] for k in range(num_classes)}
    pred_cls_num = np.zeros(num_classes)
    for pred, conf in images:
        for k in range(num_classes):
            mask = pred == k
            pred_cls_num[k] += mask.sum()
            if mask.any():
                values = conf[mask].astype(np.float32)
                conf_dict[k].extend(values[0:values.size:ds_rate])
    thresh = np.ones(num_classes, np.float32)
    sel = np.zeros(num_classes, np.float32)
    for k in range(num_classes):
        conf_dict[k].sort(reverse=True)
        sel[k] = int(math.floor(len(conf_dict[k]) * portion))
        if int(sel[k]) != 0:
            thresh[k] = conf_dict[k][int(sel[k]) - 1]
    return thresh, sel, pred_cls_num


def random_images(seed, n=3, shape=(9, 13)):
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        pred = rng.choice([0, 1, 2], size=shape, p=[0.6, 0.3, 0.1])
        out.append((pred, rng.uniform(0.3, 1., shape).astype(np.float32)))
    # class 3 predicted at exactly 4 pixels of the last image: 1 sampled entry with ds_rate 4
    out[-1][0][0, :4] = 3
    return out


def pooled(images, ds_rate):
    pool = ConfidencePool(C, ds_rate)
    for pred, conf in images:
        pool.add(pred, conf)
    return pool


def test_pooled_thresholds_equal_crst_formula():
    for seed, portion, ds_rate in ((0, 0.2, 4), (1, 0.35, 1), (2, 0.5, 3), (3, 0.30000000000000004, 4)):
        images = random_images(seed)
        pool = pooled(images, ds_rate)
        thresh, sel = crst_thresholds(pool.pooled(), portion)
        want_thresh, want_sel, want_counts = crst_formula(images, portion, ds_rate)
        assert thresh.dtype == np.float32 and sel.dtype == np.float32
        np.testing.assert_array_equal(thresh, want_thresh)
        np.testing.assert_array_equal(sel, want_sel)
        np.testing.assert_array_equal(pool.counts, want_counts)


def test_few_pixel_class_keeps_one_and_is_never_selected():
    # 4 pixels of class 3 in one image, every 4th kept: 1 entry, floor(1 * 0.2) = 0 -> threshold 1.0.
    pred = np.zeros((4, 8), np.int64)
    pred[0, :4] = 3
    conf = np.full((4, 8), 0.9, np.float32)
    conf[0, :4] = 0.999
    pool = pooled([(pred, conf)], 4)
    thresh, sel = crst_thresholds(pool.pooled(), 0.2)
    assert thresh[3] == np.float32(1.0) and sel[3] == 0
    assert pool.counts[3] == 4
    probs = np.full((C, 4, 8), 0.0, np.float32)
    probs[0], probs[3, 0, :4], probs[0, 0, :4] = 0.9, 0.999, 0.001
    label, _ = select_labels(probs, thresh)
    assert not (label == 3).any()  # 0.999 / 1.0 < 1: ignored, where CBST's rule would keep it
    assert (label[0, :4] == 255).all()


def test_sampling_is_row_major_from_the_first_pixel():
    pred = np.array([[1, 0, 1], [1, 1, 0], [1, 1, 1]])
    conf = np.arange(9, dtype=np.float32).reshape(3, 3) / 10
    values, counts = sampled_confidences(pred, conf, 2, 2)
    # class 1 pixels in row-major order: 0, 2, 3, 4, 6, 7, 8 -> every 2nd from the first: 0, 3, 6, 8
    np.testing.assert_array_equal(values[1], np.float32([0.0, 0.3, 0.6, 0.8]))
    np.testing.assert_array_equal(values[0], np.float32([0.1]))
    np.testing.assert_array_equal(counts, [2, 7])


def test_pool_appends_images_in_list_order():
    a = (np.zeros((1, 3), np.int64), np.float32([[0.5, 0.6, 0.7]]))
    b = (np.zeros((1, 2), np.int64), np.float32([[0.1, 0.2]]))
    pool = pooled([a, b], 1)
    np.testing.assert_array_equal(pool.pooled()[0], np.float32([0.5, 0.6, 0.7, 0.1, 0.2]))


def test_mining_ids_from_full_counts():
    counts = np.array([5000, 3, 0, 400, 10], np.float64)
    rare, mine = crst_mining_ids(counts, 1e-3, 3)
    share = counts / counts.sum()
    order = np.argsort(share)
    np.testing.assert_array_equal(rare, order[:3])
    np.testing.assert_array_equal(mine, order[:int((share < 1e-3).sum())])
    assert list(mine) == [2, 1]


def test_selection_is_argmax_of_ratio_where_it_reaches_one():
    rng = np.random.RandomState(5)
    probs = rng.dirichlet(np.ones(C), size=(6, 7)).transpose(2, 0, 1).astype(np.float32)
    thresh = np.float32([0.5, 0.4, 0.9, 1.0])
    label, argmax = select_labels(probs, thresh)
    hwc = probs.transpose(1, 2, 0)
    weighted = hwc / thresh
    want = np.argmax(weighted, axis=2).astype(np.uint8)
    np.testing.assert_array_equal(argmax, want)
    want = want.copy()
    want[np.amax(weighted, axis=2) < 1] = 255
    np.testing.assert_array_equal(label, want)
    assert (label == 255).any() and (label != 255).any()


def test_differs_from_cbst_where_cbst_counts_its_leading_zero():
    from issegm.method.thresholds import ConfidenceCollector, threshold_stats
    # class 1 at 16 pixels -> 4 sampled entries: CRST floor(4 * 0.25) = 1 -> its largest; at 0.2 -> 0 -> 1.0.
    # CBST's pool has one more entry (its leading 0.0): floor(5 * 0.2) = 1 -> the largest, selectable.
    pred = np.zeros((4, 8), np.int64)
    pred[:2] = 1
    conf = np.linspace(0.5, 0.99, 32, dtype=np.float32).reshape(4, 8)
    pool = pooled([(pred, conf)], 4)
    crst, _ = crst_thresholds(pool.pooled(), 0.2)
    cbst = ConfidenceCollector(C)
    cbst.add(pred, conf)
    _, cbst_thresh = threshold_stats(cbst, 0.2)
    assert crst[1] == np.float32(1.0)
    assert cbst_thresh[1] == pytest.approx(float(conf[:2].ravel()[::4].max()), rel=1e-6)
