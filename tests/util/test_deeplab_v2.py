"""CRST's DeepLab-v2 symbol gives the PyTorch logits; its weight mappings check names and shapes."""
import hashlib
import json
import os

import mxnet as mx
import numpy as np
import pytest

from issegm.testing import deeplab_fixture
from util.mxutil import CheckpointError
from util.symbol.deeplab_v2 import (Layer, deeplab_v2, frozen_param_names, key_table,
                                    params_from_gluoncv_resnet101_v1, params_from_state_dict,
                                    resnet_features)

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'fixtures',
                        'deeplabv2')


def read_tsv(name):
    return deeplab_fixture.read_tsv(FIXTURES, name)


def fixture_weights():
    """The 632 tensors of the fixture's state dict, rebuilt from seed 11 with numpy alone."""
    return deeplab_fixture.fixture_weights(FIXTURES)


@pytest.fixture(scope='module')
def state_dict():
    return fixture_weights()


@pytest.fixture(scope='module')
def golden_params(state_dict):
    return params_from_state_dict(state_dict)


def forward(sym, arg_params, aux_params, data):
    args = dict(arg_params, data=mx.nd.array(data))
    exe = sym.bind(mx.cpu(), args=args, aux_states=aux_params, grad_req='null')
    return exe.forward(is_train=False)[0].asnumpy()


def test_rebuilt_weights_match_fixture_hashes(state_dict):
    expected = dict(read_tsv('values_sha256.tsv'))
    assert list(state_dict) == list(expected)
    wrong = [key for key, value in state_dict.items()
             if hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest() != expected[key]]
    assert wrong == []


@pytest.mark.parametrize('suffix', ['', '2', '3'])  # '3' is the size where ceil-mode pooling shows
def test_logits_equal_crst_pytorch(golden_params, suffix):
    data = np.load(os.path.join(FIXTURES, 'input%s.npy' % suffix))
    golden = np.load(os.path.join(FIXTURES, 'logits%s.npy' % suffix))
    logits = forward(deeplab_v2(19), *golden_params, data)
    assert logits.shape == golden.shape
    assert np.abs(logits - golden).max() <= 1e-4


@pytest.mark.parametrize('size, out', [((97, 129), (13, 17)), ((65, 81), (9, 11)),
                                       ((64, 100), (9, 13))])
def test_output_size(size, out):
    _, shapes, _ = deeplab_v2(5).infer_shape(data=(2, 3) + size)
    assert shapes == [(2, 5) + out]


def test_key_table_names_and_order_are_the_symbols():
    sym = deeplab_v2(19)
    rows = key_table()
    assert [r.mxnet for r in rows if r.kind == 'arg'] == sym.list_arguments()[1:]
    assert [r.mxnet for r in rows if r.kind == 'aux'] == sym.list_auxiliary_states()
    crst_keys = [key for key, *_ in read_tsv('keys_shapes.tsv')
                 if not key.endswith('num_batches_tracked')]
    assert [r.crst for r in rows] == crst_keys
    by_crst = {r.crst: r.mxnet for r in rows}
    assert by_crst['layer3.5.bn2.running_mean'] == 'layer3_5_bn2_moving_mean'
    assert by_crst['layer2.0.downsample.1.weight'] == 'layer2_0_downsample_1_gamma'
    assert by_crst['layer5.conv2d_list.3.bias'] == 'layer5_conv2d_list_3_bias'


def test_batchnorm_frozen_as_crst_trains_it():
    sym = deeplab_v2(19)
    nodes = json.loads(sym.tojson())['nodes']
    bns = [n['attrs'] for n in nodes if n['op'] == 'BatchNorm']
    assert len(bns) == 104
    assert all(float(a['eps']) == 1e-5 and a['fix_gamma'] == 'False'
               and a['use_global_stats'] == 'True' for a in bns)
    frozen = frozen_param_names(sym)
    assert len(frozen) == 208 and frozen[:2] == ['bn1_gamma', 'bn1_beta']
    assert all(n.endswith(('_gamma', '_beta')) for n in frozen)
    attrs = sym.attr_dict()
    assert attrs['layer5_conv2d_list_0_weight']['lr_mult'] == '10.0'
    assert attrs['layer5_conv2d_list_0_bias']['lr_mult'] == '10.0'


def test_state_dict_variants_map_alike(state_dict, golden_params):
    arg_params, aux_params = golden_params
    no_counts = {'module.' + k: v for k, v in state_dict.items()
                 if not k.endswith('num_batches_tracked')}
    args2, aux2 = params_from_state_dict(no_counts)
    assert sorted(args2) == sorted(arg_params) and sorted(aux2) == sorted(aux_params)
    assert np.array_equal(args2['layer4_2_conv3_weight'].asnumpy(),
                          state_dict['layer4.2.conv3.weight'])
    assert np.array_equal(aux2['layer1_0_downsample_1_moving_var'].asnumpy(),
                          state_dict['layer1.0.downsample.1.running_var'])


def test_sixteen_classes_from_the_classifier_shape(state_dict):
    synthia = dict(state_dict)
    for k in range(4):
        synthia['layer5.conv2d_list.%d.weight' % k] = np.zeros((16, 2048, 3, 3), np.float32)
        synthia['layer5.conv2d_list.%d.bias' % k] = np.zeros(16, np.float32)
    arg_params, _ = params_from_state_dict(synthia)
    assert arg_params['layer5_conv2d_list_2_weight'].shape == (16, 2048, 3, 3)
    with pytest.raises(CheckpointError, match=r'8 mis-shaped key\(s\): layer5.conv2d_list.0.weight '
                                              r'\(file 16x2048x3x3, network 19x2048x3x3\)'):
        params_from_state_dict(synthia, classes=19)


def test_misfit_state_dict_is_one_line_naming_each_key(state_dict):
    broken = dict(state_dict)
    del broken['layer3.7.conv2.weight']
    broken['layer3.7.conv4.weight'] = np.zeros((1,), np.float32)
    broken['bn1.running_var'] = np.ones(63, np.float32)
    with pytest.raises(CheckpointError) as err:
        params_from_state_dict(broken, source='gta_src.pth')
    message = str(err.value)
    assert '\n' not in message and message.startswith('gta_src.pth does not fit')
    assert '1 missing key(s): layer3.7.conv2.weight' in message
    assert '1 unexpected key(s): layer3.7.conv4.weight' in message
    assert '1 mis-shaped key(s): bn1.running_var (file 63, network 64)' in message


# GluonCV's ImageNet ResNet (strided layers 3 and 4, no dilation); input
# sizes whose conv1 output is odd, where ceil and floor pooling agree.
IMAGENET_LAYERS = (Layer(64, 1, 1), Layer(128, 2, 1), Layer(256, 2, 1), Layer(512, 2, 1))


def random_gluoncv_values(params, rng):
    """Random values for every GluonCV parameter, BN gammas kept small on the residual branches."""
    values = {}
    for name, value in params.items():
        shape = value.shape
        if name.endswith('.weight') and len(shape) == 4:
            drawn = rng.normal(0, np.sqrt(2. / np.prod(shape[1:])), shape)
        elif name.endswith('.gamma'):
            last = 'body.7' in name or 'downsample.1' in name
            drawn = rng.uniform(*((0.15, 0.35) if last else (0.5, 1.5)), shape)
        elif name.endswith('.running_var'):
            drawn = rng.uniform(0.5, 1.5, shape)
        else:  # biases (including the 1x1 convs'), betas, means, the fc
            drawn = rng.normal(0, 0.1, shape)
        values[name] = mx.nd.array(drawn, dtype=np.float32)
    return values


def test_gluoncv_resnet101_v1_backbone_equals_gluoncv_features(tmp_path):
    model_zoo = pytest.importorskip(
        'gluoncv.model_zoo', reason='gluoncv is not installed; this test checks the mapping of '
        'GluonCV resnet101_v1 parameters against GluonCV itself')
    net = model_zoo.get_model('resnet101_v1', pretrained=False)
    net.initialize()
    data = np.random.RandomState(5).uniform(-2, 2, (1, 3, 33, 41)).astype(np.float32)
    net(mx.nd.array(data))  # materialise the deferred shapes
    path = str(tmp_path / 'resnet101_v1.params')
    net.save_parameters(path)
    mx.nd.save(path, random_gluoncv_values(mx.nd.load(path), np.random.RandomState(7)))
    net.load_parameters(path)

    arg_params, aux_params, missing = params_from_gluoncv_resnet101_v1(mx.nd.load(path), 19)
    assert missing == ['layer5_conv2d_list_%d_%s' % (k, leaf) for k in range(4)
                       for leaf in ('weight', 'bias')]
    sym = resnet_features(mx.sym.Variable('data'), 101, IMAGENET_LAYERS)
    ours = forward(sym, {k: v for k, v in arg_params.items() if k in sym.list_arguments()},
                   aux_params, data)
    theirs = net.features[:8](mx.nd.array(data)).asnumpy()
    assert ours.shape == theirs.shape == (1, 2048, 2, 2)
    assert np.abs(ours - theirs).max() <= 1e-4 * max(1., np.abs(theirs).max())
