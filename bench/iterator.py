"""Is the training iterator fast enough to keep the network busy?

Generates Cityscapes-layout 1024 x 2048 images (smooth synthetic scenes with
block labels) in a temporary folder, then measures:

* samples/second of :class:`issegm.engine.iterator.FileIter` at the self-training setting
  (crop 500 -> 504, ``--origin-size-tgt 2048``, scale 0.7-1.3, mining on,
  batch 2, image bytes cached as in the train phase), with 2 thread workers
  and 2 process workers, plus one sample made serially for reference;
* seconds per training step (forward + backward + SGD update, batch 1) of
  the network at the same crop on this machine's CPU.

The full network (``gta_rna-a1_cls19_s8``, ResNet-38, ~1.16 TFLOP forward at
504 x 504) takes 40-48 s a step here (2 shared cores) after a ~50 s first step, more than
the minute this benchmark allows itself, so by default the thin ``rna-t1`` is
timed and scaled to A1 by the ratio of their convolution FLOPs (printed; an
estimate -- the thin net uses the CPU less well, so it overstates A1: on the
development machine, 2 shared cores, t1 0.21 s x 246 = 50 s against 40 s
measured for A1). ``--step-arch a1`` measures A1 itself (about 1.5 min more).

The verdict compares the data time per batch of 2 with an ASSUMED GPU step of
0.35 s (``--gpu-step``; a Titan-class GPU running the reference's batch of 2
at crop 500 -- an assumption, nothing here runs on a GPU): a ratio below 1
means the workers keep up.

    python bench/iterator.py [--images 8] [--batches 16] [--workers 2]
                             [--prefetcher both|thread|process] [--no-cache]
                             [--step-arch t1|a1] [--skip-step]

Default run: about 20-40 s on 2 cores.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from issegm.engine.iterator import SOURCE, FileIter, Sample
from issegm.benchmark.toy import write_cityscapes

SHAPE = (1024, 2048)
BATCH = 2


def make_images(root, n, seed=0):
    """``n`` Cityscapes-layout samples at 1024 x 2048: gradient images, blocky label ids."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1]]
    samples = []
    for k in range(n):
        image = np.stack([(xx // 8 + 40 * k) % 256, (yy // 4) % 256, ((xx + yy) // 16) % 256], -1)
        image = (image + rng.randint(0, 8, image.shape)).astype(np.uint8)  # texture, so PNGs decode like photos
        label = rng.choice([7, 8, 11, 21, 23, 26], size=(SHAPE[0] // 64, SHAPE[1] // 64)).astype(np.uint8)
        label = np.kron(label, np.ones((64, 64), np.uint8))
        label[100 + 20 * k:140 + 20 * k, 300:330] = 33   # a rare class for mining
        rel = write_cityscapes(root, 'train', 'bench', '%06d_000019' % k, image, label)
        samples.append(Sample(os.path.join(root, rel[0]), os.path.join(root, rel[1]), SOURCE))
    return samples


def make_iter(samples, workers, prefetcher, crop=500, cache=True):
    """FileIter at the self-training setting of the README commands."""
    meta = dict(max_shape_src=SHAPE, max_shape_tgt=SHAPE, mine_port=0.8, mine_id=[18, 6, 7],
                mine_id_priority=[], cache_images=cache)
    return FileIter('cityscapes', samples=samples, meta=meta, batch_images=BATCH, feat_stride=8,
                    crop_size=crop, origin_size=2048, origin_size_tgt=2048, scale_rate_range=(0.7, 1.3),
                    prefetch_threads=workers, prefetcher_type=prefetcher, seed=0)


def time_serial(samples, n=4, cache=True):
    """Seconds to make one sample in this process, no prefetching (the cost a worker pays)."""
    it = make_iter(samples, 1, 'thread', cache=cache)
    try:
        it.reader.make(0, 0)   # fills the byte cache, as after the first epoch
        start = time.perf_counter()
        for k in range(n):
            it.reader.make(k % len(samples), k)
        return (time.perf_counter() - start) / n
    finally:
        it.close()


def time_iterator(samples, batches, workers, prefetcher, cache=True):
    """Samples per second over ``batches`` batches (after the first, which pays start-up)."""
    it = make_iter(samples, workers, prefetcher, cache=cache)
    try:
        done, start = 0, None
        while done < batches + 1:
            it.reset()
            for b in it:
                b.data[0].wait_to_read()
                done += 1
                if start is None:
                    start = time.perf_counter()
                if done >= batches + 1:
                    break
        return batches * BATCH / (time.perf_counter() - start), it.provide_data[0].shape
    finally:
        it.close()


def conv_flops(label, crop):
    """Forward FLOPs of the convolutions of ``label`` at ``crop`` x ``crop`` (2 per multiply-add)."""
    from issegm.engine.model import get_symbol
    sym = get_symbol(label)
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=(1, 3, crop, crop))
    outs = dict(zip(internals.list_outputs(), out_shapes))
    arg_shapes, _, _ = sym.infer_shape(data=(1, 3, crop, crop))
    weights = dict(zip(sym.list_arguments(), arg_shapes))
    total = 0
    for node in json.loads(sym.tojson())['nodes']:
        if node['op'] == 'Convolution':
            w = weights[node['name'] + '_weight']
            o = outs[node['name'] + '_output']
            total += 2 * int(np.prod(w)) * o[2] * o[3]
    return total


def time_step(arch, crop, batch=1):
    """Seconds of one forward+backward+update of ``gta_rna-{arch}_cls19_s8`` at ``crop`` on the CPU."""
    import mxnet as mx
    from issegm.engine.model import get_module
    mod = get_module('gta_rna-%s_cls19_s8' % arch, [mx.cpu()])
    mod.bind(data_shapes=[('data', (batch, 3, crop, crop))],
             label_shapes=[('softmax_label', (batch, (crop // 8) ** 2))])
    mod.init_params(mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2))
    mod.init_optimizer(optimizer='sgd', optimizer_params={'learning_rate': 1e-4, 'momentum': 0.9, 'wd': 5e-4})
    rng = np.random.RandomState(0)
    db = mx.io.DataBatch([mx.nd.array(rng.randn(batch, 3, crop, crop))],
                         [mx.nd.array(rng.randint(0, 19, (batch, (crop // 8) ** 2)))])

    def step():
        mod.forward_backward(db)
        mod.update()
        mx.nd.waitall()

    step()  # warm-up: memory planning, kernel selection
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=8)
    parser.add_argument('--batches', type=int, default=16, help='timed batches of 2 per prefetcher')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--prefetcher', default='both', choices=['both', 'thread', 'process'])
    parser.add_argument('--no-cache', action='store_true', help='read files from disk every time')
    parser.add_argument('--gpu-step', type=float, default=0.35,
                        help='ASSUMED GPU seconds per training step of a batch of 2 (Titan-class)')
    parser.add_argument('--step-arch', default='t1', choices=['t1', 'a1'],
                        help='network timed on the CPU: t1 (thin, scaled to A1 by FLOPs) or a1 itself')
    parser.add_argument('--skip-step', action='store_true', help='do not time the network step')
    args = parser.parse_args(argv)
    kinds = ['thread', 'process'] if args.prefetcher == 'both' else [args.prefetcher]
    cache = not args.no_cache
    print('machine: %d cores; images %dx%d PNG, crop 500 -> 504, batch %d, scale 0.7-1.3, mining 0.8, '
          'cache %s' % (os.cpu_count(), SHAPE[0], SHAPE[1], BATCH, 'on' if cache else 'off'))
    results = {}
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        samples = make_images(root, args.images)
        print('generated %d Cityscapes-layout images in %.1f s' % (args.images, time.perf_counter() - t0))
        serial = time_serial(samples, cache=cache)
        print('one sample, made serially: %.3f s' % serial)
        for kind in kinds:
            rate, shape = time_iterator(samples, args.batches, args.workers, kind, cache=cache)
            results[kind] = rate
            per_batch = BATCH / rate
            print('FileIter %-7s x%d: %6.2f samples/s, %.3f s per batch %s -> data/GPU ratio %.2f '
                  'against an ASSUMED %.2f s GPU step (Titan-class): %s'
                  % (kind, args.workers, rate, per_batch, tuple(shape), per_batch / args.gpu_step,
                     args.gpu_step, 'keeps up' if per_batch <= args.gpu_step else 'the GPU would wait'))
    if args.skip_step:
        print('network step: skipped (--skip-step)')
        return 0
    crop = 504
    sec = time_step(args.step_arch, crop)
    a1_flops = conv_flops('gta_rna-a1_cls19_s8', crop)
    if args.step_arch == 'a1':
        a1_sec, how = sec, 'measured'
    else:
        ratio = a1_flops / float(conv_flops('gta_rna-t1_cls19_s8', crop))
        a1_sec, how = sec * ratio, 'estimated: rna-t1 measured %.3f s x FLOP ratio %.0f' % (sec, ratio)
        print('network step rna-t1, batch 1, %dx%d, CPU: %.3f s' % (crop, crop, sec))
    print('network step rna-a1 (ResNet-38, %.0f GFLOP forward), batch 1, %dx%d, CPU: %.1f s (%s)'
          % (a1_flops / 1e9, crop, crop, a1_sec, how))
    best = max(results.values()) if results else None
    if best:
        print('data time per sample %.3f s = %.2f%% of a CPU A1 step of one sample; on the assumed GPU '
              '(%.2f s per batch of %d) data per batch is %.0f%% of the step'
              % (1. / best, 100. / best / a1_sec, args.gpu_step, BATCH, 100. * BATCH / best / args.gpu_step))
    return 0


if __name__ == '__main__':
    sys.exit(main())
