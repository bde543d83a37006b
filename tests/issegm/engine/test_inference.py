"""The shared test-time forward: scaling, padding, flipping, upsampling."""
import numpy as np
import pytest
from PIL import Image

from issegm.engine.inference import Predictor, ahead, padded_shape, upsample_probs
from issegm.engine.model import get_model
from util.image import MEAN_RGB, STD_RGB, normalize


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
    probs, im_hw, stride = pred.predict_lowres(img, 100)
    assert im_hw == (60, 100) and probs.shape == (19, 8, 13) and stride == 8
    data = np.zeros((1, 3, 64, 104), np.float32)
    data[0, :, :60, :100] = normalize(img)
    assert np.array_equal(probs, net(mx.nd.array(data)).asnumpy()[0])


def test_scaling_uses_longer_side(net):
    probs, im_hw, _ = Predictor(net, 19, 8).predict_lowres(_image(50, 100), 200)
    assert im_hw == (100, 200) and probs.shape == (19, 13, 25)


def test_flipping_averages_with_flipped_padded_input(net):
    import mxnet as mx
    img = _image(60, 100, 1)
    probs = Predictor(net, 19, 8, flip=True).predict_lowres(img, 100).probs
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


class RecordingNet(object):
    """A network stand-in with a known output: softmax of fixed mixes of the 8x8 cell means of
    its input. Records every input it is given."""

    def __init__(self, classes=5):
        self.mix = np.random.RandomState(0).randn(classes, 3).astype(np.float32) * 2
        self.inputs = []

    def __call__(self, data):
        import mxnet as mx
        x = data.asnumpy()
        self.inputs.append(x)
        n, c, h, w = x.shape
        cells = x.reshape(n, c, h // 8, 8, w // 8, 8).mean((3, 5))
        logits = np.einsum('kc,nchw->nkhw', self.mix, cells)
        e = np.exp(logits - logits.max(1, keepdims=True))
        return mx.nd.array(e / e.sum(1, keepdims=True))


def _pil(arr, hw, method):
    mode = 'F' if arr.dtype == np.float32 else None
    return np.asarray(Image.fromarray(np.ascontiguousarray(arr), mode).resize((hw[1], hw[0]), method))


@pytest.mark.parametrize('orig_hw,scale,scaled_hw,down,up', [
    ((60, 100), 80, (48, 80), Image.LANCZOS, Image.BICUBIC),     # both sides shrink, then grow back
    ((60, 100), 130, (78, 130), Image.BICUBIC, Image.LANCZOS),   # both grow, then shrink back
    ((100, 10), 99, (99, 10), Image.BILINEAR, Image.BILINEAR),   # one side only: mixed both ways
    ((10, 100), 99, (10, 99), Image.BILINEAR, Image.BILINEAR),   # the same with equal heights
])
def test_predict_is_pil_resize_forward_bicubic_upsampling_and_pil_resize_back(orig_hw, scale, scaled_hw, down, up):
    """Spec 6.1-6.3 computed with PIL's own filters: the input is the image resized with the
    filter of its direction (Lanczos shrink, bicubic grow, bilinear mixed), normalised and
    zero-padded; each class map is upsampled bicubically by 8, cut, and resized back."""
    img = _image(*orig_hw, seed=5)
    net = RecordingNet()
    out = Predictor(net, 5, 8).predict(img, [scale])
    scaled = _pil(img, scaled_hw, down)
    ph, pw = padded_shape(scaled_hw, 8)
    want_in = np.zeros((1, 3, ph, pw), np.float32)
    want_in[0, :, :scaled_hw[0], :scaled_hw[1]] = (scaled / 255. - MEAN_RGB).transpose(2, 0, 1) / \
        STD_RGB[:, None, None]
    assert len(net.inputs) == 1
    np.testing.assert_allclose(net.inputs[0], want_in, atol=1e-5)
    low = RecordingNet()(__import__('mxnet').nd.array(want_in)).asnumpy()[0]
    for c in range(5):
        big = _pil(low[c], (ph, pw), Image.BICUBIC)[:scaled_hw[0], :scaled_hw[1]]
        want = big if scaled_hw == orig_hw else _pil(big, orig_hw, up)
        np.testing.assert_allclose(out[c], want, atol=1e-5)
    # The filters matter at these sizes: another one gives another input.
    for other in {Image.LANCZOS, Image.BICUBIC, Image.BILINEAR} - {down}:
        assert np.abs(_pil(img, scaled_hw, other).astype(float) - scaled).max() > 3


def test_start_launches_and_finish_averages_the_scales(net):
    """``start``'s job holds one low-resolution map per scale; ``finish`` is their upsampled mean."""
    img = _image(50, 90, seed=3)
    p = Predictor(net, 19, 8, flip=True)
    job = p.start(img, [64, 96])
    assert job.orig_hw == (50, 90)
    low64, low96 = job.lowres()
    assert (low64.im_hw, low96.im_hw, low64.stride) == ((36, 64), (53, 96), 8)
    np.testing.assert_array_equal(low64.probs, p.predict_lowres(img, 64).probs)
    np.testing.assert_array_equal(low96.probs, p.predict_lowres(img, 96).probs)
    want = (upsample_probs(low64.probs, 8, (36, 64), (50, 90)) +
            upsample_probs(low96.probs, 8, (53, 96), (50, 90))) / 2
    np.testing.assert_allclose(p.finish(job), want, atol=1e-7)


def _reference_sub_stride(net, image, stride, steps, flip):
    """The reference's --test-steps procedure (evaluate.py / solve_ST.py), in plain numpy and PIL.

    The image is already at the test scale. It sits at stride // 2 in a zero
    canvas one stride larger; window (iy, ix) starts at sub // 2 + k * sub
    (sub = stride // steps), is zero-padded to a multiple of the stride and
    forwarded (with flipping: averaged with the flipped padded input's output
    flipped back); outputs fill preds[:, iy::steps, ix::steps]; each class map
    is resized bicubically by sub and cut to the image.
    """
    import mxnet as mx
    imh, imw = image.shape[:2]
    # ColorScale (float32 1/255) then ColorNormalize (float64 mean/std), as the reference.
    norm = image.astype(np.float32) * np.float32(1.0 / 255)
    norm = (norm - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    norm = norm.astype(np.float32).transpose(2, 0, 1)
    input_h, input_w = -(-imh // stride) * stride, -(-imw // stride) * stride
    sub = stride // steps
    pred_h, pred_w = input_h // stride * steps, input_w // stride * steps
    nim = np.zeros((3, imh + stride, imw + stride), np.float32)
    nim[:, stride // 2:stride // 2 + imh, stride // 2:stride // 2 + imw] = norm
    preds = np.zeros((19, pred_h, pred_w), np.float32)
    starts = sub // 2 + np.arange(steps) * sub
    for ix in range(steps):
        for iy in range(steps):
            data = np.zeros((1, 3, input_h, input_w), np.float32)
            data[0, :, :imh, :imw] = nim[:, starts[iy]:starts[iy] + imh, starts[ix]:starts[ix] + imw]
            out = net(mx.nd.array(data)).asnumpy()[0]
            if flip:
                out = 0.5 * (out + net(mx.nd.array(data[:, :, :, ::-1].copy())).asnumpy()[0][:, :, ::-1])
            preds[:, iy:iy + pred_h:steps, ix:ix + pred_w:steps] = out
    up = [np.asarray(Image.fromarray(p, 'F').resize((pred_w * sub, pred_h * sub), Image.BICUBIC))[:imh, :imw]
          for p in preds]
    return np.array(up), preds


@pytest.mark.parametrize('steps,flip', [(2, False), (2, True), (4, False)])
def test_sub_stride_prediction_is_the_reference_procedure(net, steps, flip):
    img = _image(44, 84, seed=5)   # 44 x 84: padding below and right, as with real scales
    want_up, want_low = _reference_sub_stride(net, img, 8, steps, flip)
    p = Predictor(net, 19, 8, flip=flip, steps=steps)
    low = p.predict_lowres(img, 84)
    assert low.stride == 8 // steps and low.im_hw == (44, 84)
    np.testing.assert_array_equal(low.probs, want_low)
    np.testing.assert_array_equal(p.predict(img, 84), want_up)
    # ... and it is not the plain prediction.
    assert np.abs(Predictor(net, 19, 8, flip=flip).predict(img, 84) - want_up).max() > 1e-4


def test_one_step_is_the_plain_forward(net):
    img = _image(44, 84, seed=6)
    want_up, _ = _reference_sub_stride(net, img, 8, 1, True)
    np.testing.assert_array_equal(Predictor(net, 19, 8, flip=True, steps=1).predict(img, 84), want_up)


def test_steps_must_divide_the_stride():
    with pytest.raises(ValueError, match='--test-steps 3 does not divide the network stride 8; use one of 1, 2, 4, 8'):
        Predictor(None, 19, 8, steps=3)


def test_several_devices_take_images_in_turn_with_the_same_numbers():
    import mxnet as mx
    net2 = get_model('cityscapes_rna-t1_cls19_s8', ctx=[mx.cpu(0), mx.cpu(1)])
    net1 = get_model('cityscapes_rna-t1_cls19_s8', ctx=mx.cpu(0))
    for name, param in net2.collect_params().items():  # the same weights on both nets
        net1.collect_params()[name].set_data(param.data(mx.cpu(0)))
    one = Predictor(net1, 19, 8, flip=True)
    two = Predictor(net2, 19, 8, flip=True, ctx=[mx.cpu(0), mx.cpu(1)])
    assert (one.depth, two.depth) == (2, 4)   # two images a device
    images = [_image(40, 72, seed=s) for s in range(3)]
    jobs = [two.start(im, [72]) for im in images]
    assert [j._outputs[0][0][0].context for j in jobs] == [mx.cpu(0), mx.cpu(1), mx.cpu(0)]
    for im, job in zip(images, jobs):
        assert np.array_equal(two.finish(job), one.predict(im, [72]))


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


@pytest.mark.threaded
def test_the_forward_is_asynchronous_and_overlaps_the_upsampling(monkeypatch):
    """With a device that takes 0.3 s a forward, image i+1 is on the device while image i is upsampled."""
    import time
    from issegm.testing.standin import DeviceStandIn, with_host_delay
    HOST_DELAY = 0.3   # host time a step; the overlap shows with this much slack
    device = DeviceStandIn(0.3)
    p = Predictor(device, 19, 8)
    spans = []
    from issegm.engine.postprocess import HostOps
    monkeypatch.setattr(HostOps, 'upsample', with_host_delay(HostOps.upsample, HOST_DELAY, spans))

    job = p.start(_image(64, 128), [128])
    returned = time.perf_counter()
    p.finish(job)
    assert returned < device.spans[0][1]  # start returned before the device finished
    device.spans.clear()
    spans.clear()
    for launched in ahead([_image(64, 128, seed=s) for s in range(3)], lambda im: p.start(im, [128])):
        p.finish(launched.get())
    fwd = sorted(device.spans)
    assert len(fwd) == 3 and len(spans) == 3
    for i in range(2):
        # Sequential code starts forward i+1 only after upsampling i ended; the overlap starts it
        # as forward i ends, HOST_DELAY before that (slack for a busy machine).
        assert fwd[i + 1][0] < spans[i][1]
