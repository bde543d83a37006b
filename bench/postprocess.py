"""Post-processing on this CPU: the PIL path against the device path run on the CPU context.

Times the three recipes of :class:`issegm.engine.postprocess.Postprocessor` on
full-size maps (19 classes, network output at 1/8 of a 1024 x 2048 image,
test scale 2048 for evaluation and 1850 for pseudo-labels as in the
published commands), each image waited for before the next, and prints
seconds an image per path and their ratio: the faster path is what
``--postprocess auto`` uses on a CPU (``issegm.engine.postprocess.CPU_DEFAULT``).
Also prints the device path's counted FLOPs and bytes per image, and how
far its numbers are from PIL's on these maps (largest probability
difference, relative to the largest value; label agreement).

    python bench/postprocess.py [--images 2] [--rounds 3] [--prior]
"""
import argparse
import os
import sys
import time

import numpy as np

from issegm.engine.inference import padded_shape
from issegm.engine.postprocess import CPU_DEFAULT, Postprocessor
from issegm.storage.probmaps import LowRes
from util.image import longer_side_shape

C, STRIDE, HW = 19, 8, (1024, 2048)


def smooth_lowres(low_hw, rng):
    """Softmax of smooth random class scores (blobs a few cells wide), as a network's output looks."""
    h, w = low_hw
    coarse = rng.randn(C, h // 4 + 1, w // 4 + 1).astype(np.float32) * 3
    logits = np.repeat(np.repeat(coarse, 4, 1), 4, 2)[:, :h, :w] + rng.randn(C, h, w).astype(np.float32)
    p = np.exp(logits - logits.max(0))
    return (p / p.sum(0)).astype(np.float32)


class StoredJob(object):
    """A finished forward: what the recipes read from :class:`issegm.engine.inference.Job`."""

    def __init__(self, probs, im_hw):
        self.low, self.orig_hw = LowRes(probs, im_hw, STRIDE), HW

    def lowres(self):
        return [self.low]


def cases(images, prior, rng):
    """Per recipe: a name and a function (postprocessor, image index) -> Pending."""
    eval_hw = longer_side_shape(HW, 2048)
    st_hw = longer_side_shape(HW, 1850)
    low = lambda hw: tuple(v // STRIDE for v in padded_shape(hw, STRIDE))  # noqa: E731
    ev = [StoredJob(smooth_lowres(low(eval_hw), rng), eval_hw) for _ in range(images)]
    st = [(LowRes(smooth_lowres(low(st_hw), rng), st_hw, STRIDE), HW) for _ in range(images)]
    gts = [rng.randint(0, C, HW).astype(np.uint8) for _ in range(images)]
    thresh = rng.uniform(0.3, 0.9, C)
    return [('evaluation (upsample, argmax, confusion)', lambda post, i: post.evaluate(ev[i], gts[i])),
            ('pseudo-label pass 1 (upsample, %sargmax, kept confidences, confusion)' % ('prior, ' if prior else ''),
             lambda post, i: post.collect(post.source(stored=st[i]), gts[i])),
            ('pseudo-label pass 2 (upsample, %sratios, labels)' % ('prior, ' if prior else ''),
             lambda post, i: post.label(post.source(stored=st[i]), thresh))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=2)
    parser.add_argument('--prior', action='store_true', help='with a spatial prior (CBST-SP)')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.RandomState(args.seed)
    prior = rng.uniform(0, 1, (C,) + HW).astype(np.float32) if args.prior else None
    posts = {mode: Postprocessor(C, mode, prior=prior) for mode in ('pil', 'device')}
    print('%d images of %dx%d, %d classes, %d CPU cores; each image waited for before the next; median of %d '
          'rounds (the paths alternate within a round)' % (args.images, HW[0], HW[1], C, os.cpu_count(), args.rounds))
    print('%-68s %13s %13s %8s' % ('seconds an image: wall (CPU of all threads)', 'pil', 'device', 'dev/pil'))
    totals = {'pil': 0.0, 'device': 0.0}
    outputs = {}
    for name, recipe in cases(args.images, args.prior, rng):
        wall, cpu = {m: [] for m in posts}, {m: [] for m in posts}
        for mode, post in posts.items():
            recipe(post, 0).result()  # warm-up: matrices, memory
        flops, nbytes = posts['device'].ops.flops, posts['device'].ops.bytes
        for _ in range(args.rounds):
            for mode, post in posts.items():
                t0, c0 = time.perf_counter(), time.process_time()
                outputs[name, mode] = [recipe(post, i).result() for i in range(args.images)]
                wall[mode].append((time.perf_counter() - t0) / args.images)
                cpu[mode].append((time.process_time() - c0) / args.images)
        med = {m: float(np.median(wall[m])) for m in posts}
        for m in posts:
            totals[m] += med[m]
        print('%-68s %6.3f (%4.2f) %6.3f (%4.2f) %8.2f'
              % (name, med['pil'], np.median(cpu['pil']), med['device'], np.median(cpu['device']),
                 med['device'] / med['pil']))
        runs = args.rounds * args.images
        print('    device work counted: %.1f GFLOP, %.2f GB of device memory traffic an image'
              % ((posts['device'].ops.flops - flops) / runs / 1e9, (posts['device'].ops.bytes - nbytes) / runs / 1e9))
    print('%-68s %13.3f %13.3f %8.2f' % ('all three', totals['pil'], totals['device'],
                                         totals['device'] / totals['pil']))
    faster = min(totals, key=totals.get)
    print('faster on this CPU: %s (CPU_DEFAULT in issegm/engine/postprocess.py is %s)' % (faster, CPU_DEFAULT))

    # how close the two paths are on these maps
    same = total = 0
    for (name, mode), outs in outputs.items():
        if mode != 'device':
            continue
        for got, want in zip(outs, outputs[name, 'pil']):
            for key in want:
                if key.startswith('pred') or key in ('label', 'argmax'):
                    same += int((got[key] == want[key]).sum())
                    total += want[key].size
    job = StoredJob(smooth_lowres((128, 256), rng), longer_side_shape(HW, 2048))
    maps = {mode: post.ops.fetch(post.probmap(post.source(job))) for mode, post in posts.items()}
    err = np.abs(maps['device'] - maps['pil']).max() / np.abs(maps['pil']).max()
    print('device vs pil: largest probability difference %.2e of the largest value; label maps agree on '
          '%.5f%% of %d pixels' % (err, 100.0 * same / total, total))


if __name__ == '__main__':
    main()
