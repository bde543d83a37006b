"""Training memory of one device from MXNet's memory planner, and the FLOPs of one forward.

No GPU is needed: the training symbol of each network is bound on the CPU
(``simple_bind``, gradients written), which plans the memory of the forward
and backward pass without running it. Each configuration binds in a child
process, because ``MXNET_BACKWARD_DO_MIRROR`` (``--backward-do-mirror``) is
read by the executor when it binds. The child sets ``MXNET_SUBGRAPH_BACKEND=NONE``
so that the CPU build plans the plain training graph, as a GPU does, not
MKL-DNN's fused one.

The memory of one device is the sum of

* the planner's pool (``Total N MB allocated``, the last lines of
  ``executor.debug_str()``): every feature map and backward temporary;
* the inputs (data, label), the parameters, their gradients (only the trained
  ones: DeepLab-v2's frozen BN parameters have none), the auxiliary states;
* SGD's momentum, one array per trained parameter (training uses momentum 0.9).

Left out: the convolution workspace (cuDNN's, at most ``TRAIN_WORKSPACE_MB``
at a time), the CUDA context and the allocator's rounding, so a GPU's
``nvidia-smi`` shows more.

FLOPs: 2 multiply-adds per weight use in convolutions, deconvolutions and
fully connected layers of one image at 1024x2048; biases, BN, ReLU, pooling,
element-wise sums, interpolation and the softmax are left out.

    python -m bench.memory [--only LABEL] [--backward-do-mirror {both,on,off}]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

from util.child_env import REPO, child_env

__all__ = ['SETTINGS', 'PUBLISHED_GB', 'PUBLISHED_PARAMS_M', 'parse_planner_total', 'plan_memory',
           'measure', 'forward_flops', 'total_mb']

#: ``{label: (height, width, images)}``: the published training crop and images per device.
SETTINGS = {
    'gta_rna-a1_cls19_s8': (500, 500, 2),            # CBST's README
    'gta_deeplabv2-r101_cls19_s8': (512, 1024, 2),   # CRST's README
    'gta_fcn8s-vgg16_cls19_s8': (500, 500, 2),       # CBST's crop and images (no published figure)
}

#: GPU memory of one device at :data:`SETTINGS`, as the READMEs give it (GB).
PUBLISHED_GB = {'gta_rna-a1_cls19_s8': 7.0, 'gta_deeplabv2-r101_cls19_s8': 11.0}

#: Parameters (millions) as the papers give them: ResNet-38 (Wu et al. 2016, model A)
#: and FCN-VGG16 (Long et al. 2015, table 1).
PUBLISHED_PARAMS_M = {'gta_rna-a1_cls19_s8': 124.0, 'gta_fcn8s-vgg16_cls19_s8': 134.0}

FLOPS_SIZE = (1024, 2048)

_TOTAL_RE = re.compile(r'^Total (\d+) MB allocated\s*$', re.M)


def parse_planner_total(text):
    """The planner's pool in MB from ``executor.debug_str()``.

    Parameters
    ----------
    text : str
        The executor's debug string.

    Returns
    -------
    int
        N of its last ``Total N MB allocated`` line.
    """
    found = _TOTAL_RE.findall(text)
    if not found:
        raise ValueError('no "Total N MB allocated" line in the executor\'s debug string '
                         '(is this MXNet 1.x\'s GraphExecutor?)')
    return int(found[-1])


def _mb(shapes, dtype_bytes=4):
    return sum(int(np.prod(s)) for s in shapes) * dtype_bytes / 2.0 ** 20


def plan_memory(label, height, width, images):
    """Bind the training symbol of ``label`` on the CPU and return its memory in MB, by kind.

    Runs in this process: ``MXNET_BACKWARD_DO_MIRROR`` must already be set
    as wanted (:func:`measure` runs it in a child).

    Parameters
    ----------
    label : str
        Model label.
    height, width, images : int
        The crop and the images on the device.

    Returns
    -------
    dict
        ``pool``, ``inputs``, ``params``, ``grads``, ``aux``, ``momentum`` (MB), ``trained``
        (number of trained parameter values) and ``mirror`` (the environment's setting).
    """
    import mxnet as mx
    from issegm.engine.model import fixed_param_names, get_symbol

    sym = get_symbol(label)
    inputs = ('data', 'softmax_label')
    fixed = set(fixed_param_names(label, sym) or ())
    grad_req = {n: 'null' if n in fixed or n in inputs else 'write' for n in sym.list_arguments()}
    exe = sym.simple_bind(ctx=mx.cpu(), grad_req=grad_req, data=(images, 3, height, width))
    shapes = {n: a.shape for n, a in exe.arg_dict.items()}
    trained = [shapes[n] for n, req in grad_req.items() if req == 'write']
    return {
        'pool': parse_planner_total(exe.debug_str()),
        'inputs': _mb([shapes[n] for n in inputs]),
        'params': _mb([s for n, s in shapes.items() if n not in inputs]),
        'grads': _mb(trained),
        'aux': _mb([a.shape for a in exe.aux_arrays]),
        'momentum': _mb(trained),
        'trained': sum(int(np.prod(s)) for s in trained),
        'mirror': os.environ.get('MXNET_BACKWARD_DO_MIRROR', '0'),
    }


def total_mb(plan):
    """The memory of one device (MB): the planner's pool plus every array kept across steps."""
    return sum(plan[k] for k in ('pool', 'inputs', 'params', 'grads', 'aux', 'momentum'))


def measure(label, height, width, images, mirror, timeout=600):
    """:func:`plan_memory` in a child process with ``MXNET_BACKWARD_DO_MIRROR`` set to ``mirror``.

    Parameters
    ----------
    label : str
        Model label.
    height, width, images : int
        The crop and the images on the device.
    mirror : bool
        Recompute in backward (``--backward-do-mirror``).
    timeout : float
        Seconds the child may take.

    Returns
    -------
    dict
        :func:`plan_memory`'s answer.
    """
    env = child_env(threads=1)
    env['MXNET_BACKWARD_DO_MIRROR'] = '1' if mirror else '0'
    env['MXNET_SUBGRAPH_BACKEND'] = 'NONE'  # the plain training graph, as on a GPU
    cmd = [sys.executable, '-m', 'bench.memory', '--child', json.dumps([label, height, width, images])]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    if out.returncode != 0:
        raise RuntimeError('planning %s failed:\n%s' % (label, out.stderr[-2000:]))
    return json.loads(out.stdout.strip().splitlines()[-1])


def _flops_of_node(node, in_shape, out_shape, weight_shape):
    """Multiply-adds x 2 of one layer for the whole batch, or 0 for a layer not counted."""
    op = node['op']
    if op == 'Convolution':
        # weight (Cout, Cin/groups, kh, kw): each output cell uses every weight once
        return 2 * int(np.prod(weight_shape)) * int(np.prod(out_shape[2:])) * out_shape[0]
    if op == 'Deconvolution':
        # weight (Cin, Cout/groups, kh, kw): each input cell scatters through every weight once
        return 2 * int(np.prod(weight_shape)) * int(np.prod(in_shape[2:])) * in_shape[0]
    if op == 'FullyConnected':
        return 2 * int(np.prod(weight_shape)) * out_shape[0]
    return 0


def forward_flops(symbol, data_shape):
    """FLOPs of one forward of ``symbol``: convolutions, deconvolutions, fully connected layers.

    Parameters
    ----------
    symbol : mxnet.symbol.Symbol
        The network (its data input named ``data``).
    data_shape : tuple
        ``(N, C, H, W)``.

    Returns
    -------
    tuple
        ``(flops, {op: flops})``: the total for the batch, and by operator type.
    """
    internals = symbol.get_internals()
    _, out_shapes, _ = internals.infer_shape_partial(data=data_shape)
    shape_of = dict(zip(internals.list_outputs(), out_shapes))
    arg_shapes, _, _ = symbol.infer_shape_partial(data=data_shape)
    shape_of.update(zip(symbol.list_arguments(), arg_shapes))
    nodes = json.loads(symbol.tojson())['nodes']

    def entry_name(entry):
        node = nodes[entry[0]]
        return node['name'] if node['op'] == 'null' else '%s_output' % node['name']

    by_op = {}
    for node in nodes:
        if node['op'] not in ('Convolution', 'Deconvolution', 'FullyConnected'):
            continue
        flops = _flops_of_node(node, shape_of[entry_name(node['inputs'][0])],
                               shape_of['%s_output' % node['name']], shape_of[entry_name(node['inputs'][1])])
        by_op[node['op']] = by_op.get(node['op'], 0) + flops
    return sum(by_op.values()), by_op


def _gflops_and_params(label):
    """GFLOPs of one image at :data:`FLOPS_SIZE` and millions of parameters of ``label``'s network."""
    from issegm.engine.model import get_scores, param_shapes
    scores = get_scores(label)
    flops, _ = forward_flops(scores, (1, 3) + FLOPS_SIZE)
    args, _ = param_shapes(scores)
    return flops / 1e9, sum(int(np.prod(s)) for s in args.values()) / 1e6


def _ratio(value, published):
    return '%.2f' % (value / published) if published else '-'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--only', default=None, help='one model label of SETTINGS')
    parser.add_argument('--backward-do-mirror', choices=('both', 'on', 'off'), default='both')
    parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(plan_memory(*json.loads(args.child))))
        return
    labels = [args.only] if args.only else list(SETTINGS)
    mirrors = {'both': (False, True), 'on': (True,), 'off': (False,)}[args.backward_do_mirror]
    start = time.time()
    print('one device, float32, SGD with momentum; MXNet planner on the CPU (MXNET_SUBGRAPH_BACKEND=NONE); '
          'MB = 2^20 bytes, GB = 2^30 bytes')
    print('%-28s %-12s %-6s %7s %8s %8s %8s %8s %8s %6s %9s' % (
        'network', 'crop x imgs', 'mirror', 'pool MB', 'param MB', 'grad MB', 'mom MB', 'other MB',
        'total GB', 'paper', 'ratio'))
    for label in labels:
        height, width, images = SETTINGS.get(label, (500, 500, 2))
        for mirror in mirrors:
            p = measure(label, height, width, images, mirror)
            total_gb = total_mb(p) / 1024.0
            published = PUBLISHED_GB.get(label)
            print('%-28s %-12s %-6s %7d %8.0f %8.0f %8.0f %8.0f %8.2f %6s %9s' % (
                label, '%dx%dx%d' % (height, width, images), 'on' if mirror else 'off', p['pool'],
                p['params'], p['grads'], p['momentum'], p['inputs'] + p['aux'], total_gb,
                '%gGB' % published if published else '-', _ratio(total_gb, published)))
    print()
    print('%-28s %12s %10s %8s %12s' % ('network', 'GFLOPs %dx%d' % FLOPS_SIZE, 'params M', 'paper', 'ratio'))
    for label in labels:
        gflops, params_m = _gflops_and_params(label)
        published = PUBLISHED_PARAMS_M.get(label)
        print('%-28s %12.0f %10.1f %8s %12s' % (label, gflops, params_m,
                                               '%gM' % published if published else '-',
                                               _ratio(params_m, published)))
    print('%.0f s' % (time.time() - start))


if __name__ == '__main__':
    main()
