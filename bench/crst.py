"""CRST costs: disk per image of the LRENT soft labels, their recomputation per crop, the training step.

* **Bytes per image.** CRST saves one H x W x C float32 ``.npy`` per target
  image (Cityscapes: 1024 x 2048 x 19). We keep the network's low-resolution
  output of the pseudo-label phase (``probmap/{name}.npz``, written here with
  the project's own :func:`issegm.storage.probmaps.save_lowres` at the published
  ``--test-scales 1850``) plus one small recipe per round
  (``soft_labels.json``: thresholds, alpha), and recompute the soft labels of
  each crop in the iterator. Target: at most 1/16 of CRST's bytes.
* **Recomputing a crop's soft labels** (not a target; the price of the disk
  saving): seconds to make one target crop's training targets from the
  store at the published setting (crop 500 -> 504, ``--scale-rate-range
  0.7,1.3`` of ``--origin-size-tgt 2048``: windows of 720, 504 and 387
  image pixels), before (the whole map upsampled with PIL for every crop,
  then the window cut) and now (only the window rows/columns the crop's
  resize reads, through the upsampling matrices), and the mean over crops
  drawn as the iterator draws them; next to ``np.load`` of CRST's stored
  map from the page cache. The same run checks the numbers at that size:
  the targets against those cut from the whole map of the matrix path (to
  float32 rounding; hard labels exactly) and the targets before (PIL's
  whole map, PIL's resize).
* **Iterator.** Samples/s of :class:`issegm.engine.iterator.FileIter` with 2 worker
  threads on Cityscapes-size target samples (``bench/iterator.py``'s
  synthetic images, mining on, bytes cached): CBST's labels, CRST-LRENT's
  soft labels before and now, in turn over 3 rounds, each timed from the
  epoch's start.
* **Training step.** Seconds per step (forward, backward, SGD update) of the
  thin network ``rna-t1`` at the self-training setting (batch 2, crop 504,
  19 classes) with the plain SoftmaxOutput head (CBST) and with the CRST
  loss (MRKLD on hard labels; all three model regularisers on soft labels),
  steps interleaved so that the machine's load hits both alike. Target: at
  most 1.10x.

    python bench/crst.py [--steps 12] [--crop 504] [--skip-step] [--skip-crop] [--skip-iter]
                         [--draws 20] [--batches 8]

Default run: about two minutes on 2 cores.
"""
import argparse
import io
import json
import os
import sys
import tempfile
import time

import numpy as np

from util.image import longer_side_shape

SHAPE, CLASSES, TEST_SCALE, STRIDE, IMAGES = (1024, 2048), 19, 1850, 8, 500


def crst_npy_bytes(shape=SHAPE, classes=CLASSES):
    """Size of CRST's ``np.save`` of one float32 H x W x C soft-label map (header + data)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {'descr': '<f4', 'fortran_order': False,
                                               'shape': tuple(shape) + (classes,)})
    return buf.tell() + int(np.prod(shape)) * classes * 4


def lowres_shape():
    """``(im_hw, low_hw)``: the scaled image at ``--test-scales 1850`` and its network output's size."""
    from issegm.engine.inference import padded_shape
    im_hw = longer_side_shape(SHAPE, TEST_SCALE)
    return im_hw, tuple(v // STRIDE for v in padded_shape(im_hw, STRIDE))


def ours_bytes(folder, alpha=0.25):
    """Bytes per image we keep: one low-resolution map, plus the round's recipe shared by IMAGES images."""
    from issegm.engine.objective import RECIPE, SoftLabelStore
    from issegm.storage.probmaps import LowRes
    from issegm.storage.probmaps import save_lowres
    im_hw, low_hw = lowres_shape()
    rng = np.random.RandomState(0)
    probs = rng.dirichlet(np.ones(CLASSES), size=low_hw).transpose(2, 0, 1).astype(np.float32)
    path = os.path.join(folder, 'probmap', 'frankfurt_000000_000294_leftImg8bit.npz')
    save_lowres(path, LowRes(probs, im_hw, STRIDE), SHAPE)
    SoftLabelStore.save_recipe(folder, os.path.dirname(path), rng.uniform(0.1, 1, CLASSES), alpha, STRIDE)
    recipe = os.path.getsize(os.path.join(folder, RECIPE))
    return os.path.getsize(path), recipe, path, low_hw


def pil_targets(window, label, crop_size, flip):
    """Targets of a soft-label window with every class map resized by PIL (the iterator before windows)."""
    from util.image import resize
    out = np.stack([resize(m, (crop_size, crop_size))[STRIDE // 2::STRIDE, STRIDE // 2::STRIDE] for m in window])
    np.maximum(out, 0., out=out)
    out /= np.where(out.sum(0) > 0, out.sum(0), 1.)
    out = (out[:, :, ::-1] if flip else out).reshape(out.shape[0], -1)
    return np.ascontiguousarray(out * (label.ravel() != 255), dtype=np.float32)


class BeforeTargets(object):
    """The iterator's CRST-LRENT targets before windows, kept here as the baseline.

    Every target crop upsampled its whole map with PIL, computed the soft
    labels of the window and resized each class map of the window with PIL
    (the store of issue 13 as first landed).
    """

    def __init__(self, store):
        from issegm.engine.objective import TrainingTargets
        self.store = store
        self.targets = TrainingTargets(store.num_classes, store)
        self.label_shape = self.targets.label_shape

    def __call__(self, sample, label, geometry, crop_size, stride, is_target):
        from issegm.method.crst import soft_pseudo_labels
        from issegm.storage.datasets import sample_name
        from issegm.storage.probmaps import load_lowres
        from issegm.engine.postprocess import lowres_to_probmap
        if not is_target:
            return self.targets(sample, label, geometry, crop_size, stride, is_target)
        s, g = self.store, geometry
        low, orig_hw = load_lowres(s.path(sample_name(sample.image)), s.stride)
        window = cut_window(lowres_to_probmap(low, orig_hw, s.prior), g.y0 - g.d0, g.x0 - g.d0, g.crop,
                            lambda probs: soft_pseudo_labels(probs, s.thresholds, s.alpha)[0])
        return pil_targets(window, label, crop_size, g.flip)


def cut_window(full, top, left, crop, soft=None):
    """(C, crop, crop) float32: ``soft`` of ``full``'s image rows/cols under the window, zero off the image."""
    out = np.zeros((full.shape[0], crop, crop), np.float32)
    (h, w), (r0, c0) = full.shape[1:], (max(top, 0), max(left, 0))
    r1, c1 = min(top + crop, h), min(left + crop, w)
    if r1 > r0 and c1 > c0:
        part = full[:, r0:r1, c0:c1]
        out[:, r0 - top:r1 - top, c0 - left:c1 - left] = part if soft is None else soft(part)
    return out


def crop_geometry(rate, rng, shape=SHAPE, crop_size=504):
    """A :class:`issegm.engine.iterator.Geometry` as the iterator draws it at ``rate`` (uniform corner, no mining)."""
    from issegm.engine.iterator import Geometry
    crop, ls = int(crop_size / rate), STRIDE / rate
    d0 = max(1, int(ls // 2))
    y0 = rng.randint(0, int(max(1, ls, d0 + shape[0] - crop + 1)))
    x0 = rng.randint(0, int(max(1, ls, d0 + shape[1] - crop + 1)))
    return Geometry(rate, crop, d0, y0, x0, bool(rng.randint(2)), False)


def crop_targets(targets, name, geometry, label, crop_size=504):
    """The training targets of one target crop, made as the iterator makes them."""
    from issegm.engine.iterator import TARGET, Sample
    return targets(Sample(name + '.png', None, TARGET), label, geometry, crop_size, STRIDE, True)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def crop_seconds(folder, npz, draws=20, repeats=3, seed=0):
    """Seconds per crop's targets, before and now, at rates 0.7 / 1.0 / 1.3 and over ``draws`` iterator draws.

    Before and now alternate crop by crop, so that the machine's load hits both alike.
    """
    from issegm.engine.objective import SoftLabelStore, TrainingTargets
    store = SoftLabelStore.load(folder, 0.25, CLASSES)
    before, now = BeforeTargets(store), TrainingTargets(CLASSES, store)
    name = os.path.basename(npz)[:-4]
    rng = np.random.RandomState(seed)
    label = np.zeros((504 // STRIDE) ** 2, np.uint8)
    rows = []
    for rate in (0.7, 1.0, 1.3):
        times = np.array([[timed(crop_targets, t, name, g, label)[0] for t in (before, now)]
                          for g in [crop_geometry(rate, rng) for _ in range(repeats)]])
        rows.append((rate, int(504 / rate), float(np.median(times[:, 0])), float(np.median(times[:, 1]))))
    lo, hi = [int(r * 2048) for r in (0.7, 1.3)]
    drawn = [timed(crop_targets, now, name, crop_geometry(rng.randint(lo, hi + 1) / 2048., rng), label)[0]
             for _ in range(draws)]
    stored = os.path.join(folder, 'crst_map.npy')
    np.save(stored, np.zeros(SHAPE + (CLASSES,), np.float32))
    np.load(stored)  # into the page cache
    load = timed(np.load, stored)[0]
    os.remove(stored)
    return rows, float(np.mean(drawn)), float(np.std(drawn)), load


def matrix_probmap(low, orig_hw):
    """The whole map by the matrix path, class by class: A_h . X . A_w^T in float64, rounded to float32."""
    from issegm.engine.postprocess import upsample_matrices
    a_h, a_w = upsample_matrices(low.probs.shape[1:], low.stride, low.im_hw, tuple(orig_hw))
    return np.stack([a_h.dot(p.astype(np.float64)).dot(a_w.T).astype(np.float32) for p in low.probs])


def exactness(folder, npz, crops=6, seed=1):
    """The targets of crops against those cut from whole maps, and the maps' hard labels.

    References: the whole map of the matrix path with :func:`issegm.engine.objective.crop_soft_labels`
    (the documented path: must agree to float32 rounding, hard labels
    exactly), and the targets before windows (PIL's whole map and PIL's
    resize: what training saw before). Returns a dict: per reference, the
    largest target difference and the labelled pixels whose argmax (or
    all-zero state) differs; the LRENT hard labels of the window pixels
    (argmax, 255 where ignored) against the whole matrix map's, and the
    whole maps' hard labels, matrix path against PIL.
    """
    from issegm.method.crst import soft_pseudo_labels
    from issegm.engine.objective import SoftLabelStore, TrainingTargets, crop_soft_labels
    from issegm.engine.postprocess import upsample_window
    from issegm.storage.probmaps import load_lowres
    from issegm.engine.postprocess import lowres_to_probmap
    store = SoftLabelStore.load(folder, 0.25, CLASSES)
    name = os.path.basename(npz)[:-4]
    low, orig_hw = load_lowres(npz, STRIDE)
    maps = {'matrix': soft_pseudo_labels(matrix_probmap(low, orig_hw), store.thresholds, store.alpha),
            'before': soft_pseudo_labels(lowres_to_probmap(low, orig_hw), store.thresholds, store.alpha)}
    resizes = {'matrix': lambda window, label, flip: crop_soft_labels(window, label, 504, STRIDE, flip),
               'before': lambda window, label, flip: pil_targets(window, label, 504, flip)}
    rng = np.random.RandomState(seed)
    report = {k: {'max_abs': 0., 'hard_differ': 0, 'labelled': 0} for k in maps}
    window_hard = [0, 0]
    for k in range(crops):
        g = crop_geometry((0.7, 1.0, 1.3)[k % 3], rng)
        label = rng.randint(0, CLASSES, (504 // STRIDE) ** 2).astype(np.uint8)
        got = crop_targets(TrainingTargets(CLASSES, store), name, g, label)
        top, left = g.y0 - g.d0, g.x0 - g.d0
        for key, (soft, _) in maps.items():
            want = resizes[key](cut_window(soft, top, left, g.crop), label, g.flip)
            on = want.sum(0) != 0
            r = report[key]
            r['max_abs'] = max(r['max_abs'], float(np.abs(got - want).max()))
            r['hard_differ'] += int(((got.sum(0) != 0) != on).sum() + (got.argmax(0) != want.argmax(0))[on].sum())
            r['labelled'] += int(on.sum())
        rows = np.arange(max(top, 0), min(top + g.crop, SHAPE[0]))
        cols = np.arange(max(left, 0), min(left + g.crop, SHAPE[1]))
        hard = soft_pseudo_labels(upsample_window(low.probs, low.stride, low.im_hw, orig_hw, rows, cols),
                                  store.thresholds, store.alpha)[1]
        window_hard[0] += int((hard != maps['matrix'][1][rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]).sum())
        window_hard[1] += hard.size
    report['window_hard_labels'] = {'differ': window_hard[0], 'pixels': window_hard[1]}
    report['image_hard_labels_matrix_vs_pil'] = {'differ': int((maps['matrix'][1] != maps['before'][1]).sum()),
                                                 'pixels': int(maps['before'][1].size)}
    return report


def iterator_rates(folder, batches, rounds=3, images=4, workers=2):
    """Samples/s of FileIter with ``workers`` threads: CBST, CRST-LRENT before (whole map) and now (windows).

    The three run in turn, ``rounds`` times (a fresh iterator each time), so
    that the machine's load hits them alike; returns each one's rates.
    """
    from bench.iterator import make_images
    from issegm.engine.objective import SoftLabelStore, TrainingTargets
    from issegm.engine.iterator import TARGET, FileIter, Sample
    from issegm.storage.datasets import sample_name
    from issegm.storage.probmaps import LowRes
    from issegm.storage.probmaps import save_lowres
    samples = [Sample(s.image, s.label, TARGET) for s in make_images(os.path.join(folder, 'data'), images)]
    im_hw, low_hw = lowres_shape()
    rng = np.random.RandomState(2)
    for s in samples:
        probs = rng.dirichlet(np.ones(CLASSES), size=low_hw).transpose(2, 0, 1).astype(np.float32)
        save_lowres(os.path.join(folder, 'probmap', sample_name(s.image) + '.npz'), LowRes(probs, im_hw, STRIDE),
                    SHAPE)
    store = SoftLabelStore.load(folder, 0.25, CLASSES)
    cases = (('CBST (hard labels)', None),
             ('CRST-LRENT before (whole map)', BeforeTargets(store)),
             ('CRST-LRENT now (windows)', TrainingTargets(CLASSES, store)))
    meta = dict(max_shape_tgt=SHAPE, mine_port=0.8, mine_id=[18, 6, 7], mine_id_priority=[], cache_images=True)
    rates = {name: [] for name, _ in cases}
    for _ in range(rounds):
        for name, targets in cases:
            it = FileIter('gta', dataset_tgt='cityscapes', samples=samples, meta=meta, batch_images=2,
                          feat_stride=8, crop_size=500, origin_size_tgt=2048, scale_rate_range=(0.7, 1.3),
                          prefetch_threads=workers, seed=0, targets=targets)
            try:
                rates[name].append(samples_per_second(it, batches))
            finally:
                it.close()
    return rates


def samples_per_second(it, batches):
    """Samples/s over the first ``batches`` batches, from the epoch's start (no credit for prefetched work)."""
    start, done = time.perf_counter(), 0
    while done < batches:
        it.reset()
        for _ in it:
            done += 1
            if done == batches:
                break
    return batches * it.batch_size / (time.perf_counter() - start)


def step_seconds(steps, crop, batch=2):
    """Median seconds per training step: CBST's head, CRST-MRKLD (hard), CRST with all regularisers (soft)."""
    import mxnet as mx
    from issegm.method import crst
    from issegm.engine.model import get_module, head_initializer
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


def report_disk(folder, report):
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
    return path


def report_crops(folder, path, draws, report):
    rows, mean, std, load = crop_seconds(folder, path, draws)
    report['crop_seconds'] = {'by_rate': {'%g' % r[0]: {'crop': r[1], 'before': r[2], 'now': r[3]} for r in rows},
                              'now_mean_drawn': mean, 'now_std_drawn': std, 'crst_np_load_cached': load}
    print('one target crop\'s soft-label targets (crop 500 -> 504, alpha 0.25), seconds, median:')
    print('  rate  window  before (whole map, PIL)  now (window rows/cols)  speed-up')
    for rate, crop, old, new in rows:
        print('  %4.1f  %6d  %23.3f  %22.4f  %7.0fx' % (rate, crop, old, new, old / new))
    print('  now, %d crops drawn as the iterator draws them (rate uniform in 0.7-1.3): mean %.3f s (sd %.3f); '
          'CRST\'s np.load of its map from the page cache: %.3f s, before its resize' % (draws, mean, std, load))
    exact = exactness(folder, path)
    report['exactness'] = exact
    for key, what in (('matrix', 'the whole map by the matrix path'),
                      ('before', 'PIL\'s whole map with PIL\'s resize (before)')):
        r = exact[key]
        print('  targets against those cut from %s: max |diff| %.2e, hard labels differ on %d of %d labelled '
              'pixels' % (what, r['max_abs'], r['hard_differ'], r['labelled']))
    w, i = exact['window_hard_labels'], exact['image_hard_labels_matrix_vs_pil']
    print('  LRENT hard labels of the windows against the whole matrix map\'s: %d of %d pixels differ; whole '
          'maps, matrix path against PIL: %d of %d' % (w['differ'], w['pixels'], i['differ'], i['pixels']))


def report_iterator(folder, batches, report):
    rates = iterator_rates(folder, batches)
    report['iterator_samples_per_second'] = rates
    rounds = len(next(iter(rates.values())))
    print('FileIter, 2 worker threads, Cityscapes-size target samples, %d batches of 2, %d rounds (median, range):'
          % (batches, rounds))
    for name, values in rates.items():
        rate = float(np.median(values))
        print('  %-30s %6.2f samples/s (%.2f-%.2f), %.2f s per batch of 2 (against an ASSUMED 0.35 s GPU step, '
              'bench/iterator.py)' % (name, rate, min(values), max(values), 2. / rate))
    now, before, cbst = [np.array(v) for v in rates.values()][::-1]
    print('  now / before, round by round: %s; now / CBST: %s'
          % (', '.join('%.1fx' % r for r in now / before), ', '.join('%.2f' % r for r in now / cbst)))


def report_steps(steps, crop, report):
    times = step_seconds(steps, crop)
    base = times['CBST (SoftmaxOutput)']
    report['step_seconds'] = times
    print('training step, rna-t1, batch 2, crop %d, median of %d:' % (crop, steps))
    for name, sec in times.items():
        ratio = sec / base
        print('  %-28s %.3f s  %.3fx%s' % (name, sec, ratio, '' if name.startswith('CBST') else
                                           ' (target <= 1.10x): %s' % ('PASS' if ratio <= 1.10 else 'FAIL')))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=12)
    parser.add_argument('--crop', type=int, default=504)
    parser.add_argument('--draws', type=int, default=20, help='crops drawn for the mean recompute time')
    parser.add_argument('--batches', type=int, default=8, help='timed iterator batches per case and round')
    parser.add_argument('--skip-step', action='store_true')
    parser.add_argument('--skip-crop', action='store_true')
    parser.add_argument('--skip-iter', action='store_true')
    args = parser.parse_args(argv)
    report = {}
    with tempfile.TemporaryDirectory() as folder:
        path = report_disk(folder, report)
        if not args.skip_crop:
            report_crops(folder, path, args.draws, report)
        if not args.skip_iter:
            report_iterator(folder, args.batches, report)
    if not args.skip_step:
        report_steps(args.steps, args.crop, report)
    print(json.dumps(report))
    return report


if __name__ == '__main__':
    main()
