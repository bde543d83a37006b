"""The network's parameter names and shapes equal the released checkpoints', in order."""
import pytest

from issegm.testing.checkpoints import read_tsv
from util.symbol.resnet_v2 import ARCHS, fcrna_model, fcrna_model_a1, rna_model_a1


def listed(sym, data_shape=(1, 3, 224, 224)):
    args, _, aux = sym.infer_shape(data=data_shape)
    rows = [('arg:' + n, tuple(s)) for n, s in zip(sym.list_arguments(), args)
            if n not in ('data', 'softmax_label')]
    return rows + [('aux:' + n, tuple(s)) for n, s in zip(sym.list_auxiliary_states(), aux)]


@pytest.mark.parametrize('table, sym', [
    ('rna-a1_cls19_s8.tsv', lambda: fcrna_model_a1(19, 8)),
    ('rna-a1_cls16_s8.tsv', lambda: fcrna_model_a1(16, 8)),
    ('rna-a1_cls1000.tsv', lambda: rna_model_a1(1000)),
])
def test_names_and_shapes_equal_released_checkpoints(table, sym):
    assert listed(sym()) == read_tsv(table)


def test_a1_has_124m_parameters():
    total = 0
    for key, shape in listed(fcrna_model_a1(19)):
        if key.startswith('arg:'):
            n = 1
            for d in shape:
                n *= d
            total += n
    assert round(total / 1e6, 1) == 124.0


@pytest.mark.parametrize('stride', [8, 16, 32])
@pytest.mark.parametrize('arch', sorted(ARCHS))
def test_output_stride(arch, stride):
    sym = fcrna_model(arch, 5, stride)
    _, out, _ = sym.infer_shape(data=(2, 3, 64, 96))
    assert out[0] == (2, 5, 64 // stride, 96 // stride)


def test_same_names_at_every_stride():
    # Strides change dilations and strides, never the parameters: one
    # checkpoint serves s8, s16 and s32.
    assert listed(fcrna_model_a1(19, 8)) == listed(fcrna_model_a1(19, 16)) == \
        listed(fcrna_model_a1(19, 32))


def test_lr_and_wd_multipliers_follow_alex_scheme():
    attrs = fcrna_model_a1(19).attr_dict()
    assert attrs['conv6a_bias']['lr_mult'] == '2.0' and attrs['conv6a_bias']['wd_mult'] == '0.0'
    assert attrs['bn2a_branch2a_beta']['lr_mult'] == '2.0'
    assert 'lr_mult' not in attrs.get('bn2a_branch2a_gamma', {})
    assert 'lr_mult' not in attrs.get('conv1a_weight', {})


def test_frozen_batchnorm_and_dropout_rates():
    import json
    nodes = json.loads(fcrna_model_a1(19).tojson())['nodes']
    bns = [n for n in nodes if n['op'] == 'BatchNorm']
    assert bns and all(n['attrs']['use_global_stats'] == 'True' for n in bns)
    assert all(float(n['attrs']['eps']) == pytest.approx(1.001e-5) for n in bns)
    drops = {n['name']: float(n['attrs']['p']) for n in nodes if n['op'] == 'Dropout'}
    assert drops == {'res6a_branch2b2_do': 0.3, 'res7a_branch2b2_do': 0.5}
