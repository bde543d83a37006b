"""FCN-8s on VGG16: geometry of the original, a NumPy forward, and the GluonCV VGG16 mapping."""
import mxnet as mx
import numpy as np
import pytest

from util.mxutil import CheckpointError
from util.symbol.fcn8s import (ARCHS, CROPS, Arch, bilinear_kernels, fcn8s_param_shapes,
                               fcn8s_vgg16, load_gluoncv_vgg16, params_from_gluoncv_vgg16,
                               vgg16_features)

# Narrow bodies for the CPU: VGG16's layers, few filters. GluonCV's VGG has
# fc6/fc7 of 4096 whatever its filters.
TINY = Arch(blocks=(2, 2, 3, 3, 3), filters=(4, 4, 8, 8, 8), fc=16)
THIN = Arch(blocks=(2, 2, 3, 3, 3), filters=(4, 8, 8, 16, 16), fc=4096)


def forward(sym, data, params):
    """Run ``sym`` (inference) on ``data`` with ``params`` (name -> numpy); outputs as numpy."""
    args = {'data': mx.nd.array(data)}
    args.update({k: mx.nd.array(v) for k, v in params.items() if k in sym.list_arguments()})
    exe = sym.bind(mx.cpu(), args, grad_req='null')
    return [o.asnumpy() for o in exe.forward(is_train=False)]


def random_params(sym, data_shape, seed=0, scale=0.3):
    rng = np.random.RandomState(seed)
    shapes, _, _ = sym.infer_shape(data=data_shape)
    return {n: rng.normal(0, scale, s).astype(np.float32)
            for n, s in zip(sym.list_arguments(), shapes) if n != 'data'}


@pytest.mark.parametrize('height, width', [(97, 129), (128, 256), (500, 500), (1, 1), (2, 3),
                                           (33, 17)])
def test_score_map_has_the_input_size(height, width):
    _, out, _ = fcn8s_vgg16(19).infer_shape(data=(2, 3, height, width))
    assert out == [(2, 19, height, width)]


def _to_input(layers):
    """Affine map (scale, shift) from a layer's coordinates to the input's, as Caffe's coord_map."""
    scale, shift = 1., 0.
    for kind, kernel, stride, pad in layers:
        if kind == 'deconv':  # y = s x + (k-1)/2 - p, inverted
            step = (1. / stride, -((kernel - 1) / 2. - pad) / stride)
        else:  # convolution or pooling: x = s y + (k-1)/2 - p
            step = (float(stride), (kernel - 1) / 2. - pad)
        shift, scale = shift + scale * step[1], scale * step[0]
    return scale, shift


def test_crop_offsets_are_those_of_the_layer_geometry():
    body = [('conv', 3, 1, 100)]
    pools = []
    for block, convs in enumerate(ARCHS['vgg16'].blocks):
        body += [('conv', 3, 1, 1)] * (convs - (block == 0)) + [('pool', 2, 2, 0)]
        pools.append(list(body))
    score_fr = pools[4] + [('conv', 7, 1, 0), ('conv', 1, 1, 0), ('conv', 1, 1, 0)]
    upscore2 = score_fr + [('deconv', 4, 2, 0)]
    upscore_pool4 = upscore2 + [('deconv', 4, 2, 0)]
    upscore8 = upscore_pool4 + [('deconv', 16, 8, 0)]

    def offset(cropped, reference):  # index in cropped of reference's index 0
        (s1, b1), (s2, b2) = _to_input(cropped), _to_input(reference)
        assert s1 == s2
        return (b2 - b1) / s1

    assert offset(pools[3], upscore2) == CROPS['score_pool4c'] == 5
    assert offset(pools[2], upscore_pool4) == CROPS['score_pool3c'] == 9
    assert offset(upscore8, []) == CROPS['score'] == 31


def _np_conv(x, w, b, pad):
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    k = w.shape[2]
    h, wd = x.shape[1] - k + 1, x.shape[2] - k + 1
    out = np.zeros((w.shape[0], h, wd))
    for i in range(k):
        for j in range(k):
            out += np.einsum('oc,chw->ohw', w[:, :, i, j], x[:, i:i + h, j:j + wd])
    return out + b[:, None, None]


def _np_maxpool_ceil(x):
    c, h, w = x.shape
    x = np.pad(x, ((0, 0), (0, h % 2), (0, w % 2)), constant_values=-np.inf)
    return x.reshape(c, (h + 1) // 2, 2, (w + 1) // 2, 2).max(axis=(2, 4))


def test_first_block_equals_numpy():
    """conv1_1 padded by 100, ReLU, conv1_2, ReLU, 2x2/2 max pool rounding up (odd sizes)."""
    sym = fcn8s_vgg16(3, TINY)
    pool1 = sym.get_internals()['pool1_output']
    data = np.random.RandomState(1).uniform(-1, 1, (1, 3, 5, 7)).astype(np.float32)
    p = random_params(pool1, data.shape)
    got = forward(pool1, data, p)[0][0]
    x = data[0].astype(np.float64)
    x = np.maximum(_np_conv(x, p['conv1_1_weight'], p['conv1_1_bias'], 100), 0)
    x = np.maximum(_np_conv(x, p['conv1_2_weight'], p['conv1_2_bias'], 1), 0)
    want = _np_maxpool_ceil(x)
    assert got.shape == want.shape == (4, 102, 103)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_skips_are_scaled_as_the_at_once_net():
    shape = (1, 3, 9, 11)
    on = fcn8s_vgg16(2, TINY).get_internals()
    off = fcn8s_vgg16(2, TINY, skip_scale=False).get_internals()
    p = random_params(fcn8s_vgg16(2, TINY), shape)
    p['score_pool4_bias'][:] = p['score_pool3_bias'][:] = 0
    data = np.random.RandomState(2).uniform(-1, 1, shape)
    for name, factor in (('score_pool4', 0.01), ('score_pool3', 0.0001)):  # voc-fcn8s-atonce's
        scaled = forward(on[name + '_output'], data, p)[0]
        plain = forward(off[name + '_output'], data, p)[0]
        assert np.abs(plain).max() > 0
        np.testing.assert_allclose(scaled, factor * plain, rtol=1e-4, atol=1e-12)


def test_initialisation_and_upsampling_of_a_constant_score():
    """Any initialiser leaves score layers at zero and deconvolutions bilinear, per class.

    With score_fr's bias alone, the three upsamplings spread a constant per
    class: nothing leaks across classes, and inside the image (away from the
    few fc6 positions' edge) the bilinear kernels give back the constant.
    """
    classes, shape = 3, (1, 3, 64, 48)
    mod = mx.mod.Module(fcn8s_vgg16(classes, TINY), data_names=('data',), label_names=None)
    mod.bind(data_shapes=[('data', shape)], for_training=False)
    mod.init_params(mx.init.Xavier(magnitude=3))
    arg, aux = mod.get_params()
    for name in ('score_fr', 'score_pool4', 'score_pool3'):
        assert not arg[name + '_weight'].asnumpy().any()
    for name, kernel in (('upscore2', 4), ('upscore_pool4', 4), ('upscore8', 16)):
        np.testing.assert_array_equal(arg[name + '_weight'].asnumpy(),
                                      bilinear_kernels(classes, kernel))
    assert arg['conv1_1_weight'].asnumpy().any()  # the initialiser did run
    level = np.array([1., 2., -3.], np.float32)
    arg['score_fr_bias'][:] = level
    mod.set_params(arg, aux)
    mod.forward(mx.io.DataBatch([mx.nd.random.normal(shape=shape)]), is_train=False)
    out = mod.get_outputs()[0].asnumpy()[0] / level[:, None, None]
    np.testing.assert_allclose(out, np.broadcast_to(out[0], out.shape), rtol=1e-5)
    assert out.max() == pytest.approx(1, abs=1e-6) and out.min() > 0


def test_bilinear_kernel_is_the_fcn_filter():
    k = bilinear_kernels(2, 4)
    ramp = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(k[1, 1], np.outer(ramp, ramp))
    assert not k[0, 1].any() and not k[1, 0].any()
    # stride 8, kernel 16: every output pixel sums 1 over its input contributions
    k16 = bilinear_kernels(1, 16)[0, 0]
    np.testing.assert_allclose(k16.reshape(2, 8, 2, 8).sum(axis=(0, 2)), 1)


def test_lr_multipliers_of_the_released_net():
    attrs = fcn8s_vgg16(19).attr_dict()
    for name in ('upscore2', 'upscore_pool4', 'upscore8'):
        assert attrs[name + '_weight']['__lr_mult__'] == '0.0'
    assert attrs['fc6_bias']['__lr_mult__'] == '2.0' and attrs['fc6_bias']['__wd_mult__'] == '0.0'
    assert '__lr_mult__' not in attrs.get('conv1_1_weight', {})


def test_vgg16_fcn8s_has_the_published_134m_parameters():
    total = sum(int(np.prod(s)) for s in fcn8s_param_shapes(21).values())
    assert round(total / 1e6) == 134
    assert fcn8s_param_shapes(21)['fc6_weight'] == (4096, 512, 7, 7)


def gluon_style_params(spec, classes=10, seed=0):
    """Random arrays under the names and shapes of GluonCV's VGG ``save_parameters``."""
    rng = np.random.RandomState(seed)
    params, index, cin = {}, 0, 3
    for convs, filters in zip(spec.blocks, spec.filters):
        for _ in range(convs):
            params['features.%d.weight' % index] = rng.normal(0, .1, (filters, cin, 3, 3))
            params['features.%d.bias' % index] = rng.normal(0, .1, filters)
            index, cin = index + 2, filters
        index += 1
    for i, fan_in in ((index, cin * 49), (index + 2, spec.fc)):
        params['features.%d.weight' % i] = rng.normal(0, .1, (spec.fc, fan_in))
        params['features.%d.bias' % i] = rng.normal(0, .1, spec.fc)
    params['output.weight'] = rng.normal(0, .1, (classes, spec.fc))
    params['output.bias'] = rng.normal(0, .1, classes)
    return {k: v.astype(np.float32) for k, v in params.items()}


def test_dense_fc6_becomes_the_7x7_convolution():
    """Gluon's Dense on pool5 flattened (channel, row, column) equals fc6 at its one position."""
    gluon = gluon_style_params(TINY)
    ours = params_from_gluoncv_vgg16(gluon, 5, TINY)
    pool5 = np.random.RandomState(3).normal(size=(1, 8, 7, 7)).astype(np.float32)
    conv = mx.nd.Convolution(mx.nd.array(pool5), ours['fc6_weight'], ours['fc6_bias'],
                             kernel=(7, 7), num_filter=16).asnumpy()
    dense = gluon['features.31.weight'] @ pool5.reshape(-1) + gluon['features.31.bias']
    np.testing.assert_allclose(conv.reshape(-1), dense, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ours['fc7_weight'].asnumpy()[:, :, 0, 0],
                                  gluon['features.33.weight'])
    np.testing.assert_array_equal(ours['conv5_3_weight'].asnumpy(), gluon['features.28.weight'])


def test_mapping_fills_every_parameter_of_the_fcn():
    ours = params_from_gluoncv_vgg16(gluon_style_params(TINY), 5, TINY)
    assert {k: v.shape for k, v in ours.items()} == dict(fcn8s_param_shapes(5, TINY))
    assert not ours['score_pool3_weight'].asnumpy().any()
    assert not ours['score_fr_bias'].asnumpy().any()
    np.testing.assert_array_equal(ours['upscore8_weight'].asnumpy(), bilinear_kernels(5, 16))


def test_a_parameter_set_that_does_not_fit_is_one_line_naming_the_keys():
    params = gluon_style_params(TINY)
    del params['features.31.weight']
    params['features.99.weight'] = np.zeros(1)
    params['features.0.weight'] = np.zeros((4, 3, 5, 5))
    with pytest.raises(CheckpointError) as err:
        params_from_gluoncv_vgg16(params, 5, TINY, source='vgg.params')
    line = str(err.value)
    assert '\n' not in line and line.startswith('vgg.params')
    for part in ('missing features.31.weight', 'unexpected features.99.weight',
                 'features.0.weight (4, 3, 5, 5), expected (4, 3, 3, 3)'):
        assert part in line
    with pytest.raises(CheckpointError) as err:  # a narrow file is not VGG16
        params_from_gluoncv_vgg16(gluon_style_params(TINY), 5)
    assert 'mis-shaped features.0.weight (4, 3, 3, 3), expected (64, 3, 3, 3), ' in str(err.value)
    assert ' and 26 more;' in str(err.value)


def test_unreadable_or_absent_file_is_a_checkpoint_error(tmp_path):
    bad = tmp_path / 'vgg16.params'
    bad.write_bytes(b'not a parameter file')
    with pytest.raises(CheckpointError, match='vgg16.params'):
        load_gluoncv_vgg16(str(bad), 5)
    with pytest.raises(CheckpointError, match='not found: .*absent.params'):
        load_gluoncv_vgg16(str(tmp_path / 'absent.params'), 5)


def _gluoncv_vgg():
    """GluonCV's own VGG block with the THIN table, randomly initialised."""
    pytest.importorskip('gluoncv', reason='gluoncv is not installed '
                                          '(pip install -e . installs gluoncv==0.10.5.post0)')
    from gluoncv.model_zoo.vgg import VGG
    net = VGG(list(THIN.blocks), list(THIN.filters), classes=7)
    net.initialize(mx.init.Xavier(magnitude=3))
    return net


@pytest.mark.parametrize('saver', ['save_parameters', 'collect_params'])
def test_features_equal_gluoncv_vgg16(tmp_path, saver):
    """Our body with GluonCV's weights computes GluonCV's pool5 and fc7 (ReLU) on the same image.

    conv1_1 is padded by 1 here (``input_pad``), the ImageNet classifier's
    geometry: with the FCN's 100 the maps would be larger. At 224x224 pool5
    is 7x7, fc6 has one position, and rounding pool sizes up (ours) or down
    (GluonCV) agrees on even sizes. Both file namings of Gluon are read.
    """
    net = _gluoncv_vgg()
    image = mx.nd.array(np.random.RandomState(4).uniform(-2, 2, (1, 3, 224, 224)))
    net(image)  # the classifier's shape is inferred
    pool5_gluon = net.features[:31](image).asnumpy()
    fc7_gluon = net.features(image).asnumpy()  # Dense, ReLU, dropout (off), twice
    path = str(tmp_path / 'vgg.params')
    if saver == 'save_parameters':
        net.save_parameters(path)
    else:  # older files: vgg0_conv0_weight...
        net.collect_params().save(path)
    assert any(k.startswith('vgg') for k in mx.nd.load(path)) == (saver == 'collect_params')
    params = {k: v.asnumpy() for k, v in load_gluoncv_vgg16(path, 3, THIN).items()}
    _, _, drop7 = vgg16_features(mx.sym.Variable('data'), THIN, input_pad=1)
    tops = drop7.get_internals()
    pool5, fc7 = forward(mx.sym.Group([tops['pool5_output'], tops['relu7_output']]),
                         image.asnumpy(), params)
    assert pool5.shape == pool5_gluon.shape == (1, 16, 7, 7) and (fc7_gluon > 0).mean() > 0.1
    np.testing.assert_allclose(pool5, pool5_gluon, rtol=1e-4, atol=1e-4 * np.abs(pool5_gluon).max())
    np.testing.assert_allclose(fc7.reshape(1, -1), fc7_gluon, rtol=1e-4,
                               atol=1e-4 * np.abs(fc7_gluon).max())
