"""Pseudo-label audit: per-class coverage, recall and precision against ground truth."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from issegm.storage.datasets import get_dataset
from issegm.benchmark.audit import audit, audit_folder, markdown_table

ROAD, SIDEWALK, CAR, UNLABELLED, EGO = 7, 8, 26, 0, 1   # Cityscapes label ids
T_ROAD, T_SIDEWALK, T_CAR = 0, 1, 13                    # their train ids


def pair():
    """Ground truth: 6 road, 2 car, 2 ego-vehicle (ignored) pixels; pseudo-labels: counted by hand below."""
    gt = np.array([[ROAD, ROAD, ROAD, ROAD, ROAD],
                   [ROAD, CAR, CAR, EGO, EGO]], np.uint8)
    pseudo = np.array([[ROAD, ROAD, ROAD, UNLABELLED, SIDEWALK],
                       [UNLABELLED, CAR, ROAD, ROAD, CAR]], np.uint8)
    return pseudo, gt


def test_counts_by_hand():
    info = get_dataset('cityscapes')
    a = audit([pair()], info)
    # road: 6 GT pixels, 4 labelled (3 road + 1 sidewalk), 3 right; labelled road on valid GT: 3 + 1 (on car)
    assert a['coverage'][T_ROAD] == pytest.approx(4 / 6)
    assert a['recall'][T_ROAD] == pytest.approx(3 / 6)
    assert a['precision'][T_ROAD] == pytest.approx(3 / 4)
    # car: 2 GT pixels, both labelled, one right; the car label on the ego vehicle does not count
    assert a['coverage'][T_CAR] == pytest.approx(1.0)
    assert a['recall'][T_CAR] == pytest.approx(0.5)
    assert a['precision'][T_CAR] == pytest.approx(1.0)
    # sidewalk: no ground truth, one wrong label
    assert a['coverage'][T_SIDEWALK] is None and a['recall'][T_SIDEWALK] is None
    assert a['precision'][T_SIDEWALK] == 0.0
    # a class neither present nor predicted
    assert a['precision'][5] is None
    assert a['share'][T_ROAD] == pytest.approx(6 / 8) and a['share'][T_CAR] == pytest.approx(2 / 8)
    assert a['labelled'] == pytest.approx(6 / 8)
    assert a['pixel_recall'] == pytest.approx(4 / 8)
    assert a['pixel_precision'] == pytest.approx(4 / 6)
    json.dumps(a, allow_nan=False)  # valid JSON: no NaN


def test_folder_and_table(tmp_path):
    info = get_dataset('cityscapes')
    pseudo, gt = pair()
    root = tmp_path / 'cityscapes'
    (root / 'gtFine').mkdir(parents=True)
    (tmp_path / 'pseudo').mkdir()
    lines = []
    for name in ('a_leftImg8bit', 'b_leftImg8bit'):
        Image.fromarray(gt).save(str(root / 'gtFine' / (name + '_gt.png')))
        Image.fromarray(pseudo).save(str(tmp_path / 'pseudo' / (name + '.png')))
        (root / (name + '.png')).write_bytes(b'')
        lines.append('%s.png\tgtFine/%s_gt.png' % (name, name))
    (tmp_path / 'train.lst').write_text('\n'.join(lines) + '\n')
    a = audit_folder(str(tmp_path / 'pseudo'), str(tmp_path / 'train.lst'), str(root))
    assert a == audit([pair(), pair()], info)
    table = markdown_table({'ST': a, 'CBST': a}, info.class_names).splitlines()
    assert table[0] == ('Class|share|ST coverage|ST recall|ST precision|'
                        'CBST coverage|CBST recall|CBST precision')
    road = table[2].split('|')
    assert road[:5] == ['road', '75.0', '66.7', '50.0', '75.0']
    assert table[3].split('|')[2:5] == ['-', '-', '0.0']       # sidewalk
    assert table[-1].split('|')[:5] == ['all pixels', '100.0', '75.0', '50.0', '66.7']
    os.remove(str(tmp_path / 'pseudo' / 'b_leftImg8bit.png'))
    with pytest.raises(FileNotFoundError, match='b_leftImg8bit.png'):
        audit_folder(str(tmp_path / 'pseudo'), str(tmp_path / 'train.lst'), str(root))
