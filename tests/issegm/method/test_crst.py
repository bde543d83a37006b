"""CRST (issegm/method/crst.py) against independent numpy transcriptions of the issue's formulas."""
import os

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from issegm.engine import objective
from issegm.method import crst
from issegm.phases import cli

C = 4


# ---------------------------------------------------------------------------- the loss, in numpy (float64)
def reference_loss(logits, target, is_source, kld=0., ent=0., l2=0., src=0.):
    """ce / N + sum_X w_X * sum(s_X r_X over labelled pixels) / N_X, as written in issue 13."""
    x = logits.astype(np.float64)
    x = x - x.max(axis=1, keepdims=True)
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    if target.ndim == 4:
        y = target.astype(np.float64)
        valid = y.sum(axis=1) != 0
    else:
        valid = target != 255
        y = np.zeros(x.shape)
        for k in range(x.shape[1]):
            y[:, k] = (target == k) & valid
    loss = -(y * logp).sum() / max(valid.sum(), 1)
    c = x.shape[1]
    for w, r in ((kld, -logp.sum(axis=1) / c), (ent, (p * logp).sum(axis=1)), (l2, (p * p).sum(axis=1))):
        if w <= 0:
            continue
        s = np.where(np.asarray(is_source), src, w)[:, None, None] * np.ones_like(r)
        n_x = ((s != 0) & valid).sum()
        if n_x:
            loss += w * (s * r * valid).sum() / n_x
    return loss


def finite_differences(f, x, eps=1e-4):
    x = x.astype(np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        down = f(x)
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


def batch(soft, seed=0):
    rng = np.random.RandomState(seed)
    logits = (2 * rng.randn(3, C, 3, 2)).astype(np.float32)
    if soft:
        target = rng.rand(3, C, 3, 2).astype(np.float32) ** 3
        target /= target.sum(axis=1, keepdims=True)
        target[0, :, 0, 0] = 0   # unlabelled pixels: all-zero vectors
        target[2, :, 1] = 0
    else:
        target = rng.randint(0, C, (3, 3, 2))
        target[0, 0, 0] = 255
        target[2, 1] = 255
    return logits, target, np.array([True, False, False])


WEIGHTS = [dict(), dict(kld=0.1), dict(ent=0.2), dict(l2=0.3), dict(kld=0.1, src=0.5), dict(ent=0.2, src=2.),
           dict(l2=0.3, src=0.7), dict(kld=0.1, ent=0.2, l2=0.3, src=0.5)]


@pytest.mark.parametrize('soft', [False, True], ids=['hard', 'soft'])
@pytest.mark.parametrize('w', WEIGHTS, ids=lambda w: '-'.join('%s%g' % kv for kv in sorted(w.items())) or 'none')
def test_loss_and_grad_match_numpy_and_finite_differences(soft, w):
    logits, target, is_source = batch(soft)
    loss, grad = crst.loss_and_grad(logits, target, is_source, mr_weight_kld=w.get('kld', 0.),
                                    mr_weight_ent=w.get('ent', 0.), mr_weight_l2=w.get('l2', 0.),
                                    mr_weight_src=w.get('src', 0.))
    expected = reference_loss(logits, target, is_source, **w)
    assert loss == pytest.approx(expected, rel=1e-5)
    numeric = finite_differences(lambda x: reference_loss(x, target, is_source, **w), logits)
    assert grad.shape == logits.shape and grad.dtype == np.float32
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=2e-5)
    assert np.abs(grad).max() > 1e-3


def test_target_weight_counts_twice_as_in_crst_release():
    # Target samples only, every pixel labelled: the MRKLD term is w * w * mean(-sum log p / C).
    rng = np.random.RandomState(1)
    logits = rng.randn(2, C, 2, 3).astype(np.float32)
    target = rng.randint(0, C, (2, 2, 3))
    plain, _ = crst.loss_and_grad(logits, target, [False, False])
    regularised, _ = crst.loss_and_grad(logits, target, [False, False], mr_weight_kld=0.1)
    x = logits.astype(np.float64)
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    assert regularised - plain == pytest.approx(0.1 * 0.1 * (-logp.sum(axis=1) / C).mean(), rel=1e-4)


def test_term_dropped_when_no_sample_is_regularised():
    logits, target, _ = batch(False)
    source_only = np.array([True, True, True])
    plain, g0 = crst.loss_and_grad(logits, target, source_only)
    loss, g1 = crst.loss_and_grad(logits, target, source_only, mr_weight_kld=0.5, mr_weight_ent=0.5)
    assert loss == plain and np.array_equal(g0, g1)
    # nothing labelled at all: 0, not NaN
    loss, grad = crst.loss_and_grad(logits, np.full(target.shape, 255), source_only, mr_weight_kld=0.5)
    assert loss == 0 and not grad.any()


def test_zero_weights_hard_labels_give_the_softmax_output_gradient():
    # CBST's head: SoftmaxOutput(use_ignore, normalization='valid') -> (p - onehot) / valid pixels.
    logits, target, is_source = batch(False, seed=3)
    _, grad = crst.loss_and_grad(logits, target, is_source)
    sym = mx.sym.SoftmaxOutput(mx.sym.var('x'), mx.sym.var('y'), multi_output=True, use_ignore=True,
                               ignore_label=255, normalization='valid')
    g = mx.nd.zeros(logits.shape)
    exe = sym.bind(mx.cpu(), {'x': mx.nd.array(logits), 'y': mx.nd.array(target.reshape(3, -1))},
                   args_grad={'x': g}, grad_req={'x': 'write', 'y': 'null'})
    exe.forward(is_train=True)
    exe.backward()
    np.testing.assert_allclose(grad, g.asnumpy(), atol=1e-6)


def test_loss_and_grad_rejects_a_target_that_does_not_fit():
    logits, target, is_source = batch(False)
    with pytest.raises(ValueError, match='does not fit'):
        crst.loss_and_grad(logits, target[:, :2], is_source)


# ---------------------------------------------------------------------------- soft pseudo-labels
def reference_lrent(probs, thresh, alpha):
    """CRST's label_selection (cb, lr_weight_ent > 0) transcribed on a (C, H, W) map."""
    p = probs.transpose(1, 2, 0)
    soft = np.power(p / thresh, 1.0 / alpha)
    soft = (soft.transpose(2, 0, 1) / soft.sum(2)).transpose(1, 2, 0).astype(np.float32)
    hard = np.argmax(soft, axis=2).astype(np.uint8)
    reg = np.sum(-soft * np.log(p + 1e-32) + alpha * soft * np.log(soft + 1e-32), axis=2)
    sel = np.sum(-soft * np.log(thresh + 1e-32), axis=2)
    hard[reg >= sel] = 255
    return soft.transpose(2, 0, 1), hard


def probability_map(shape, seed):
    rng = np.random.RandomState(seed)
    logits = 3 * rng.randn(*shape)
    p = np.exp(logits - logits.max(axis=0))
    return (p / p.sum(axis=0)).astype(np.float32)


@pytest.mark.parametrize('alpha', [0.1, 0.25, 0.5, 1.0, 2.0])
def test_soft_pseudo_labels_match_crst_formula(alpha):
    probs = probability_map((19, 30, 40), seed=int(alpha * 100))
    probs[:, :10] = 0.5 * probs[:, :10] + 0.5 / 19  # flatter, as from a network still unsure
    thresh = np.random.RandomState(7).uniform(0.05, 0.95, 19)
    soft, hard = crst.soft_pseudo_labels(probs, thresh, alpha)
    ref_soft, ref_hard = reference_lrent(probs, thresh, alpha)
    assert soft.dtype == np.float32 and soft.shape == probs.shape and hard.dtype == np.uint8
    np.testing.assert_allclose(soft, ref_soft, rtol=2e-6, atol=1e-7)
    assert np.array_equal(hard, ref_hard)
    # With alpha >= 1 and thresholds <= 1 the selection keeps every pixel (sum_k p_k / lambda_k >= 1).
    assert (hard != 255).any() and (hard == 255).any() == (alpha < 1)
    label, rw = crst.lrent_pseudo_label(probs, thresh, alpha, return_argmax=True)
    assert np.array_equal(label, hard) and np.array_equal(rw, soft.argmax(axis=0))
    with pytest.raises(ValueError, match='thresholds of shape'):
        crst.soft_pseudo_labels(probs, thresh[:5], alpha)


def test_soft_pseudo_labels_small_alpha_and_empty_pixels():
    probs = probability_map((4, 5, 6), seed=1)
    probs[:, 0, 0] = 0  # e.g. a spatial prior of zero for every class
    probs[2, 1, 1] = -1e-3  # bicubic overshoot: counts as 0
    thresh = np.array([0.01, 0.5, 0.9, 0.2])
    with np.errstate(over='ignore', invalid='ignore'):
        assert not np.isfinite(reference_lrent(probs, thresh, 1e-3)[0]).all()  # CRST's formula overflows
    soft, hard = crst.soft_pseudo_labels(probs, thresh, 1e-3)
    assert np.isfinite(soft).all() and not soft[:, 0, 0].any() and hard[0, 0] == 255
    np.testing.assert_allclose(soft.sum(axis=0)[1:], 1, rtol=1e-6)
    assert soft[2, 1, 1] == 0 and soft[:, 1, 1].sum() == pytest.approx(1, rel=1e-6)
    # a vanishing alpha is the one-hot of argmax p / lambda
    assert np.array_equal(soft.argmax(axis=0)[1:], (probs / thresh[:, None, None]).argmax(axis=0)[1:])


def test_soft_labels_of_a_window_are_the_window_of_the_soft_labels():
    probs = probability_map((6, 20, 24), seed=2)
    thresh = np.linspace(0.3, 0.9, 6)
    full = crst.soft_pseudo_labels(probs, thresh, 0.3)[0]
    for rows, cols in ((slice(3, 11), slice(5, 24)), (slice(0, 1), slice(7, 8)), (slice(12, 20), slice(0, 13))):
        part = crst.soft_pseudo_labels(probs[:, rows, cols], thresh, 0.3)[0]
        assert np.array_equal(part, full[:, rows, cols])


# ---------------------------------------------------------------------------- soft labels in the iterator
H, W, T, S = 40, 56, 32, 8
# Two roundings separate the iterator's targets from those cut from a stored map with PIL's resize
# (pil_targets): the store upsamples each window alone (the whole map's float64 terms summed in another
# order: a float32 probability moves by one unit in the last place, 2**-24 relative, at most and rarely;
# x2 through yhat ~ p^(1/alpha) at alpha 0.5), and the crop's resize runs in float64 where PIL rounds each
# of its two passes to float32 (Lanczos weights: absolute sum below 1.3). On values <= 1 both stay below
# 1e-6. The hard labels they imply (argmax, all-zero vectors) must agree exactly.
TOL = 1e-6


def matrix_probmap(low, orig_hw, prior=None):
    """The reference full-resolution map of the matrix path: A_h . X . A_w^T in float64, rounded to float32."""
    from issegm.engine.postprocess import upsample_matrices
    a_h, a_w = upsample_matrices(low.probs.shape[1:], low.stride, low.im_hw, tuple(orig_hw))
    full = np.einsum('ij,cjk,lk->cil', a_h, low.probs.astype(np.float64), a_w).astype(np.float32)
    return full if prior is None else (prior * full).astype(np.float32)


def write_round(root, names, with_prior, alpha=0.5):
    """A pseudo-label round as the val phase leaves it for LRENT: low-res maps, recipe, pseudo-labels.

    The pseudo-labels come from PIL's upsampling (the host path of pass 2); each sample carries its
    low-resolution map and the prior, for the reference maps.
    """
    from issegm.storage.datasets import get_dataset
    from issegm.storage.probmaps import LowRes
    from issegm.storage.probmaps import save_lowres
    from issegm.engine.postprocess import lowres_to_probmap
    info = get_dataset('cityscapes')
    rng = np.random.RandomState(0)
    round_dir = os.path.join(root, 'out', '0')
    prior = None
    if with_prior:
        import scipy.io
        prior = (0.2 + rng.rand(19, H, W)).astype(np.float32)
        os.makedirs(os.path.join(root, 'spatial_prior', 'gta'))
        scipy.io.savemat(os.path.join(root, 'spatial_prior', 'gta', 'prior_array.mat'), {'prior_array': prior})
    thresh = rng.uniform(0.05, 0.3, 19)
    samples = []
    for name in names:
        image = rng.randint(0, 256, (H, W, 3)).astype(np.uint8)
        image_path = os.path.join(root, 'img', name + '.png')
        os.makedirs(os.path.dirname(image_path), exist_ok=True)
        Image.fromarray(image).save(image_path)
        im_hw = (30, 42)  # tested at 42 px: both upsampling steps of the val phase
        low = LowRes(probability_map((19, 4, 6), seed=len(samples) + 5), im_hw, S)
        save_lowres(os.path.join(round_dir, 'probmap', name + '.npz'), low, (H, W))
        hard = crst.soft_pseudo_labels(lowres_to_probmap(low, (H, W), prior), thresh, alpha)[1]
        label_path = os.path.join(round_dir, 'self_train', 'pseudo_labelIds', name + '.png')
        os.makedirs(os.path.dirname(label_path), exist_ok=True)
        Image.fromarray(info.train2label[hard]).save(label_path)
        samples.append((image_path, label_path, low, prior))
    objective.SoftLabelStore.save_recipe(round_dir, os.path.join(round_dir, 'probmap'), thresh, alpha, S,
                                    prior_dataset='gta' if with_prior else None)
    return round_dir, thresh, samples


def pil_targets(window, label, flip):
    """A crop window's targets with PIL's resize of every class map, written out step by step."""
    from util.image import resize
    out = np.stack([resize(m, (T, T))[S // 2::S, S // 2::S] for m in window])
    out = np.clip(out, 0, None)
    out = out / np.where(out.sum(0) > 0, out.sum(0), 1)
    if flip:
        out = out[:, :, ::-1]
    return (out.reshape(out.shape[0], -1) * (label != 255)).astype(np.float32)


def crop_from_stored_map(stored, geometry, label):
    """The crop's targets cut from a stored full-resolution soft map on the canvas."""
    g = geometry
    h, w = stored.shape[1:]
    side = max(g.y0, g.x0) + g.crop + g.d0 + h + w
    canvas = np.zeros((stored.shape[0], side, side), np.float32)
    canvas[:, g.d0:g.d0 + h, g.d0:g.d0 + w] = stored
    return pil_targets(canvas[:, g.y0:g.y0 + g.crop, g.x0:g.x0 + g.crop], label, g.flip)


def assert_same_targets(got, expected, context):
    """Values to TOL; the hard labels they imply (argmax of labelled pixels, all-zero vectors) exactly."""
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL, err_msg=str(context))
    labelled = expected.sum(axis=0) != 0
    assert np.array_equal(got.sum(axis=0) != 0, labelled), context
    assert np.array_equal(got.argmax(axis=0)[labelled], expected.argmax(axis=0)[labelled]), context


@pytest.mark.parametrize('crop', [20, 24, 32, 45, 61])
def test_crop_support_lists_every_window_pixel_pils_resize_reads(crop):
    from util.image import resize
    window = probability_map((3, crop, crop), seed=crop)
    support = objective.crop_support(crop, T, S)
    assert np.all(np.diff(support) > 0) and support.size < crop  # a real restriction: growing, scale 1, shrinking
    if crop == T:
        assert np.array_equal(support, np.arange(S // 2, T, S))
    # PIL reads nothing outside the support: changing those rows and columns leaves the kept centres' bits alone.
    outside = np.ones(crop, bool)
    outside[support] = False
    changed = window.copy()
    changed[:, outside] = 0.
    changed[:, :, outside] = 0.
    for m, n in zip(changed, window):
        assert np.array_equal(resize(m, (T, T))[S // 2::S, S // 2::S], resize(n, (T, T))[S // 2::S, S // 2::S])
    # The targets: PIL's coefficients at the kept centres in float64, PIL's float32 passes to rounding.
    label = np.random.RandomState(crop).randint(0, 3, (T // S) ** 2).astype(np.uint8)
    label[::5] = 255
    for flip in (False, True):
        assert_same_targets(objective.crop_soft_labels(window, label, T, S, flip), pil_targets(window, label, flip), crop)


# orig 40 x 56; the scaled image (im_hw) grows back (bicubic), shrinks (Lanczos), both (bilinear) or stays.
RESIZES = {'grow': ((30, 42), (4, 6)), 'shrink': ((52, 70), (7, 9)), 'mixed': ((48, 44), (6, 6)),
           'same': ((40, 56), (5, 7))}


@pytest.mark.parametrize('with_prior', [False, True], ids=['no-prior', 'prior'])
@pytest.mark.parametrize('resize_case', sorted(RESIZES))
def test_store_windows_equal_the_full_matrix_map(tmp_path, monkeypatch, resize_case, with_prior):
    from issegm.engine.iterator import Geometry, Sample, TARGET
    from issegm.storage.probmaps import LowRes
    from issegm.engine.postprocess import upsample_window
    from issegm.storage.probmaps import save_lowres
    im_hw, low_hw = RESIZES[resize_case]
    rng = np.random.RandomState(len(resize_case))
    low = LowRes(probability_map((19,) + low_hw, seed=3), im_hw, S)
    save_lowres(str(tmp_path / 'a.npz'), low, (H, W))
    prior = (0.2 + rng.rand(19, H, W)).astype(np.float32) if with_prior else None
    thresh, alpha = rng.uniform(0.05, 0.3, 19), 0.5
    store = objective.SoftLabelStore(str(tmp_path), thresh, alpha, S, prior)
    monkeypatch.setattr(objective, '_CACHE_VALUES', 19 * 40)  # soft labels in blocks of one or two rows
    probmap = matrix_probmap(low, (H, W), prior)
    soft, hard = crst.soft_pseudo_labels(probmap, thresh, alpha)  # what CRST would store
    targets = objective.TrainingTargets(19, store)
    d0 = 2
    # (crop, top, left) in image coordinates: growing, scale-1 and shrinking crops inside the image,
    # over the canvas margin before it, past its end, and wholly in the padding.
    windows = [(24, 5, 9), (32, 0, 20), (45, -2, -1), (20, -2, 40), (61, -2, -2), (45, 10, 30), (24, 30, 50),
               (20, H + 1, 0)]
    for k, (crop, top, left) in enumerate(windows):
        geometry = Geometry(1., crop, d0, top + d0, left + d0, bool(k % 2), False)
        label = rng.randint(0, 19, (T // S) ** 2).astype(np.uint8)
        label[rng.rand(label.size) < 0.2] = 255
        got = targets(Sample('img/a.png', None, TARGET), label, geometry, T, S, True)
        expected = crop_from_stored_map(soft, geometry, label)
        assert_same_targets(got, expected, (resize_case, crop, top, left))
        if top >= H:
            assert not got.any()
            continue
        # the whole window, and its LRENT hard labels (argmax, 255 where ignored)
        on = (slice(max(top, 0), min(top + crop, H)), slice(max(left, 0), min(left + crop, W)))
        part = store.window('a', top, left, crop)[:, on[0].start - top:on[0].stop - top,
                                                   on[1].start - left:on[1].stop - left]
        np.testing.assert_allclose(part, soft[:, on[0], on[1]], rtol=0, atol=TOL)
        rows, cols = np.arange(H)[on[0]], np.arange(W)[on[1]]
        probs = upsample_window(low.probs, S, im_hw, (H, W), rows, cols)
        if prior is not None:
            probs = (prior[:, on[0], on[1]] * probs).astype(np.float32)
        assert np.array_equal(crst.soft_pseudo_labels(probs, thresh, alpha)[1], hard[on])


def test_store_windows_equal_pils_map_to_float32_rounding(tmp_path):
    """What training sees moved from the PIL-upsampled map (the store before windows) by rounding only."""
    from issegm.engine.iterator import Geometry, Sample, TARGET
    from issegm.storage.probmaps import LowRes
    from issegm.storage.probmaps import save_lowres
    from issegm.engine.postprocess import lowres_to_probmap
    low = LowRes(probability_map((19, 7, 9), seed=4), (52, 70), S)
    save_lowres(str(tmp_path / 'a.npz'), low, (H, W))
    thresh = np.random.RandomState(1).uniform(0.05, 0.3, 19)
    pil, matrix = lowres_to_probmap(low, (H, W)), matrix_probmap(low, (H, W))
    assert 0 < np.abs(pil - matrix).max() <= 2 ** -23  # not the same bits, the same to float32 rounding
    soft_pil = crst.soft_pseudo_labels(pil, thresh, 0.5)[0]
    targets = objective.TrainingTargets(19, objective.SoftLabelStore(str(tmp_path), thresh, 0.5, S))
    label = np.zeros((T // S) ** 2, np.uint8)
    for crop, top, left in ((24, 3, 4), (45, -1, 12)):
        geometry = Geometry(1., crop, 1, top + 1, left + 1, False, False)
        got = targets(Sample('a.png', None, TARGET), label, geometry, T, S, True)
        assert_same_targets(got, crop_from_stored_map(soft_pil, geometry, label), crop)


@pytest.mark.parametrize('with_prior', [False, True], ids=['no-prior', 'prior'])
def test_iterator_soft_labels_equal_a_stored_full_resolution_map(tmp_path, monkeypatch, with_prior):
    from issegm.engine.iterator import SOURCE, TARGET, FileIter, Sample
    monkeypatch.chdir(tmp_path)
    names = ['a_leftImg8bit', 'b_leftImg8bit']
    round_dir, thresh, written = write_round(str(tmp_path), names, with_prior)
    store = objective.SoftLabelStore.load(round_dir, 0.5, 19)
    targets = objective.TrainingTargets(19, store)
    samples = [Sample(image, label, TARGET) for image, label, _, _ in written]
    samples.append(Sample(written[0][0], written[0][1], SOURCE))  # a labelled image standing in for GTA-5
    it = FileIter('gta', dataset_tgt='cityscapes', samples=samples, batch_images=3, crop_size=T, feat_stride=S,
                  origin_size=2048, origin_size_tgt=2048, scale_rate_range=(0.4, 1.6), targets=targets,
                  meta={'mine_port': 0.5, 'mine_id': [0, 1, 2]})
    assert [d.shape for d in it.provide_label] == [(3, 19, (T // S) ** 2), (3,)]
    stored = [crst.soft_pseudo_labels(matrix_probmap(low, (H, W), prior), thresh, 0.5)[0]  # what CRST would save
              for _, _, low, prior in written]
    seen = set()
    for seed in range(16):
        data, labels, is_source = it.reader.batch([0, 1, 2], [seed, seed + 100, seed + 200])
        assert labels.shape == (3, 19, (T // S) ** 2) and list(is_source) == [0, 0, 1]
        for k in range(2):
            _, label, geometry = it.reader.make(k, seed + 100 * k)
            assert_same_targets(labels[k], crop_from_stored_map(stored[k], geometry, label), (seed, k, geometry))
            seen.add((geometry.flip, geometry.crop > T, geometry.y0 < geometry.d0 or geometry.x0 < geometry.d0))
        # source samples: one-hot of their labels, all-zero where ignored
        label = it.reader.make(2, seed + 200)[1]
        onehot = labels[2]
        assert np.array_equal(onehot.argmax(0)[label != 255], label[label != 255])
        assert np.array_equal(onehot.sum(0), (label != 255).astype(np.float32))
    assert len(seen) >= 6  # flips, down- and up-scaled crops, windows over the canvas margin
    batch_ = next(iter(it))
    assert [l.shape for l in batch_.label] == [(3, 19, 16), (3,)]
    it.close()


def test_store_errors_name_the_file_and_the_fix(tmp_path):
    round_dir, _, _ = write_round(str(tmp_path), ['a'], False)
    with pytest.raises(ValueError, match='--lr-weight-ent 0.5 but training has 0.25'):
        objective.SoftLabelStore.load(round_dir, 0.25, 19)
    store = objective.SoftLabelStore.load(round_dir, 0.5, 19)
    with pytest.raises(FileNotFoundError, match=r'1 of 2 target images .* \(first: b.npz\); run --phase val'):
        store.check(['a', 'b'])
    with pytest.raises(FileNotFoundError, match='soft_labels.json'):
        objective.SoftLabelStore.load(str(tmp_path), 0.5, 19)


def test_hard_targets_without_lrent_and_none_for_cbst():
    import argparse
    from issegm.phases.cli import add_flags
    from issegm.flags import CRST_FLAGS
    parser = add_flags(argparse.ArgumentParser(), CRST_FLAGS + ['--kc-policy'])
    assert objective.training_targets(cli.weights_from_args(parser.parse_args([])), 19, '.', []) is None
    assert cli.flag_argv(parser.parse_args([])) == []
    args = parser.parse_args(['--mr-weight-kld', '0.1', '--mr-weight-src', '0.5'])
    targets = objective.training_targets(cli.weights_from_args(args), 19, '.', [])
    assert not targets.soft and targets.label_shape(2, 16) == (2, 16)
    assert cli.flag_argv(args) == ['--mr-weight-kld', '0.1', '--mr-weight-src', '0.5']
    lines = crst.describe(cli.weights_from_args(args))
    assert len(lines) == 1 and 'effective coefficient 0.01 on target pixels' in lines[0] \
        and '0.05 on source pixels' in lines[0]
    with pytest.raises(ValueError, match='--mr-weight-ent must be >= 0'):
        cli.weights_from_args(parser.parse_args(['--mr-weight-ent', '-1']))
    with pytest.raises(ValueError, match='needs --kc-policy cb'):
        cli.weights_from_args(parser.parse_args(['--lr-weight-ent', '0.25', '--kc-policy', 'global']))


def test_soft_nll_metric_hard_and_soft():
    probs = probability_map((C, 2, 3), seed=4)[None]
    hard = np.array([[0, 1, 255, 3, 2, 255]], np.float32)
    soft = objective.one_hot(hard[0], C)[None]
    values = []
    for label in (hard, soft):
        m = objective.SoftNllMetric()
        m.update([mx.nd.array(label)], [mx.nd.array(probs)])
        values.append(m.get()[1])
    flat = probs.reshape(C, -1)
    expected = -np.mean([np.log(flat[int(k), i]) for i, k in enumerate(hard[0]) if k != 255])
    assert values == pytest.approx([expected, expected], rel=1e-6)


# ---------------------------------------------------------------------------- training with the objective
def _crst_iter(with_domain, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(8, 3, 32, 32).astype(np.float32)
    y = rng.randint(0, 19, (8, 16)).astype(np.float32)
    y[:, :3] = 255
    labels = {'softmax_label': y}
    if with_domain:
        labels[crst.DOMAIN_NAME] = (np.arange(8) % 2).astype(np.float32)
    return mx.io.NDArrayIter(x, labels, batch_size=4)


def test_training_with_the_objective_is_cbst_at_zero_weights_and_moves_with_them(tmp_path):
    from issegm.engine.training import train
    from util.mxutil import load_params_from_file
    label = 'gta_rna-t1_cls19_s8'
    runs = {}
    for name, goal in (('cbst', None), ('zero', objective.Objective(crst.CrstWeights(0, 0, 0, 0, 0))),
                       ('mr', objective.Objective(crst.CrstWeights(0.5, 0.5, 0.5, 0, 0.5)))):
        path = train(label, _crst_iter(goal is not None), str(tmp_path / name / (label + '_ep')),
                     to_epoch=1, base_lr=0.1, objective=goal)[-1]
        runs[name] = load_params_from_file(path)[0]['linear19_weight'].asnumpy()
    # The same update as the SoftmaxOutput head (up to float rounding), another one with regularisers.
    np.testing.assert_allclose(runs['zero'], runs['cbst'], rtol=1e-4, atol=1e-6)
    assert np.abs(runs['mr'] - runs['cbst']).max() > 100 * np.abs(runs['zero'] - runs['cbst']).max()
