"""The three network families behind --model: labels, get_model, weights (.params, .pth, GluonCV), preprocessing."""
import collections
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import issegm
from issegm.engine import model
from issegm.engine.inference import Predictor
from issegm.engine.model import (FAMILIES, get_model, get_module, load_weights, parse_label, preprocessing,
                                 start_epoch)
from issegm.testing.deeplab_fixture import fixture_weights, random_state_dict
from issegm.testing.torch_files import write_legacy
from util import image
from util.child_env import child_env
from util.mxutil import CheckpointError
from util.symbol import fcn8s
from util.symbol.deeplab_v2 import key_table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'deeplabv2')
# A narrow VGG16 body: the fcn8s-vgg16 label's wiring at a fraction of its 134 M parameters.
TINY_VGG = fcn8s.Arch(blocks=(2, 2, 3, 3, 3), filters=(4, 4, 8, 8, 8), fc=16)


@pytest.fixture
def tiny_vgg(monkeypatch):
    monkeypatch.setitem(fcn8s.ARCHS, 'vgg16', TINY_VGG)


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _one_line_error(call, *args, **kwargs):
    with pytest.raises(CheckpointError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert '\n' not in message
    return message


def _r50_state_dict(classes=19, seed=0):
    """A CRST-style state dict of DeepLab-v2 ResNet-50 (a real member of the family, 4x smaller)."""
    return random_state_dict(50, classes, seed)


# ---------------------------------------------------------------------------- labels
@pytest.mark.parametrize('label, parts, family', [
    ('cityscapes_rna-a1_cls19_s8', ('cityscapes', 'rna', 'a1', 19, 8), 'resnet38'),
    ('ilsvrc-cls_rna-a1_cls1000', ('ilsvrc-cls', 'rna', 'a1', 1000, 32), 'resnet38'),
    ('cityscapes_deeplabv2-r101_cls19_s8', ('cityscapes', 'deeplabv2', 'r101', 19, 8), 'deeplabv2'),
    ('gta_deeplabv2-r101_cls19_s8', ('gta', 'deeplabv2', 'r101', 19, 8), 'deeplabv2'),
    ('cityscapes_deeplabv2-r101_cls16_s8', ('cityscapes', 'deeplabv2', 'r101', 16, 8), 'deeplabv2'),
    ('gta_deeplabv2-r101_cls19', ('gta', 'deeplabv2', 'r101', 19, 8), 'deeplabv2'),
    ('cityscapes_fcn8s-vgg16_cls19_s8', ('cityscapes', 'fcn8s', 'vgg16', 19, 8), 'fcn8s'),
])
def test_each_family_label_parses(label, parts, family):
    spec = parse_label(label)
    assert spec == parts and spec.family is FAMILIES[family]


@pytest.mark.parametrize('label, words', [
    ('gta_fcn8s-vgg16_cls19_s16', 'stride 8 only'),
    ('gta_deeplabv2-r101_cls19_s32', 'stride 8 only'),
    ('gta_deeplabv2-r7_cls19_s8', 'depth must be one of'),
    ('ilsvrc-cls_deeplabv2-r101_cls1000_s8', 'only ResNet-38'),
    ('gta_fcn8s-vgg19_cls19_s8', 'is not a model label'),
])
def test_bad_labels_of_the_new_families_are_one_clear_line(label, words):
    with pytest.raises(ValueError) as info:
        parse_label(label)
    assert words in str(info.value) and label in str(info.value)


# ---------------------------------------------------------------------------- get_model
@pytest.mark.parametrize('label, hw, out_hw', [
    ('gta_rna-t1_cls19_s8', (32, 48), (4, 6)),
    ('gta_deeplabv2-r101_cls19_s8', (32, 48), (4, 6)),
    ('gta_fcn8s-vgg16_cls16_s8', (32, 48), (4, 6)),
])
def test_get_model_gives_probabilities_at_stride_8(tiny_vgg, label, hw, out_hw):
    net = issegm.get_model(label)  # the package's entry
    probs = net(mx.nd.array(np.random.RandomState(0).randn(1, 3, *hw))).asnumpy()
    classes = parse_label(label).classes
    assert probs.shape == (1, classes) + out_hw
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_fcn8s_without_weights_starts_as_the_original_zero_scores_bilinear_deconvolutions(tiny_vgg):
    net = get_model('gta_fcn8s-vgg16_cls19_s8')
    params = net.collect_params()
    assert not params['score_fr_weight'].data().asnumpy().any()
    assert np.array_equal(params['upscore2_weight'].data().asnumpy(), fcn8s.bilinear_kernels(19, 4))
    assert 'upscore8_weight' not in params  # the engine stops at stride 8


@pytest.fixture(scope='module')
def crst_pth(tmp_path_factory):
    """The fixture's deterministic full-size DeepLab-v2 written as a legacy .pth, as CRST released its files."""
    path = str(tmp_path_factory.mktemp('crst') / 'gta_src.pth')
    return write_legacy(path, collections.OrderedDict(fixture_weights(FIXTURES)))


def _at_stride_centres(logits, hw):
    # Cell i of DeepLab-v2 sits at pixel 8 i; the engine's cell j at 8 j + 3.5: linear in between.
    n = [-(-v // 8) for v in hw]
    p = np.pad(logits, ((0, 0), (0, 0), (0, 1), (0, 1)), mode='edge')
    p = 0.5625 * p[:, :, :n[0]] + 0.4375 * p[:, :, 1:n[0] + 1]
    return 0.5625 * p[:, :, :, :n[1]] + 0.4375 * p[:, :, :, 1:n[1] + 1]


def test_crst_pth_through_get_model_gives_the_pytorch_probabilities(crst_pth):
    net = get_model('gta_deeplabv2-r101_cls19_s8', weights=crst_pth)
    for suffix in ('', '3'):
        data = np.load(os.path.join(FIXTURES, 'input%s.npy' % suffix))
        logits = np.load(os.path.join(FIXTURES, 'logits%s.npy' % suffix)).astype(np.float64)
        golden = _softmax(_at_stride_centres(logits, data.shape[2:]))
        probs = net(mx.nd.array(data)).asnumpy()
        assert probs.shape == golden.shape
        assert np.abs(probs - golden).max() <= 1e-4


def test_crst_pth_on_the_native_grid_gives_crsts_own_probabilities(crst_pth):
    """crst_seg.py's network: CRST's raw logits (no resampling to the engine's centres), softmaxed."""
    net = get_model('gta_deeplabv2-r101_cls19_s8', weights=crst_pth, native=True)
    for suffix in ('', '2', '3'):
        data = np.load(os.path.join(FIXTURES, 'input%s.npy' % suffix))
        golden = _softmax(np.load(os.path.join(FIXTURES, 'logits%s.npy' % suffix)).astype(np.float64))
        probs = net(mx.nd.array(data)).asnumpy()
        assert probs.shape == golden.shape  # 13x17, 9x11 and 9x13: ceil-mode pooling shows on input3
        assert np.abs(probs - golden).max() <= 1e-4


def test_deeplab_training_module_freezes_bn_and_runs_the_classifier_at_10x():
    label = 'gta_deeplabv2-r50_cls19_s8'
    mod = get_module(label, mx.cpu())
    fixed = set(mod._fixed_param_names)
    assert 'bn1_gamma' in fixed and 'layer4_2_bn3_beta' in fixed
    assert not any(n.endswith('_weight') for n in fixed)
    attrs = model.get_symbol(label).attr_dict()
    assert attrs['layer5_conv2d_list_0_weight']['lr_mult'] == '10.0'
    assert 'lr_mult' not in attrs.get('layer4_2_conv2_weight', {})


# ---------------------------------------------------------------------------- weight files
def test_a_misfit_pth_is_one_line_naming_the_keys():
    path = os.path.join(FIXTURES, 'tiny_legacy.pth')
    message = _one_line_error(load_weights, 'gta_deeplabv2-r101_cls19_s8', path)
    assert path in message and 'missing key(s): conv1.weight' in message
    assert 'unexpected key(s)' in message


def test_a_pth_of_another_class_count_names_the_mis_shaped_keys(tmp_path):
    path = write_legacy(str(tmp_path / 'syn.pth'), _r50_state_dict(classes=16))
    message = _one_line_error(load_weights, 'gta_deeplabv2-r50_cls19_s8', path)
    assert 'mis-shaped' in message and 'layer5.conv2d_list.0.weight' in message


class _OtherGlobal(object):
    def __reduce__(self):
        return os.getcwd, ()


def test_a_pickle_with_another_global_is_refused(tmp_path):
    path = write_legacy(str(tmp_path / 'odd.pth'), collections.OrderedDict([('x', _OtherGlobal())]))
    message = _one_line_error(load_weights, 'gta_deeplabv2-r50_cls19_s8', path)
    assert 'refused to unpickle' in message and 'getcwd' in message


def test_resnet38_and_fcn8s_refuse_pth_files(tmp_path):
    path = write_legacy(str(tmp_path / 'x.pth'), collections.OrderedDict([('w', np.ones(2, np.float32))]))
    for label in ('gta_rna-t1_cls19_s8', 'gta_fcn8s-vgg16_cls19_s8'):
        assert 'no PyTorch layout' in _one_line_error(load_weights, label, path)


def test_convert_round_trip(tmp_path, capsys):
    state = _r50_state_dict()
    src = write_legacy(str(tmp_path / 'r50.pth'), state)
    dst = str(tmp_path / 'gta_deeplabv2-r50_cls19_s8_ep-0000.params')
    proc = subprocess.run([sys.executable, '-m', 'issegm.convert', src, dst, '--model', 'gta_deeplabv2-r50_cls19_s8'],
                          env=child_env(ROOT), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    saved = mx.nd.load(dst)
    rows = key_table(50)
    assert len(saved) == len(rows)
    for row in rows:
        assert np.array_equal(saved['%s:%s' % (row.kind, row.mxnet)].asnumpy(), state[row.crst])
    # the converted file is an ordinary checkpoint of the label, and starts nothing new
    arg_params, aux_params, missing = load_weights('gta_deeplabv2-r50_cls19_s8', dst)
    assert missing == [] and len(arg_params) + len(aux_params) == len(rows)
    assert start_epoch(src, 'cityscapes_deeplabv2-r50_cls19_s8') == 0
    from issegm import convert
    assert convert.main([src, dst, '--model', 'gta_deeplabv2-r50_cls16_s8']) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and 'mis-shaped' in err


def test_gluoncv_resnet_v1_initialises_the_deeplab_body_and_leaves_layer5(tmp_path):
    label = 'gta_deeplabv2-r50_cls19_s8'
    shapes = model.param_shapes(model.get_symbol(label))
    shapes = dict(shapes[0], **shapes[1])
    rng = np.random.RandomState(1)
    gluon = {row.gluoncv: mx.nd.array(rng.rand(*shapes[row.mxnet]) + 0.5) for row in key_table(50) if row.gluoncv}
    gluon['output.weight'] = mx.nd.zeros((1000, 2048))
    path = str(tmp_path / 'resnet50_v1-cc729d95.params')
    mx.nd.save(path, gluon)
    arg_params, aux_params, missing = load_weights(label, path)
    assert sorted(missing) == sorted(model.head_param_names(label))
    assert np.array_equal(arg_params['conv1_weight'].asnumpy(), gluon['features.0.weight'].asnumpy())
    assert start_epoch(path, label) == 0
    assert 'lacks the head' in _one_line_error(__import__('issegm.convert').convert.convert, path,
                                               str(tmp_path / 'out.params'), label)


def test_gluoncv_vgg16_initialises_the_whole_fcn(tiny_vgg, tmp_path):
    label = 'gta_fcn8s-vgg16_cls19_s8'
    rng = np.random.RandomState(2)
    gluon = {}
    for ours, index, _ in fcn8s._gluoncv_layout(TINY_VGG):
        for kind in ('weight', 'bias'):
            shape = fcn8s._gluoncv_shape(ours + '_' + kind, fcn8s.fcn8s_param_shapes(19, TINY_VGG)[ours + '_' + kind])
            gluon['features.%d.%s' % (index, kind)] = mx.nd.array(rng.randn(*shape))
    path = str(tmp_path / 'vgg16-e660d456.params')
    mx.nd.save(path, gluon)
    arg_params, aux_params, missing = load_weights(label, path)
    assert missing == [] and aux_params == {} and 'upscore8_weight' not in arg_params
    net = get_model(label, weights=path)
    assert net(mx.nd.ones((1, 3, 16, 16))).shape == (1, 19, 2, 2)


# ---------------------------------------------------------------------------- preprocessing
def test_preprocessing_is_the_reference_for_resnet38_and_crst_float32_for_the_others():
    img = np.random.RandomState(3).randint(0, 256, (5, 7, 3)).astype(np.uint8)
    assert preprocessing('gta_rna-a1_cls19_s8') is image.REFERENCE
    assert np.array_equal(image.REFERENCE(img), image.normalize(img))
    # CRST (crst_seg.py + datasets.py): float32 x / 255.0 - mean, / std, in RGB order
    crst = (img.astype(np.float32) / 255.0 - np.array((0.485, 0.456, 0.406), np.float32)) \
        / np.array((0.229, 0.224, 0.225), np.float32)
    for label in ('gta_deeplabv2-r101_cls19_s8', 'gta_fcn8s-vgg16_cls19_s8'):
        ours = preprocessing(label)(img)
        assert ours.dtype == np.float32 and np.array_equal(ours, crst.transpose(2, 0, 1))
    assert list(image.IMAGENET_FLOAT32.canvas_rgb) == [123, 116, 103]


def test_predictor_feeds_the_network_through_the_given_normalizer():
    seen = []

    def net(data):
        seen.append(data.asnumpy())
        return mx.nd.ones((1, 2, data.shape[2] // 8, data.shape[3] // 8)) * 0.5

    img = np.random.RandomState(4).randint(0, 256, (16, 16, 3)).astype(np.uint8)
    Predictor(net, 2, stride=8, normalizer=preprocessing('gta_deeplabv2-r101_cls19_s8')).predict_lowres(img, 16)
    Predictor(net, 2, stride=8).predict_lowres(img, 16)
    assert np.array_equal(seen[0][0], image.IMAGENET_FLOAT32(img))
    assert np.array_equal(seen[1][0], image.normalize(img))


def test_crst_forward_on_the_native_grid_gives_crsts_upsampled_probabilities(crst_pth):
    """What crst_seg.py's val() computes: logits upsampled with aligned corners to the label size, then softmax."""
    from issegm.engine.crst_forward import LowResOutput, probabilities_from_lowres
    net = get_model('gta_deeplabv2-r101_cls19_s8', weights=crst_pth, native=True)
    data = np.load(os.path.join(FIXTURES, 'input.npy'))
    probs = net(mx.nd.array(data)).asnumpy()[0]
    golden = np.load(os.path.join(FIXTURES, 'prob_up.npy'))[0]
    up = probabilities_from_lowres(LowResOutput(probs, None), golden.shape[1:])
    assert up.shape == golden.shape and np.abs(up - golden).max() <= 1e-4
