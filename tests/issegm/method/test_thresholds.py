"""Confidence collection, thresholds, pseudo-labels and mining stats (docs/behaviour.md section 6).

The reference's list-and-sort procedure is re-implemented here plainly (np.append
growth, ``sorted(..., reverse=True)``, Python indexing) and compared with the
lean module on hand-made probability maps with ties, k = 0 and a class that is
never predicted.
"""

import numpy as np
import pytest

from issegm.method.thresholds import ConfidenceCollector, class_thresholds, mining_ids, pseudo_label, threshold_stats
from issegm.storage.datasets import IGNORE_LABEL
from issegm.testing.reference_cbst import reference_labels, reference_stats


def make_probmaps(seed, num_images=3, num_classes=5, shape=(12, 17), levels=6, absent=(3,)):
    """Softmax-like maps quantised to a few levels, so confidences tie often."""
    rng = np.random.RandomState(seed)
    maps = []
    for _ in range(num_images):
        logits = rng.randint(0, levels, size=(num_classes,) + shape).astype(np.float32)
        for c in absent:
            logits[c] = -5  # never the argmax
        p = np.exp(logits)
        maps.append((p / p.sum(0)).astype(np.float32))
    return maps


def collect(maps):
    col = ConfidenceCollector(maps[0].shape[0])
    for m in maps:
        col.add_probmap(m)
    return col


def test_collector_keeps_every_fourth_value_in_row_major_order_after_a_leading_zero():
    pred = np.array([[0, 1, 0, 0],
                     [0, 0, 1, 2],
                     [1, 0, 0, 1]], np.uint8)
    conf = np.arange(12, dtype=np.float32).reshape(3, 4) / 100
    col = ConfidenceCollector(4)
    col.add(pred, conf)
    # class 0 pixels in row-major order: 0,2,3,4,5,9,10 -> kept 0 (idx 0) and 5 (idx 4)
    np.testing.assert_array_equal(col.values(0), np.float32([0, 0.00, 0.05]))
    np.testing.assert_array_equal(col.values(1), np.float32([0, 0.01]))
    np.testing.assert_array_equal(col.values(2), np.float32([0, 0.07]))
    np.testing.assert_array_equal(col.values(3), np.float32([0]))
    assert col.values(0).dtype == np.float32
    np.testing.assert_array_equal(col.sizes, [3, 2, 2, 1])
    np.testing.assert_array_equal(col.exists, [True, True, True, False])
    g = col.global_values()
    assert g.dtype == np.float32 and g.size == 1 + 4 + 4  # 1 + classes extra zeros + 4 kept
    assert (g == 0).sum() == 1 + 4 + 1  # the conf value 0.00 of pixel 0 is a real zero


def test_hand_computed_thresholds_cb_and_global():
    pred = np.array([[0, 0, 0, 0, 0, 1, 1, 1, 1, 1]], np.uint8)
    conf = np.float32([[.9, .1, .1, .1, .5, .8, .1, .1, .1, .3]])
    col = ConfidenceCollector(3)
    col.add(pred, conf)
    # pools: class 0 [0, .9, .5], class 1 [0, .8, .3], class 2 never predicted
    size, thresh = threshold_stats(col, 0.5, 'cb')
    np.testing.assert_array_equal(size, [3, 3, 0])
    np.testing.assert_array_equal(thresh, [np.float32(.9), np.float32(.8), 0])  # k = 1
    np.testing.assert_array_equal(class_thresholds(col, 0.5, 'cb'),
                                  [np.float32(.9), np.float32(.8), 1.0])
    size, thresh = threshold_stats(col, 0.7, 'cb')  # k = 2
    np.testing.assert_array_equal(thresh, [np.float32(.5), np.float32(.3), 0])
    size, thresh = threshold_stats(col, 0.3, 'cb')  # k = 0: no threshold
    np.testing.assert_array_equal(thresh, [0, 0, 0])
    # global pool: 0 + [0,.9,.5] + [0,.8,.3] + [0] -> 8 values, sorted .9 .8 .5 .3 0 0 0 0
    size, thresh = threshold_stats(col, 0.5, 'global')  # k = 4
    np.testing.assert_array_equal(size, [8, 8, 8])
    np.testing.assert_array_equal(thresh, [np.float32(.3)] * 3)
    size, thresh = threshold_stats(col, 0.1, 'global')  # k = 0 -> index -1 -> smallest -> 0
    np.testing.assert_array_equal(thresh, [0, 0, 0])
    np.testing.assert_array_equal(class_thresholds(col, 0.1, 'global'), [1, 1, 1])


@pytest.mark.parametrize('policy', ['cb', 'global'])
@pytest.mark.parametrize('portion', [0.0, 0.01, 0.2, 0.35, 0.5, 1.0])
def test_thresholds_match_the_sort_based_reference(policy, portion):
    maps = make_probmaps(seed=int(portion * 100) + (policy == 'cb'))
    col = collect(maps)
    size, thresh = threshold_stats(col, portion, policy)
    ref_size, ref_thresh = reference_stats(maps, portion, policy)
    np.testing.assert_array_equal(size, ref_size)
    np.testing.assert_array_equal(thresh, ref_thresh)
    assert thresh.dtype == ref_thresh.dtype == np.float64
    # the absent class has no threshold under cb
    if policy == 'cb':
        assert size[3] == 0 and thresh[3] == 0
    for m in maps:
        label, rw = pseudo_label(m, thresh, return_argmax=True)
        ref_label, ref_rw = reference_labels(m, ref_thresh)
        np.testing.assert_array_equal(label, ref_label)
        np.testing.assert_array_equal(rw, ref_rw)


def test_small_class_with_k_zero_keeps_no_threshold_while_others_do():
    maps = make_probmaps(seed=7, num_images=1, shape=(20, 20), absent=())
    # make class 4 win only at two pixels -> pool of 2 values (0 + 1 kept)
    maps[0][4] = 0.0
    maps[0][4, 0, 0] = maps[0][4, 5, 5] = 2.0
    col = collect(maps)
    size, thresh = threshold_stats(col, 0.4, 'cb')
    ref_size, ref_thresh = reference_stats(maps, 0.4, 'cb')
    np.testing.assert_array_equal(size, ref_size)
    np.testing.assert_array_equal(thresh, ref_thresh)
    assert size[4] == 2 and thresh[4] == 0 and (thresh[:4] > 0).all()


def test_pseudo_label_ignores_below_threshold_and_breaks_ties_like_argmax():
    probs = np.float32([[[0.6, 0.3, 0.5]],
                        [[0.4, 0.7, 0.5]]])
    thresh = np.array([0.6, 0.0])  # class 1 has none -> 1.0
    label, rw = pseudo_label(probs, thresh, return_argmax=True)
    # ratios: class 0: 1.0, .5, .833; class 1: .4, .7, .5
    np.testing.assert_array_equal(rw, [[0, 1, 0]])
    np.testing.assert_array_equal(label, [[0, IGNORE_LABEL, IGNORE_LABEL]])
    thresh = np.array([0.5, 0.5])  # equal ratios at pixel 2 -> first class
    label = pseudo_label(probs, thresh)
    np.testing.assert_array_equal(label, [[0, 1, 0]])


def test_mining_ids_follow_argsort_and_share_threshold():
    cls_size = np.array([500., 3., 0., 40., 3., 1000.])
    mine_id, priority = mining_ids(cls_size, 3, 0.005)
    share = cls_size / cls_size.sum()
    np.testing.assert_array_equal(mine_id, np.argsort(share)[:3])
    assert set(mine_id) == {1, 2, 4}
    np.testing.assert_array_equal(priority, [1, 2, 4])  # 3/1546 < 0.005, 40/1546 is not
    assert mine_id.dtype == np.int64 and priority.dtype == np.int64


@pytest.mark.parametrize('policy', ['cb', 'global'])
def test_merged_worker_pools_give_the_one_collector_thresholds(policy):
    maps = make_probmaps(3, num_images=5)
    whole = collect(maps)
    merged = ConfidenceCollector(5)
    for part in (maps[0::2], maps[1::2]):  # two workers' interleaved shares, in either order
        merged.merge_arrays(collect(part).to_arrays())
    np.testing.assert_array_equal(merged.sizes, whole.sizes)
    np.testing.assert_array_equal(merged.exists, whole.exists)
    assert merged.num_images == 5
    for portion in (0.2, 0.5):
        a, b = threshold_stats(merged, portion, policy), threshold_stats(whole, portion, policy)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert (a[1] > 0).any()


def test_collector_rejects_out_of_range_ids():
    col = ConfidenceCollector(2)
    with pytest.raises(ValueError, match=r'^pred holds ids outside 0\.\.1$'):
        col.add(np.array([[0, 2]]), np.float32([[0.5, 0.5]]))
    with pytest.raises(ValueError, match=r'^pred \(3,\) and conf \(2,\) differ in size$'):
        col.add(np.array([0, 1, 1]), np.float32([0.5, 0.5]))


def test_collector_pools_float32_values_and_counts_images():
    """The reference appends float32 confidences: a float64 map is pooled as its float32 values."""
    col = ConfidenceCollector(2)
    conf = np.array([[0.1, 0.7, 0.3, 0.9]], np.float64)
    col.add(np.array([[0, 1, 0, 1]]), conf)
    col.add(np.array([[1, 1, 1, 1]]), conf)
    assert col.values(0).dtype == np.float32 and col.global_values().dtype == np.float32
    np.testing.assert_array_equal(col.values(0), np.float32([0, 0.1]))
    np.testing.assert_array_equal(col.values(1), np.float32([0, 0.7, 0.1]))
    assert col.sizes.tolist() == [2, 3] and col.exists.tolist() == [True, True] and col.num_images == 2


def test_policy_defaults_to_cb_and_is_passed_through():
    col = collect(make_probmaps(seed=3))
    ref_cb = reference_stats(make_probmaps(seed=3), 0.3, 'cb')[1]
    ref_global = reference_stats(make_probmaps(seed=3), 0.3, 'global')[1]
    ref_cb[ref_cb == 0] = 1.0
    np.testing.assert_array_equal(threshold_stats(col, 0.3)[1], threshold_stats(col, 0.3, 'cb')[1])
    np.testing.assert_array_equal(class_thresholds(col, 0.3), ref_cb)
    np.testing.assert_array_equal(class_thresholds(col, 0.3, 'global'), ref_global)
    assert not np.array_equal(ref_cb, ref_global)
    with pytest.raises(ValueError, match="unknown --kc-policy 'cbst'"):
        threshold_stats(col, 0.3, 'cbst')


def test_pseudo_label_names_a_threshold_count_mismatch():
    with pytest.raises(ValueError, match='^3 thresholds for 2 classes$'):
        pseudo_label(np.zeros((2, 4, 5), np.float32), np.ones(3))


def test_mining_priority_is_strictly_below_the_share_and_all_zero_sizes_are_quiet():
    import warnings
    # share of class 0 is exactly 1/1000 = --mine-thresh 0.001: not below it (the reference's '<')
    assert mining_ids(np.array([1., 999.]), 1, 0.001)[1].tolist() == []
    assert mining_ids(np.array([1., 1000.]), 1, 0.001)[1].tolist() == [0]
    # No pixel at all (0 / 0 shares) gives no warning and no priority class.
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        mine_id, priority = mining_ids(np.zeros(4), 2, 0.001)
    assert priority.tolist() == [] and len(mine_id) == 2


def test_merge_keeps_classes_that_exist_in_one_worker_only():
    first, second = ConfidenceCollector(3), ConfidenceCollector(3)
    first.add(np.zeros((2, 2), np.int64), np.full((2, 2), 0.9, np.float32))   # class 0 only
    second.add(np.ones((2, 2), np.int64), np.full((2, 2), 0.8, np.float32))   # class 1 only
    merged = ConfidenceCollector(3).merge_arrays(first.to_arrays()).merge_arrays(second.to_arrays())
    np.testing.assert_array_equal(merged.exists, [True, True, False])
    assert merged.num_images == 2


def test_add_kept_refuses_counts_of_another_class_count():
    col = ConfidenceCollector(3)
    with pytest.raises(ValueError, match='kept confidences: 2 counts and 10 values for 3 classes'):
        col.add_kept(np.zeros(10, np.float32), np.ones(2, np.int64))   # enough values, wrong shape
    with pytest.raises(ValueError, match='kept confidences: 3 counts and 0 values for 3 classes'):
        col.add_kept(np.zeros(0, np.float32), np.ones(3, np.int64))    # right shape, too few values
