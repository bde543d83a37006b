"""Forward-pass cost of the project's model path against a bare MXNet executor.

For one network (``--model``, default the full 19-class ResNet-38, rna-a1,
stride 8; DeepLab-v2 and FCN-8s labels too), at each input size:
seconds per forward through ``issegm.engine.model.get_model`` (a hybridised Gluon
``SymbolBlock``, what evaluation and pseudo-labelling call) and through a
plain ``Symbol.bind`` executor of the same network with the same weights, both
measured in this run, and their ratio. Target: ratio <= 1.05.

The two are timed alternately (model, executor, executor, model, ...) and the
ratio is the median over these adjacent pairs, so a machine shared with other
work slows both alike; the pairs' quartiles show the noise, and the load
average is printed before and after. Both compute the same fused graph (on the CPU, MKL-DNN's
conv + BN + ReLU subgraphs), so their outputs are equal.

    python -m bench.forward [--sizes 128,256] [--repeat 7] [--arch a1 | --model LABEL]
"""
import argparse
import os
import sys
import time

import mxnet as mx
import numpy as np

from issegm.engine.model import get_model, get_scores_symbol


def _time_alternating(fns, repeat):
    """Seconds of each of ``fns`` per run, their order rotating from run to run, after a warm-up."""
    for _ in range(2):  # warm-up: graph build and partitioning, memory planning, MKL-DNN primitives
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for k in range(repeat):
        for j in range(len(fns)):
            i = (j + k) % len(fns)
            start = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - start)
    return [np.array(t) for t in times]


def _unfused(label, params):
    """get_model's block as it was hybridised before: without the executor's subgraph fusion."""
    net = mx.gluon.SymbolBlock(get_scores_symbol(label), mx.sym.var('data', dtype='float32'))
    for name, p in net.collect_params().items():
        p.shape = params[name].shape
        p._load_init(params[name], mx.cpu())
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def _load():
    return '%.2f %.2f %.2f' % os.getloadavg()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', default='128,256')
    parser.add_argument('--repeat', type=int, default=7)
    parser.add_argument('--arch', default='a1', help='ResNet-38 member when --model is not given')
    parser.add_argument('--model', default=None,
                        help='model label, e.g. gta_deeplabv2-r101_cls19_s8 (default gta_rna-{arch}_cls19_s8)')
    parser.add_argument('--unfused', action='store_true',
                        help='also time the block without MKL-DNN subgraph fusion (get_model before the fix)')
    args = parser.parse_args()
    label = args.model or 'gta_rna-%s_cls19_s8' % args.arch
    net = get_model(label)
    params = {name: p.data() for name, p in net.collect_params().items()}
    sym = get_scores_symbol(label)
    aux_names = set(sym.list_auxiliary_states())
    unfused = _unfused(label, params) if args.unfused else None
    print('network %s, %s, median of %d alternating runs; %d cores, load average %s'
          % (label, mx.cpu(), args.repeat, os.cpu_count(), _load()))
    print('%-10s %12s %12s %8s %15s %12s' % ('size', 'get_model s', 'executor s', 'ratio', 'pair quartiles',
                                              'max |diff|'))
    for size in [int(s) for s in args.sizes.split(',')]:
        data = mx.nd.array(np.random.RandomState(0).randn(1, 3, size, size).astype(np.float32))
        arg_arrays = {n: params[n] for n in sym.list_arguments() if n != 'data'}
        arg_arrays['data'] = data
        exe = sym.bind(mx.cpu(), args=arg_arrays, grad_req='null',
                       aux_states={n: params[n] for n in aux_names})
        fns = [lambda: net(data).wait_to_read(), lambda: exe.forward(is_train=False)[0].wait_to_read()]
        if unfused is not None:
            fns.append(lambda: unfused(data).wait_to_read())
        times = _time_alternating(fns, args.repeat)
        diff = np.abs(net(data).asnumpy() - exe.forward(is_train=False)[0].asnumpy()).max()
        rows = [('', times[0], diff)]
        if unfused is not None:
            rows.append((' unfused', times[2], np.abs(unfused(data).asnumpy() - exe.forward()[0].asnumpy()).max()))
        for name, t, d in rows:
            ratios = t / times[1]
            print('%-10s %12.4f %12.4f %8.3f %7.3f-%-7.3f %12.1e' % (
                '%dx%d%s' % (size, size, name), np.median(t), np.median(times[1]), np.median(ratios),
                np.percentile(ratios, 25), np.percentile(ratios, 75), d))
    print('load average after: %s' % _load())


if __name__ == '__main__':
    main()
