"""prepare_data: lists, GTA-5 resizing into a new root, SYNTHIA 16-bit label conversion, reruns."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from issegm import prepare_data as prep
from issegm.datasets import DataError, read_list
from issegm.layouts import write_cityscapes, write_gta, write_synthia_raw
from util.image import read_image, read_label

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = (26, 48)   # stands in for 1052 x 1914 (same aspect), keeps tests fast


def _gta(root, n=3):
    rng = np.random.RandomState(0)
    labels = {}
    for k in range(1, n + 1):
        shape = SMALL if k == 1 else (20 + k, 40 + 3 * k)   # the first is already at size
        labels[k] = rng.choice([7, 8, 26, 33], size=shape).astype(np.uint8)
        write_gta(str(root), k, rng.randint(0, 256, shape + (3,)).astype(np.uint8), labels[k])
    return labels


def test_gta_resize_into_new_root_and_rerun(tmp_path):
    src, out = tmp_path / 'gta', tmp_path / 'gta_resized'
    labels = _gta(src)
    pairs, worked = prep.resize_gta(str(src), str(out), shape=SMALL, quiet=True)
    assert worked == 3 and pairs[0] == ('images/00001.png', 'labels/00001.png')
    for k in (1, 2, 3):
        img = read_image(str(out / ('images/%05d.png' % k)))
        lab = read_label(str(out / ('labels/%05d.png' % k)))
        assert img.shape == SMALL + (3,) and lab.shape == SMALL
        # Nearest neighbour: no new label values, the same ones as PIL's nearest resize.
        want = np.asarray(Image.fromarray(labels[k]).resize(SMALL[::-1], Image.NEAREST))
        np.testing.assert_array_equal(lab, want)
    # Images already at the size are copied unchanged; others resized bicubically.
    assert open(str(out / 'images/00001.png'), 'rb').read() == open(str(src / 'images/00001.png'), 'rb').read()
    src2 = np.asarray(Image.open(str(src / 'images/00002.png')).resize(SMALL[::-1], Image.BICUBIC))
    np.testing.assert_array_equal(read_image(str(out / 'images/00002.png')), src2)
    # Interrupted job: remove one output, the rerun redoes only that file.
    os.remove(str(out / 'labels/00003.png'))
    before = os.path.getmtime(str(out / 'images/00002.png'))
    _, worked = prep.resize_gta(str(src), str(out), shape=SMALL, quiet=True)
    assert worked == 1 and os.path.isfile(str(out / 'labels/00003.png'))
    assert os.path.getmtime(str(out / 'images/00002.png')) == before
    assert not [f for f in os.listdir(str(out / 'labels')) if f.startswith('.')]   # no temporaries left


def test_gta_refuses_to_overwrite_inputs(tmp_path):
    src = tmp_path / 'gta'
    _gta(src, 1)
    with pytest.raises(DataError, match='new folder'):
        prep.resize_gta(str(src), str(src), quiet=True)
    with pytest.raises(DataError, match='contains the input root'):
        prep.resize_gta(str(src), str(tmp_path), quiet=True)


def test_synthia_conversion_and_lists(tmp_path):
    root = tmp_path / 'synthia'
    rng = np.random.RandomState(1)
    ids = {}
    for k in range(3):
        ids[k] = rng.randint(0, 23, (12, 20)).astype(np.uint8)
        inst = rng.randint(0, 3000, (12, 20))   # instance ids use the high byte: must not leak
        write_synthia_raw(str(root), k, rng.randint(0, 256, (12, 20, 3)).astype(np.uint8), ids[k], inst)
    # The raw file is not readable as a label map: the iterator would refuse it.
    with pytest.raises(ValueError, match='prepare_data.py synthia'):
        read_label(str(root / 'GT/LABELS/0000000.png'))
    assert prep.convert_synthia(str(root), quiet=True) == (3, 3)
    for k in range(3):
        np.testing.assert_array_equal(read_label(str(root / ('GT/labels/%07d.png' % k))), ids[k])
    assert prep.convert_synthia(str(root), quiet=True) == (3, 0)   # rerun: nothing left to do
    written = prep.make_lists('synthia', str(root))
    lst = str(root / 'lists' / 'train.lst')
    assert written == {lst: 3}
    assert read_list(lst, str(root)) == [('RGB/%07d.png' % k, 'GT/labels/%07d.png' % k) for k in range(3)]
    # Same shape as the published list.
    assert open(os.path.join(ROOT, 'issegm/data_list/synthia/train.lst')).readline() == \
        open(lst).readline()


def test_cityscapes_lists(tmp_path):
    root = tmp_path / 'cs'
    img, lab = np.zeros((8, 16, 3), np.uint8), np.full((8, 16), 7, np.uint8)
    entries = [write_cityscapes(str(root), 'train', 'aachen', '%06d_000019' % k, img, lab) for k in (10, 29)]
    val = write_cityscapes(str(root), 'val', 'frankfurt', '000000_000294', img, lab)
    written = prep.make_lists('cityscapes', str(root), str(tmp_path / 'lists'))
    assert sorted(os.path.basename(p) for p in written) == ['train_full.lst', 'val.lst']
    assert read_list(str(tmp_path / 'lists/train_full.lst'), str(root)) == entries
    assert read_list(str(tmp_path / 'lists/val.lst'), str(root)) == [val]
    published = open(os.path.join(ROOT, 'issegm/data_list/cityscapes/train.lst')).readline()
    assert published == open(str(tmp_path / 'lists/train_full.lst')).readlines()[0]
    # A missing label is named.
    os.remove(str(root / entries[1][1]))
    with pytest.raises(DataError, match='aachen_000029_000019_gtFine_labelIds.png'):
        prep.make_lists('cityscapes', str(root))


def test_cli_gta(tmp_path):
    src, out = tmp_path / 'gta', tmp_path / 'out'
    _gta(src, 2)
    env = dict(os.environ, PYTHONPATH=ROOT)
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'issegm/prepare_data.py'), 'gta',
                          '--data-root', str(src), '--output-root', str(out), '--quiet'],
                         env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert read_image(str(out / 'images/00002.png')).shape == prep.GTA_SHAPE + (3,)
    assert len(read_list(str(out / 'lists/train.lst'), str(out))) == 2
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'issegm/prepare_data.py'), 'gta',
                          '--data-root', str(src), '--output-root', str(src)],
                         env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and 'new folder' in run.stderr
