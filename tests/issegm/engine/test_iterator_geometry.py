"""Training iterator geometry (docs/behaviour.md section 5): scale rates, canvas and crop corners,
resize filters, flips, padding, and the data and label values a crop holds.

Tiny synthetic images in the real Cityscapes layout; builders shared with the other
``test_iterator_*`` modules are fixtures of this folder's conftest.py.
"""
import numpy as np
import pytest
from PIL import Image
from scipy.stats import chi2

from issegm.benchmark.layouts import write_cityscapes
from issegm.engine.iterator import SOURCE, TARGET, Sample, SampleReader
from util.image import MEAN_RGB, STD_RGB, normalize, resize

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


# The reference fills a float canvas with the mean (0.485, 0.456, 0.406) * 255
# and crops it with astype(np.uint8): padding is the truncated mean.
PAD_RGB = np.array([123, 116, 103])
PAD_VALUE = (PAD_RGB / 255. - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])


# -- labels and data against the drawn Geometry ------------------------------------------

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


def _expected_labels(label, g, crop_offset=(0, 0), flip=None):
    """Labels the iterator must output for Geometry ``g``: the canvas crop, resized with
    util.image.resize(nearest) to T x T, kept at the stride centres, flipped if ``g.flip``."""
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


def test_data_is_the_resized_canvas_crop_at_any_scale(tmp_path):
    """Every pixel equals normalize(resize(canvas crop)) with the reference filter rule."""
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


def test_a_crop_past_the_canvas_equals_one_from_a_larger_canvas(coded_samples):
    """When the crop reaches past the canvas (an image larger than max_shape, with the per-image
    rate of source training), the canvas is extended in kind: the sample equals the one drawn
    with a max_shape whose canvas is large enough."""
    samples, _ = coded_samples(20, 20)
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


def test_target_pseudo_labels_map_id0_to_ignore(tmp_path, make_iter):
    label = np.zeros((H, W), np.uint8)
    label[:, W // 2:] = 26   # car
    rel = write_cityscapes(str(tmp_path), 'train', 'bonn', '000000_000019', np.zeros((H, W, 3), np.uint8), label)
    sample = Sample(str(tmp_path / rel[0]), str(tmp_path / rel[1]), TARGET)
    it = make_iter([sample], dataset='gta', dataset_tgt='cityscapes', batch_images=1)
    values = set()
    for seed in range(10):
        values |= set(it.reader.make(0, seed)[1].tolist())
    assert values <= {255., 13.} and 13. in values


# -- scale rates -------------------------------------------------------------------------

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


def test_source_training_draws_each_image_rate_from_its_own_size(tmp_path, file_iter):
    # Reference data_src.py: rate = target_size / max(h, w) of the image; target_size an
    # integer in [int(0.7 * origin), int(1.3 * origin)]. GTA-5's max shape (1052 x 1914) plays no part.
    sizes = [(48, 96), (40, 64), (72, 56)]
    it = file_iter('gta', samples=_sized_samples(tmp_path, sizes), batch_images=1, crop_size=T, feat_stride=S,
                   origin_size=96, scale_rate_range=(0.7, 1.3), seed=0)
    t = _drawn_target_sizes(it, sizes, max)
    np.testing.assert_allclose(t, np.round(t), atol=1e-9)
    assert t.min() >= int(0.7 * 96) and t.max() <= int(1.3 * 96) and len(set(np.round(t))) > 5


def test_self_training_draws_rates_from_the_max_shape(tmp_path, file_iter):
    # Reference data.py: rate = target_size / max(max_shape); GTA-5 as source pinned to 1024 x 2048.
    sizes = [(48, 96), (40, 64)]
    samples = _sized_samples(tmp_path, sizes) + _sized_samples(tmp_path / 't', sizes, TARGET)
    it = file_iter('gta', dataset_tgt='cityscapes', samples=samples, batch_images=1, crop_size=T,
                   feat_stride=S, origin_size=1914, origin_size_tgt=2048, scale_rate_range=(0.7, 1.3), seed=0)
    t = _drawn_target_sizes(it, sizes * 2, lambda hw: 2048)
    np.testing.assert_allclose(t, np.round(t), atol=1e-6)
    src, tgt = t.reshape(8, 4)[:, :2], t.reshape(8, 4)[:, 2:]
    assert src.min() >= int(0.7 * 1914) and src.max() <= int(1.3 * 1914)
    assert tgt.min() >= int(0.7 * 2048) and tgt.max() <= int(1.3 * 2048)


# -- the spec's formulas, observed in what the iterator outputs ------------------------------
#
# The labels of the samples below encode positions (the row index in one file, the column
# index in another; identity label table), so each output label cell tells which image pixel
# it came from. The crop's offset on the image and the flip are read from them, never from
# the iterator's own Geometry; expectations come from docs/behaviour.md section 5.

def _observe(reader, rows_index, cols_index, seed, crop, h, w):
    """``(dy, dx, flip)`` of one draw, read from the output labels: the crop's top-left corner
    on the image (canvas corner minus the canvas offset) and whether it was mirrored.

    ``crop`` is the spec's crop size for the sample's domain: the cells must fit it exactly
    (a crop of another size puts them at other spacings), else this fails.
    """
    n = T // S
    p = _src_index(np.arange(S // 2, T, S), crop)
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
def test_canvas_offset_and_corner_range_follow_the_spec(coded_samples, h, w, rate_lo, want):
    # The hand-worked values of the spec's formulas (origin = the longer side of max_shape).
    assert _spec_geometry(h, w, w, w, rate_lo) == want
    crop, d0, ny, nx = want
    samples, _ = coded_samples(h, w)
    reader = _identity_reader(samples, (rate_lo, rate_lo), max_shape=(h, w))
    draws = [_observe(reader, 0, 1, 7000 + k, crop, h, w) for k in range(500)]
    dy = np.array([d[0] for d in draws])
    dx = np.array([d[1] for d in draws])
    # The corner is uniform over [0, ny) x [0, nx) on a canvas whose image starts at d0:
    # every corner occurs, none outside, at uniform frequencies (chi-square, 1e-4 level).
    for got, n in ((dy, ny), (dx, nx)):
        assert sorted(set(got.tolist())) == list(range(-d0, n - d0))
        counts = np.bincount(got + d0, minlength=n)
        expected = len(got) / float(n)
        assert ((counts - expected) ** 2 / expected).sum() < chi2.ppf(1 - 1e-4, n - 1)


def test_flip_probability_is_one_half(coded_samples):
    samples, _ = coded_samples(48, 64)
    reader = _identity_reader(samples, (0.7, 0.7), max_shape=(48, 64))
    flips = [_observe(reader, 0, 1, 100 + k, 46, 48, 64)[2] for k in range(400)]
    # binomial(400, 1/2): sd 0.025; a rate of 1/4 or 3/4 is 10 sd away.
    assert abs(np.mean(flips) - 0.5) < 0.1


def test_crops_are_resized_with_pil_lanczos_down_and_bicubic_up(coded_samples):
    """Spec 5.5 through the real crop: shrink -> PIL's LANCZOS, grow -> PIL's BICUBIC (not the
    project's resize helper). Only draws whose crop lies on the image are compared, so the
    padding (another helper's concern) cannot enter."""
    h, w = 120, 120
    samples, image = coded_samples(h, w)
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
def test_self_training_scales_each_domain_by_its_own_origin_and_max_shape(
        coded_samples, identity_labels, file_iter, source, target, origins, crops):
    h, w = 96, 112
    src, _ = coded_samples(h, w, SOURCE, 's')
    tgt, _ = coded_samples(h, w, TARGET, 't')
    it = file_iter(source, dataset_tgt=target, samples=src + tgt, batch_images=1, crop_size=T, feat_stride=S,
                   origin_size=origins[0], origin_size_tgt=origins[1], scale_rate_range=(1.0, 1.0), seed=0)
    reader = identity_labels(it.reader)
    for (rows, cols), crop in (((0, 1), crops[0]), ((2, 3), crops[1])):
        for seed in range(8):
            _observe(reader, rows, cols, seed, crop, h, w)   # fails unless the cells fit this crop


def test_meta_max_shape_and_the_default_origin_set_the_scale(coded_samples, identity_labels, file_iter):
    """``meta['max_shape_src']`` replaces the registry's max shape, the origin size defaults to
    its longer side and the scale range to (1, 1): rate = int(1.0 * 64) / 64 = 1, crop = T.
    Without ``mine_port`` nothing is mined."""
    samples, _ = coded_samples(48, 64)
    it = file_iter('cityscapes', samples=samples, batch_images=1, crop_size=T, feat_stride=S,
                   meta=dict(max_shape_src=(48, 64), mine_id=list(range(40))))
    reader = identity_labels(it.reader)
    for seed in range(5):
        _observe(reader, 0, 1, seed, T, 48, 64)
        assert not reader.make(0, seed)[2].mined
