"""Is the training iterator fast enough to keep the network busy?

Generates Cityscapes-layout 1024 x 2048 images (smooth synthetic scenes with
block labels), then measures:

* samples/second of :class:`issegm.data.FileIter` at the self-training setting
  (crop 500 -> 504, ``--origin-size-tgt 2048``, scale 0.7-1.3, mining on,
  2 workers, image bytes cached as in the train phase);
* seconds per training step (forward + backward + SGD update) of the network
  at the same crop on this machine's CPU (``--step-arch a1`` is ResNet-38;
  the default measures it once after one warm-up step);

and prints the data time per batch against an ASSUMED GPU step time of
0.35 s for a batch of 2 (``--gpu-step``): a ratio below 1 means the workers
keep up with the GPU.

    python bench/iterator.py [--images 8] [--batches 8] [--workers 2] [--prefetcher thread]
                             [--skip-step] [--step-arch a1]
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from issegm.data import SOURCE, FileIter, Sample  # noqa: E402
from issegm.layouts import write_cityscapes  # noqa: E402

SHAPE = (1024, 2048)


def make_images(root, n, seed=0):
    """``n`` Cityscapes-layout samples at 1024 x 2048: gradient images, blocky label ids."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1]]
    samples = []
    for k in range(n):
        image = np.stack([(xx // 8 + 40 * k) % 256, (yy // 4) % 256, ((xx + yy) // 16) % 256], -1)
        image = (image + rng.randint(0, 8, image.shape)).astype(np.uint8)  # some texture for the codec
        label = rng.choice([7, 8, 11, 21, 23, 26], size=(SHAPE[0] // 64, SHAPE[1] // 64)).astype(np.uint8)
        label = np.kron(label, np.ones((64, 64), np.uint8))
        label[100 + 20 * k:140 + 20 * k, 300:330] = 33   # a rare class for mining
        rel = write_cityscapes(root, 'train', 'bench', '%06d_000019' % k, image, label, color=False)
        samples.append(Sample(os.path.join(root, rel[0]), os.path.join(root, rel[1]), SOURCE))
    return samples


def time_iterator(samples, batches, workers, prefetcher, crop=500, batch=2, cache=True):
    """Samples per second over ``batches`` batches (after the first, which pays start-up)."""
    meta = dict(max_shape_src=SHAPE, max_shape_tgt=SHAPE, mine_port=0.8, mine_id=[18, 6, 7],
                mine_id_priority=[], cache_images=cache)
    it = FileIter('cityscapes', samples=samples, meta=meta, batch_images=batch, feat_stride=8,
                  crop_size=crop, origin_size=2048, origin_size_tgt=2048, scale_rate_range=(0.7, 1.3),
                  prefetch_threads=workers, prefetcher_type=prefetcher, seed=0)
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
        return batches * batch / (time.perf_counter() - start), it.provide_data[0].shape
    finally:
        it.close()


def time_step(arch, crop, batch=1):
    """Seconds of one forward+backward+update of ``rna-{arch}`` at ``crop`` on the CPU."""
    import mxnet as mx
    from issegm.model import get_module
    label = 'cityscapes_rna-%s_cls19_s8' % arch
    mod = get_module(label, [mx.cpu()])
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

    step()  # warm-up: memory planning, kernels
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=8)
    parser.add_argument('--batches', type=int, default=8, help='timed batches of 2')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--prefetcher', default='thread', choices=['thread', 'process'])
    parser.add_argument('--no-cache', action='store_true', help='decode from disk every time')
    parser.add_argument('--gpu-step', type=float, default=0.35, help='assumed GPU seconds per batch of 2')
    parser.add_argument('--skip-step', action='store_true', help='do not time the network step')
    parser.add_argument('--step-arch', default='a1', help='rna-{arch} for the step timing (a1 = ResNet-38)')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        samples = make_images(root, args.images)
        print('generated %d images of %dx%d in %.1f s' % (args.images, SHAPE[0], SHAPE[1],
                                                          time.perf_counter() - t0))
        rate, shape = time_iterator(samples, args.batches, args.workers, args.prefetcher,
                                    cache=not args.no_cache)
    per_batch = 2. / rate
    print('FileIter: %.2f samples/s (batch %s, %d %s workers, cache %s, %d cores on this machine)'
          % (rate, shape, args.workers, args.prefetcher, 'off' if args.no_cache else 'on', os.cpu_count()))
    print('data time per batch of 2: %.3f s; assumed GPU step %.2f s -> data/GPU ratio %.2f (%s)'
          % (per_batch, args.gpu_step, per_batch / args.gpu_step,
             'keeps up' if per_batch <= args.gpu_step else 'the GPU would wait for data'))
    if args.skip_step:
        print('network step: skipped (--skip-step)')
        return 0
    crop = shape[-1]
    sec = time_step(args.step_arch, crop)
    print('network step rna-%s at %dx%d, batch 1, CPU: %.2f s -> data time per sample is %.1f%% of it'
          % (args.step_arch, crop, crop, sec, 100. / rate / sec))
    return 0


if __name__ == '__main__':
    sys.exit(main())
