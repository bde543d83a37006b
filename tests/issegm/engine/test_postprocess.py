"""Post-processing on the host (PIL) and on the device (MXNet matrices and operators) give the same numbers."""
import types

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from issegm.engine.metrics import confusion_counts
from issegm.engine.postprocess import DeviceOps, HostOps, Postprocessor, default_mode, resample_matrix, upsample_matrices, upsample_probs
from issegm.storage.probmaps import LowRes
from issegm.method.thresholds import kept_confidences, pseudo_label

C = 19


def pil_coefficients(n_in, n_out, method):
    """PIL's own weights: resize an identity image along one axis (row i becomes column i of the matrix)."""
    eye = np.eye(n_in, dtype=np.float32)
    return np.asarray(Image.fromarray(eye, 'F').resize((n_out, n_in), method)).T


@pytest.mark.parametrize('n_in,n_out,method', [
    (5, 40, Image.BICUBIC), (116, 928, Image.BICUBIC), (925, 1024, Image.BICUBIC),   # stride, then grow
    (37, 100, Image.BICUBIC), (100, 37, Image.LANCZOS), (1024, 925, Image.LANCZOS),  # shrink: wider support
    (64, 61, Image.LANCZOS), (50, 77, Image.BILINEAR), (77, 50, Image.BILINEAR), (13, 13, Image.LANCZOS)])
def test_resample_matrix_holds_pils_coefficients(n_in, n_out, method):
    got = resample_matrix(n_in, n_out, method)
    assert got.shape == (n_out, n_in) and got.dtype == np.float64
    np.testing.assert_array_equal(got.astype(np.float32), pil_coefficients(n_in, n_out, method))
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-12)  # normalised rows


def test_upsample_matrices_are_cached_and_read_only():
    a = upsample_matrices((5, 9), 8, (36, 72), (40, 80))
    assert upsample_matrices((5, 9), 8, (36, 72), (40, 80)) is a
    assert a[0].shape == (40, 5) and a[1].shape == (80, 9)
    with pytest.raises(ValueError):
        a[0][0, 0] = 1


# (lowres h, w), stride, scaled image size, original size: grow, shrink (Lanczos), mixed (bilinear), none,
# and equal heights with other widths (a test scale that rounds the height back, 2047 on 1024 x 2048)
CASES = [((5, 9), 8, (36, 72), (40, 80)), ((13, 25), 8, (100, 200), (50, 100)),
         ((8, 13), 8, (60, 100), (60, 100)), ((7, 7), 8, (50, 50), (47, 51)), ((9, 6), 4, (33, 21), (66, 42)),
         ((2, 13), 8, (10, 99), (10, 100))]


def smooth_probs(hw, seed):
    """Softmax maps as a network gives them (positive, summing to 1 over the classes)."""
    logits = np.random.RandomState(seed).randn(C, *hw).astype(np.float32) * 2
    p = np.exp(logits - logits.max(0))
    return (p / p.sum(0)).astype(np.float32)


@pytest.mark.parametrize('case', CASES)
def test_device_upsampling_equals_pil_to_float32_rounding(case):
    lowres_hw, stride, im_hw, orig_hw = case
    probs = smooth_probs(lowres_hw, 0)
    ref = upsample_probs(probs, stride, im_hw, orig_hw)
    ops = DeviceOps(C)
    got = ops.upsample(ops.stored(probs), stride, im_hw, orig_hw).asnumpy()
    assert got.shape == ref.shape == (C,) + orig_hw
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)
    assert np.abs(got - ref).max() <= 1e-6 * np.abs(ref).max()
    assert ops.flops > 0 and ops.bytes > got.nbytes


def test_device_argmax_keeps_the_first_maximum_like_numpy():
    probs = np.random.RandomState(1).rand(C, 30, 40).astype(np.float32)
    probs[:, :5] = 0.0           # all classes tie (a zero prior): class 0
    probs[4, 5:10] = probs[9, 5:10] = 2.0
    ops = DeviceOps(C)
    pred, conf = ops.argmax_max(ops.stored(probs))
    assert pred.dtype == np.uint8
    np.testing.assert_array_equal(pred.asnumpy(), probs.argmax(0))
    np.testing.assert_array_equal(conf.asnumpy(), probs.max(0))
    assert (pred.asnumpy()[5:10] == 4).all()


@pytest.mark.parametrize('block', [37, 64, 4096])  # exact blocks; a partial last one; one padded block
def test_device_kept_confidences_equal_the_host_ones(block):
    rng = np.random.RandomState(2)
    pred = rng.choice([0, 3, 5, 18], size=(37, 53), p=[0.5, 0.3, 0.19, 0.01]).astype(np.uint8)
    conf = rng.rand(37, 53).astype(np.float32)
    want_values, want_counts = kept_confidences(pred, conf, C)
    # independently: every 4th value of each class in row-major order
    for c in range(C):
        assert want_counts[c] == (pred == c).sum()
    np.testing.assert_array_equal(want_values, np.concatenate([conf[pred == c][::4] for c in range(C)]))
    ops = DeviceOps(C)
    ops.BLOCK = block
    values, counts = ops.kept(mx.nd.array(pred, dtype=np.uint8), mx.nd.array(conf))
    np.testing.assert_array_equal(counts.asnumpy(), want_counts)
    np.testing.assert_array_equal(values.asnumpy()[:want_values.size], want_values)


def test_device_confusion_equals_host_counts():
    rng = np.random.RandomState(3)
    gt = rng.randint(0, C, (40, 60)).astype(np.uint8)
    gt[:7] = 255                         # ignored
    pred = rng.randint(0, C, (40, 60)).astype(np.uint8)
    want, pixels = confusion_counts(gt, pred, C)
    got = DeviceOps(C).confusion(gt, mx.nd.array(pred, dtype=np.uint8)).asnumpy().reshape(C, C)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got.sum(1), pixels)
    assert got.sum() == 33 * 60


def test_device_pseudo_labels_equal_host_ones():
    probs = np.random.RandomState(4).rand(C, 30, 40).astype(np.float32) * 0.4
    thresh = np.linspace(0.3, 0.9, C)
    thresh[[2, 7]] = 0                   # no threshold: 1.0
    thresh[[5, 6]] = 0.4
    probs[:, :3] = 0.2
    probs[[5, 6], :3] = 0.45             # a tie between classes 5 and 6: the first wins
    want_label, want_argmax = pseudo_label(probs, thresh, return_argmax=True)
    ops = DeviceOps(C)
    label, argmax = ops.pseudo(ops.stored(probs), thresh)
    np.testing.assert_array_equal(label.asnumpy(), want_label)
    np.testing.assert_array_equal(argmax.asnumpy(), want_argmax)
    assert 0 < (want_label == 255).sum() < want_label.size
    assert (want_label[:3] == 5).all()


class StoredJob(object):
    """A launched job whose maps (one per scale) are given: what Predictor.start returns, minus the network."""

    def __init__(self, maps, orig_hw, stride=8):
        self.maps, self.orig_hw = [LowRes(p, im_hw, stride) for p, im_hw in maps], orig_hw

    def lowres(self):
        return self.maps


def test_the_two_paths_agree_on_every_recipe():
    orig_hw = (50, 100)
    maps = [(smooth_probs((13, 25), 5), (100, 200)), (smooth_probs((9, 18), 6), (70, 140))]
    job = StoredJob(maps, orig_hw)
    prior = np.random.RandomState(7).uniform(0.2, 1, (C,) + orig_hw).astype(np.float32)
    gt = np.random.RandomState(8).randint(0, C, orig_hw).astype(np.uint8)
    thresh = np.random.RandomState(9).uniform(0.2, 0.4, C)
    out = {}
    for mode in ('pil', 'device'):
        post = Postprocessor(C, mode, prior=prior)
        stored = (LowRes(maps[0][0], maps[0][1], 8), orig_hw)
        out[mode] = (post.evaluate(job, gt).result(), post.collect(post.source(stored=stored), gt).result(),
                     post.label(post.source(stored=stored), thresh).result())
    (ev_p, col_p, lab_p), (ev_d, col_d, lab_d) = out['pil'], out['device']
    # evaluation, two scales averaged
    host = Postprocessor(C, 'pil')
    probs = host.probmap(host.source(job))
    np.testing.assert_array_equal(ev_p['pred'], probs.argmax(0))
    assert (ev_d['pred'] == ev_p['pred']).mean() >= 0.9999
    np.testing.assert_array_equal(ev_p['confusion'], confusion_counts(gt, ev_p['pred'], C)[0])
    np.testing.assert_array_equal(ev_d['confusion'].reshape(C, C), confusion_counts(gt, ev_d['pred'], C)[0])
    # pass 1 with a prior: both argmax maps, kept confidences, both confusion matrices
    for key in ('pred_np', 'pred_sp'):
        assert (col_d[key] == col_p[key]).mean() >= 0.9999
    values_p, counts_p = col_p['kept']
    values_d, counts_d = col_d['kept']
    np.testing.assert_array_equal(counts_d, counts_p)
    np.testing.assert_allclose(values_d[:values_p.size], values_p, rtol=1e-5)
    for key in ('confusion_np', 'confusion_sp'):
        np.testing.assert_array_equal(col_d[key].reshape(C, C), col_p[key])
    # pass 2
    for key in ('label', 'argmax'):
        assert lab_d[key].dtype == lab_p[key].dtype == np.uint8
        assert (lab_d[key] == lab_p[key]).mean() >= 0.9999
    assert (lab_p['label'] == 255).any()


def test_host_work_waits_for_result_device_work_is_queued_at_once():
    calls = []

    class Job(StoredJob):
        def lowres(self):
            calls.append('lowres')
            return self.maps

    job = Job([(smooth_probs((5, 9), 1), (36, 72))], (40, 80))
    pending = Postprocessor(C, 'pil').evaluate(job)
    assert calls == []                   # deferred: the loop can launch the next image first
    assert pending.result()['pred'].shape == (40, 80) and calls == ['lowres']
    device_job = types.SimpleNamespace(orig_hw=(40, 80),
                                       lowres_device=lambda: [LowRes(mx.nd.array(job.maps[0].probs), (36, 72), 8)])
    post = Postprocessor(C, 'device')
    pending = post.evaluate(device_job)
    assert post.ops.flops > 0            # the operators were launched by evaluate() itself
    assert pending.result()['pred'].dtype == np.uint8


def test_default_mode_is_device_on_a_gpu_and_the_measured_choice_on_the_cpu():
    from issegm.engine import postprocess
    assert default_mode(mx.gpu(0)) == 'device'
    assert default_mode(mx.cpu()) == postprocess.CPU_DEFAULT in ('pil', 'device')
    with pytest.raises(ValueError, match='--postprocess'):
        Postprocessor(C, 'gpu')


def test_host_ops_are_the_reference_functions():
    probs = smooth_probs((5, 9), 3)
    ops = HostOps(C)
    np.testing.assert_array_equal(ops.upsample(probs, 8, (36, 72), (40, 80)),
                                  upsample_probs(probs, 8, (36, 72), (40, 80)))


@pytest.mark.parametrize('with_prior', [False, True])
def test_lrent_labels_take_the_crst_rule_on_either_path(with_prior):
    from issegm.method.crst import lrent_pseudo_label
    low = LowRes(smooth_probs((5, 9), 11), (36, 72), 8)
    thresh = np.random.RandomState(12).uniform(0.2, 0.5, C)
    probs = upsample_probs(low.probs, 8, (36, 72), (40, 80))
    prior = None
    if with_prior:  # CBST-SP's product, then CRST's rule (a prior that moves the argmax somewhere)
        prior = np.random.RandomState(13).uniform(0.05, 1.0, (C, 40, 80)).astype(np.float32)
        probs = np.multiply(prior, probs).astype(np.float32)
    want = lrent_pseudo_label(probs, thresh, 0.5, return_argmax=True)
    for mode in ('pil', 'device'):
        post = Postprocessor(C, mode, prior=prior)
        out = post.label(post.source(stored=(low, (40, 80))), thresh, alpha=0.5).result()
        same = np.mean([(out[k] == w).mean() for k, w in zip(('label', 'argmax'), want)])
        assert same == 1.0 if mode == 'pil' else same >= 0.9999
    assert (want[0] == 255).any() and (want[0] != 255).any()


def test_each_image_is_post_processed_on_the_device_its_forward_ran_on():
    from issegm.engine.inference import Predictor
    from issegm.engine.model import get_model
    contexts = [mx.cpu(0), mx.cpu(1)]
    predictor = Predictor(get_model('cityscapes_rna-t1_cls19_s8', ctx=contexts), C, 8, ctx=contexts)
    device, host = Postprocessor(C, 'device', ctx=contexts), Postprocessor(C, 'pil')
    assert device.devices == 2
    images = [(np.random.RandomState(s).rand(40, 72, 3) * 255).astype(np.uint8) for s in range(3)]
    for image in images:
        job = predictor.start(image, [72])
        source = device.source(job=job)
        assert source.ops.ctx == job.ctx          # where the forward ran
        got = device.evaluate(job).result()['pred']
        want = host.evaluate(job).result()['pred']
        assert (got == want).mean() >= 0.9999
    stored = [device.source(stored=(LowRes(smooth_probs((5, 9), s), (36, 72), 8), (40, 80))) for s in range(2)]
    assert [s.ops.ctx for s in stored] == contexts  # stored maps go to the devices in turn
