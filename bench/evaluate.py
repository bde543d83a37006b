"""Evaluation throughput on full-size (1024 x 2048) images, network vs everything else.

Generates a few 1024 x 2048 Cityscapes-like images and label maps as PNG
files, then runs the project's evaluation loop (``issegm.phases.evaluation``:
images read and prepared ahead in threads, ``Predictor`` forwards, the
post-processing of ``--postprocess`` -- upsampling, argmax, confusion
counts --, the four PNGs written behind in threads):

1. **On this CPU**, with a width-reduced network (``rna-t1``, the CPU
   stand-in for ResNet-38) whose forward is timed synchronously: seconds an
   image of the network and of everything else, for both post-processing
   paths.
2. **Next to a GPU.** No GPU can run MXNet here, so the device is played by
   :mod:`bench.standin`: the network by :class:`DeviceStandIn`, an
   asynchronous operator that occupies the device for the ResNet-38 A1
   forward's time at an ASSUMED sustained rate (counted convolution FLOPs /
   ``--gpu-tflops``) without using the CPU; the device post-processing by
   :class:`PostprocessStandIn`, priced from the FLOPs and bytes the real
   device operators count (``/ --gpu-tflops`` and ``/ --gpu-gbps``), on the
   same device after the forwards. Everything the host does stays real:
   decoding, preparing and uploading images, launching, copying the uint8
   prediction back, PNG encoding (and, for ``pil``, the whole host
   post-processing). The non-network share is MEASURED in that run as
   (cycle - network time) / cycle, where the cycle is the steady-state time
   from one image's last forward ending to the next one's and the network
   time is the stand-in's busy time, at most its set time (the whole run's
   figure, with the pipeline's fill and drain, is printed too); the host
   CPU time an image (all threads) says how much host work remains. The
   first line says how much of a core a busy thread gets: on a shared
   machine every host figure is slower than on an idle one.

    python bench/evaluate.py [--images 6] [--flip] [--gpu-tflops 100] [--gpu-gbps 1500]
"""
import argparse
import ast
import collections
import json
import os
import sys
import tempfile
import threading
import time

import mxnet as mx
import numpy as np
from PIL import Image

from issegm.phases import evaluation
from issegm.storage.datasets import get_dataset
from issegm.engine.inference import Predictor
from issegm.engine.model import get_model, get_scores_symbol
from issegm.testing.standin import DeviceStandIn, PostprocessStandIn, class_colours
from util.parallel import class_argmax


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


_PARTS_LOCK = threading.Lock()


def _timed(obj, name, acc):
    """Sum the wall time of ``obj.name`` calls into ``acc[name]`` (from any thread)."""
    fn = getattr(obj, name)

    def wrapper(*a, **k):
        start = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            with _PARTS_LOCK:
                acc[name] += time.perf_counter() - start
    setattr(obj, name, wrapper)


def cpu_available(seconds=1.0):
    """Share of a core a busy thread of this process gets now (CPU time / wall time of a spin).

    1.0 on an idle machine; less when other jobs share the cores, and then
    every host figure below is slower than on an idle machine.
    """
    start, cpu = time.perf_counter(), time.thread_time()
    while time.perf_counter() - start < seconds:
        sum(range(1000))
    return (time.thread_time() - cpu) / (time.perf_counter() - start)


def make_data(root, n, hw=(1024, 2048), seed=0):
    """Street-like scenes as PNGs; returns the list items.

    Label maps (label ids) are regions of the 19 classes with curved borders,
    tens to hundreds of pixels across (the argmax of smooth random fields);
    images paint each class in the colour the device stand-in recognises,
    with shading and sensor noise, about 2.5 MB as PNG (Cityscapes'
    leftImg8bit PNGs average 2.2 MB). So the stand-in's predictions, and
    their PNGs, look like a trained network's rather than like noise.
    """
    info = get_dataset('cityscapes')
    rng = np.random.RandomState(seed)
    colours = class_colours(info.num_classes)
    items = []
    for i in range(n):
        coarse = rng.randn(info.num_classes, hw[0] // 128 + 1, hw[1] // 128 + 1).astype(np.float32)
        fields = np.stack([np.asarray(Image.fromarray(f, 'F').resize((hw[1], hw[0]), Image.BICUBIC)) for f in coarse])
        train = class_argmax(fields)
        shade = np.asarray(Image.fromarray(rng.uniform(0.7, 1.1, (8, 16)).astype(np.float32), 'F')
                           .resize((hw[1], hw[0]), Image.BICUBIC))[:, :, None]
        img = np.clip(colours[train] * shade + rng.normal(0, 1.2, hw + (3,)), 0, 255).astype(np.uint8)
        im_rel = 'leftImg8bit/val/bench/bench_%06d_000019_leftImg8bit.png' % i
        gt_rel = 'gtFine/val/bench/bench_%06d_000019_gtFine_labelIds.png' % i
        for rel, arr in ((im_rel, img), (gt_rel, info.train2label[train])):
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            Image.fromarray(arr).save(os.path.join(root, rel))
        items.append((im_rel, gt_rel))
    return items


def png_kbytes(folder, recursive=True):
    """Mean size in KB of the PNGs in ``folder`` (and below it)."""
    walk = os.walk(folder) if recursive else [(folder, None, os.listdir(folder))]
    sizes = [os.path.getsize(os.path.join(d, f)) for d, _, fs in walk for f in fs if f.endswith('.png')]
    return sum(sizes) / max(1, len(sizes)) / 1024.0


def run_loop(net, info, items, root, out, args, mode, overlap=True, post=None):
    """One warm-up image, then the timed loop over the others.

    Returns (wall seconds, host CPU seconds, per-part seconds summed over threads).
    """
    predictor = Predictor(net, info.num_classes, 8, flip=args.flip)
    parts = collections.defaultdict(float)
    ev = evaluation.Evaluation(predictor, info, [args.scale], out, postprocess=mode)
    if post is not None:
        ev.post = post
    for name in ('prepare', 'save', 'finish'):
        _timed(ev, name, parts)
    prep = evaluation.Prepared(info, None, items[:1], [args.scale], True)
    evaluation.evaluate_split(ev, prep, root, log_every=10 ** 9)   # warm-up: graph build, memory plan
    parts.clear()
    ev.cm.reset()
    prep = evaluation.Prepared(info, None, items[1:], [args.scale], True)
    if isinstance(net, TimedNet):
        net.seconds, net.calls = 0.0, 0
    else:
        del net.spans[:]
    if post is not None:
        del post.spans[:]
    start, cpu = time.perf_counter(), time.process_time()
    evaluation.evaluate_split(ev, prep, root, log_every=10 ** 9, background_save=not args.foreground_save,
                              overlap=overlap)
    return time.perf_counter() - start, time.process_time() - cpu, parts


def cpu_components(info, items, root, tmp, args, label, mode):
    net = TimedNet(get_model(label))
    total, cpu, parts = run_loop(net, info, items, root, os.path.join(tmp, 'cpu-' + mode), args, mode)
    n = args.images
    network = net.seconds
    print('%-8s total %.3f s an image: network %.3f (%d calls), everything else %.3f; host CPU %.3f s an image; '
          'in threads: prepare %.3f, PNGs %.3f; waiting for post-processing %.3f'
          % (mode, total / n, network / n, net.calls, (total - network) / n, cpu / n, parts['prepare'] / n,
             parts['save'] / n, parts['finish'] / n))
    return total


def gpu_run(info, items, root, tmp, args, mode, overlap, gpu_step, forwards):
    n = args.images
    device = DeviceStandIn(gpu_step, info.num_classes, 8)
    post = PostprocessStandIn(device, info.num_classes, args.gpu_tflops, args.gpu_gbps) if mode == 'device' else None
    out = os.path.join(tmp, 'gpu-%s-%d' % (mode, overlap))
    wall, cpu, _ = run_loop(device, info, items, root, out, args, mode, overlap=overlap, post=post)
    spans = sorted(device.spans)
    busy = sum(e - s for s, e in spans) / n
    post_busy = sum(e - s for s, e in post.spans) / n if post is not None else 0.0
    # Steady state: time between the ends of consecutive images' last forwards. The
    # first image's read and the last one's post-processing (pipeline fill and drain)
    # happen once a split, not once an image.
    cycle = (spans[-1][1] - spans[forwards - 1][1]) / (n - 1)
    # The stand-in's own bit of CPU work can stretch a forward beyond its set time when
    # the host is busy; a GPU would not: count the network at its set time at most.
    share = (cycle - min(busy, forwards * gpu_step)) / cycle
    print('%-6s %-13s steady %.3f s an image (network %.3f, device post-processing %.4f), %.2f images/s, '
          'non-network share %.1f%%; host CPU %.3f s an image; whole run incl. fill and drain %.3f s an image (%.1f%%)'
          % (mode, 'overlapped:' if overlap else 'sequential:', cycle, busy, post_busy, 1. / cycle, 100 * share,
             cpu / n, wall / n, 100 * (wall / n - busy) / (wall / n)))
    if not overlap:
        print('       prediction PNGs written: %.0f KB an image (labelId), %.0f KB (color)'
              % (png_kbytes(os.path.join(out, 'labelId')), png_kbytes(os.path.join(out, 'color'), recursive=False)))
    if post is not None and post.priced:
        flops, nbytes, seconds = post.priced[0]
        print('       device post-processing counted: %.1f GFLOP and %.2f GB an image -> %.4f s at %.0f TFLOP/s '
              'and %.0f GB/s' % (flops / 1e9, nbytes / 1e9, seconds, args.gpu_tflops, args.gpu_gbps))
    return share


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=6)
    parser.add_argument('--arch', default='t1', help='width-reduced network (t1) on the CPU')
    parser.add_argument('--flip', action='store_true', help='--test-flipping (two forwards an image)')
    parser.add_argument('--scale', type=int, default=2048)
    parser.add_argument('--foreground-save', action='store_true',
                        help='write PNGs in the main loop instead of the writer threads')
    parser.add_argument('--gpu-tflops', type=float, default=7.0,
                        help='ASSUMED sustained fp32 rate of the GPU (V100 peak 15.7, ~45%% sustained; '
                             '100 for the newest GPUs)')
    parser.add_argument('--gpu-gbps', type=float, default=900.0,
                        help='ASSUMED sustained device memory bandwidth in GB/s (V100 900, A100 1555, H100 3350)')
    parser.add_argument('--paths', default='pil,device', help='post-processing paths to run')
    parser.add_argument('--skip-cpu', action='store_true', help='skip part 1 (on this CPU)')
    parser.add_argument('--skip-gpu', action='store_true', help='skip part 2 (next to a GPU)')
    args = parser.parse_args()
    modes = args.paths.split(',')

    info = get_dataset('cityscapes')
    label = 'cityscapes_rna-%s_cls19_s8' % args.arch
    n = args.images
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, 'cityscapes')
        t0 = time.perf_counter()
        items = make_data(root, n + 1)
        print('generated %d images of 1024x2048 in %.1f s (PNGs of %.0f KB an image, labels %.0f KB); %d CPU cores; '
              'a busy thread gets %.0f%% of a core now (100%% on an idle machine; the load average is %s)'
              % (len(items), time.perf_counter() - t0, png_kbytes(os.path.join(root, 'leftImg8bit')),
                 png_kbytes(os.path.join(root, 'gtFine')), os.cpu_count(), 100 * cpu_available(),
                 ' '.join('%.1f' % v for v in os.getloadavg())))
        if not args.skip_cpu:
            print('\n1. on this CPU: network %s on %s, scale %d, flip %s, %d images, forward synchronised'
                  % (label, mx.cpu(), args.scale, args.flip, n))
            totals = {mode: cpu_components(info, items, root, tmp, args, label, mode) for mode in modes}
            if len(totals) == 2:
                print('device/pil time an image on this CPU: %.2f' % (totals['device'] / totals['pil']))

        if args.skip_gpu:
            return
        flops = conv_flops('cityscapes_rna-a1_cls19_s8', (1024, 2048))
        forwards = 2 if args.flip else 1
        gpu_step = flops / (args.gpu_tflops * 1e12)
        print('\n2. next to a GPU: device stand-ins (bench/standin.py); a busy thread gets %.0f%% of a core now'
              % (100 * cpu_available()))
        print('ResNet-38 A1 at 1024x2048: %.2f TFLOP a forward (counted convolutions)' % (flops / 1e12))
        print('ASSUMED GPU: %.1f TFLOP/s sustained (--gpu-tflops) -> %.3f s a forward, %d forward(s) an image; '
              '%.0f GB/s (--gpu-gbps)' % (args.gpu_tflops, gpu_step, forwards, args.gpu_gbps))
        shares = {}
        for mode in modes:
            for overlap in (False, True):
                shares[mode, overlap] = gpu_run(info, items, root, tmp, args, mode, overlap, gpu_step, forwards)
        for mode in modes:
            print('MEASURED non-network share, steady state, %s post-processing: %.1f%% with the overlap '
                  '(target <= 15%%), %.1f%% without' % (mode, 100 * shares[mode, True], 100 * shares[mode, False]))


if __name__ == '__main__':
    main()
