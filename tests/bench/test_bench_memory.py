"""bench.memory: the planner's total, one real planning of a thin ResNet-38, the FLOPs counter."""
import mxnet as mx
import numpy as np
import pytest

from bench.memory import forward_flops, measure, parse_planner_total, plan_memory, total_mb

TINY = 'gta_rna-t1_cls19_s8'


def test_parse_planner_total_reads_the_last_total_line():
    text = ('Symbol Outputs:\n\toutput[0]=softmax(0)\nVariable:data\nTotal 12 MB allocated\n'
            '--------------------\nOp:softmax\nTotal 2972 MB allocated\nTotal 11 TempSpace resource requested\n')
    assert parse_planner_total(text) == 2972


def test_parse_planner_total_refuses_a_string_without_one():
    with pytest.raises(ValueError, match='Total N MB allocated'):
        parse_planner_total('Total 11 TempSpace resource requested\n')


def test_parse_planner_total_reads_a_real_executor():
    data = mx.sym.var('data')
    net = mx.sym.FullyConnected(data, num_hidden=1024, name='fc')
    exe = net.simple_bind(mx.cpu(), grad_req='write', data=(1024, 1024))
    # output 4 MB and its gradient 4 MB are the planner's; data and weights are not
    assert 4 <= parse_planner_total(exe.debug_str()) <= 8


@pytest.mark.subprocess
def test_thin_resnet38_planned_with_and_without_mirror():
    plain = measure(TINY, 64, 64, 2, mirror=False, timeout=120)
    mirror = measure(TINY, 64, 64, 2, mirror=True, timeout=120)
    assert (plain['mirror'], mirror['mirror']) == ('0', '1')
    # The setting reached the child's executor before it bound: the plans differ.
    # (On MXNet 1.9.1 mirroring ResNet-38 costs memory: BN's output stays for the
    # recomputed ReLU, which the plain plan runs in place; docs/performance.md.)
    assert mirror['pool'] != plain['pool'] and min(plain['pool'], mirror['pool']) > 0
    for p in (plain, mirror):
        assert p['grads'] == p['params'] == p['momentum']  # ResNet-38 trains every parameter
        assert total_mb(p) == pytest.approx(p['pool'] + 3 * p['params'] + p['inputs'] + p['aux'])
    assert plain['inputs'] == pytest.approx((2 * 3 * 64 * 64 + 2 * 8 * 8) * 4 / 2.0 ** 20)


def test_deeplabv2_frozen_parameters_get_no_gradient():
    from issegm.engine.model import fixed_param_names, get_symbol, param_shapes
    label = 'gta_deeplabv2-r101_cls19_s8'
    p = plan_memory(label, 32, 32, 1)
    args, _ = param_shapes(get_symbol(label))
    fixed = set(fixed_param_names(label, get_symbol(label)))
    assert fixed and p['trained'] == sum(int(np.prod(s)) for n, s in args.items() if n not in fixed)
    assert p['grads'] < p['params']


def test_forward_flops_of_one_convolution_by_hand():
    data = mx.sym.var('data')
    conv = mx.sym.Convolution(data, num_filter=6, kernel=(3, 3), pad=(1, 1), stride=(2, 2), num_group=2,
                              name='c')
    flops, by_op = forward_flops(conv, (2, 4, 10, 12))
    # output 5x6; each output value: 4/2 input channels x 3x3 multiply-adds; 6 outputs; 2 images
    assert flops == 2 * (2 * 9) * (5 * 6) * 6 * 2 == by_op['Convolution']


def test_forward_flops_of_deconvolution_and_fully_connected_by_hand():
    data = mx.sym.var('data')
    up = mx.sym.Deconvolution(data, num_filter=5, kernel=(4, 4), stride=(2, 2), pad=(1, 1), name='up')
    fc = mx.sym.FullyConnected(mx.sym.relu(up), num_hidden=7, name='fc')
    flops, by_op = forward_flops(fc, (1, 3, 4, 4))
    assert by_op['Deconvolution'] == 2 * 3 * 4 * 4 * 5 * (4 * 4)  # every input cell through every weight
    assert by_op['FullyConnected'] == 2 * (5 * 8 * 8) * 7
    assert flops == by_op['Deconvolution'] + by_op['FullyConnected']
