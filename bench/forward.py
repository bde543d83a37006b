"""Forward-pass cost of the project's model path against a bare MXNet executor.

For the full 19-class ResNet-38 (rna-a1, stride 8), at each input size:
seconds per forward through ``issegm.model.get_model`` (a hybridised Gluon
``SymbolBlock``, what evaluation and pseudo-labelling call) and through a
plain ``Symbol.bind`` executor of the same network with the same weights, both
measured in this run, and their ratio. Target: ratio <= 1.05.

    python bench/forward.py [--sizes 128,256] [--repeat 5] [--arch a1]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from issegm.model import get_model, get_scores_symbol  # noqa: E402


def _time(fn, repeat):
    fn()  # warm-up: graph build, memory planning, MKL-DNN primitives
    best = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best.append(time.perf_counter() - start)
    return float(np.median(best))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', default='128,256')
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--arch', default='a1')
    args = parser.parse_args()
    label = 'gta_rna-%s_cls19_s8' % args.arch
    net = get_model(label)
    params = {name: p.data() for name, p in net.collect_params().items()}
    sym = get_scores_symbol(label)
    aux_names = set(sym.list_auxiliary_states())
    print('network %s, %s, median of %d runs' % (label, mx.cpu(), args.repeat))
    print('%-10s %14s %14s %8s %12s' % ('size', 'get_model s', 'executor s', 'ratio', 'max |diff|'))
    for size in [int(s) for s in args.sizes.split(',')]:
        data = mx.nd.array(np.random.RandomState(0).randn(1, 3, size, size).astype(np.float32))
        arg_arrays = {n: params[n] for n in sym.list_arguments() if n != 'data'}
        arg_arrays['data'] = data
        exe = sym.bind(mx.cpu(), args=arg_arrays, grad_req='null',
                       aux_states={n: params[n] for n in aux_names})
        t_model = _time(lambda: net(data).wait_to_read(), args.repeat)
        t_exec = _time(lambda: exe.forward(is_train=False)[0].wait_to_read(), args.repeat)
        out_model = net(data).asnumpy()
        out_exec = exe.forward(is_train=False)[0].asnumpy()
        # Random weights saturate the softmax, so float reordering between
        # the fused and plain graphs shows; the golden test pins real numbers.
        diff = np.abs(out_model - out_exec).max()
        print('%-10s %14.4f %14.4f %8.3f %12.1e' % ('%dx%d' % (size, size), t_model, t_exec,
                                                    t_model / t_exec, diff))


if __name__ == '__main__':
    main()
