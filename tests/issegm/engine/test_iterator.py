"""Training iterator (docs/behaviour.md section 5) on tiny synthetic images in the real Cityscapes layout."""
import logging
import os

import numpy as np
import pytest
from PIL import Image

from issegm.engine.iterator import SOURCE, TARGET, FileIter, Sample, SampleReader
from issegm.storage.datasets import get_dataset
from issegm.errors import DataError
from issegm.benchmark.layouts import write_cityscapes
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
                        scale_range, **kw)


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


# The reference fills a float canvas with the mean (0.485, 0.456, 0.406) * 255
# and crops it with astype(np.uint8): padding is the truncated mean.
PAD_RGB = np.array([123, 116, 103])
PAD_VALUE = (PAD_RGB / 255. - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])


def test_pad_value_is_the_reference_one():
    np.testing.assert_allclose(PAD_VALUE, [-0.0116, -0.0049, -0.0092], atol=1e-4)


def test_data_equals_normalised_crop_at_unit_scale(tmp_path):
    sample, image, _ = _position_sample(tmp_path)
    reader = _identity_reader([sample], (1.0, 1.0))
    padded = 0
    for seed in range(10):
        data, _, g = reader.make(0, seed)
        assert g.crop == T
        canvas = np.empty((200, 200, 3))
        canvas[:] = PAD_VALUE
        canvas[g.d0:g.d0 + H, g.d0:g.d0 + W] = (image / 255. - MEAN_RGB) / STD_RGB
        want = canvas[g.y0:g.y0 + T, g.x0:g.x0 + T]
        if g.flip:
            want = want[:, ::-1]
        np.testing.assert_allclose(data, want.transpose(2, 0, 1), atol=1e-5)
        padded += g.y0 < g.d0 or g.x0 < g.d0
    assert padded >= 3


def test_padding_is_the_truncated_mean(tmp_path):
    # Small rates: the crop is larger than the image, so much of it is canvas.
    sample, _, _ = _position_sample(tmp_path)
    reader = _identity_reader([sample], (0.3, 0.6))
    padded = 0
    for seed in range(10):
        data, _, g = reader.make(0, seed)
        assert g.crop > H
        # Output pixels whose resampling window (Lanczos: 3 source pixels per
        # output pixel each side) lies wholly on the canvas hold the pad value.
        margin = 4 * int(np.ceil(g.crop / float(T)))
        idx = _src_index(np.arange(T), g.crop)
        rows = g.y0 + idx - g.d0
        cols = g.x0 + idx - g.d0
        if g.flip:
            cols = cols[::-1]
        near = ((rows >= -margin) & (rows < H + margin))[:, None] & ((cols >= -margin) & (cols < W + margin))[None]
        far = ~near
        np.testing.assert_allclose(data[:, far], np.repeat(PAD_VALUE[:, None], far.sum(), 1), atol=1e-6)
        padded += far.sum()
    assert padded > 1000


def _sized_samples(tmp_path, sizes, domain=SOURCE):
    samples = []
    for k, (h, w) in enumerate(sizes):
        rel = write_cityscapes(str(tmp_path), 'train', 'ulm', '%06d_000019' % k,
                               np.full((h, w, 3), 90, np.uint8), np.full((h, w), 7, np.uint8), color=False)
        samples.append(Sample(str(tmp_path / rel[0]), str(tmp_path / rel[1]), domain))
    return samples


def _drawn_target_sizes(it, sizes, longest_of):
    """``rate * longest`` per made sample; an integer target size when ``longest`` is the rule's."""
    out = []
    for seed in range(8):
        for k, hw in enumerate(sizes):
            g = it.reader.make(k, seed)[2]
            assert g.crop == int(T / g.rate)
            out.append(g.rate * longest_of(hw))
    return np.array(out)


def test_source_training_draws_each_image_rate_from_its_own_size(tmp_path):
    # Reference data_src.py: rate = target_size / max(h, w) of the image; target_size an
    # integer in [int(0.7 * origin), int(1.3 * origin)]. GTA-5's max shape (1052 x 1914) plays no part.
    sizes = [(48, 96), (40, 64), (72, 56)]
    it = FileIter('gta', samples=_sized_samples(tmp_path, sizes), batch_images=1, crop_size=T, feat_stride=S,
                  origin_size=96, scale_rate_range=(0.7, 1.3), seed=0)
    try:
        t = _drawn_target_sizes(it, sizes, max)
    finally:
        it.close()
    np.testing.assert_allclose(t, np.round(t), atol=1e-9)
    assert t.min() >= int(0.7 * 96) and t.max() <= int(1.3 * 96) and len(set(np.round(t))) > 5


def test_self_training_draws_rates_from_the_max_shape(tmp_path):
    # Reference data.py: rate = target_size / max(max_shape); GTA-5 as source pinned to 1024 x 2048.
    sizes = [(48, 96), (40, 64)]
    samples = _sized_samples(tmp_path, sizes) + _sized_samples(tmp_path / 't', sizes, TARGET)
    it = FileIter('gta', dataset_tgt='cityscapes', samples=samples, batch_images=1, crop_size=T,
                  feat_stride=S, origin_size=1914, origin_size_tgt=2048, scale_rate_range=(0.7, 1.3), seed=0)
    try:
        t = _drawn_target_sizes(it, sizes * 2, lambda hw: 2048)
    finally:
        it.close()
    np.testing.assert_allclose(t, np.round(t), atol=1e-6)
    src, tgt = t.reshape(8, 4)[:, :2], t.reshape(8, 4)[:, 2:]
    assert src.min() >= int(0.7 * 1914) and src.max() <= int(1.3 * 1914)
    assert tgt.min() >= int(0.7 * 2048) and tgt.max() <= int(1.3 * 2048)


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
    """Chance that a uniform top-left corner (docs/behaviour.md 5.4, no mining) gives a crop containing the block."""
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


def test_parts_together_are_one_process_batches(tmp_path):
    """Distributed training: each part yields its consecutive share of every global batch."""
    samples = _dataset(tmp_path, 9)
    whole = _iter(samples, batch_images=4, seed=5, mine_port=0.5, mine_id=[18])
    parts = [_iter(samples, batch_images=4, seed=5, mine_port=0.5, mine_id=[18], num_parts=2, part_index=k)
             for k in (0, 1)]
    try:
        assert [p.provide_data[0].shape[0] for p in parts] == [2, 2] and parts[0].batches_per_epoch == 2
        for _ in range(2):  # two epochs: each part draws the epoch as the whole does
            ew, e0, e1 = _epoch(whole), _epoch(parts[0]), _epoch(parts[1])
            assert len(ew) == len(e0) == len(e1) == 2
            for (dw, lw), (d0, l0), (d1, l1) in zip(ew, e0, e1):
                np.testing.assert_array_equal(dw, np.concatenate([d0, d1]))
                np.testing.assert_array_equal(lw, np.concatenate([l0, l1]))
            assert whole.epoch_indices() == [i for b in range(2) for p in parts
                                             for i in p.epoch_indices()[2 * b:2 * b + 2]]
    finally:
        for it in [whole] + parts:
            it.close()
    with pytest.raises(ValueError, match='--batch-images 3 .* cannot be split evenly over 2 workers'):
        _iter(samples, batch_images=3, num_parts=2, part_index=0)


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


def test_unknown_label_ids_are_ignored_with_one_warning_per_run(tmp_path, caplog):
    """11.5: ids outside the encoding become 255 (as the reference's table maps them), reported once."""
    samples = _dataset(tmp_path, 4)
    label = np.full((H, W), 26, np.uint8)   # car
    label[:, :10] = 200
    label[0, 0] = 34
    Image.fromarray(label).save(samples[1].label)
    it = _iter(samples, batch_images=2, prefetch_threads=2, prefetcher='process')
    try:
        for seed in range(6):   # the ignored pixels never reach the labels as a class
            assert set(it.reader.make(1, seed)[1].tolist()) <= {13., 255.}
        caplog.set_level(logging.WARNING)
        for epoch in range(2):
            it.reset()
            assert len(list(it)) == 2
    finally:
        it.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith('1 label file(s) hold values outside the cityscapes label ids (34, 200)')
    assert '000001_000019_gtFine_labelIds.png (34,200)' in warnings[0]


def test_label_files_of_train_ids_get_a_warning_naming_prepare_data(tmp_path, caplog):
    samples = _dataset(tmp_path, 2)
    train_ids = np.kron(np.array([[0, 1, 2, 8], [0, 2, 10, 13]], np.uint8), np.ones((H // 2, W // 4), np.uint8))
    Image.fromarray(np.pad(train_ids, ((0, 0), (0, W % 4)), mode='edge')).save(samples[0].label)
    it = _iter(samples, batch_images=2)
    caplog.set_level(logging.WARNING)
    it.reset()
    list(it)
    it.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and 'look like train ids or colours' in warnings[0]
    assert '000000_000019_gtFine_labelIds.png' in warnings[0] and 'prepare_data.py' in warnings[0]
    assert '000001_000019' not in warnings[0]   # a real label-id file is not suspected


def test_bad_files_stop_with_the_file_name(tmp_path):
    samples = _dataset(tmp_path, 2)
    it = _iter(samples, batch_images=1)
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


# -- geometry against a canvas rebuilt from Geometry ---------------------------------------

def _expected_labels(label, g, crop_offset=(0, 0), flip=None):
    """Labels the iterator must output for Geometry ``g``: the canvas crop, resized with
    util.image.resize(nearest) to T x T, kept at the stride centres, flipped if ``g.flip``."""
    from util.image import resize
    dy, dx = crop_offset
    y0, x0 = g.y0 + dy, g.x0 + dx
    side = max(y0, x0) + g.crop + g.d0 + H + W
    canvas = np.full((side, side), 255, np.uint8)
    canvas[g.d0:g.d0 + H, g.d0:g.d0 + W] = label
    out = resize(canvas[y0:y0 + g.crop, x0:x0 + g.crop], (T, T), nearest=True)[S // 2::S, S // 2::S]
    return out[:, ::-1] if (g.flip if flip is None else flip) else out


@pytest.mark.parametrize('mine', [False, True])
def test_geometry_matches_rebuilt_canvas_and_perturbations_break_it(tmp_path, mine):
    sample, _, label = _position_sample(tmp_path)
    if mine:
        label = label.copy()
        label[20:30, 40:56] = 252        # a 'rare class' no position value takes (those are < 251)
        Image.fromarray(label).save(sample.label)
    # Mining needs crops smaller than the image (a centre must keep the crop inside).
    reader = _identity_reader([sample], (0.9, 1.6) if mine else (0.5, 1.6), mine_port=1.0 if mine else 0.0,
                              mine_id=[252] if mine else ())
    checked = 0
    for seed in range(30):
        _, out, g = reader.make(0, seed)
        out = out.reshape(T // S, T // S)
        assert g.mined == mine
        np.testing.assert_array_equal(out, _expected_labels(label, g), err_msg='seed %d %s' % (seed, g))
        if mine:   # the crop is centred on a pixel of the mined class
            cy, cx = g.y0 + g.crop // 2 - g.d0, g.x0 + g.crop // 2 - g.d0
            assert label[cy, cx] == 252
        if (out != 255).sum() < 4:
            continue
        checked += 1
        # The check can fail: a crop one pixel or one label cell off, or the other flip, disagrees.
        for offset in ((0, 1), (1, 0), (0, S), (S, 0), (0, -1)):
            assert not np.array_equal(out, _expected_labels(label, g, offset)), (seed, offset)
        assert not np.array_equal(out, _expected_labels(label, g, flip=not g.flip)), seed
    assert checked >= 20


def test_data_is_the_resized_canvas_crop_at_any_scale(tmp_path):
    """Every pixel equals normalize(resize(canvas crop)) with the reference filter rule."""
    from util.image import normalize, resize
    sample, image, _ = _position_sample(tmp_path)
    reader = _identity_reader([sample], (0.5, 1.6))
    filters = set()
    for seed in range(12):
        data, _, g = reader.make(0, seed)
        side = max(g.y0, g.x0) + g.crop + g.d0 + H + W
        canvas = np.empty((side, side, 3), np.uint8)
        canvas[:] = PAD_RGB
        canvas[g.d0:g.d0 + H, g.d0:g.d0 + W] = image
        win = (slice(g.y0, g.y0 + g.crop), slice(g.x0, g.x0 + g.crop))
        want = normalize(resize(canvas[win], (T, T)))
        if g.flip:
            want = want[:, :, ::-1]
        np.testing.assert_allclose(data, want, atol=1e-5, err_msg=str(g))
        filters.add('down' if g.crop > T else 'up' if g.crop < T else 'same')
    assert filters >= {'down', 'up'}


def _centred_rare_dataset(tmp_path, n=4):
    """Road (id 7) images with a bicycle (id 33) block at the centre, where every crop can centre."""
    samples = []
    for k in range(n):
        label = np.full((H, W), 7, np.uint8)
        label[H // 2 - 4:H // 2 + 4, W // 2 - 8:W // 2 + 8] = 33
        rel = write_cityscapes(str(tmp_path), 'train', 'ulm', '%06d_000019' % k,
                               np.full((H, W, 3), 100, np.uint8), label)
        samples.append(Sample(str(tmp_path / rel[0]), str(tmp_path / rel[1]), SOURCE))
    return samples


def _centre_classes(it, n):
    out = []
    for k in range(n):
        g = it.reader.make(k % len(it.samples), 500 + k)[2]
        train = it.reader.load(it.samples[k % len(it.samples)])[1]
        out.append((g.mined, int(train[g.y0 + g.crop // 2 - g.d0, g.x0 + g.crop // 2 - g.d0])))
    return out


def test_mining_prefers_priority_classes(tmp_path):
    samples = _centred_rare_dataset(tmp_path)
    road, bicycle = 0, 18
    # Road is everywhere and is the only mine_id; bicycle is a priority class: every centre is bicycle.
    it = _iter(samples, mine_port=1.0, mine_id=[road], mine_id_priority=[bicycle])
    assert _centre_classes(it, 40) == [(True, bicycle)] * 40
    # Without the priority class the same iterator centres on road (so the check above can fail).
    it = _iter(samples, mine_port=1.0, mine_id=[road], mine_id_priority=[])
    assert _centre_classes(it, 40) == [(True, road)] * 40
    # A priority class absent from the image falls back to mine_id.
    it = _iter(samples, mine_port=1.0, mine_id=[bicycle], mine_id_priority=[5])
    assert _centre_classes(it, 20) == [(True, bicycle)] * 20
    # Nothing to mine: uniform corners, not marked as mined.
    it = _iter(samples, mine_port=1.0, mine_id=[5], mine_id_priority=[6])
    assert not any(m for m, _ in _centre_classes(it, 10))


@pytest.mark.parametrize('kind,threads', [('thread', 2), ('process', 1), ('process', 2)])
def test_batches_equal_single_thread_for_any_prefetcher(tmp_path, kind, threads):
    samples = _dataset(tmp_path, 7)
    base = _iter(samples, seed=11, mine_port=0.5, mine_id=[18])
    other = _iter(samples, seed=11, mine_port=0.5, mine_id=[18], prefetch_threads=threads,
                  prefetcher_type=kind)
    try:
        for _ in range(2):   # two epochs: the second epoch's draw is reproduced too
            ea, eb = _epoch(base), _epoch(other)
            assert base.epoch_indices() == other.epoch_indices()
            assert len(ea) == len(eb) == 2
            for (da, la), (db, lb) in zip(ea, eb):
                np.testing.assert_array_equal(da, db)
                np.testing.assert_array_equal(la, lb)
    finally:
        base.close()
        other.close()


def test_labels_outside_other_encodings_and_wrong_kinds_are_named(tmp_path):
    image = np.zeros((H, W, 3), np.uint8)
    Image.fromarray(image).save(str(tmp_path / 'img.png'))
    syn = np.full((H, W), 3, np.uint8)
    syn[0, 0] = 23                         # SYNTHIA ids stop at 22 (lanemarking)
    Image.fromarray(syn).save(str(tmp_path / 'syn.png'))
    sample = Sample(str(tmp_path / 'img.png'), str(tmp_path / 'syn.png'), SOURCE)
    it = _iter([sample], dataset='synthia', batch_images=1)
    assert it.reader.load(sample)[2] == (sample.label, (23,), False)
    syn[0, 0] = 22                         # the largest SYNTHIA id is known (and ignored in training)
    Image.fromarray(syn).save(str(tmp_path / 'syn.png'))
    assert set(it.reader.make(0, 0)[1].tolist()) <= {0., 255.} and it.reader.load(sample)[2] is None
    assert get_dataset('synthia').label2train[22] == 255
    # A colour label and a raw 16-bit label are refused with the file's name.
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(str(tmp_path / 'rgb.png'))
    Image.fromarray(np.zeros((H, W), np.uint16)).save(str(tmp_path / 'deep.png'))
    for name in ('rgb.png', 'deep.png'):
        it = _iter([Sample(sample.image, str(tmp_path / name), SOURCE)], batch_images=1)
        with pytest.raises(DataError, match='label .*%s has shape' % name):
            it.reader.make(0, 0)


# -- source selection and list files -------------------------------------------------------

def test_select_source_indices_is_the_reference_draw():
    from issegm.engine.iterator import select_source_indices
    for n_all, n_sel, seed in ((24966, 749, 0), (9400, 188, 3), (10, 10, 1), (7, 0, 2)):
        np.random.seed(seed)
        want = np.random.choice(n_all, n_sel, replace=False)
        np.testing.assert_array_equal(select_source_indices(n_all, n_sel, seed), want)
    # cumulative policy: a larger portion with the same seed extends the smaller one
    small, large = select_source_indices(1000, 30, 0), select_source_indices(1000, 60, 0)
    np.testing.assert_array_equal(large[:30], small)
    assert not np.array_equal(select_source_indices(1000, 30, 1), small)


def _lists_in_cwd(tmp_path, monkeypatch, n_src=12, n_tgt=3, gpus='0'):
    from issegm.benchmark.layouts import write_list
    from issegm.benchmark.toy import write_gta
    monkeypatch.chdir(tmp_path)
    src_root, tgt_root = tmp_path / 'gta', tmp_path / 'cs'
    img, lab = np.zeros((H, W, 3), np.uint8), np.full((H, W), 7, np.uint8)
    src = [write_gta(str(src_root), k, img, lab) for k in range(1, n_src + 1)]
    write_list('issegm/data_list/gta/train.lst', src)
    tgt = []
    for k in range(n_tgt):
        image_rel, _ = write_cityscapes(str(tgt_root), 'train', 'aachen', '%06d_000019' % k, img, lab)
        pseudo = str(tmp_path / 'out' / '0' / 'self_train' / 'pseudo_labelIds' / ('t%d.png' % k))
        os.makedirs(os.path.dirname(pseudo), exist_ok=True)
        Image.fromarray(lab).save(pseudo)
        tgt.append((image_rel, pseudo))
    write_list('issegm/data_list/cityscapes/train_training_gpu%s.lst' % gpus, tgt)
    return src_root, tgt_root, src, tgt


def test_parse_split_file_reads_lists_from_the_working_directory(tmp_path, monkeypatch):
    from issegm.engine.iterator import parse_split_file
    src_root, tgt_root, src, tgt = _lists_in_cwd(tmp_path, monkeypatch, gpus='1')
    samples = parse_split_file('gta', 'train', num_sel_source=5, num_source=12, seed_int=3,
                               dataset_tgt='cityscapes', split_tgt='train', data_root=str(src_root),
                               data_root_tgt=str(tgt_root), gpus='1')
    np.random.seed(3)
    chosen = np.random.choice(12, 5, replace=False)
    assert samples[:5] == [Sample(os.path.join(str(src_root), src[k][0]), os.path.join(str(src_root), src[k][1]),
                                  SOURCE) for k in chosen]
    # Target lines: image under the target root, pseudo-label path used as written.
    assert samples[5:] == [Sample(os.path.join(str(tgt_root), i), l, TARGET) for i, l in tgt]
    # No selection: every source line, in list order; no target list without dataset_tgt.
    assert [s.image for s in parse_split_file('gta', 'train', data_root=str(src_root))] == \
        [os.path.join(str(src_root), i) for i, _ in src]
    # The target list is looked up for the given gpus string; a missing one is named.
    with pytest.raises(DataError, match='train_training_gpu0.lst'):
        parse_split_file('gta', 'train', 5, 12, 3, 'cityscapes', 'train', str(src_root), str(tgt_root), gpus='0')
    # A missing source file is named with its list and line before any work.
    os.remove(str(src_root / src[6][1]))
    with pytest.raises(DataError, match=r'gta/train.lst: 1 file.*labels/00007.png \(line 7\)'):
        parse_split_file('gta', 'train', 5, 12, 3, data_root=str(src_root))


def test_fileiter_from_list_files(tmp_path, monkeypatch):
    from issegm.engine.iterator import parse_split_file
    src_root, tgt_root, _, _ = _lists_in_cwd(tmp_path, monkeypatch)
    kw = dict(num_sel_source=4, num_source=12, seed_int=0, dataset_tgt='cityscapes', split_tgt='train',
              data_root=str(src_root), data_root_tgt=str(tgt_root))
    it = FileIter('gta', 'train', batch_images=2, crop_size=T, feat_stride=S, scale_rate_range=(0.7, 1.3),
                  origin_size=W, origin_size_tgt=W, seed=0,
                  meta=dict(max_shape_src=(H, W), max_shape_tgt=(H, W)), **kw)   # gpus: '0' by default
    try:
        assert it.samples == parse_split_file('gta', 'train', gpus='0', **kw)
        assert it.num_data == 7 and it.batches_per_epoch == 3
        it.reset()
        batches = list(it)
        seen = it.epoch_indices()
        assert len(batches) == 3 and len(set(seen)) == 6 and set(seen) <= set(range(7))
        # Target samples (the last three) are in the epoch alongside the selected source ones.
        assert {s.domain for s in it.samples} == {SOURCE, TARGET}
        assert all(b.data[0].shape == it.provide_data[0].shape for b in batches)
    finally:
        it.close()


def test_fewer_samples_than_a_batch_is_an_error(tmp_path):
    # Otherwise every epoch has no batch and a training phase would save untrained 'epochs'.
    samples = _dataset(tmp_path, 2)
    with pytest.raises(DataError, match='2 training samples, fewer than one batch of 3'):
        _iter(samples, batch_images=3)
    it = _iter(samples, batch_images=2)
    assert it.batches_per_epoch == 1
    it.close()


@pytest.mark.parametrize('kind', ['thread', 'process'])
def test_truncated_image_is_named_through_the_prefetcher(tmp_path, kind):
    samples = _dataset(tmp_path, 4)
    data = open(samples[2].image, 'rb').read()
    with open(samples[2].image, 'wb') as f:   # a copy cut short, as after an interrupted download
        f.write(data[:len(data) // 2])
    it = _iter(samples, batch_images=1, prefetch_threads=2, prefetcher_type=kind, sampler='sequential')
    try:
        it.reset()
        with pytest.raises(DataError, match='cannot read image .*000002_000019_leftImg8bit.png'):
            for _ in it:
                pass
    finally:
        it.close()


def test_mine_port_is_the_chance_of_mining(tmp_path):
    samples = _centred_rare_dataset(tmp_path)
    it = _iter(samples, mine_port=0.3, mine_id=[18])
    mined = [it.reader.make(k % 4, 2000 + k)[2].mined for k in range(300)]
    # binomial(300, 0.3): sd 0.026; 4 sd
    assert abs(np.mean(mined) - 0.3) < 0.11


# -- the spec's formulas, observed in what the iterator outputs ------------------------------
#
# The labels of the samples below encode positions (the row index in one file, the column
# index in another; identity label table), so each output label cell tells which image pixel
# it came from. The crop's offset on the image and the flip are read from them, never from
# the iterator's own Geometry; expectations come from docs/behaviour.md section 5.

def _pil_nearest(out, crop):
    """Source index PIL's nearest-neighbour resize crop -> T reads for output index ``out``."""
    return np.floor((np.asarray(out) + 0.5) * crop / float(T)).astype(int)


def _coded_samples(tmp_path, h, w, domain=SOURCE, tag='a'):
    """Three samples of one random h x w image: labels = row index, column index, and the image's own."""
    assert max(h, w) < 255
    rng = np.random.RandomState(h * 1000 + w)
    image = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w].astype(np.uint8)
    out = []
    for kind, label in (('rows', yy), ('cols', xx)):
        img_path, lab_path = str(tmp_path / ('%s_img.png' % tag)), str(tmp_path / ('%s_%s.png' % (tag, kind)))
        Image.fromarray(image).save(img_path)
        Image.fromarray(np.ascontiguousarray(label)).save(lab_path)
        out.append(Sample(img_path, lab_path, domain))
    return out, image


def _identity_labels(reader):
    """Let a reader built for a real dataset pass position codes through unchanged."""
    l2t = np.arange(256, dtype=np.uint8)
    reader.label2train = (l2t, l2t)
    return reader


def _observe(reader, rows_index, cols_index, seed, crop, h, w):
    """``(dy, dx, flip)`` of one draw, read from the output labels: the crop's top-left corner
    on the image (canvas corner minus the canvas offset) and whether it was mirrored.

    ``crop`` is the spec's crop size for the sample's domain: the cells must fit it exactly
    (a crop of another size puts them at other spacings), else this fails.
    """
    n = T // S
    p = _pil_nearest(np.arange(S // 2, T, S), crop)
    rows = reader.make(rows_index, seed)[1].reshape(n, n)
    cols = reader.make(cols_index, seed)[1].reshape(n, n)
    inside = rows != 255
    assert inside.any(), 'no output cell on the image'
    dys = set((rows - p[:, None])[inside].astype(int).tolist())
    assert len(dys) == 1, ('cells do not fit crop %d: rows %s' % (crop, rows))
    fits = {}
    for flip, q in ((False, p), (True, p[::-1])):
        dxs = set((cols - q[None, :])[cols != 255].astype(int).tolist())
        if len(dxs) == 1:
            fits[flip] = dxs.pop()
    assert len(fits) == 1, ('columns fit %s for crop %d: %s' % (sorted(fits), crop, cols))
    (flip, dx), = fits.items()
    dy = dys.pop()
    # Cells off the image are exactly those the offsets put off it.
    ys, xs = dy + p, dx + (p[::-1] if flip else p)
    np.testing.assert_array_equal(inside, ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None])
    return dy, dx, flip


def _spec_geometry(h, w, max_side, origin, rate_lo):
    """Spec 5.2-5.4 with lo = hi: rate, crop, canvas offset d0 and the number of corner rows/columns."""
    target_size = int(rate_lo * origin)
    rate = target_size / float(max_side)
    crop = int(T / rate)
    ls = S / rate
    d0 = max(1, int(ls // 2))
    ny = int(max(1, ls, d0 + h - crop + 1))
    nx = int(max(1, ls, d0 + w - crop + 1))
    return crop, d0, ny, nx


@pytest.mark.parametrize('h,w,rate_lo,want', [
    # ls = 11.6: d0 = 5; rows limited by ls (11 corners), columns by the image (24 corners)
    (48, 64, 0.7, (46, 5, 11, 24)),
    # ls = 1.6: d0 = max(1, 0) = 1; crop 6 (upscaled)
    (12, 16, 5.0, (6, 1, 8, 12)),
    # ls = 3.2: d0 = 1, crop 12
    (20, 24, 2.5, (12, 1, 10, 14)),
    # a square image at ls = 11.6: rows and columns both limited by ls (11 corners each)
    (48, 48, 0.7, (46, 5, 11, 11)),
])
def test_canvas_offset_and_corner_range_follow_the_spec(tmp_path, h, w, rate_lo, want):
    # The hand-worked values of the spec's formulas (origin = the longer side of max_shape).
    assert _spec_geometry(h, w, w, w, rate_lo) == want
    crop, d0, ny, nx = want
    samples, _ = _coded_samples(tmp_path, h, w)
    reader = _identity_reader(samples, (rate_lo, rate_lo), max_shape=(h, w))
    draws = [_observe(reader, 0, 1, 7000 + k, crop, h, w) for k in range(500)]
    dy = np.array([d[0] for d in draws])
    dx = np.array([d[1] for d in draws])
    # The corner is uniform over [0, ny) x [0, nx) on a canvas whose image starts at d0:
    # every corner occurs, none outside, at uniform frequencies (chi-square, 1e-4 level).
    from scipy.stats import chi2
    for got, n in ((dy, ny), (dx, nx)):
        assert sorted(set(got.tolist())) == list(range(-d0, n - d0))
        counts = np.bincount(got + d0, minlength=n)
        expected = len(got) / float(n)
        assert ((counts - expected) ** 2 / expected).sum() < chi2.ppf(1 - 1e-4, n - 1)


def test_flip_probability_is_one_half(tmp_path):
    samples, _ = _coded_samples(tmp_path, 48, 64)
    reader = _identity_reader(samples, (0.7, 0.7), max_shape=(48, 64))
    flips = [_observe(reader, 0, 1, 100 + k, 46, 48, 64)[2] for k in range(400)]
    # binomial(400, 1/2): sd 0.025; a rate of 1/4 or 3/4 is 10 sd away.
    assert abs(np.mean(flips) - 0.5) < 0.1


def test_crops_are_resized_with_pil_lanczos_down_and_bicubic_up(tmp_path):
    """Spec 5.5 through the real crop: shrink -> PIL's LANCZOS, grow -> PIL's BICUBIC (not the
    project's resize helper). Only draws whose crop lies on the image are compared, so the
    padding (another helper's concern) cannot enter."""
    h, w = 120, 120
    samples, image = _coded_samples(tmp_path, h, w)
    for rate, method, other in ((0.5, Image.LANCZOS, Image.BICUBIC), (2.0, Image.BICUBIC, Image.LANCZOS)):
        crop = int(T / rate)
        reader = _identity_reader(samples, (rate, rate), max_shape=(h, w))
        checked = 0
        for seed in range(40):
            dy, dx, flip = _observe(reader, 0, 1, seed, crop, h, w)
            if not (0 <= dy and dy + crop <= h and 0 <= dx and dx + crop <= w):
                continue
            data = reader.make(0, seed)[0]
            if flip:
                data = data[:, :, ::-1]
            patch = Image.fromarray(image[dy:dy + crop, dx:dx + crop])
            want = np.asarray(patch.resize((T, T), method), np.float64)
            got = (data.transpose(1, 2, 0) * STD_RGB + MEAN_RGB) * 255
            np.testing.assert_allclose(got, want, atol=1e-3, err_msg='rate %s seed %d' % (rate, seed))
            # The other filter gives other pixels: the check can fail.
            wrong = np.asarray(patch.resize((T, T), other), np.float64)
            assert np.abs(got - wrong).max() > 5
            checked += 1
        assert checked >= 10, rate


@pytest.mark.parametrize('source,target,origins,crops', [
    # GTA-5 as a self-training source is scaled against 1024 x 2048 (not its 1052 x 1914):
    # rate 1024 / 2048 -> crop 64; Cityscapes: 2048 / 2048 -> crop 32.
    ('gta', 'cityscapes', (1024, 2048), (64, 32)),
    # SYNTHIA: 1280 / 1280 -> crop 32; Cityscapes (16 classes): 1024 / 2048 -> crop 64.
    # The target's own origin and max shape matter: the source's would give 40 or 51.
    ('synthia', 'cityscapes16', (1280, 1024), (32, 64)),
])
def test_self_training_scales_each_domain_by_its_own_origin_and_max_shape(tmp_path, source, target, origins,
                                                                         crops):
    h, w = 96, 112
    src, _ = _coded_samples(tmp_path, h, w, SOURCE, 's')
    tgt, _ = _coded_samples(tmp_path, h, w, TARGET, 't')
    it = FileIter(source, dataset_tgt=target, samples=src + tgt, batch_images=1, crop_size=T, feat_stride=S,
                  origin_size=origins[0], origin_size_tgt=origins[1], scale_rate_range=(1.0, 1.0), seed=0)
    reader = _identity_labels(it.reader)
    for (rows, cols), crop in (((0, 1), crops[0]), ((2, 3), crops[1])):
        for seed in range(8):
            _observe(reader, rows, cols, seed, crop, h, w)   # fails unless the cells fit this crop
    it.close()


def test_mining_picks_one_of_several_candidate_classes_uniformly(tmp_path):
    """Spec 5.4: a candidate class is drawn uniformly (not by area, not the first listed),
    then one of its pixels."""
    h, w = 48, 64
    label = np.full((h, w), 7, np.uint8)                  # road
    label[16:32, 20:44] = 26                              # car: 384 pixels
    label[20:24, 48:52] = 24                              # person: 16 pixels
    label[22:24, 10:12] = 33                              # bicycle: 4 pixels
    rel = write_cityscapes(str(tmp_path), 'train', 'ulm', '000000_000019', np.full((h, w, 3), 90, np.uint8), label)
    sample = Sample(str(tmp_path / rel[0]), str(tmp_path / rel[1]), SOURCE)
    car, person, bicycle = 13, 11, 18
    it = FileIter('cityscapes', samples=[sample], batch_images=1, crop_size=16, feat_stride=S,
                  origin_size=w, scale_rate_range=(1.0, 1.0), seed=0,
                  meta=dict(max_shape_src=(h, w), mine_port=1.0, mine_id=[bicycle, car, person]))
    train = it.reader.load(sample)[1]
    centres = []
    for seed in range(300):
        g = it.reader.make(0, seed)[2]
        assert g.mined
        centres.append(int(train[g.y0 + g.crop // 2 - g.d0, g.x0 + g.crop // 2 - g.d0]))
    share = {c: np.mean(np.array(centres) == c) for c in (car, person, bicycle)}
    # 1/3 each (sd 0.027 at 300 draws); by area the bicycle would get 1%, first-listed 100%.
    assert all(abs(s - 1 / 3.) < 0.1 for s in share.values()), share
    it.close()



@pytest.mark.parametrize('row,col,mined', [
    # crop 32 at rate 1 on a 64 x 64 image: half 16; the reference's region of centres is image
    # rows/columns [half, h - half - 1) = [16, 47)
    ((16, 30), (30, 16), True), ((46, 30), (30, 46), True),
    ((15, 30), (30, 15), False), ((47, 30), (30, 47), False),
])
def test_mining_region_is_where_a_centred_crop_stays_inside(tmp_path, row, col, mined):
    """Spec 5.4: only pixels where a centred crop keeps inside the image are centres; a single-pixel
    class there is the centre itself; one outside gives a uniform crop, not marked as mined."""
    h = w = 64
    for k, (y, x) in enumerate((row, col)):
        label = np.full((h, w), 7, np.uint8)
        label[y, x] = 33                                   # one bicycle pixel
        rel = write_cityscapes(str(tmp_path), 'train', 'ulm', '%06d_000019' % k, np.zeros((h, w, 3), np.uint8),
                               label)
        it = FileIter('cityscapes', samples=[Sample(str(tmp_path / rel[0]), str(tmp_path / rel[1]), SOURCE)],
                      batch_images=1, crop_size=T, feat_stride=S, origin_size=w, scale_rate_range=(1.0, 1.0),
                      meta=dict(max_shape_src=(h, w), mine_port=1.0, mine_id=[18]))
        for seed in range(5):
            g = it.reader.make(0, seed)[2]
            assert g.crop == T and g.mined == mined, (y, x, seed)
            if mined:
                assert (g.y0 + T // 2 - g.d0, g.x0 + T // 2 - g.d0) == (y, x)
        it.close()


def test_epochs_draw_a_fresh_crop_per_sample_and_sequential_keeps_list_order(tmp_path):
    samples, _ = _coded_samples(tmp_path, 48, 64)           # a random image
    it = _iter(samples[:1] * 120, batch_images=10, scale_rate_range=(0.7, 1.3))
    _identity_labels(it.reader)
    it.reset()
    crops = {b.data[0].asnumpy()[i].tobytes() for b in it for i in range(10)}
    assert len(crops) > 100                                # each sample has its own random draw
    it.close()
    it = _iter(_dataset(tmp_path, 7), batch_images=2, sampler='sequential')
    it.reset()
    assert it.epoch_indices() == [0, 1, 2, 3, 4, 5]
    it.close()


def test_meta_max_shape_and_the_default_origin_set_the_scale(tmp_path):
    """``meta['max_shape_src']`` replaces the registry's max shape, the origin size defaults to
    its longer side and the scale range to (1, 1): rate = int(1.0 * 64) / 64 = 1, crop = T.
    Without ``mine_port`` nothing is mined."""
    samples, _ = _coded_samples(tmp_path, 48, 64)
    it = FileIter('cityscapes', samples=samples, batch_images=1, crop_size=T, feat_stride=S,
                  meta=dict(max_shape_src=(48, 64), mine_id=list(range(40))))
    reader = _identity_labels(it.reader)
    for seed in range(5):
        _observe(reader, 0, 1, seed, T, 48, 64)
        assert not reader.make(0, seed)[2].mined
    it.close()


@pytest.mark.parametrize('kw,message', [
    (dict(crop_size=0), '^--crop-size must be positive$'),
    (dict(label_steps=2), '^only label_steps=1, crops_per_image=1 and labelled samples are supported'),
    (dict(crops_per_image=2), '^only label_steps=1, crops_per_image=1 and labelled samples are supported'),
    (dict(has_gt=False), '^only label_steps=1, crops_per_image=1 and labelled samples are supported'),
    (dict(transformer=object()), '^custom transformers are not supported; the reference pipeline is built in$'),
    (dict(label_stride=4), '^label_stride must equal feat_stride$'),
    (dict(samples=[]), '^no training samples \\(empty source selection and target list\\)$'),
    (dict(prefetcher_type='fork'), "^--prefetcher is thread or process, not 'fork'$"),
])
def test_unsupported_iterator_arguments_are_named(tmp_path, kw, message):
    args = dict(samples=_dataset(tmp_path, 1), batch_images=1, crop_size=T)
    args.update(kw)
    with pytest.raises((ValueError, DataError), match=message):
        FileIter('cityscapes', **args)


def test_a_crop_past_the_canvas_equals_one_from_a_larger_canvas(tmp_path):
    """When the crop reaches past the canvas (an image larger than max_shape, with the per-image
    rate of source training), the canvas is extended in kind: the sample equals the one drawn
    with a max_shape whose canvas is large enough."""
    samples, _ = _coded_samples(tmp_path, 20, 20)
    l2t = np.arange(256, dtype=np.uint8)

    def reader(max_shape):
        return SampleReader(samples, (l2t, l2t), (max_shape, max_shape), (16, 16), T, S, (1.0, 1.0),
                            rate_from_image=True)

    small, large = reader((10, 10)), reader((20, 20))
    extended = 0
    for seed in range(30):
        for index in (0, 1):
            a, b = small.make(index, seed), large.make(index, seed)
            assert a[2] == b[2] and a[2].crop == 40           # rate 16 / 20, crop int(32 / 0.8)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
        g = a[2]
        # small's canvas side: max(max_crop 20, 20, 20) + d1 5 + d0 5 = 30
        extended += max(g.y0, g.x0) + g.crop > 30
    assert extended >= 10
