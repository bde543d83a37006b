"""prepare_data: lists, GTA-5 resizing into a new root, SYNTHIA 16-bit label conversion, reruns."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from issegm import prepare_data
from issegm.storage import preparation as prep
from issegm.storage.datasets import read_list
from issegm.errors import DataError
from issegm.benchmark.toy import write_cityscapes, write_gta
from issegm.testing.minidata import write_png16_rgb, write_synthia_raw
from util.image import read_image, read_label

from util.child_env import REPO as ROOT  # noqa: E402
SMALL = (26, 48)   # stands in for 1052 x 1914 (same aspect), keeps tests fast


def _gta(root, n=3):
    rng = np.random.RandomState(0)
    labels = {}
    for k in range(1, n + 1):
        shape = SMALL if k == 1 else (20 + k, 40 + 3 * k)   # the first is already at size
        labels[k] = rng.choice([7, 8, 26, 33], size=shape).astype(np.uint8)
        write_gta(str(root), k, rng.randint(0, 256, shape + (3,)).astype(np.uint8), labels[k])
    if n >= 3:   # as in GTA-5: a label whose size differs from its image's
        Image.open(str(root / 'labels/00003.png')).resize((50, 22), Image.NEAREST).save(
            str(root / 'labels/00003.png'))
        labels[3] = np.asarray(Image.open(str(root / 'labels/00003.png')))
    return labels


def _digest(folder):
    out = {}
    for base, _, files in os.walk(str(folder)):
        for name in files:
            path = os.path.join(base, name)
            out[path] = (hashlib.md5(open(path, 'rb').read()).hexdigest(), os.path.getmtime(path))
    return out


def test_gta_resize_into_new_root_and_rerun(tmp_path):
    src, out = tmp_path / 'gta', tmp_path / 'gta_resized'
    labels = _gta(src)
    before_inputs = _digest(src)
    pairs, worked = prep.resize_gta(str(src), str(out), shape=SMALL, quiet=True)
    assert worked == 6 and pairs[0] == ('images/00001.png', 'labels/00001.png')
    for k in (1, 2, 3):
        img = read_image(str(out / ('images/%05d.png' % k)))
        lab = read_label(str(out / ('labels/%05d.png' % k)))
        assert img.shape == SMALL + (3,) and lab.shape == SMALL
        # Nearest neighbour: exactly PIL's nearest resize, so no new label values.
        want = np.asarray(Image.fromarray(labels[k]).resize(SMALL[::-1], Image.NEAREST))
        np.testing.assert_array_equal(lab, want)
        assert Image.open(str(out / ('labels/%05d.png' % k))).mode == 'P'   # as shipped
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
    assert not [f for d in ('images', 'labels') for f in os.listdir(str(out / d)) if f.startswith('.')]
    assert _digest(src) == before_inputs   # inputs never touched


def test_gta_refuses_to_overwrite_inputs(tmp_path):
    src = tmp_path / 'gta'
    _gta(src, 1)
    before = _digest(src)
    with pytest.raises(DataError, match='new folder'):
        prep.resize_gta(str(src), str(src), quiet=True)
    with pytest.raises(DataError, match='new folder'):   # the same folder under another spelling
        prep.resize_gta(str(src), str(src / 'images' / '..'), quiet=True)
    with pytest.raises(DataError, match='contains the input root'):
        prep.resize_gta(str(src), str(tmp_path), quiet=True)
    assert _digest(src) == before


def test_gta_damaged_file_is_named(tmp_path):
    src = tmp_path / 'gta'
    _gta(src, 2)
    with open(str(src / 'images/00002.png'), 'wb') as f:
        f.write(b'\x89PNG truncated')
    with pytest.raises(DataError, match='cannot read .*images/00002.png'):
        prep.resize_gta(str(src), str(tmp_path / 'out'), shape=SMALL, quiet=True)


def _synthia(root, n=3, seed=1):
    rng = np.random.RandomState(seed)
    ids = {}
    for k in range(n):
        ids[k] = rng.randint(0, 23, (12, 20)).astype(np.uint8)
        inst = rng.randint(0, 3000, (12, 20))   # instance ids exceed 8 bits: they must not leak
        write_synthia_raw(str(root), k, rng.randint(0, 256, (12, 20, 3)).astype(np.uint8), ids[k], inst)
    return ids


def test_synthia_conversion_reads_the_first_channel_and_reruns(tmp_path):
    root = tmp_path / 'synthia'
    ids = _synthia(root)
    raw_before = _digest(root / 'GT' / 'LABELS')
    # The raw file is not readable as a label map: the iterator would refuse it.
    with pytest.raises(ValueError, match='prepare_data.py synthia'):
        read_label(str(root / 'GT/LABELS/0000000.png'))
    assert prep.convert_synthia(str(root), quiet=True) == (3, 3)
    for k in range(3):
        out = root / ('GT/labels/%07d.png' % k)
        np.testing.assert_array_equal(read_label(str(out)), ids[k])
        assert Image.open(str(out)).mode == 'P'
    assert _digest(root / 'GT' / 'LABELS') == raw_before
    # Interrupted run: one output missing; the rerun converts only that one.
    os.remove(str(root / 'GT/labels/0000001.png'))
    assert prep.convert_synthia(str(root), quiet=True) == (3, 1)
    np.testing.assert_array_equal(read_label(str(root / 'GT/labels/0000001.png')), ids[1])
    assert prep.convert_synthia(str(root), quiet=True) == (3, 0)


def test_synthia_wrong_channel_or_values_are_errors(tmp_path):
    root = tmp_path / 'synthia'
    ids = np.full((4, 6), 3, np.uint16)
    zeros = np.zeros_like(ids)
    # Class ids in the third channel (a writer that got OpenCV's B-G-R order backwards).
    write_png16_rgb(str(root / 'GT/LABELS/a.png'), np.stack([zeros, zeros, ids], -1))
    with pytest.raises(DataError, match='a.png: the first \\(R\\) channel is all zero'):
        prep.read_synthia_ids(str(root / 'GT/LABELS/a.png'))
    # Something other than class ids in the first channel.
    write_png16_rgb(str(root / 'GT/LABELS/b.png'), np.stack([ids * 100, zeros, zeros], -1))
    with pytest.raises(DataError, match='b.png holds class id 300'):
        prep.read_synthia_ids(str(root / 'GT/LABELS/b.png'))
    with open(str(root / 'GT/LABELS/c.png'), 'wb') as f:
        f.write(b'junk')
    with pytest.raises(DataError, match='cannot read SYNTHIA label .*c.png'):
        prep.read_synthia_ids(str(root / 'GT/LABELS/c.png'))


def test_default_lists_go_to_data_list_and_published_ones_are_protected(tmp_path, monkeypatch):
    root = tmp_path / 'synthia'
    _synthia(root)
    prep.convert_synthia(str(root), quiet=True)
    monkeypatch.chdir(tmp_path)
    lst = os.path.join('issegm', 'data_list', 'synthia', 'train.lst')
    assert prep.make_lists('synthia', str(root)) == {lst: 3}
    assert read_list(lst, str(root)) == [('RGB/%07d.png' % k, 'GT/labels/%07d.png' % k) for k in range(3)]
    # Same format as the published list.
    published = os.path.join(ROOT, 'issegm/data_list/synthia/train.lst')
    assert open(published).readline() == open(lst).readline()
    # Rerun: same content, nothing to refuse.
    assert prep.make_lists('synthia', str(root)) == {lst: 3}
    # An existing list with other content (the published one) is kept unless --force.
    with open(published) as f:
        text = f.read()
    with open(lst, 'w') as f:
        f.write(text)
    with pytest.raises(DataError, match='train.lst exists with other content .*--force'):
        prep.make_lists('synthia', str(root))
    assert open(lst).read() == text
    assert prep.make_lists('synthia', str(root), force=True) == {lst: 3}
    assert len(open(lst).read().splitlines()) == 3


def test_cityscapes_lists(tmp_path):
    root = tmp_path / 'cs'
    img, lab = np.zeros((8, 16, 3), np.uint8), np.full((8, 16), 7, np.uint8)
    entries = [write_cityscapes(str(root), 'train', city, '%06d_000019' % k, img, lab)
               for city, k in (('bremen', 3), ('aachen', 29), ('aachen', 10))]
    val = write_cityscapes(str(root), 'val', 'frankfurt', '000000_000294', img, lab)
    # A colour file beside the labels must not become a list entry.
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(
        str(root / 'gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_color.png'))
    written = prep.make_lists('cityscapes', str(root), str(tmp_path / 'lists'))
    assert sorted(os.path.basename(p) for p in written) == ['train_full.lst', 'val.lst']
    assert read_list(str(tmp_path / 'lists/train_full.lst'), str(root)) == sorted(entries)
    assert read_list(str(tmp_path / 'lists/val.lst'), str(root)) == [val]
    published = open(os.path.join(ROOT, 'issegm/data_list/cityscapes/train.lst')).readline()
    assert published == open(str(tmp_path / 'lists/train_full.lst')).readline()
    # A missing label is named.
    os.remove(str(root / entries[1][1]))
    with pytest.raises(DataError, match='aachen_000029_000019_gtFine_labelIds.png'):
        prep.make_lists('cityscapes', str(root), str(tmp_path / 'lists2'))
    assert not os.path.exists(str(tmp_path / 'lists2'))
    with pytest.raises(DataError, match='no cityscapes images found'):
        prep.find_pairs('cityscapes', str(tmp_path / 'empty'))


def _cli(args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, os.path.join(ROOT, 'issegm/prepare_data.py')] + args,
                          env=env, cwd=str(cwd), capture_output=True, text=True, timeout=120)


def test_cli_gta(tmp_path):
    src, out = tmp_path / 'gta', tmp_path / 'out'
    _gta(src, 2)
    run = _cli(['gta', '--data-root', str(src), '--output-root', str(out), '--quiet'], tmp_path)
    assert run.returncode == 0, run.stderr
    assert read_image(str(out / 'images/00002.png')).shape == prep.GTA_SHAPE + (3,)
    assert read_label(str(out / 'labels/00002.png')).shape == prep.GTA_SHAPE
    assert len(read_list(str(tmp_path / 'issegm/data_list/gta/train.lst'), str(out))) == 2
    run = _cli(['gta', '--data-root', str(src), '--output-root', str(src)], tmp_path)
    assert run.returncode == 2 and 'new folder' in run.stderr and 'Traceback' not in run.stderr


def test_cli_synthia_progress_and_list_dir(tmp_path):
    root = tmp_path / 'synthia'
    _synthia(root, 2)
    run = _cli(['synthia', '--data-root', str(root), '--list-dir', str(tmp_path / 'l')], tmp_path)
    assert run.returncode == 0, run.stderr
    assert 'synthia labels' in run.stderr and '2/2' in run.stderr   # tqdm bar
    assert '2 converted now' in run.stdout
    assert len(read_list(str(tmp_path / 'l/train.lst'), str(root))) == 2


def test_layouts_synthia_writer_puts_class_ids_in_the_files_first_channel(tmp_path):
    """issegm.benchmark.layouts (used by generators) writes the same file channels as the hand-encoded writer."""
    import cv2
    from issegm.benchmark import layouts
    rng = np.random.RandomState(3)
    ids, inst = rng.randint(0, 23, (6, 9)).astype(np.uint8), rng.randint(0, 3000, (6, 9))
    img = np.zeros((6, 9, 3), np.uint8)
    layouts.write_synthia_raw(str(tmp_path / 'a'), 0, img, ids, inst)
    write_synthia_raw(str(tmp_path / 'b'), 0, img, ids, inst)
    a = cv2.imread(str(tmp_path / 'a/GT/LABELS/0000000.png'), cv2.IMREAD_UNCHANGED)
    b = cv2.imread(str(tmp_path / 'b/GT/LABELS/0000000.png'), cv2.IMREAD_UNCHANGED)
    assert a.dtype == np.uint16 and (a == b).all()
    np.testing.assert_array_equal(prep.read_synthia_ids(str(tmp_path / 'a/GT/LABELS/0000000.png')), ids)
    np.testing.assert_array_equal(prep.read_synthia_ids(str(tmp_path / 'b/GT/LABELS/0000000.png')), ids)


def test_cli_cityscapes_writes_the_16_class_lists_too(tmp_path, monkeypatch):
    root = tmp_path / 'cs'
    img, lab = np.zeros((8, 16, 3), np.uint8), np.full((8, 16), 7, np.uint8)
    write_cityscapes(str(root), 'val', 'frankfurt', '000000_000294', img, lab)
    monkeypatch.chdir(tmp_path)
    assert prepare_data.main(['cityscapes', '--data-root', str(root), '--quiet']) == 0
    for dataset in ('cityscapes', 'cityscapes16'):
        with open(os.path.join('issegm', 'data_list', dataset, 'val.lst')) as f:
            assert f.read() == 'leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png\t' \
                               'gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png\n'
