"""Benchmark: pseudo-label generation, lean path vs the reference's approach.

Both paths start from the same generated network outputs (19 classes at 1/8
of a 1024 x 2048 Cityscapes image) and produce the same thresholds and the
same pseudo-label PNGs (checked at the end):

* reference approach: pass 1 upsamples, saves the full-resolution float32
  probability map (``{output}/probmap/*.npy``, ~160 MB an image) and grows
  each class's confidences with ``np.append``; thresholds come from
  ``sorted(pool, reverse=True)``; pass 2 loads the map, builds the divided
  (C, H, W) map, takes argmax and max.
* lean path (``issegm.method.thresholds`` + ``issegm.phases.labelling``): pass 1
  saves only the low-resolution output and keeps confidences in float32
  chunks; thresholds by ``np.partition``; pass 2 redoes the deterministic
  upsampling and labels class by class.

Time is measured in one run, peak Python/numpy heap (tracemalloc) in a second
run, per phase. Usage (from the repository root)::

    PYTHONPATH=./ python bench/pseudo_label.py --num-images 2
"""
import argparse
import math
import os
import shutil
import sys
import tempfile
import time
import tracemalloc

import numpy as np


from issegm.storage.datasets import get_dataset, save_prediction
from issegm.engine.postprocess import Postprocessor
from issegm.method.thresholds import ConfidenceCollector, confidence_map, pseudo_label, threshold_stats
from issegm.storage.probmaps import LowRes
from issegm.storage.probmaps import load_lowres, save_lowres
from issegm.engine.inference import padded_shape
from util.image import longer_side_shape
from issegm.testing import reference_cbst

STRIDE = 8


def lowres_to_probmap(low, orig_hw):
    """The deterministic upsampling of both paths (PIL, on the host) of a ``LowRes``."""
    post = Postprocessor(low.probs.shape[0], 'pil')
    return post.probmap(post.source(stored=(low, orig_hw)))


def make_lowres(num_images, num_classes, lowres_hw, seed):
    """Smooth random class scores at 1/8 resolution -> softmax probabilities (float32)."""
    rng = np.random.RandomState(seed)
    h, w = lowres_hw
    out = []
    for _ in range(num_images):
        coarse = rng.randn(num_classes, h // 4 + 1, w // 4 + 1).astype(np.float32) * 3
        logits = np.repeat(np.repeat(coarse, 4, 1), 4, 2)[:, :h, :w]
        logits += rng.randn(num_classes, h, w).astype(np.float32)
        p = np.exp(logits - logits.max(0))
        out.append((p / p.sum(0)).astype(np.float32))
    return out


def write_labels(folder, name, label_train, info):
    save_prediction(info, label_train, os.path.join(folder, 'pseudo_labelIds', name + '.png'),
                    os.path.join(folder, 'pseudo_color', name + '.png'))


# ---------------------------------------------------------------- reference approach
def reference_pass1(lowres, im_hw, hw, folder, state):
    pools, exists = reference_cbst.new_pools(lowres[0].shape[0])
    os.makedirs(os.path.join(folder, 'probmap'), exist_ok=True)
    for i, low in enumerate(lowres):
        probmap = lowres_to_probmap(LowRes(low, im_hw, STRIDE), hw)
        reference_cbst.collect(pools, exists, probmap)
        np.save(os.path.join(folder, 'probmap', '%d.npy' % i), probmap.astype(np.float32))
        del probmap
    state.update(pools=pools, exists=exists)


def reference_thresholds(portion, policy, state):
    pools, exists = state.pop('pools'), state.pop('exists')
    cls_size, cls_thresh = reference_cbst.thresholds(pools, exists, portion, policy, release=True)
    state.update(cls_size=cls_size, cls_thresh=cls_thresh)


def reference_pass2(num_images, folder, info, state):
    for i in range(num_images):
        probmap = np.load(os.path.join(folder, 'probmap', '%d.npy' % i))
        label, _ = reference_cbst.reference_labels(probmap, state['cls_thresh'])
        write_labels(folder, str(i), label, info)
        del probmap, label


# ---------------------------------------------------------------- lean path
def lean_pass1(lowres, im_hw, hw, folder, state):
    col = ConfidenceCollector(lowres[0].shape[0])
    for i, low in enumerate(lowres):
        low = LowRes(low, im_hw, STRIDE)
        save_lowres(os.path.join(folder, 'probmap', '%d.npz' % i), low, hw)
        probmap = lowres_to_probmap(low, hw)
        col.add(*confidence_map(probmap))
        del probmap
    state.update(collector=col)


def lean_thresholds(portion, policy, state):
    cls_size, cls_thresh = threshold_stats(state.pop('collector'), portion, policy)
    state.update(cls_size=cls_size, cls_thresh=cls_thresh)


def lean_pass2(num_images, folder, info, state):
    for i in range(num_images):
        low, orig_hw = load_lowres(os.path.join(folder, 'probmap', '%d.npz' % i), STRIDE)
        probmap = lowres_to_probmap(low, orig_hw)
        write_labels(folder, str(i), pseudo_label(probmap, state['cls_thresh']), info)
        del probmap


def pool_scaling(num_images, num_classes, pixels, seed):
    """Threshold determination alone for ``num_images`` images' worth of confidences.

    Per image, each class gets its share of ``pixels / 4`` kept values (as
    pass 1 would keep them); the reference grows arrays with ``np.append``
    and sorts Python lists, the lean path keeps chunks and partitions.
    Returns ``[(path, seconds, peak bytes), ...]``.
    """
    rng = np.random.RandomState(seed)
    share = rng.dirichlet(np.ones(num_classes) * 2)
    per_image = [(share * pixels / 4).astype(int) for _ in range(num_images)]
    out = []
    for path in ('reference', 'lean'):
        rng = np.random.RandomState(seed + 1)
        tracemalloc.start()
        t0 = time.perf_counter()
        if path == 'reference':
            pools = [np.float32(0) for _ in range(num_classes)]
            for counts in per_image:
                for c, m in enumerate(counts):
                    pools[c] = np.append(pools[c], rng.uniform(0.05, 1, m).astype(np.float32))
            for c in range(num_classes):
                s = sorted(pools[c], reverse=True)
                k = int(math.floor(len(s) * 0.2))
                _ = s[k - 1] if k else None
                pools[c] = s = None
        else:
            col = ConfidenceCollector(num_classes)
            for counts in per_image:
                pred = np.repeat(np.arange(num_classes, dtype=np.uint8), counts * 4)
                conf = np.repeat(rng.uniform(0.05, 1, counts.sum()).astype(np.float32), 4)
                col.add(pred, conf)
                del pred, conf
            threshold_stats(col, 0.2, 'cb')
        out.append((path, time.perf_counter() - t0, tracemalloc.get_traced_memory()[1]))
        tracemalloc.stop()
    return out


def run(path, lowres, im_hw, hw, portion, policy, folder, info, trace):
    p1, th, p2 = {'reference': (reference_pass1, reference_thresholds, reference_pass2),
                  'lean': (lean_pass1, lean_thresholds, lean_pass2)}[path]
    state = {}
    phases = [('pass 1 (upsample, store, collect)', lambda: p1(lowres, im_hw, hw, folder, state)),
              ('thresholds', lambda: th(portion, policy, state)),
              ('pass 2 (load, label, write PNGs)', lambda: p2(len(lowres), folder, info, state))]
    out = []
    for name, fn in phases:
        if trace:
            tracemalloc.start()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
        if trace:
            tracemalloc.stop()
        out.append((name, dt, peak))
    stored = sum(os.path.getsize(os.path.join(folder, 'probmap', f))
                 for f in os.listdir(os.path.join(folder, 'probmap')))
    return out, state, stored


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num-images', type=int, default=2)
    parser.add_argument('--classes', type=int, default=19)
    parser.add_argument('--height', type=int, default=1024)
    parser.add_argument('--width', type=int, default=2048)
    parser.add_argument('--test-scale', type=int, default=1850, help='longer side fed to the network')
    parser.add_argument('--portion', type=float, default=0.2)
    parser.add_argument('--kc-policy', default='cb', choices=['cb', 'global'])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--workdir', default=None, help='scratch folder (default: a temporary one)')
    parser.add_argument('--pool-images', type=int, default=0,
                        help='also time collection + thresholds alone for this many images of confidences '
                             '(no upsampling, no files)')
    args = parser.parse_args(argv)

    info = get_dataset('cityscapes')
    hw = (args.height, args.width)
    im_hw = longer_side_shape(hw, args.test_scale)
    low_hw = tuple(v // STRIDE for v in padded_shape(im_hw, STRIDE))
    lowres = make_lowres(args.num_images, args.classes, low_hw, args.seed)
    root = tempfile.mkdtemp(prefix='bench_pl_', dir=args.workdir)
    results = {}
    try:
        for path in ('reference', 'lean'):
            folder = os.path.join(root, path)
            timing, state, stored = run(path, lowres, im_hw, hw, args.portion, args.kc_policy, folder, info, False)
            shutil.rmtree(folder)
            memory, _, _ = run(path, lowres, im_hw, hw, args.portion, args.kc_policy, folder, info, True)
            results[path] = (timing, memory, state, stored)
        # Same thresholds and same PNG bytes from both paths.
        same_thresh = np.array_equal(results['reference'][2]['cls_thresh'], results['lean'][2]['cls_thresh'])
        same_png = all(
            open(os.path.join(root, 'reference', sub, '%d.png' % i), 'rb').read()
            == open(os.path.join(root, 'lean', sub, '%d.png' % i), 'rb').read()
            for sub in ('pseudo_labelIds', 'pseudo_color') for i in range(args.num_images))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    mb = 1024. ** 2
    print('%d images of %dx%d (network input %dx%d, output %dx%d), %d classes, portion %.2f, policy %s'
          % (args.num_images, hw[0], hw[1], im_hw[0], im_hw[1], low_hw[0], low_hw[1], args.classes,
             args.portion, args.kc_policy))
    print('%-36s %12s %12s %8s %14s %14s %8s' % ('phase', 'ref time s', 'lean time s', 'ratio',
                                                 'ref peak MB', 'lean peak MB', 'ratio'))
    for k in range(3):
        name, rt, _ = results['reference'][0][k]
        _, lt, _ = results['lean'][0][k]
        _, _, rm = results['reference'][1][k]
        _, _, lm = results['lean'][1][k]
        print('%-36s %12.2f %12.2f %8.2f %14.1f %14.1f %8.3f' % (name, rt, lt, lt / rt, rm / mb, lm / mb, lm / rm))
    for path in ('reference', 'lean'):
        per = results[path][3] / args.num_images
        print('%-9s stored between passes: %d bytes (%.2f MiB) per image' % (path, per, per / mb))
    print('stored bytes ratio lean/reference: 1/%.1f' % (results['reference'][3] / results['lean'][3]))
    print('identical thresholds: %s, identical PNGs: %s' % (same_thresh, same_png))
    if args.pool_images:
        res = pool_scaling(args.pool_images, args.classes, hw[0] * hw[1], args.seed)
        (_, rt, rm), (_, lt, lm) = res
        print('collection + thresholds for %d images (%d kept values): reference %.2f s / %.0f MB peak, '
              'lean %.2f s / %.0f MB peak; ratios %.3f time, %.3f memory'
              % (args.pool_images, args.pool_images * hw[0] * hw[1] // 4, rt, rm / mb, lt, lm / mb,
                 lt / rt, lm / rm))
    return 0 if (same_thresh and same_png) else 1


if __name__ == '__main__':
    sys.exit(main())
