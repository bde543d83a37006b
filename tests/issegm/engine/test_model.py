"""Model labels, the golden forward pass, and output shapes."""
import mxnet as mx
import numpy as np
import pytest

from issegm.testing.checkpoints import GOLDEN, golden_input
from issegm.engine.model import (epoch_from_weights, get_model, get_module, label_from_weights, parse_label,
                          subgraph_backend)


def test_parse_label():
    assert parse_label('cityscapes_rna-a1_cls19_s8') == ('cityscapes', 'rna', 'a1', 19, 8)
    assert parse_label('ilsvrc-cls_rna-a1_cls1000') == ('ilsvrc-cls', 'rna', 'a1', 1000, 32)
    assert parse_label('gta_rna-t1_cls19_s16').stride == 16
    with pytest.raises(ValueError, match='not a model label'):
        parse_label('resnet38')
    with pytest.raises(ValueError, match='unknown network'):
        parse_label('gta_rna-zz_cls19_s8')


def test_label_and_epoch_from_weights():
    path = 'models/gta_rna-a1_cls19_s8_ep-0000.params'
    assert label_from_weights(path) == 'gta_rna-a1_cls19_s8'
    assert epoch_from_weights('out/0/cityscapes_rna-a1_cls19_s8_ep-0004.params') == 4
    with pytest.raises(ValueError, match='--model'):
        label_from_weights('weights.params')


def test_golden_forward_pass(golden_checkpoint):
    net = get_model('gta_rna-a1_cls19_s8', weights=golden_checkpoint)
    out = net(mx.nd.array(golden_input())).asnumpy()
    golden = np.load(GOLDEN)
    assert out.shape == golden.shape == (1, 19, 12, 16)
    assert np.abs(out - golden).max() < 1e-5


def test_golden_forward_through_module(golden_checkpoint):
    # The training path (Module, SoftmaxOutput in inference) computes the same numbers.
    from util.mxutil import load_params_from_file
    arg, aux = load_params_from_file(golden_checkpoint)
    mod = get_module('gta_rna-a1_cls19_s8', [mx.cpu()])
    mod.bind([('data', (1, 3, 96, 128))], for_training=False)
    mod.set_params(arg, aux)
    mod.forward(mx.io.DataBatch([mx.nd.array(golden_input())]), is_train=False)
    assert np.abs(mod.get_outputs()[0].asnumpy() - np.load(GOLDEN)).max() < 1e-5


@pytest.mark.parametrize('hw', [(64, 64), (72, 136), (128, 40)])
def test_output_shape(hw):
    net = get_model('cityscapes_rna-t1_cls19_s8')
    out = net(mx.nd.zeros((2, 3) + hw))
    assert out.shape == (2, 19, hw[0] // 8, hw[1] // 8)
    assert np.allclose(out.sum(axis=1).asnumpy(), 1, atol=1e-5)


def test_start_epoch_continues_only_the_same_model():
    from issegm.engine.model import start_epoch
    assert start_epoch('out/0/cityscapes_rna-a1_cls19_s8_ep-0004.params', 'cityscapes_rna-a1_cls19_s8') == 4
    assert start_epoch('models/gta_rna-a1_cls19_s8_ep-0000.params', 'cityscapes_rna-a1_cls19_s8') == 0
    assert start_epoch(None, 'cityscapes_rna-a1_cls19_s8') == 0
    with pytest.raises(ValueError, match='pass --from-epoch'):
        start_epoch('weights.params', 'cityscapes_rna-a1_cls19_s8')


def _conv_workspaces(sym):
    return {name: int(attrs['workspace']) for name, attrs in sym.attr_dict().items()
            if 'workspace' in attrs and 'num_filter' in attrs}


def test_convolution_workspace_is_the_reference_one():
    # Reference: mx_workspace 1650 MB when training, 8192 MB when testing (--phase val, evaluate.py).
    label = 'cityscapes_rna-t1_cls19_s8'
    test_net = get_model(label)
    train_sym = get_module(label, [mx.cpu()]).symbol
    for sym, mb in ((train_sym, 1650), (test_net._cached_graph[1], 8192)):
        ws = _conv_workspaces(sym)
        assert len(ws) > 10 and set(ws.values()) == {mb}
    # Building one does not leak into the other.
    assert set(_conv_workspaces(get_module(label, [mx.cpu()]).symbol).values()) == {1650}


def test_test_time_softmax_precisions():
    # float32 (default): SoftmaxOutput's forward, the reference's pseudo-label network.
    # float64: the reference evaluate.py's bootstrapping softmax, float64 numpy rounded to float32.
    label = 'cityscapes_rna-t1_cls19_s8'
    n32 = get_model(label)
    n64 = get_model(label, softmax_dtype='float64')
    for p32, p64 in zip(n32.collect_params().values(), n64.collect_params().values()):
        p64.set_data(p32.data())
    x = mx.nd.array(np.random.RandomState(1).randn(1, 3, 48, 64).astype(np.float32))
    # The logits, computed the same way (a hybridised block over the same parameters).
    scores = mx.gluon.SymbolBlock(n32._cached_graph[1].get_internals()['linear19_output'],
                                  mx.sym.var('data', dtype='float32'), params=n32.collect_params())
    scores.hybridize(static_alloc=True, static_shape=True, backend=subgraph_backend([mx.cpu()]))
    logits = scores(x)
    want32 = mx.nd.SoftmaxOutput(logits, mx.nd.zeros((1, 48)), multi_output=True).asnumpy()
    z = logits.asnumpy().astype(np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    want64 = (e / e.sum(1, keepdims=True)).astype(np.float32)
    got32, got64 = n32(x).asnumpy(), n64(x).asnumpy()
    assert got64.dtype == np.float32
    np.testing.assert_array_equal(got32, want32)
    np.testing.assert_array_equal(got64, want64)
    assert (got32 != got64).any()
    with pytest.raises(ValueError, match='float32 or float64'):
        get_model(label, softmax_dtype='float16')


def test_get_model_computes_what_a_bare_executor_computes():
    # On the CPU Symbol.bind fuses conv + BN + ReLU (MKL-DNN subgraph); get_model's block must
    # run the same graph (bench/forward.py times the two against each other).
    from issegm.engine.model import get_scores_symbol
    label = 'cityscapes_rna-t1_cls19_s8'
    net = get_model(label)
    params = {n: p.data() for n, p in net.collect_params().items()}
    sym = get_scores_symbol(label)
    x = mx.nd.array(np.random.RandomState(2).randn(1, 3, 64, 96).astype(np.float32))
    args = {n: params[n] for n in sym.list_arguments() if n != 'data'}
    args['data'] = x
    exe = sym.bind(mx.cpu(), args=args, grad_req='null',
                   aux_states={n: params[n] for n in sym.list_auxiliary_states()})
    np.testing.assert_array_equal(net(x).asnumpy(), exe.forward(is_train=False)[0].asnumpy())
