"""Evaluation throughput on full-size (1024 x 2048) images, network vs everything else.

Generates a few 1024 x 2048 Cityscapes-like images and label maps as PNG
files, then runs the project's evaluation path (``issegm.evaluation``: read,
``Predictor`` forward + bicubic upsampling, argmax, the three prediction PNGs
and the correctness map, confusion-matrix update) with a width-reduced
network (``rna-t1``, the CPU stand-in for ResNet-38), and reports per image:

* network time (the forward, synchronised), per component the rest
  (upsampling, read, argmax, saving, scoring);
* the share of non-network time;
* with an ASSUMED GPU forward time for the real ResNet-38 A1 at this size
  (derived from its counted FLOPs and an assumed sustained GPU rate, both
  printed), the share the non-network work would have on a GPU machine.

    python bench/evaluate.py [--images 3] [--flip] [--gpu-tflops 7]
"""
import argparse
import ast
import collections
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from issegm import evaluation  # noqa: E402
from issegm.datasets import get_dataset  # noqa: E402
from issegm.inference import Predictor  # noqa: E402
from issegm.model import get_model, get_scores_symbol  # noqa: E402


def conv_flops(label, hw):
    """Multiply-adds x 2 of every convolution of ``label``'s network at input ``hw``."""
    sym = get_scores_symbol(label)
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=(1, 3) + tuple(hw))
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    total = 0
    for node in json.loads(sym.tojson())['nodes']:
        if node['op'] != 'Convolution':
            continue
        attrs = node.get('attrs', {})
        kernel = ast.literal_eval(attrs['kernel'])  # "(3, 3)"
        out = shapes[node['name'] + '_output']
        cin = shapes[node['name'] + '_weight'][1]
        total += 2 * np.prod(kernel) * cin * np.prod(out[1:])
    return float(total)


class TimedNet(object):
    """Wraps the network; accumulates synchronised forward time."""

    def __init__(self, net):
        self.net, self.seconds, self.calls = net, 0.0, 0

    def __call__(self, data):
        start = time.perf_counter()
        out = self.net(data)
        out.wait_to_read()
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def _timed(obj, name, acc):
    fn = getattr(obj, name)

    def wrapper(*a, **k):
        start = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            acc[name] += time.perf_counter() - start
    setattr(obj, name, wrapper)


def make_data(root, n, hw=(1024, 2048), seed=0):
    """Smooth random street-like images and label maps (label ids) as PNGs; returns list items."""
    info = get_dataset('cityscapes')
    rng = np.random.RandomState(seed)
    items = []
    for i in range(n):
        coarse = rng.randint(0, 19, (hw[0] // 64, hw[1] // 64)).astype(np.uint8)
        train = np.kron(coarse, np.ones((64, 64), np.uint8))
        img = (rng.rand(hw[0] // 16, hw[1] // 16, 3) * 255).astype(np.uint8)
        img = np.asarray(Image.fromarray(img).resize((hw[1], hw[0]), Image.BICUBIC))
        im_rel = 'leftImg8bit/val/bench/bench_%06d_000019_leftImg8bit.png' % i
        gt_rel = 'gtFine/val/bench/bench_%06d_000019_gtFine_labelIds.png' % i
        for rel, arr in ((im_rel, img), (gt_rel, info.train2label[train])):
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            Image.fromarray(arr).save(os.path.join(root, rel))
        items.append((im_rel, gt_rel))
    return items


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=3)
    parser.add_argument('--arch', default='t1', help='width-reduced network (t1) on the CPU')
    parser.add_argument('--flip', action='store_true', help='--test-flipping (two forwards an image)')
    parser.add_argument('--scale', type=int, default=2048)
    parser.add_argument('--foreground-save', action='store_true',
                        help='write PNGs in the main loop instead of the background writer thread')
    parser.add_argument('--gpu-tflops', type=float, default=7.0,
                        help='ASSUMED sustained fp32 rate of the GPU for ResNet-38 convolutions '
                             '(V100 peak 15.7; ~45%% sustained)')
    args = parser.parse_args()

    info = get_dataset('cityscapes')
    label = 'cityscapes_rna-%s_cls19_s8' % args.arch
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, 'cityscapes')
        t0 = time.perf_counter()
        items = make_data(root, args.images + 1)
        print('generated %d images of 1024x2048 in %.1f s' % (len(items), time.perf_counter() - t0))
        net = TimedNet(get_model(label))
        predictor = Predictor(net, info.num_classes, 8, flip=args.flip)
        parts = collections.defaultdict(float)
        ev = evaluation.Evaluation(predictor, info, [args.scale], os.path.join(tmp, 'out'))
        _timed(predictor, 'upsample', parts)
        _timed(ev, 'save', parts)
        _timed(ev, 'score', parts)
        prep = evaluation.Prepared(info, None, items[:1], [args.scale], True)
        evaluation.evaluate_split(ev, prep, root)          # warm-up: graph build, memory plan
        net.seconds, net.calls = 0.0, 0
        parts.clear()
        ev.cm.reset()
        prep = evaluation.Prepared(info, None, items[1:], [args.scale], True)
        timer = {}
        start = time.perf_counter()
        evaluation.evaluate_split(ev, prep, root, timer=timer, log_every=10 ** 9,
                                  background_save=not args.foreground_save)
        total = time.perf_counter() - start

    n = args.images
    network = net.seconds
    other = total - network
    bg = not args.foreground_save
    rest = other - parts['upsample'] - parts['score'] - (0 if bg else parts['save'])
    print('\nnetwork %s on %s, scale %d, flip %s, %d images' % (label, mx.cpu(), args.scale, args.flip, n))
    print('%-42s %10s %8s' % ('per image', 'seconds', 'share'))
    rows = [('network forward (%d calls)' % net.calls, network), ('upsampling (bicubic, 19 maps)', parts['upsample']),
            ('confusion update', parts['score'])]
    rows += [] if bg else [('saving 4 PNGs', parts['save'])]
    rows += [('read, argmax, other%s' % (' (+ waits on writer)' if bg else ''), rest)]
    for name, sec in rows:
        print('%-42s %10.3f %7.1f%%' % (name, sec / n, 100 * sec / total))
    print('%-42s %10.3f %7.1f%%' % ('total', total / n, 100.))
    if bg:
        print('(saving 4 PNGs: %.3f s an image in the writer thread, overlapped with the loop)' % (parts['save'] / n))
    print('images/s: %.3f   non-network share on this CPU: %.1f%%' % (n / total, 100 * other / total))

    flops = conv_flops('cityscapes_rna-a1_cls19_s8', (1024, 2048))
    forwards = 2 if args.flip else 1
    gpu_step = flops / (args.gpu_tflops * 1e12)
    gpu_total = forwards * gpu_step + other / n
    print('\nResNet-38 A1 at 1024x2048: %.2f TFLOP a forward (counted convolutions)' % (flops / 1e12))
    print('ASSUMED GPU forward: %.3f s (%.1f TFLOP/s sustained, --gpu-tflops); %d forward(s) an image'
          % (gpu_step, args.gpu_tflops, forwards))
    print('projected on GPU + these CPU costs: %.3f s an image, %.2f images/s, non-network share %.1f%%'
          % (gpu_total, 1. / gpu_total, 100 * (other / n) / gpu_total))


if __name__ == '__main__':
    main()
