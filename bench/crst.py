"""CRST costs: disk per image of the LRENT soft labels, and the training step with the regularised loss.

* **Bytes per image.** CRST saves one H x W x C float32 ``.npy`` per target
  image (Cityscapes: 1024 x 2048 x 19). We keep the network's low-resolution
  output of the pseudo-label phase (``probmap/{name}.npz``, written here with
  the project's own :func:`issegm.self_training.save_lowres` at the published
  ``--test-scales 1850``) plus one small recipe per round
  (``soft_labels.json``: thresholds, alpha), and recompute the soft labels of
  each crop in the iterator. Target: at most 1/16 of CRST's bytes.
* **Recomputing a crop's soft labels** (not a target; the price of the disk
  saving): seconds for one 500-pixel crop of a Cityscapes-size image in the
  iterator (upsampling the whole map again, then soft labels of the window
  only), next to ``np.load`` of CRST's stored map from the page cache.
* **Training step.** Seconds per step (forward, backward, SGD update) of the
  thin network ``rna-t1`` at the self-training setting (batch 2, crop 504,
  19 classes) with the plain SoftmaxOutput head (CBST) and with the CRST
  loss (MRKLD on hard labels; all three model regularisers on soft labels),
  steps interleaved so that the machine's load hits both alike. Target: at
  most 1.10x.

    python bench/crst.py [--steps 12] [--crop 504] [--skip-step] [--skip-crop]

Default run: about a minute on 2 cores.
"""
import argparse
import io
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

SHAPE, CLASSES, TEST_SCALE, STRIDE, IMAGES = (1024, 2048), 19, 1850, 8, 500


def crst_npy_bytes(shape=SHAPE, classes=CLASSES):
    """Size of CRST's ``np.save`` of one float32 H x W x C soft-label map (header + data)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {'descr': '<f4', 'fortran_order': False,
                                               'shape': tuple(shape) + (classes,)})
    return buf.tell() + int(np.prod(shape)) * classes * 4


def ours_bytes(folder, alpha=0.25):
    """Bytes per image we keep: one low-resolution map, plus the round's recipe shared by IMAGES images."""
    from issegm.crst import RECIPE, SoftLabelStore
    from issegm.inference import LowRes, padded_shape
    from issegm.self_training import save_lowres
    from util.image import longer_side_shape
    im_hw = longer_side_shape(SHAPE, TEST_SCALE)
    low_hw = tuple(v // STRIDE for v in padded_shape(im_hw, STRIDE))
    rng = np.random.RandomState(0)
    probs = rng.dirichlet(np.ones(CLASSES), size=low_hw).transpose(2, 0, 1).astype(np.float32)
    path = os.path.join(folder, 'probmap', 'frankfurt_000000_000294_leftImg8bit.npz')
    save_lowres(path, LowRes(probs, im_hw, STRIDE), SHAPE)
    SoftLabelStore.save_recipe(folder, os.path.dirname(path), rng.uniform(0.1, 1, CLASSES), alpha, STRIDE)
    recipe = os.path.getsize(os.path.join(folder, RECIPE))
    return os.path.getsize(path), recipe, path, low_hw


def crop_seconds(folder, npz, repeats=3):
    """Seconds to make one crop's soft labels from the store, and CRST's ``np.load`` of its map."""
    from issegm.crst import SoftLabelStore, crop_soft_labels
    store = SoftLabelStore.load(folder, 0.25, CLASSES)
    name = os.path.basename(npz)[:-4]
    label = np.zeros(63 * 63, np.uint8)
    times = []
    for k in range(repeats):
        start = time.time()
        window = store.window(name, 200 + 37 * k, 700 + 91 * k, 500)
        crop_soft_labels(window, label, 504, STRIDE, flip=bool(k % 2))
        times.append(time.time() - start)
    stored = os.path.join(folder, 'crst_map.npy')
    np.save(stored, np.zeros(SHAPE + (CLASSES,), np.float32))
    np.load(stored)  # into the page cache
    start = time.time()
    np.load(stored)
    load = time.time() - start
    os.remove(stored)
    return float(np.median(times)), load


def step_seconds(steps, crop, batch=2):
    """Median seconds per training step: CBST's head, CRST-MRKLD (hard), CRST with all regularisers (soft)."""
    import mxnet as mx
    from issegm import crst
    from issegm.model import get_module, head_initializer
    label = 'cityscapes_rna-t1_cls19_s8'
    n = (crop // STRIDE) ** 2
    rng = np.random.RandomState(0)
    data = mx.nd.array(rng.randn(batch, 3, crop, crop))
    hard = rng.randint(0, CLASSES, (batch, n)).astype(np.float32)
    hard[:, :n // 4] = 255
    soft = np.stack([crst.one_hot(h, CLASSES) for h in hard])
    soft[:, :, n // 4:] = rng.dirichlet(np.ones(CLASSES), size=(batch, n - n // 4)).transpose(0, 2, 1)
    domain = mx.nd.array(np.array([1, 0], np.float32)[:batch])
    cases = {
        'CBST (SoftmaxOutput)': (get_module(label, [mx.cpu()]), [mx.nd.array(hard)]),
        'CRST-MRKLD, hard labels': (crst.Objective(crst.CrstWeights(0.1, 0, 0, 0, 0)).module(label, [mx.cpu()]),
                                    [mx.nd.array(hard), domain]),
        'CRST-LRENT + MRKLD/ENT/L2': (crst.Objective(crst.CrstWeights(0.1, 0.1, 0.1, 0.25, 0.1)).module(
            label, [mx.cpu()]), [mx.nd.array(soft), domain]),
    }
    batches = {}
    for name, (mod, labels) in cases.items():
        label_shapes = [('softmax_label', labels[0].shape)]
        if len(labels) > 1:
            label_shapes.append((crst.DOMAIN_NAME, (batch,)))
        mod.bind([('data', data.shape)], label_shapes, for_training=True)
        mx.random.seed(0)
        mod.init_params(initializer=head_initializer())
        mod.init_optimizer(optimizer='sgd', optimizer_params={'learning_rate': 1e-4, 'momentum': 0.9,
                                                              'wd': 5e-4})
        batches[name] = mx.io.DataBatch([data], labels)
    times = {name: [] for name in cases}
    for k in range(steps + 1):  # the first round warms up and is not counted
        for name, (mod, _) in cases.items():
            start = time.time()
            mod.forward_backward(batches[name])
            mod.update()
            mx.nd.waitall()
            if k:
                times[name].append(time.time() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=12)
    parser.add_argument('--crop', type=int, default=504)
    parser.add_argument('--skip-step', action='store_true')
    parser.add_argument('--skip-crop', action='store_true')
    args = parser.parse_args(argv)
    report = {}
    with tempfile.TemporaryDirectory() as folder:
        npz, recipe, path, low_hw = ours_bytes(folder)
        theirs = crst_npy_bytes()
        ours = npz + recipe / float(IMAGES)
        report['bytes'] = {'crst_npy': theirs, 'ours_npz': npz, 'ours_recipe_per_round': recipe, 'ratio': ours / theirs}
        print('LRENT soft labels on disk, per Cityscapes image (1024x2048, 19 classes, --test-scales %d):' % TEST_SCALE)
        print('  CRST  H x W x C float32 .npy      %12d bytes' % theirs)
        print('  ours  low-res map %dx%dx%d .npz %12d bytes + recipe %d bytes per round (/%d images)'
              % (CLASSES, low_hw[0], low_hw[1], npz, recipe, IMAGES))
        print('  ratio ours / CRST: 1/%.0f (target <= 1/16): %s' % (theirs / ours, 'PASS' if ours * 16 <= theirs
                                                                    else 'FAIL'))
        if not args.skip_crop:
            ours_s, load_s = crop_seconds(folder, path)
            report['crop_seconds'] = {'ours_recompute': ours_s, 'crst_np_load_cached': load_s}
            print('one 500-px crop\'s soft labels in the iterator: %.2f s here (upsampling the whole map '
                  'again); CRST\'s np.load of its map from the page cache: %.2f s, before its resize'
                  % (ours_s, load_s))
    if not args.skip_step:
        steps = step_seconds(args.steps, args.crop)
        base = steps['CBST (SoftmaxOutput)']
        report['step_seconds'] = steps
        print('training step, rna-t1, batch 2, crop %d, median of %d:' % (args.crop, args.steps))
        for name, sec in steps.items():
            ratio = sec / base
            print('  %-28s %.3f s  %.3fx%s' % (name, sec, ratio, '' if name.startswith('CBST') else
                                               ' (target <= 1.10x): %s' % ('PASS' if ratio <= 1.10 else 'FAIL')))
    print(json.dumps(report))
    return report


if __name__ == '__main__':
    main()
