"""Scores: hand computation, reference ScoreUpdater quirks, official Cityscapes script."""
import copy
import glob
import json
import os

import numpy as np
import pytest
from PIL import Image

from issegm.engine import metrics
from issegm.engine.metrics import ConfusionMatrix
from issegm.testing.official import official_class_iou, official_evaluation, official_label_maps


def test_hand_computed_scores():
    # 3 classes; gt row-major, 255 ignored (its prediction must not count anywhere).
    gt = np.array([[0, 0, 0, 1],
                   [1, 1, 2, 255]])
    pred = np.array([[0, 0, 1, 1],
                     [2, 1, 2, 0]])
    cm = ConfusionMatrix(3).update(gt, pred)
    np.testing.assert_array_equal(cm.conf, [[2, 1, 0], [0, 2, 1], [0, 0, 1]])
    np.testing.assert_array_equal(cm.pixels, [3, 3, 1])
    assert cm.pixel_accuracy() == pytest.approx(5 / 7)
    np.testing.assert_allclose(cm.class_accuracy(), [2 / 3, 2 / 3, 1.0])
    # IoU = tp / (gt + pred - tp): class 0: 2/(3+2-2), 1: 2/(3+3-2), 2: 1/(1+2-1)
    np.testing.assert_allclose(cm.class_iou(), [2 / 3, 2 / 4, 1 / 2])
    assert cm.mean_iou() == pytest.approx((2 / 3 + 1 / 2 + 1 / 2) / 3)
    assert cm.mean_accuracy() == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_accumulates_over_images_like_one_big_image():
    rng = np.random.RandomState(0)
    gts = [rng.randint(0, 4, (5, 7)) for _ in range(3)]
    preds = [rng.randint(0, 4, (5, 7)) for _ in range(3)]
    gts[1][0, :] = 255
    a = ConfusionMatrix(4)
    for g, p in zip(gts, preds):
        a.update(g, p)
    b = ConfusionMatrix(4).update(np.concatenate(gts), np.concatenate(preds))
    np.testing.assert_array_equal(a.conf, b.conf)
    assert a.num_images == 3
    assert a.mean_iou() == b.mean_iou()


def test_counts_travel_as_arrays_and_merge_exactly():
    rng = np.random.RandomState(1)
    gts, preds = rng.randint(0, 4, (4, 5, 7)), rng.randint(0, 4, (4, 5, 7))
    whole = ConfusionMatrix(4)
    parts = [ConfusionMatrix(4), ConfusionMatrix(4)]
    for k, (g, p) in enumerate(zip(gts, preds)):
        whole.update(g, p)
        parts[k % 2].update(g, p)
    merged = ConfusionMatrix(4)
    for part in parts:
        merged.merge(ConfusionMatrix.from_arrays(part.to_arrays('np_'), 'np_'))
    assert merged.scores() == whole.scores()


def test_absent_class_counts_as_zero_in_the_mean():
    # Reference quirk: class_pixels += class_pixels == 0, so an absent class has
    # IoU 0 and accuracy 0 and still divides the mean (the official script gives NaN and skips it).
    gt = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 2])            # class 2 predicted once, never in the gt
    cm = ConfusionMatrix(4).update(gt, pred)  # class 3: neither in gt nor predicted
    iou = cm.class_iou()
    np.testing.assert_allclose(iou, [1.0, 0.5, 0.0, 0.0])
    assert cm.mean_iou() == pytest.approx(1.5 / 4)
    np.testing.assert_allclose(cm.class_accuracy(), [1.0, 0.5, 0.0, 0.0])


def test_prediction_outside_classes_is_a_miss_without_column():
    cm = ConfusionMatrix(2).update(np.array([0, 1, 1]), np.array([0, 255, 1]))
    np.testing.assert_array_equal(cm.conf, [[1, 0], [0, 1]])
    np.testing.assert_array_equal(cm.pixels, [1, 2])
    assert cm.pixel_accuracy() == pytest.approx(2 / 3)
    np.testing.assert_allclose(cm.class_iou(), [1.0, 0.5])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match='shape'):
        ConfusionMatrix(2).update(np.zeros((2, 2)), np.zeros((2, 3)))


def test_json_and_markdown_and_merge(tmp_path, capsys):
    names = ['road', 'traffic light']
    cm1 = ConfusionMatrix(2).update(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0]))
    cm2 = ConfusionMatrix(2).update(np.array([0, 1]), np.array([0, 1]))
    p1, p2 = str(tmp_path / 'a.json'), str(tmp_path / 'b.json')
    metrics.save_results(p1, cm1, names, 'Source', settings={'weights': 'x_ep-0000.params', 'scales': [1, 2]})
    metrics.save_results(p2, cm2, names, 'CBST')
    data = json.load(open(p1))
    assert data['args']['weights'] == 'x_ep-0000.params'
    assert data['scores']['class_iou'] == pytest.approx([2 / 3, 1 / 2])
    assert data['scores']['confusion'] == [[2, 0], [1, 1]]
    assert not [f for f in os.listdir(tmp_path) if f.startswith('.')]  # no temp files left

    assert metrics.header_row(names) == 'Case|mIoU|Road|Traffic light'
    assert metrics.format_row('Source', data['scores']) == 'Source|58.3|66.7|50.0'

    assert metrics.main(['merge', p1, p2]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ['Case|mIoU|Road|Traffic light', '---|---|---|---',
                   'Source|58.3|66.7|50.0', 'CBST|100.0|100.0|100.0']
    assert metrics.main(['merge', p1, p2, '--names', 'A,B', '--out', str(tmp_path / 't.md')]) == 0
    assert (tmp_path / 't.md').read_text().splitlines()[2].startswith('A|58.3')

    cm3 = ConfusionMatrix(3).update(np.array([0]), np.array([0]))
    p3 = str(tmp_path / 'c.json')
    metrics.save_results(p3, cm3, ['a', 'b', 'c'], 'other')
    capsys.readouterr()
    assert metrics.main(['merge', p1, p3]) == 2
    assert 'classes' in capsys.readouterr().err


def test_equals_official_cityscapes_script(tmp_path, monkeypatch):
    """Miniature Cityscapes val as labelId PNGs, scored by ours and by cityscapesscripts."""
    label2train, train2label, all_ids = official_label_maps()
    rng = np.random.RandomState(3)
    root, results = tmp_path / 'cs', tmp_path / 'results'
    city = 'frankfurt'
    for i in range(3):
        # Blocky ground truth with every label id (ignored ones too), so all 19 classes occur.
        gt = rng.choice(all_ids, size=(8, 16)).astype(np.uint8)
        gt[0, :] = train2label[:16]
        gt[1, :3] = train2label[16:]
        gt = np.kron(gt, np.ones((4, 4), np.uint8))
        # Prediction: the gt's train id where valid, corrupted at 30% of the pixels.
        tr = label2train[gt]
        pred_tr = np.where(tr == 255, rng.randint(0, 19, gt.shape), tr)
        noise = rng.rand(*gt.shape) < 0.3
        pred_tr[noise] = rng.randint(0, 19, noise.sum())
        name = '%s_000000_%06d' % (city, i)
        d = root / 'gtFine' / 'val' / city
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(gt).save(str(d / (name + '_gtFine_labelIds.png')))
        results.mkdir(exist_ok=True)
        Image.fromarray(train2label[pred_tr]).save(str(results / (name + '_leftImg8bit.png')))

    # Ours: read the saved label-id PNGs back, map both to train ids.
    cm = ConfusionMatrix(19)
    for path in sorted(glob.glob(str(root / 'gtFine/val/*/*_gtFine_labelIds.png'))):
        name = os.path.basename(path).replace('_gtFine_labelIds.png', '')
        gt = np.asarray(Image.open(path))
        pred = np.asarray(Image.open(str(results / (name + '_leftImg8bit.png'))))
        cm.update(label2train[gt], label2train[pred])
    assert (cm.pixels > 0).all()

    res = official_evaluation(str(root), str(results), monkeypatch)
    official = official_class_iou(res)
    np.testing.assert_allclose(cm.class_iou() * 100, official * 100, atol=0.01)
    assert abs(cm.mean_iou() * 100 - res['averageScoreClasses'] * 100) < 0.01
    assert 0.3 < cm.mean_iou() < 0.9   # a real, non-trivial score


def _hand_case():
    # The matrix of test_hand_computed_scores: pixel acc 5/7, mean acc 7/9, mean IoU 5/9.
    return ConfusionMatrix(3).update(np.array([[0, 0, 0, 1], [1, 1, 2, 255]]),
                                     np.array([[0, 0, 1, 1], [2, 1, 2, 0]]))


def test_summary_line_and_scores_dict_on_the_hand_case():
    cm = _hand_case()
    assert cm.summary() == 'pixel acc: 71.43%, mean acc: 77.78%, mean iou: 55.56%'
    s = cm.scores()
    assert s['class_names'] == ['0', '1', '2']
    assert s['class_acc'] == pytest.approx([2 / 3, 2 / 3, 1.0])
    assert (s['num_images'], s['num_pixels'], s['class_pixels']) == (1, 7, [3, 3, 1])
    assert s['confusion'] == [[2, 1, 0], [0, 2, 1], [0, 0, 1]]
    assert all(type(v) is int for row in s['confusion'] for v in row)   # counts, not floats
    with pytest.raises(ValueError, match='^2 class names for 3 classes$'):
        cm.scores(['road', 'sky'])


def test_pixel_accuracy_of_an_empty_and_of_a_one_pixel_matrix():
    assert ConfusionMatrix(3).pixel_accuracy() == 0.0          # nothing scored: 0, not NaN
    assert ConfusionMatrix(3).update(np.array([2]), np.array([2])).pixel_accuracy() == 1.0
    assert ConfusionMatrix(3).update(np.array([255]), np.array([2])).pixel_accuracy() == 0.0


def test_merging_two_halves_equals_scoring_the_whole():
    rng = np.random.RandomState(1)
    gt, pred = rng.randint(0, 4, (2, 6, 5)), rng.randint(0, 4, (2, 6, 5))
    a = ConfusionMatrix(4).update(gt[0], pred[0])
    b = ConfusionMatrix(4).update(gt[1], pred[1])
    whole = ConfusionMatrix(4).update(gt, pred)
    assert a.merge(b) is a
    np.testing.assert_array_equal(a.conf, whole.conf)
    np.testing.assert_array_equal(a.pixels, whole.pixels)
    assert a.num_images == 2
    with pytest.raises(ValueError, match='^cannot merge 4-class and 3-class matrices$'):
        a.merge(ConfusionMatrix(3))


def test_values_just_past_the_classes_are_ignored_or_missed():
    # ground truth 3 of 3 classes is not scored; a prediction of 3 is a miss with no column
    cm = ConfusionMatrix(3).update(np.array([0, 3, 1]), np.array([0, 0, 3]))
    np.testing.assert_array_equal(cm.pixels, [1, 1, 0])
    np.testing.assert_array_equal(cm.conf, [[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match=r'^ground truth shape \(2,\) differs from prediction shape \(3,\)$'):
        cm.update(np.array([0, 1]), np.array([0, 1, 2]))
