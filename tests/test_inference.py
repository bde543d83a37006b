"""The shared test-time forward: scaling, padding, flipping, upsampling."""
import numpy as np
import pytest
from PIL import Image

from issegm.inference import Predictor, ahead, padded_shape, upsample_probs
from issegm.model import get_model
from util.image import normalize


@pytest.fixture(scope='module')
def net():
    return get_model('cityscapes_rna-t1_cls19_s8')


def _image(h, w, seed=0):
    return (np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8)


def test_padded_shape():
    assert padded_shape((925, 1850), 8) == (928, 1856)
    assert padded_shape((64, 64), 8) == (64, 64)


def test_lowres_is_network_on_zero_padded_scaled_image(net):
    import mxnet as mx
    img = _image(60, 100)
    pred = Predictor(net, 19, 8)
    probs, im_hw = pred.predict_lowres(img, 100)
    assert im_hw == (60, 100) and probs.shape == (19, 8, 13)
    data = np.zeros((1, 3, 64, 104), np.float32)
    data[0, :, :60, :100] = normalize(img)
    assert np.array_equal(probs, net(mx.nd.array(data)).asnumpy()[0])


def test_scaling_uses_longer_side(net):
    probs, im_hw = Predictor(net, 19, 8).predict_lowres(_image(50, 100), 200)
    assert im_hw == (100, 200) and probs.shape == (19, 13, 25)


def test_flipping_averages_with_flipped_padded_input(net):
    import mxnet as mx
    img = _image(60, 100, 1)
    probs, _ = Predictor(net, 19, 8, flip=True).predict_lowres(img, 100)
    data = np.zeros((1, 3, 64, 104), np.float32)
    data[0, :, :60, :100] = normalize(img)
    a = net(mx.nd.array(data)).asnumpy()[0]
    b = net(mx.nd.array(data[:, :, :, ::-1].copy())).asnumpy()[0][:, :, ::-1]
    assert np.allclose(probs, 0.5 * (a + b), atol=1e-7)


def test_flipping_makes_predictions_mirror_equivariant(net):
    # With flipping, predicting the mirrored image gives the mirrored
    # prediction; so a symmetric image gets a symmetric prediction (which a
    # single forward, with its asymmetric kernels, does not give).
    img = _image(64, 128, 2)
    p = Predictor(net, 19, 8, flip=True)
    assert np.allclose(p.predict(img[:, ::-1], 128), p.predict(img, 128)[:, :, ::-1], atol=1e-6)
    sym = np.concatenate([img[:, :64], img[:, :64][:, ::-1]], axis=1)
    out = p.predict(sym, 128)
    assert np.allclose(out, out[:, :, ::-1], atol=1e-6)
    plain = Predictor(net, 19, 8).predict(sym, 128)
    assert not np.allclose(plain, plain[:, :, ::-1], atol=1e-6)


def test_upsampling_is_bicubic_by_stride_then_cut_then_resized():
    rng = np.random.RandomState(3)
    probs = rng.rand(2, 4, 6).astype(np.float32)
    out = upsample_probs(probs, 8, (30, 45), (60, 90))
    assert out.shape == (2, 60, 90) and out.dtype == np.float32
    ref = np.asarray(Image.fromarray(probs[1], 'F').resize((48, 32), Image.BICUBIC))[:30, :45]
    ref = np.asarray(Image.fromarray(np.ascontiguousarray(ref), 'F').resize((90, 60), Image.BICUBIC))
    assert np.array_equal(out[1], ref)


def test_multi_scale_with_one_scale_equals_single(net):
    img = _image(48, 80, 4)
    p = Predictor(net, 19, 8, flip=True)
    assert np.array_equal(p.predict(img, 80), p.predict(img, [80]))
    two = p.predict(img, [64, 96])
    assert np.allclose(two, 0.5 * (p.predict(img, 64) + p.predict(img, 96)), atol=1e-6)
    assert two.shape == (19, 48, 80)


def test_start_then_finish_is_predict_exactly(net):
    img = _image(50, 90, seed=3)
    p = Predictor(net, 19, 8, flip=True)
    job = p.start(img, [64, 96])
    assert job.orig_hw == (50, 90) and len(job.lowres()) == 2
    np.testing.assert_array_equal(p.finish(job), p.predict(img, [64, 96]))
    np.testing.assert_array_equal(p.start(img, [64]).lowres()[0][0], p.predict_lowres(img, 64)[0])


def test_ahead_launches_the_next_item_before_yielding_this_one():
    events = []

    def launch(x):
        events.append(('launch', x))
        return x * 10

    for launched in ahead(range(3), launch):
        events.append(('use', launched.item, launched.get()))
    assert events == [('launch', 0), ('launch', 1), ('use', 0, 0), ('launch', 2), ('use', 1, 10),
                      ('use', 2, 20)]


def test_ahead_reports_a_launch_error_at_its_own_item():
    def launch(x):
        if x == 2:
            raise IOError('cannot read image 2')
        return x

    done = []
    with pytest.raises(IOError, match='image 2'):
        for launched in ahead(range(4), launch):
            done.append(launched.get())
    assert done == [0, 1]  # item 1 was finished although item 2's launch had already failed


def test_the_forward_is_asynchronous_and_overlaps_the_upsampling(monkeypatch):
    """With a device that takes 0.3 s a forward, image i+1 is on the device while image i is upsampled."""
    import time
    from standin import DeviceStandIn, with_host_delay
    device = DeviceStandIn(0.3)
    p = Predictor(device, 19, 8)
    spans = []
    # host work worth half a forward
    from issegm.postprocess import HostOps
    monkeypatch.setattr(HostOps, 'upsample', with_host_delay(HostOps.upsample, 0.15, spans))

    t0 = time.perf_counter()
    job = p.start(_image(64, 128), [128])
    assert time.perf_counter() - t0 < 0.2  # returned before the device finished
    p.finish(job)
    device.spans.clear()
    spans.clear()
    for launched in ahead([_image(64, 128, seed=s) for s in range(3)], lambda im: p.start(im, [128])):
        p.finish(launched.get())
    fwd = sorted(device.spans)
    assert len(fwd) == 3 and len(spans) == 3
    for i in range(2):
        # Sequential code would start forward i+1 only after upsampling i ended.
        assert fwd[i + 1][0] < spans[i][1] - 0.1
