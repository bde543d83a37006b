"""Evaluation throughput on full-size (1024 x 2048) images, network vs everything else.

Generates a few 1024 x 2048 Cityscapes-like images and label maps as PNG
files, then runs the project's evaluation loop (``issegm.evaluation``: read,
``Predictor`` forward + bicubic upsampling, argmax, the three prediction PNGs
and the correctness map, confusion-matrix update) twice:

1. **Components, on this CPU**, with a width-reduced network (``rna-t1``, the
   CPU stand-in for ResNet-38) whose forward is timed synchronously: seconds
   per image of the network, upsampling, scoring and the rest.
2. **Next to a GPU-class forward.** No GPU can run MXNet here, so the network
   is replaced by :class:`bench.standin.DeviceStandIn`: an asynchronous MXNet
   operator that occupies a "device" for a set time without using the CPU,
   as a GPU forward does. Its time is the ResNet-38 A1 forward at this size
   under an ASSUMED sustained GPU rate (counted convolution FLOPs /
   ``--gpu-tflops``; both printed). The loop runs with the next image's
   forward launched before this image's post-processing (the default) and,
   for comparison, without; the non-network share is MEASURED in that run as
   (cycle - device time) / cycle, where the cycle is the steady-state time
   from one image's last forward ending to the next one's (the whole run's
   figure, with the pipeline's fill and drain, is printed too).

    python bench/evaluate.py [--images 6] [--flip] [--gpu-tflops 7]
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
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from issegm import evaluation  # noqa: E402
from issegm.datasets import get_dataset  # noqa: E402
from issegm.inference import Predictor  # noqa: E402
from issegm.model import get_model, get_scores_symbol  # noqa: E402
from standin import DeviceStandIn  # noqa: E402


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


def run_loop(net, info, items, root, out, args, overlap=True):
    """One warm-up image, then the timed loop over the others; returns (wall seconds, per-part seconds)."""
    predictor = Predictor(net, info.num_classes, 8, flip=args.flip)
    parts = collections.defaultdict(float)
    ev = evaluation.Evaluation(predictor, info, [args.scale], out)
    _timed(predictor, 'upsample', parts)
    _timed(ev, 'save', parts)
    _timed(ev, 'score', parts)
    prep = evaluation.Prepared(info, None, items[:1], [args.scale], True)
    evaluation.evaluate_split(ev, prep, root, log_every=10 ** 9)   # warm-up: graph build, memory plan
    parts.clear()
    ev.cm.reset()
    prep = evaluation.Prepared(info, None, items[1:], [args.scale], True)
    if isinstance(net, TimedNet):
        net.seconds, net.calls = 0.0, 0
    else:
        del net.spans[:]
    start = time.perf_counter()
    evaluation.evaluate_split(ev, prep, root, log_every=10 ** 9, background_save=not args.foreground_save,
                              overlap=overlap)
    return time.perf_counter() - start, parts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=6)
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
    n = args.images
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, 'cityscapes')
        t0 = time.perf_counter()
        items = make_data(root, n + 1)
        print('generated %d images of 1024x2048 in %.1f s' % (len(items), time.perf_counter() - t0))

        # 1. components with the thin network, forward synchronised
        net = TimedNet(get_model(label))
        total, parts = run_loop(net, info, items, root, os.path.join(tmp, 'out1'), args)
        network = net.seconds
        other = total - network
        bg = not args.foreground_save
        rest = other - parts['upsample'] - parts['score'] - (0 if bg else parts['save'])
        print('\n1. components: network %s on %s, scale %d, flip %s, %d images, forward synchronised'
              % (label, mx.cpu(), args.scale, args.flip, n))
        print('%-42s %10s %8s' % ('per image', 'seconds', 'share'))
        rows = [('network forward (%d calls)' % net.calls, network),
                ('upsampling (bicubic, 19 maps)', parts['upsample']), ('confusion update', parts['score'])]
        rows += [] if bg else [('saving 4 PNGs', parts['save'])]
        rows += [('read, argmax, other%s' % (' (+ waits on writer)' if bg else ''), rest)]
        for name, sec in rows:
            print('%-42s %10.3f %7.1f%%' % (name, sec / n, 100 * sec / total))
        print('%-42s %10.3f %7.1f%%' % ('total', total / n, 100.))
        if bg:
            print('(saving 4 PNGs: %.3f s an image in the writer thread, overlapped with the loop)'
                  % (parts['save'] / n))
        print('non-network work on this CPU: %.3f s an image' % (other / n))

        # 2. next to a GPU-class forward: the device stand-in
        flops = conv_flops('cityscapes_rna-a1_cls19_s8', (1024, 2048))
        forwards = 2 if args.flip else 1
        gpu_step = flops / (args.gpu_tflops * 1e12)
        print('\n2. next to a GPU-class forward')
        print('ResNet-38 A1 at 1024x2048: %.2f TFLOP a forward (counted convolutions)' % (flops / 1e12))
        print('ASSUMED GPU forward: %.3f s (%.1f TFLOP/s sustained, --gpu-tflops); %d forward(s) an image'
              % (gpu_step, args.gpu_tflops, forwards))
        shares = {}
        for overlap in (False, True):
            device = DeviceStandIn(gpu_step, info.num_classes, 8)
            wall, _ = run_loop(device, info, items, root, os.path.join(tmp, 'out2'), args, overlap=overlap)
            spans = sorted(device.spans)
            busy = sum(e - s for s, e in spans) / n
            # Steady state: time between the ends of consecutive images' last forwards. The
            # first image's read and the last one's post-processing (pipeline fill and drain)
            # happen once a split, not once an image.
            cycle = (spans[-1][1] - spans[forwards - 1][1]) / (n - 1)
            shares[overlap] = (cycle - busy) / cycle
            print('%-30s steady %.3f s an image (device busy %.3f), %.2f images/s, non-network share %.1f%%; '
                  'whole run of %d images incl. fill and drain %.3f s an image (%.1f%%)'
                  % ('next forward launched first:' if overlap else 'one image at a time:', cycle, busy,
                     1. / cycle, 100 * shares[overlap], n, wall / n, 100 * (wall / n - busy) / (wall / n)))
        print('MEASURED non-network share, steady state: %.1f%% with the overlap (target <= 15%%), %.1f%% '
              'without' % (100 * shares[True], 100 * shares[False]))

if __name__ == '__main__':
    main()
