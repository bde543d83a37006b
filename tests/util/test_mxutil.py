"""Checkpoint I/O: the released format, round trips, and clear errors."""
import mxnet as mx
import numpy as np
import pytest

from issegm.testing.checkpoints import read_tsv
from issegm.engine.model import get_model, load_weights
from util.mxutil import CheckpointError, load_params_from_file, save_params


def _zeros_checkpoint(path, table):
    mx.nd.save(str(path), {k: mx.nd.zeros(s) for k, s in read_tsv(table)})


def test_save_load_round_trip_is_exact(tmp_path):
    rng = np.random.RandomState(0)
    arg = {'a_weight': mx.nd.array(rng.randn(3, 4, 3, 3)), 'b_bias': mx.nd.array(rng.randn(7))}
    aux = {'bn_moving_var': mx.nd.array(rng.rand(5))}
    path = tmp_path / 'x_ep-0001.params'
    save_params(str(path), arg, aux)
    raw = mx.nd.load(str(path))
    assert sorted(raw) == ['arg:a_weight', 'arg:b_bias', 'aux:bn_moving_var']
    arg2, aux2 = load_params_from_file(str(path))
    for src, dst in ((arg, arg2), (aux, aux2)):
        assert sorted(src) == sorted(dst)
        for k in src:
            assert np.array_equal(src[k].asnumpy(), dst[k].asnumpy())
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp.params')]


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / 'gta_rna-t1_cls19_s8_ep-0000.params'
    save_params(str(path), {'w_weight': mx.nd.ones((64, 64))}, {})
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='not a complete MXNet .params file') as err:
        load_params_from_file(str(path))
    assert str(path) in str(err.value)


def test_foreign_and_missing_files(tmp_path):
    junk = tmp_path / 'junk.params'
    junk.write_bytes(b'PK\x03\x04 this is a zip, not params')
    with pytest.raises(CheckpointError, match=str(junk)):
        load_params_from_file(str(junk))
    with pytest.raises(CheckpointError, match='not found'):
        load_params_from_file(str(tmp_path / 'none.params'))
    gluon = tmp_path / 'gluon.params'
    mx.nd.save(str(gluon), {'conv1a_weight': mx.nd.zeros((1,))})
    with pytest.raises(CheckpointError, match='neither arg:NAME nor aux:NAME'):
        load_params_from_file(str(gluon))


def test_16_class_checkpoint_into_19_class_network_names_both_heads(tmp_path):
    path = tmp_path / 'synthia_rna-a1_cls16_s8_ep-0000.params'
    _zeros_checkpoint(path, 'rna-a1_cls16_s8.tsv')
    with pytest.raises(CheckpointError) as err:
        load_weights('cityscapes_rna-a1_cls19_s8', str(path))
    text = str(err.value)
    assert 'linear19_weight' in text and 'linear16_weight' in text and str(path) in text


def test_mis_shaped_parameter_is_named(tmp_path):
    rows = read_tsv('rna-a1_cls19_s8.tsv')
    params = {k: mx.nd.zeros(s) for k, s in rows}
    params['arg:conv1a_weight'] = mx.nd.zeros((32, 3, 3, 3))
    path = tmp_path / 'gta_rna-a1_cls19_s8_ep-0000.params'
    mx.nd.save(str(path), params)
    with pytest.raises(CheckpointError, match=r'conv1a_weight \(file 32x3x3x3, network 64x3x3x3\)'):
        load_weights('gta_rna-a1_cls19_s8', str(path))


def test_imagenet_classifier_initialises_only_the_head(tmp_path):
    path = tmp_path / 'ilsvrc-cls_rna-a1_cls1000_ep-0001.params'
    _zeros_checkpoint(path, 'rna-a1_cls1000.tsv')
    arg, aux, missing = load_weights('gta_rna-a1_cls19_s8', str(path))
    assert missing == ['conv6a_weight', 'conv6a_bias', 'linear19_weight', 'linear19_bias']
    assert 'linear1000_weight' not in arg and 'conv1a_weight' in arg
    net = get_model('gta_rna-a1_cls19_s8', weights=str(path))
    params = net.collect_params()
    assert float(params['conv1a_weight'].data().abs().sum().asscalar()) == 0.0
    head = params['linear19_weight'].data().asnumpy()
    # Xavier(gaussian, in, 2): std sqrt(2 / (512*3*3)).
    assert abs(head.std() - np.sqrt(2. / (512 * 9))) < 0.1 * np.sqrt(2. / (512 * 9))
    assert np.all(params['linear19_bias'].data().asnumpy() == 0)
