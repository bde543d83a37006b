"""The health record's statistics and file (issegm/report/health.py)."""
import json
import os

import numpy as np

from issegm.report import health


def test_confidence_stats_mean_top_probability_and_entropy_cut_the_padding():
    probs = np.zeros((2, 3, 4), np.float32)
    probs[0, :2, :2] = 1.0                  # the image: 2x2 cells, certain of class 0
    probs[:, 2:, :] = probs[:, :, 2:] = 0.5  # the padding: uncertain
    stats = health.ConfidenceStats()
    stats.add(probs, im_hw=(16, 16), stride=8)
    out = stats.summary(2)
    assert out['pixels'] == 4 and out['mean_top_prob'] == 1.0 and abs(out['mean_entropy']) < 1e-9
    stats.add(np.full((2, 1, 2), 0.5, np.float32))
    out = stats.summary(2)
    assert out['pixels'] == 6
    np.testing.assert_allclose(out['mean_entropy'], 2 * np.log(2) / 6)
    np.testing.assert_allclose(out['mean_entropy_normalised'], 2 / 6.)
    merged = health.ConfidenceStats()
    merged.merge_arrays(stats.to_arrays())
    assert merged.summary(2) == out


def test_label_shares_and_agreement():
    out = health.label_shares([30, 10, 0], [50, 40, 10], 100, rule_counts=[60, 20, 20])
    assert out['kept_share'] == 0.4
    assert out['class_share'] == [0.3, 0.1, 0.0]
    assert out['label_distribution'] == [0.75, 0.25, 0.0]
    assert out['predicted_share'] == [0.5, 0.4, 0.1]
    assert out['kept_of_predicted'] == [0.5, 0.5, 0.0]
    assert health.label_shares([0, 0], [1, 0], 1)['kept_of_predicted'] == [0.0, None]
    assert health.agreement(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0])) == 0.5
    assert health.agreement(np.zeros(3), np.zeros(4)) is None
    np.testing.assert_array_equal(health.class_counts(np.array([0, 1, 1, 255, 7]), 3), [1, 2, 0])


def test_update_merges_sections_and_writes_plain_json(tmp_path):
    folder = str(tmp_path)
    health.update(folder, kind='round', round=np.int64(2), training={'0001': {'loss': np.float32(1.5)}})
    record = health.update(folder, training={'0002': {'loss': float('nan')}}, confidence={'pixels': 3})
    assert sorted(record['training']) == ['0001', '0002']
    with open(os.path.join(folder, 'health.json')) as f:
        stored = json.load(f)
    assert stored['round'] == 2 and stored['training']['0001']['loss'] == 1.5
    assert stored['training']['0002']['loss'] is None  # nan is not JSON
    assert stored['format'] == health.FORMAT and 'created' in stored
    assert health.load(str(tmp_path / 'missing')) == {}


def test_source_shares_are_computed_once_and_cached(tmp_path):
    lut = np.full(256, 255, np.uint8)
    lut[7], lut[8] = 0, 1
    labels = {'a': np.array([[7, 7], [8, 0]], np.uint8), 'b': np.array([[7, 7], [7, 7]], np.uint8)}
    calls = []

    def compute():
        calls.append(1)
        return health.source_class_shares(['a', 'b'], lut, 2, labels.__getitem__)
    first = health.cached_source_shares(str(tmp_path), 'key', compute)
    np.testing.assert_allclose(first['share'], [6 / 7., 1 / 7.])
    assert first['images'] == 2
    again = health.cached_source_shares(str(tmp_path), 'key', compute)
    assert again['share'] == first['share'] and len(calls) == 1
    health.cached_source_shares(str(tmp_path), 'other list', compute)
    assert len(calls) == 2

    def broken():
        raise OSError('no labels')
    assert health.cached_source_shares(str(tmp_path / 'x'), 'k', broken)['share'] is None


def test_source_shares_read_at_most_the_limit_spread_over_the_list():
    seen = []
    lut = np.arange(256).astype(np.uint8)

    def read(path):
        seen.append(path)
        return np.zeros((1, 1), np.uint8)
    out = health.source_class_shares(list(range(10)), lut, 2, read, limit=3)
    assert seen == [0, 4, 9] or seen == [0, 5, 9]
    assert out['images'] == 3 and out['of'] == 10


def test_an_evaluation_in_a_rounds_folder_joins_its_record(tmp_path):
    from issegm.report import observe
    folder = str(tmp_path)
    health.update(folder, kind='round', round=1)
    observe.record_evaluation(folder, 'm_ep-0002', {'mean_iou': 0.5, 'class_iou': [0.5]}, [3], {'pixels': 3}, ['a'])
    record = health.load(folder)
    assert record['kind'] == 'round' and record['evaluations']['m_ep-0002']['scores']['mean_iou'] == 0.5
    alone = str(tmp_path / 'eval')
    observe.record_evaluation(alone, 's', None, [1, 3], {}, ['a', 'b'])
    assert health.load(alone)['kind'] == 'evaluation'
    assert health.load(alone)['evaluations']['s']['predicted_share'] == [0.25, 0.75]
