"""Spatial prior: known synthetic layout recovered; .mat file shape and dtype."""
import os

import numpy as np
import pytest
import scipy.io
from PIL import Image

from issegm import spatial_prior
from issegm.method import prior as sp
from issegm.storage.datasets import get_dataset

# Cityscapes label ids / train ids used by the synthetic layout.
ROAD_ID, SKY_ID, CAR_ID, VOID_ID = 7, 23, 26, 0
ROAD, SKY, CAR = 0, 10, 13


def _layout(with_car):
    """32 x 64 label-id map: sky on top, road below, a car block in the lower middle."""
    lab = np.full((32, 64), ROAD_ID, np.uint8)
    lab[:12] = SKY_ID
    lab[12:16] = VOID_ID                     # ignored band
    if with_car:
        lab[20:28, 24:40] = CAR_ID
    return lab


def test_layout_recovered_without_smoothing():
    info = get_dataset('gta')
    labels = [_layout(i % 2 == 0) for i in range(4)]     # car in half of the images
    prior = sp.build_prior(labels, info.label2train, 19, shape=(16, 32), kernel_size=0, normalize='pixel')
    assert prior.shape == (19, 16, 32) and prior.dtype == np.float32
    # nearest resize by 2: sky rows 0..5, void rows 6..7, car rows 10..13 x cols 12..19
    np.testing.assert_allclose(prior[SKY, :6], 1.0)
    np.testing.assert_allclose(prior[ROAD, 14:], 1.0)
    np.testing.assert_allclose(prior[CAR, 10:14, 12:20], 0.5)
    np.testing.assert_allclose(prior[ROAD, 10:14, 12:20], 0.5)
    assert prior[CAR, :6].max() == 0 and prior[CAR, 8:10].max() == 0
    # never-labelled rows get the uniform distribution
    np.testing.assert_allclose(prior[:, 6:8], 1.0 / 19)
    np.testing.assert_allclose(prior.sum(0), 1.0, rtol=1e-6)

    none = sp.build_prior(labels, info.label2train, 19, shape=(16, 32), kernel_size=0, normalize='none')
    np.testing.assert_allclose(none[CAR, 10:14, 12:20], 0.5)
    assert none[:, 6:8].max() == 0


def test_smoothing_spreads_but_keeps_the_peaks():
    info = get_dataset('gta')
    labels = [_layout(True), _layout(False)]
    raw = sp.build_prior(labels, info.label2train, 19, shape=(32, 64), kernel_size=0, normalize='pixel')
    smooth = sp.build_prior(labels, info.label2train, 19, shape=(32, 64), kernel_size=9, normalize='pixel')
    np.testing.assert_allclose(smooth.sum(0), 1.0, rtol=1e-5)
    assert smooth.min() >= 0
    # the car prior leaks outside its block but peaks inside it
    assert smooth[CAR, 18, 32] > 0 and raw[CAR, 18, 32] == 0
    assert np.unravel_index(smooth[CAR].argmax(), (32, 64))[0] in range(20, 28)
    assert smooth[CAR, 24, 32] < raw[CAR, 24, 32]
    # the void band is filled from its neighbours (sky above, road below)
    assert smooth[SKY, 12, 10] > 0.5 and smooth[ROAD, 15, 10] > 0.5

    per_class = sp.build_prior(labels, info.label2train, 19, shape=(32, 64), kernel_size=9, normalize='class')
    np.testing.assert_allclose(per_class[[ROAD, SKY, CAR]].sum((1, 2)), 1.0, rtol=1e-5)


def test_streaming_equals_batch_counts():
    acc = sp.PriorAccumulator(3, (4, 4))
    a = np.array([[0, 1], [2, 255]], np.uint8)
    acc.add(a)
    acc.add(a)
    assert acc.counts.dtype == np.int32 and acc.counts.sum() == 2 * 12   # 255 quarter skipped
    assert acc.counts[1, 0, 3] == 2 and acc.counts[2, 3, 0] == 2
    with pytest.raises(ValueError, match='no label maps'):
        sp.PriorAccumulator(3, (4, 4)).finish()


def _mini_gta(tmp_path, monkeypatch, labels):
    """A GTA-5 layout of ``labels`` with the list issegm/data_list/gta/mini.lst; returns its root."""
    root = tmp_path / 'gta'
    (root / 'labels').mkdir(parents=True)
    lines = []
    for i, label in enumerate(labels):
        Image.fromarray(label).save(str(root / 'labels' / ('%05d.png' % i)))
        Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(str(root / ('%05d.jpg' % i)))
        lines.append('%05d.jpg\tlabels/%05d.png' % (i, i))
    monkeypatch.chdir(tmp_path)
    os.makedirs('issegm/data_list/gta')
    with open('issegm/data_list/gta/mini.lst', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return root


def test_cli_writes_mat(tmp_path, monkeypatch, capsys):
    root = _mini_gta(tmp_path, monkeypatch, [_layout(i == 0) for i in range(3)])
    rc = spatial_prior.main(['--dataset', 'gta', '--split', 'mini', '--data-root', str(root),
                  '--shape', '8,16', '--kernel-size', '5'])
    assert rc == 0
    path = tmp_path / 'spatial_prior' / 'gta' / 'prior_array.mat'
    # Default: per-class normalisation, each present class's map sums to 1.
    default = scipy.io.loadmat(str(path))['prior_array']
    sums = default.reshape(19, -1).sum(1)
    assert np.allclose(sums[sums > 0], 1.0, rtol=1e-5) and sums[SKY] > 0
    rc = spatial_prior.main(['--dataset', 'gta', '--split', 'mini', '--data-root', str(root),
                  '--shape', '8,16', '--kernel-size', '5', '--normalize', 'pixel'])
    assert rc == 0
    mat = scipy.io.loadmat(str(path))
    assert mat['prior_array'].shape == (19, 8, 16) and mat['prior_array'].dtype == np.float32
    np.testing.assert_allclose(mat['prior_array'].sum(0), 1.0, rtol=1e-5)
    assert mat['prior_array'][SKY, 0].min() > 0.9
    assert not [f for f in os.listdir(path.parent) if f.startswith('.')]

    assert spatial_prior.main(['--dataset', 'gta', '--split', 'missing', '--data-root', str(root)]) == 2
    assert 'missing.lst' in capsys.readouterr().err


def test_cli_ignores_unknown_label_ids_with_one_warning_and_refuses_a_16_bit_label(tmp_path, monkeypatch, capsys):
    unknown = _layout(True)
    unknown[:4] = 250
    root = _mini_gta(tmp_path, monkeypatch, [_layout(True), unknown])
    argv = ['--dataset', 'gta', '--split', 'mini', '--data-root', str(root), '--shape', '8,16', '--kernel-size', '1',
            '--normalize', 'none']
    assert spatial_prior.main(argv) == 0
    err = [l for l in capsys.readouterr().err.splitlines() if 'outside' in l]
    assert len(err) == 1 and 'labels/00001.png (250)' in err[0]
    # The 250 rows count for no class: the top rows hold only image 0's classes.
    prior = scipy.io.loadmat('spatial_prior/gta/prior_array.mat')['prior_array']
    assert prior[:, 0].sum(0) == pytest.approx(np.full(16, 0.5))
    Image.fromarray(np.zeros((32, 64), np.uint16)).save(str(root / 'labels' / '00000.png'))
    assert spatial_prior.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and '00000.png has shape' in err[0]


def test_load_prior_names_the_file_when_prior_array_is_missing_or_the_file_is_not_a_mat(tmp_path):
    folder = tmp_path / 'gta'
    folder.mkdir()
    scipy.io.savemat(str(folder / 'prior_array.mat'), {'other': np.zeros((19, 2, 2), np.float32)})
    with pytest.raises(ValueError, match=r'prior_array.mat holds no variable prior_array'):
        sp.load_prior('gta', 19, root=str(tmp_path))
    (folder / 'prior_array.mat').write_bytes(b'not a mat file at all')
    with pytest.raises(ValueError, match=r'gta/prior_array.mat is not a readable .mat file'):
        sp.load_prior('gta', 19, root=str(tmp_path))


def test_the_same_prior_saved_at_another_time_is_the_same_file(tmp_path, monkeypatch):
    """A rebuilt prior must not look like another prior to a resumed run (run.json records its sha256)."""
    import hashlib
    import time
    prior = np.random.RandomState(0).rand(19, 8, 16).astype(np.float32)
    digests = []
    for i, when in enumerate(('Mon Jan  5 10:00:00 2026', 'Tue Jan  6 11:11:11 2026')):
        monkeypatch.setattr(time, 'asctime', lambda *a, when=when: when)
        path = sp.save_prior(str(tmp_path / ('p%d.mat' % i)), prior)
        digests.append(hashlib.sha256(open(path, 'rb').read()).hexdigest())
        np.testing.assert_array_equal(scipy.io.loadmat(path)['prior_array'], prior)
    assert digests[0] == digests[1]


@pytest.mark.parametrize('extra, needle', [
    (['--max-images', '0'], 'error: --max-images 0: expected at least 1 image'),
    (['--sigma', '-2'], 'error: --sigma -2: expected a positive sigma'),
    (['--shape', '100000,100000'], 'error: --shape 100000,100000: 19 maps of 100000x100000 need about 2280.0 GB, '
                                   'more than the'),
    (['--output', 'spatial_prior'], 'error: --output spatial_prior is a folder; give the .mat file to write, '
                                    'e.g. spatial_prior/prior_array.mat'),
    (['--dataset', 'cityscapes'], "error: --dataset cityscapes: the spatial prior is counted on the SOURCE domain's "
                                  'labels (gta or synthia)'),
])
def test_cli_refuses_bad_values_in_one_line_before_reading_labels(tmp_path, monkeypatch, capsys, extra, needle):
    root = _mini_gta(tmp_path, monkeypatch, [_layout(True)])
    os.makedirs('spatial_prior')
    argv = ['--dataset', 'gta', '--split', 'mini', '--data-root', str(root), '--shape', '8,16'] + extra
    assert spatial_prior.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(needle), err
    assert os.listdir('spatial_prior') == []


def test_cli_out_of_memory_is_one_line(tmp_path, monkeypatch, capsys):
    root = _mini_gta(tmp_path, monkeypatch, [_layout(True)])

    def no_memory(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(spatial_prior, 'build_prior', no_memory)
    assert spatial_prior.main(['--dataset', 'gta', '--split', 'mini', '--data-root', str(root), '--shape', '8,16']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: out of memory'), err
