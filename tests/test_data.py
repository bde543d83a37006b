"""Training iterator (spec section 5) on tiny synthetic images in the real Cityscapes layout."""
import numpy as np
import pytest
from PIL import Image

from issegm.data import SOURCE, TARGET, FileIter, Sample, SampleReader
from issegm.datasets import DataError, get_dataset
from issegm.layouts import write_cityscapes
from util.image import MEAN_RGB, STD_RGB

H, W = 48, 96          # image size
T, S = 32, 8           # crop size, stride


def _src_index(out, crop):
    """Source index that PIL's nearest-neighbour resize of ``crop`` -> ``T`` reads for output ``out``."""
    return np.floor((np.asarray(out) + 0.5) * crop / float(T)).astype(int)


def _identity_reader(samples, scale_range, max_shape=(H, W), **kw):
    """A reader whose label 'encoding' is the identity, so labels can encode positions."""
    l2t = np.arange(256, dtype=np.uint8)
    return SampleReader(samples, (l2t, l2t), (max_shape, max_shape), (max(max_shape),) * 2, T, S,
                        scale_range, max_label_ids=(254, 254), **kw)


def _position_sample(tmp_path, k=0):
    yy, xx = np.mgrid[:H, :W]
    label = ((yy * W + xx) % 251).astype(np.uint8)   # neighbours differ: off-by-one is caught
    rng = np.random.RandomState(k)
    image = rng.randint(0, 256, (H, W, 3)).astype(np.uint8)
    img_rel, lab_rel = write_cityscapes(str(tmp_path), 'train', 'aachen', '%06d_000019' % k, image, label)
    return Sample(str(tmp_path / img_rel), str(tmp_path / lab_rel), SOURCE), image, label


def test_geometry_labels_follow_resize_and_flip(tmp_path):
    sample, _, label = _position_sample(tmp_path)
    reader = _identity_reader([sample], (0.5, 1.6))
    flips, crops = set(), set()
    centres = np.arange(S // 2, T, S)
    for seed in range(40):
        data, out, g = reader.make(0, seed)
        assert data.shape == (3, T, T) and out.shape == ((T // S) ** 2,)
        out = out.reshape(T // S, T // S)
        rows = g.y0 + _src_index(centres, g.crop) - g.d0
        cols = g.x0 + _src_index(centres, g.crop) - g.d0
        if g.flip:
            cols = cols[::-1]
        inside = (rows[:, None] >= 0) & (rows[:, None] < H) & (cols[None] >= 0) & (cols[None] < W)
        expected = np.where(inside, label[np.clip(rows, 0, H - 1)[:, None], np.clip(cols, 0, W - 1)[None]], 255)
        np.testing.assert_array_equal(out, expected, err_msg='seed %d geometry %s' % (seed, g))
        flips.add(g.flip)
        crops.add(g.crop)
    assert flips == {True, False} and len(crops) > 5


def test_data_equals_normalised_crop_at_unit_scale(tmp_path):
    sample, image, _ = _position_sample(tmp_path)
    reader = _identity_reader([sample], (1.0, 1.0))
    for seed in range(10):
        data, _, g = reader.make(0, seed)
        assert g.crop == T
        canvas = np.full((200, 200, 3), np.nan)
        canvas[g.d0:g.d0 + H, g.d0:g.d0 + W] = (image / 255. - MEAN_RGB) / STD_RGB
        want = canvas[g.y0:g.y0 + T, g.x0:g.x0 + T]
        if g.flip:
            want = want[:, ::-1]
        want = np.nan_to_num(want, nan=0.).transpose(2, 0, 1)   # padding: exactly 0
        np.testing.assert_allclose(data, want, atol=1e-5)


def test_padding_is_exactly_zero(tmp_path):
    # Small rates: the crop is larger than the image, so much of it is canvas.
    sample, _, _ = _position_sample(tmp_path)
    reader = _identity_reader([sample], (0.3, 0.6))
    padded = 0
    for seed in range(10):
        data, _, g = reader.make(0, seed)
        assert g.crop > H
        idx = _src_index(np.arange(T), g.crop)
        rows = g.y0 + idx - g.d0
        cols = g.x0 + idx - g.d0
        if g.flip:
            cols = cols[::-1]
        outside = ~(((rows >= 0) & (rows < H))[:, None] & ((cols >= 0) & (cols < W))[None])
        assert (data[:, outside] == 0.0).all()
        assert (data[:, ~outside] != 0.0).any()
        padded += outside.sum()
    assert padded > 1000


def _dataset(tmp_path, n, rare_every_image=True, seed=0):
    """n Cityscapes-layout samples: road (id 7) with one 6x6 bicycle (id 33) block each."""
    rng = np.random.RandomState(seed)
    samples = []
    for k in range(n):
        label = np.full((H, W), 7, np.uint8)
        if rare_every_image:
            y, x = rng.randint(18, H - 24), rng.randint(18, W - 24)
            label[y:y + 6, x:x + 6] = 33
        image = np.full((H, W, 3), 10 * k + 5, np.uint8)   # the sample's number, readable in the batch
        rel = write_cityscapes(str(tmp_path), 'train', 'bonn', '%06d_000019' % k, image, label)
        samples.append(Sample(str(tmp_path / rel[0]), str(tmp_path / rel[1]), SOURCE))
    return samples


def _iter(samples, **kw):
    meta = dict(max_shape_src=(H, W), max_shape_tgt=(H, W), mine_port=kw.pop('mine_port', 0.),
                mine_id=kw.pop('mine_id', ()), mine_id_priority=kw.pop('mine_id_priority', ()))
    args = dict(dataset='cityscapes', samples=samples, meta=meta, batch_images=3, feat_stride=S,
                crop_size=30, origin_size=W, origin_size_tgt=W, scale_rate_range=(0.7, 1.3), seed=0)
    args.update(kw)
    return FileIter(**args)


def _contains_rare(reader, k, g):
    label = np.asarray(Image.open(reader.samples[k].label))
    window = np.zeros((H + 400, W + 400), bool)
    window[g.y0:g.y0 + g.crop, g.x0:g.x0 + g.crop] = True
    return window[g.d0:g.d0 + H, g.d0:g.d0 + W][label == 33].any()


def _uniform_probability(reader, k, g):
    """Chance that a uniform top-left corner (spec 5.4, no mining) gives a crop containing the block."""
    label = np.asarray(Image.open(reader.samples[k].label))
    ys, xs = np.nonzero(label == 33)
    ys, xs = ys + g.d0, xs + g.d0
    ls = S / g.rate
    ny = int(max(1, ls, g.d0 + H - g.crop + 1))
    nx = int(max(1, ls, g.d0 + W - g.crop + 1))
    oky = np.zeros(ny, bool)
    okx = np.zeros(nx, bool)
    y0s, x0s = np.arange(ny), np.arange(nx)
    oky[(y0s <= ys.max()) & (y0s + g.crop > ys.min())] = True
    okx[(x0s <= xs.max()) & (x0s + g.crop > xs.min())] = True
    return oky.mean() * okx.mean()


def test_mining_centres_crops_on_the_rare_class(tmp_path):
    samples = _dataset(tmp_path, 8)
    bicycle = 18
    it = _iter(samples, mine_port=1.0, mine_id=[bicycle], mine_id_priority=[])
    hits = [_contains_rare(it.reader, k % 8, it.reader.make(k % 8, k)[2]) for k in range(80)]
    assert np.mean(hits) >= 0.95
    # Priority classes come first; a priority class absent everywhere falls back to mine_id.
    it = _iter(samples, mine_port=1.0, mine_id=[0], mine_id_priority=[bicycle])
    assert np.mean([it.reader.make(k % 8, k)[2].mined for k in range(20)]) == 1.0
    it = _iter(samples, mine_port=1.0, mine_id=[bicycle], mine_id_priority=[5])
    assert np.mean([_contains_rare(it.reader, k % 8, it.reader.make(k % 8, k)[2]) for k in range(40)]) >= 0.95


def test_no_mining_matches_uniform_crops(tmp_path):
    samples = _dataset(tmp_path, 8)
    it = _iter(samples, mine_port=0.0, mine_id=[18], crop_size=24, scale_rate_range=(0.9, 1.1))
    hits, probs, us = [], [], []
    for k in range(300):
        g = it.reader.make(k % 8, 1000 + k)[2]
        assert not g.mined
        ls = S / g.rate
        ny, nx = int(max(1, ls, g.d0 + H - g.crop + 1)), int(max(1, ls, g.d0 + W - g.crop + 1))
        assert 0 <= g.y0 < ny and 0 <= g.x0 < nx
        us += [(g.y0 + 0.5) / ny, (g.x0 + 0.5) / nx]
        hits.append(_contains_rare(it.reader, k % 8, g))
        probs.append(_uniform_probability(it.reader, k % 8, g))
    p = np.mean(probs)
    assert p < 0.8   # the check means something: mining would give ~1
    assert abs(np.mean(hits) - p) < 3 * np.sqrt(p * (1 - p) / len(hits)) + 0.02
    # Corners are uniform over the allowed range (mean 1/2, quarters equally filled).
    assert abs(np.mean(us) - 0.5) < 0.05
    assert (np.abs(np.histogram(us, bins=4, range=(0, 1))[0] / len(us) - 0.25) < 0.06).all()


def _sample_numbers(batch):
    """Recover each crop's sample number from its (uniform) image colour."""
    data = batch.data[0].asnumpy()
    out = []
    for d in data:
        red = d[0][d[0] != 0]
        value = np.median(red) * STD_RGB[0] * 255 + MEAN_RGB[0] * 255
        out.append(int(round((value - 5) / 10.)))
    return out


@pytest.mark.parametrize('kind,threads', [('thread', 1), ('thread', 2), ('process', 2)])
def test_epoch_delivers_each_sample_once(tmp_path, kind, threads):
    samples = _dataset(tmp_path, 10)
    it = _iter(samples, prefetch_threads=threads, prefetcher_type=kind)
    try:
        assert it.provide_data[0].shape == (3, 3, 32, 32)
        assert it.provide_label[0].shape == (3, 16)
        for epoch in range(2):
            it.reset()
            seen = []
            for batch in it:
                assert batch.data[0].shape == it.provide_data[0].shape
                assert batch.label[0].shape == it.provide_label[0].shape
                seen += _sample_numbers(batch)
            assert len(seen) == 9 == len(set(seen)) and set(seen) <= set(range(10))
            assert seen == it.epoch_indices()
    finally:
        it.close()


def _epoch(it):
    it.reset()
    return [(b.data[0].asnumpy(), b.label[0].asnumpy()) for b in it]


def test_same_seed_same_batches_for_any_workers(tmp_path):
    samples = _dataset(tmp_path, 7)
    a = _iter(samples, seed=3, mine_port=0.5, mine_id=[18])
    b = _iter(samples, seed=3, mine_port=0.5, mine_id=[18], prefetch_threads=2, prefetcher_type='process')
    c = _iter(samples, seed=4, mine_port=0.5, mine_id=[18])
    try:
        ea, eb, ec = _epoch(a), _epoch(b), _epoch(c)
        assert len(ea) == 2
        for (da, la), (db, lb) in zip(ea, eb):
            np.testing.assert_array_equal(da, db)
            np.testing.assert_array_equal(la, lb)
        assert any(not np.array_equal(x[0], y[0]) for x, y in zip(ea, ec))
        # The next epoch is a new draw.
        assert any(not np.array_equal(x[0], y[0]) for x, y in zip(ea, _epoch(a)))
    finally:
        for it in (a, b, c):
            it.close()


def test_target_pseudo_labels_map_id0_to_ignore(tmp_path):
    label = np.zeros((H, W), np.uint8)
    label[:, W // 2:] = 26   # car
    rel = write_cityscapes(str(tmp_path), 'train', 'bonn', '000000_000019', np.zeros((H, W, 3), np.uint8), label)
    sample = Sample(str(tmp_path / rel[0]), str(tmp_path / rel[1]), TARGET)
    it = _iter([sample], dataset='gta', dataset_tgt='cityscapes', batch_images=1)
    values = set()
    for seed in range(10):
        values |= set(it.reader.make(0, seed)[1].tolist())
    assert values <= {255., 13.} and 13. in values


def test_bad_files_stop_with_the_file_name(tmp_path):
    samples = _dataset(tmp_path, 2)
    it = _iter(samples, batch_images=1)
    # Label values outside the Cityscapes encoding (e.g. train ids saved as colours).
    Image.fromarray(np.full((H, W), 200, np.uint8)).save(samples[0].label)
    with pytest.raises(DataError, match='000000_000019_gtFine_labelIds.png.*200'):
        it.reader.make(0, 0)
    # Size mismatch between image and label.
    Image.fromarray(np.full((H, W - 2), 7, np.uint8)).save(samples[0].label)
    with pytest.raises(DataError, match='is 48x94 but its image'):
        it.reader.make(0, 0)
    # A damaged image, reported through the prefetcher too.
    with open(samples[1].image, 'wb') as f:
        f.write(b'not a png')
    with pytest.raises(DataError, match='cannot read image .*000001_000019_leftImg8bit.png'):
        it.reader.make(1, 0)
    it2 = _iter([samples[1]], batch_images=1, prefetch_threads=2)
    with pytest.raises(DataError, match='000001_000019'):
        it2.reset()
        next(iter(it2))
    it2.close()


def test_cache_images_reads_each_file_once(tmp_path, monkeypatch):
    samples = _dataset(tmp_path, 3)
    it = _iter(samples, batch_images=1, cache_images=True)
    first = it.reader.make(0, 5)
    import os
    os.remove(samples[0].image)   # served from the byte cache now
    again = it.reader.make(0, 5)
    np.testing.assert_array_equal(first[0], again[0])
    assert samples[0].image in it.reader.cache
