"""The pseudo-label phase of a round (``solve_ST.py --phase val``; docs/behaviour.md section 6).

:func:`generate_pseudo_labels` runs the network on every target image and
writes class-balanced pseudo-labels in two passes:

1. forward, keep the network's low-resolution probabilities on disk
   (``{output}/{r}/probmap/{name}.npz``, :mod:`issegm.storage.probmaps`), save the
   plain argmax (``results/nplabelIds``, ``results/npcolor``), apply the
   spatial prior (``self_train/splabelIds``, ``spcolor``), collect
   confidences, score against ground truth when the split has it;
2. thresholds and statistics (``{output}/stats/``), the target training list,
   then for every image redo the deterministic upsampling (and prior) and
   write ``self_train/pseudo_labelIds``, ``pseudo_color`` and, with ``cb``,
   ``rwlabelIds``/``rwcolor``.

Everything after the forward (upsampling, prior, argmax, confidences,
scores, thresholded labels) is :class:`issegm.engine.postprocess.Postprocessor`, on
the network's device or on the host (``--postprocess``); images and maps are
read ahead and PNGs written behind in threads. The numbers themselves
(confidence pools, class thresholds, mining ids) are :mod:`issegm.method.thresholds`.

Distributed (under :mod:`issegm.launch`): each worker forwards and labels
its share of the images (:func:`issegm.cluster.worker.shard`) on every device
of ``--gpus``; rank 0 merges the workers' confidence pools and confusion
matrices (through files in the round's ``probmap/``; thresholds are order
statistics and sizes counts, so they equal a one-process run's exactly),
writes the statistics, and every worker labels its images with the same
thresholds.

Resuming: every file is written atomically; an image whose pass-1 outputs
exist is not forwarded again (its low-resolution map is reloaded, so the
confidences are the same); a round whose pseudo-labels are complete (marker
``{output}/{r}/pseudo_label.done.json``, written last) is not regenerated.
"""
import contextlib
import functools
import json
import logging
import os
import shutil
import time

import numpy as np

from issegm.cluster import worker
from issegm.phases.cli import describe_failure
from issegm.errors import PhaseError
from issegm.storage.datasets import LabelAudit, list_path, read_list, sample_name, save_prediction, target_dataset
from issegm.engine.postprocess import Postprocessor
from issegm.storage.probmaps import load_lowres, save_lowres
from issegm.method.thresholds import ConfidenceCollector, effective_thresholds, mining_ids, threshold_stats
from issegm.storage.round_paths import RoundPaths, training_list_path
from issegm.method.prior import load_prior
from util.image import read_image, read_label
from util.io import atomic_write, makedirs, save_npy_atomic
from util.log import progress
from util.parallel import Writer, prefetch

__all__ = ['generate_pseudo_labels', 'single_scale']

logger = logging.getLogger(__name__)

SCORES = ('pixel_acc', 'mean_acc', 'mean_iou')  # kept in the round's statistics


def generate_pseudo_labels(args, predictor=None):
    """Spec section 6 for round ``args.idx_round``: the round's pseudo-labels.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``solve_ST.py`` arguments.
    predictor : issegm.engine.inference.Predictor, optional
        A Predictor-like object; built from ``--model``/``--weights`` when not
        given; tests pass a cheap one.

    Returns
    -------
    dict
        The round's statistics.
    """
    run = _Round(args)
    done = _complete_marker(run)
    if done is not None:
        return _restore_round(run, done['stats'])
    _prepare_outputs(run)
    mine = worker.shard(range(len(run.items)))  # this worker's images
    finished = {i: run.pass_one_done(i) for i in mine}
    predictor = run.set_up(predictor, need_network=not all(finished.values()))

    collector, cm_np, cm_sp = run.pass_one(predictor, mine, finished)
    _write_training_list(run)  # on every worker: the working folder need not be shared
    # Read before rank 0 replaces it: pass 2 keeps the labels made by the same rule.
    old = np.load(run.paths.thresholds_used) if os.path.exists(run.paths.thresholds_used) else None
    # Rank 0 merges every worker's pools and scores.
    collector, cm_np, cm_sp = _merge_pass1(run.paths.probmap, collector, cm_np, cm_sp)
    confidence = _merge_confidence(run.paths.probmap, run.confidence)
    cls_size, cls_thresh, mine_id, mine_id_priority = _round_thresholds(args, run.paths, collector, run.spec.classes)
    del collector  # the pools are the phase's largest memory: gone before pass 2

    thresh = effective_thresholds(cls_thresh)
    run.pass_two(mine, thresh, old)
    stats = {'cls_size': cls_size.tolist(), 'cls_thresh': cls_thresh.tolist(),
             'mine_id': mine_id.tolist(), 'mine_id_priority': mine_id_priority.tolist()}
    stats.update(_scores(scores_np=cm_np, scores_sp=cm_sp))
    _finish_round(run, stats, thresh)
    _observe(run, cls_thresh, confidence, cm_np, cm_sp)
    return stats


def single_scale(test_scales):
    """The one ``--test-scales`` value pseudo-labelling takes (the longer side).

    Parameters
    ----------
    test_scales : str or int or None
        The ``--test-scales`` value, comma-separated.

    Returns
    -------
    int
        The scale.

    Raises
    ------
    ValueError
        A one-line error when it is missing or names more than one scale.
    """
    if test_scales is None:
        raise ValueError('--phase val needs --test-scales (the longer side, e.g. 1850)')
    scales = sorted(int(s) for s in str(test_scales).split(','))[::-1]
    if len(scales) != 1:
        raise ValueError('multi-scale testing is not implemented in pseudo-labelling (as in the reference); '
                         'pass one --test-scales value')
    return scales[0]


# ---------------------------------------------------------------------------- the round
class _Round(object):
    """One round's pseudo-labelling over the split: its settings, and its two passes.

    Each pass reads ahead in threads (images or stored low-resolution maps),
    launches image i+1's forward and post-processing before waiting for
    image i's small results, and writes PNGs behind in threads; a failure
    names its image and says how to resume.
    """

    def __init__(self, args):
        from issegm.phases.cli import weights_from_args
        from issegm.engine.inference import check_steps
        from issegm.engine.model import parse_label
        self.spec = spec = parse_label(args.model)  # its stride: of maps stored before they carried theirs
        check_steps(int(args.test_steps), spec.stride)
        self.args, self.r = args, int(args.idx_round)
        self.paths = RoundPaths(args.output, self.r)
        self.info = target_dataset(args.dataset, args.dataset_tgt, spec.classes)
        self.items = _target_items(args)
        self.names = [sample_name(image) for image, _ in self.items]
        self.with_prior = args.with_prior == 'True'
        self.alpha = weights_from_args(args).lr_ent  # CRST-LRENT when > 0
        self.train_list = training_list_path(args.dataset_tgt, args.split_tgt, args.gpus)
        self.forward = _forward_config(args)
        self.config = dict(self.forward, init_tgt_port=float(args.init_tgt_port), kc_policy=args.kc_policy,
                           with_prior=self.with_prior, dataset=args.dataset, dataset_tgt=args.dataset_tgt,
                           split_tgt=args.split_tgt, mine_id_number=int(args.mine_id_number),
                           mine_thresh=float(args.mine_thresh), images=len(self.items))
        if self.alpha:
            self.config['lr_weight_ent'] = self.alpha
        self.has_gt = args.split_tgt in ('train', 'val') and all(label is not None for _, label in self.items)
        self.post = None
        self.confidence = None  # pass 1's ConfidenceStats (the health record's; the labels never see it)

    def folders(self):
        """The folders the phase writes in."""
        paths = self.paths
        folders = [paths.nplabelIds, paths.npcolor, paths.pseudo_labelIds, paths.pseudo_color, paths.probmap,
                   paths.stats]
        if self.with_prior:
            folders += [paths.splabelIds, paths.spcolor]
        if self.args.kc_policy == 'cb':
            folders += [paths.rwlabelIds, paths.rwcolor]
        return folders

    def _npz(self, i):
        return os.path.join(self.paths.probmap, self.names[i] + '.npz')

    def pass_one_done(self, i):
        """Whether image ``i``'s pass-1 outputs all exist (its map last: it marks the image done)."""
        paths, name = self.paths, self.names[i]
        needed = [self._npz(i), RoundPaths.png(paths.nplabelIds, name), RoundPaths.png(paths.npcolor, name)]
        if self.with_prior:
            needed += [RoundPaths.png(paths.splabelIds, name), RoundPaths.png(paths.spcolor, name)]
        return all(os.path.exists(p) for p in needed)

    def set_up(self, predictor, need_network):
        """The predictor (built when not given and some image needs a forward) and the post-processor."""
        args = self.args
        prior = load_prior(args.dataset, self.spec.classes) if self.with_prior else None
        if predictor is None:
            from util.device import get_contexts
            contexts = get_contexts(args.gpus)
            # Built before the loop so that a bad checkpoint is not blamed on an image.
            predictor = _make_predictor(args, self.spec, contexts) if need_network else None
        else:
            contexts = getattr(predictor, 'contexts', getattr(predictor, 'ctx', None))
        # Reloaded maps are post-processed where new ones would be: the same numbers on resume.
        self.post = Postprocessor(self.spec.classes, getattr(args, 'postprocess', 'auto'), ctx=contexts, prior=prior)
        logger.info('round %d: post-processing %s', self.r, self.post.mode)
        return predictor

    @contextlib.contextmanager
    def _image(self, step, i):
        """A failure while handling image ``i`` in pass ``step`` becomes one :class:`PhaseError` naming it."""
        try:
            yield
        except PhaseError:
            raise
        except Exception as exc:
            raise PhaseError('phase val (pseudo-labels) round %d pass %d failed at image %d/%d %s: %s; then rerun '
                             'the same command to resume (finished images are kept)'
                             % (self.r, step, i + 1, len(self.items), self.items[i][0], describe_failure(exc)[1])) \
                from exc

    def _guarded(self, step, i, fn, *args):
        def job():
            with self._image(step, i):
                fn(*args)
        return job

    # ------------------------------------------------------------------------ pass 1
    def pass_one(self, predictor, mine, finished):
        """Forward (or reload) this worker's images ``mine``: argmax maps, low-res maps, pooled confidences, scores.

        Returns ``(collector, cm_np, cm_sp)``, the matrices None without ground truth (or prior).
        """
        from issegm.engine.inference import LOOP_DEPTH, ahead
        totals = _PassOneTotals(self.spec.classes, self.has_gt, self.with_prior)
        audit = LabelAudit(self.info)
        read = functools.partial(self._read, predictor, finished, single_scale(self.args.test_scales), audit)
        launch = functools.partial(self._launch, predictor, finished, audit)
        bar = progress(len(mine), 'round %d pass 1/2 forward' % self.r)
        start, forwarded = time.time(), 0
        depth = getattr(predictor, 'depth', LOOP_DEPTH)
        with Writer() as writer, contextlib.closing(prefetch(read, mine)) as records:
            for done_here, launched in enumerate(ahead(records, launch, depth=depth), 1):
                i = launched.item[0]
                with self._image(1, i):
                    job, pending = launched.get()
                    out = pending.result()
                    low = None if job is None else (job.lowres()[0], job.orig_hw)  # the map carries its (sub-)stride
                    totals.add(out)
                    totals.observe(low[0] if low is not None else launched.item[1].result()[0][0])
                    if low is not None:
                        forwarded += 1
                        writer.submit(self._guarded(1, i, self._save_pass_one, i, out, low))
                bar.update(1)
                logger.info('Done %d/%d with speed: %.2f/s', done_here, len(mine),
                            done_here / max(time.time() - start, 1e-9))
                totals.log_scores()
        bar.close()
        audit.report(logger)
        logger.info('round %d pass 1: %d images forwarded, %d reloaded', self.r, forwarded, len(mine) - forwarded)
        self.confidence = totals.confidence
        return totals.collector, totals.cm_np, totals.cm_sp

    def _read(self, predictor, finished, scale, audit, i):
        """In a reader thread: image ``i``'s input (or stored map), its train-id ground truth, the audit's finding."""
        image, label = self.items[i]
        if finished[i]:
            data = load_lowres(self._npz(i), self.spec.stride)
        else:
            data = predictor.prepare(read_image(os.path.join(self.args.data_root_tgt, image)), [scale])
        if not self.has_gt:
            return data, None, None
        gt_path = os.path.join(self.args.data_root_tgt, label)
        gt_ids = read_label(gt_path)
        finding = audit.inspect(gt_path, gt_ids)  # unknown ids: ignored by the scores, reported once
        return data, np.take(self.info.label2train, gt_ids), finding

    def _launch(self, predictor, finished, audit, record):
        """Queue image ``i``'s forward and post-processing (before image i-1's results are awaited)."""
        i, future = record
        data, gt, finding = future.result()
        audit.add(finding)
        job = None if finished[i] else predictor.launch(data)
        orig_hw = data[1] if job is None else tuple(job.orig_hw)
        if gt is not None and gt.shape != tuple(orig_hw):
            raise ValueError('label is %dx%d but the image is %dx%d' % (gt.shape + tuple(orig_hw)))
        source = self.post.source(job=job) if job is not None else self.post.source(stored=data)
        return job, self.post.collect(source, gt)

    def _save_pass_one(self, i, out, low):
        paths, name = self.paths, self.names[i]
        _write_pred(paths.nplabelIds, paths.npcolor, name, out['pred_np'], self.info)
        if self.with_prior:
            _write_pred(paths.splabelIds, paths.spcolor, name, out['pred_sp'], self.info)
        # Written last: its presence means this image's pass 1 is done.
        save_lowres(self._npz(i), *low)

    # ------------------------------------------------------------------------ pass 2
    def pass_two(self, mine, thresh, old):
        """Pseudo-labels of this worker's images ``mine`` from their stored maps and the class thresholds.

        With ``alpha`` > 0, CRST-LRENT's rule. Labels made by the rule ``old``
        (the previous run's) are kept when it is this one; rank 0 records
        this rule.
        """
        from issegm.engine.inference import LOOP_DEPTH, ahead
        paths = self.paths
        # What decides the labels: the thresholds, and alpha with LRENT (so that labels of another rule are redone).
        rule = np.append(thresh, self.alpha) if self.alpha else thresh
        reuse = old is not None and np.array_equal(old, rule)
        if worker.is_root():
            save_npy_atomic(paths.thresholds_used, rule)
        todo = [i for i in mine if not (reuse and os.path.exists(RoundPaths.png(paths.pseudo_labelIds, self.names[i])))]

        def launch(record):
            i, future = record
            return self.post.label(self.post.source(stored=future.result()), thresh, self.alpha)

        bar = progress(len(mine), 'round %d pass 2/2 pseudo-labels' % self.r)
        bar.update(len(mine) - len(todo))
        load = lambda i: load_lowres(self._npz(i), self.spec.stride)  # noqa: E731
        with Writer() as writer, contextlib.closing(prefetch(load, todo)) as records:
            for launched in ahead(records, launch, depth=LOOP_DEPTH * self.post.devices):
                i = launched.item[0]
                with self._image(2, i):
                    out = launched.get().result()
                    writer.submit(self._guarded(2, i, self._save_pass_two, self.names[i], out))
                bar.update(1)
        bar.close()

    def _save_pass_two(self, name, out):
        paths = self.paths
        if self.args.kc_policy == 'cb':
            _write_pred(paths.rwlabelIds, paths.rwcolor, name, out['argmax'], self.info)
        # pseudo_labelIds last: training reads it, and it marks the image done.
        _write_pred(paths.pseudo_labelIds, paths.pseudo_color, name, out['label'], self.info)


class _PassOneTotals(object):
    """What pass 1 adds up over a worker's images: the confidence pools and, with ground truth, the scores."""

    def __init__(self, num_classes, has_gt, with_prior):
        from issegm.engine.metrics import ConfusionMatrix
        from issegm.report.health import ConfidenceStats
        self.collector = ConfidenceCollector(num_classes)
        self.confidence = ConfidenceStats()
        self.cm_np = ConfusionMatrix(num_classes) if has_gt else None
        self.cm_sp = ConfusionMatrix(num_classes) if has_gt and with_prior else None

    def add(self, out):
        self.collector.add_kept(*out['kept'])
        if self.cm_np is not None:
            self.cm_np.add(out['confusion_np'])
        if self.cm_sp is not None:
            self.cm_sp.add(out['confusion_sp'])

    def observe(self, low):
        """The health record's confidence sums over one image's low-resolution map (a :class:`LowRes`)."""
        self.confidence.add(low.probs, low.im_hw, low.stride)

    def log_scores(self):
        if self.cm_sp is not None:
            logger.info('with prior, %s', self.cm_sp.summary())
        if self.cm_np is not None:
            logger.info('no prior, %s', self.cm_np.summary())


# ---------------------------------------------------------------------------- steps of the phase
def _target_items(args):
    """``(image, label)`` of the target split; outputs are named by file name, so names must be unique."""
    if args.data_root_tgt is None:
        raise ValueError('--phase val needs --data-root-tgt (the Cityscapes root)')
    listed = list_path(args.dataset_tgt, args.split_tgt)
    items = read_list(listed, args.data_root_tgt)
    names = [sample_name(image) for image, _ in items]
    if len(set(names)) != len(names):
        raise ValueError('image names in %s are not unique; outputs are named by file name' % listed)
    return items


def _forward_config(args):
    config = {'weights': args.weights, 'model': args.model, 'test_scales': str(args.test_scales),
              'test_flipping': bool(args.test_flipping)}
    if int(args.test_steps) != 1:
        # Only when set: rounds recorded before the flag worked stay complete.
        config['test_steps'] = int(args.test_steps)
    return config


def _make_predictor(args, spec, contexts):
    from issegm.engine.inference import Predictor
    from issegm.engine.model import get_model, preprocessing
    net = get_model(args.model, weights=args.weights, ctx=contexts)
    return Predictor(net, spec.classes, stride=spec.stride, flip=bool(args.test_flipping), ctx=contexts,
                     steps=int(args.test_steps), normalizer=preprocessing(spec))


def _complete_marker(run):
    """The round's marker when its pseudo-labels are complete with these settings, else None.

    A marker of other settings is removed (by rank 0), so that the round is regenerated.
    """
    done = _load_json(run.paths.marker)
    worker.barrier()  # every worker has read the marker before rank 0 changes it
    if done is not None and done.get('config') == run.config:
        logger.info('round %d: pseudo-labels already complete (%s); not regenerated', run.r, run.paths.marker)
        return done
    if done is not None:
        logger.warning('round %d: %s was made with other settings; regenerating', run.r, run.paths.marker)
        if worker.is_root():
            os.remove(run.paths.marker)
    return None


def _prepare_outputs(run):
    """Create the folders; drop the stored maps (and the rule of their labels) when another network made them."""
    paths, root = run.paths, worker.is_root()
    for folder in run.folders():
        makedirs(folder)
    fwd_path = os.path.join(paths.probmap, 'forward.json')
    fwd = _load_json(fwd_path)
    if root and fwd is not None and fwd != run.forward:
        logger.warning('round %d: stored network outputs come from other settings; forwarding again', run.r)
        shutil.rmtree(paths.probmap)
        makedirs(paths.probmap)
        if os.path.exists(paths.thresholds_used):
            os.remove(paths.thresholds_used)
    if root:
        _write_json(fwd_path, run.forward)
    worker.barrier()  # stale maps are gone before anyone writes new ones


def _restore_round(run, stats):
    """A complete round: restore the shared files a later round may have overwritten (list, stats)."""
    _write_training_list(run)
    if worker.is_root():
        _write_stats(run.paths.stats, np.array(stats['cls_size']), np.array(stats['cls_thresh']),
                     np.array(stats['mine_id'], np.int64), np.array(stats['mine_id_priority'], np.int64))
        if not run.alpha:  # with LRENT the maps are the soft labels' store
            shutil.rmtree(run.paths.probmap, ignore_errors=True)
    worker.barrier()
    from issegm.report.health import load
    if 'pseudo_labels' not in load(run.paths.round_dir):  # rounds made before the record existed
        _observe(run, np.array(stats['cls_thresh']), None, None, None, stats)
    return stats


def _merge_pass1(folder, collector, cm_np, cm_sp):
    """Rank 0's collector and matrices over every worker's images (the others get None; alone: as given)."""
    from issegm.engine.metrics import ConfusionMatrix
    arrays = collector.to_arrays()
    for prefix, cm in (('np_', cm_np), ('sp_', cm_sp)):
        if cm is not None:
            arrays.update(cm.to_arrays(prefix))
    parts = worker.gather(folder, 'pass1', arrays, root_only=True)
    if parts is None:  # not rank 0
        return None, None, None
    if len(parts) == 1:  # alone
        return collector, cm_np, cm_sp
    merged = ConfidenceCollector(collector.num_classes)
    matrices = [None if cm is None else ConfusionMatrix(cm.num_classes) for cm in (cm_np, cm_sp)]
    for part in parts:
        merged.merge_arrays(part)
        for prefix, cm in zip(('np_', 'sp_'), matrices):
            if cm is not None:
                cm.merge(ConfusionMatrix.from_arrays(part, prefix))
    return (merged,) + tuple(matrices)


def _round_thresholds(args, paths, collector, classes):
    """``(cls_size, cls_thresh, mine_id, mine_id_priority)`` of the round on every worker; rank 0 saves them.

    Rank 0 computes them from the merged ``collector``; the KVStore carries
    them to the others (float64, unchanged).
    """
    t0 = time.time()
    sizes_thresholds = np.zeros((2, classes))
    if worker.is_root():
        sizes_thresholds = np.stack(threshold_stats(collector, float(args.init_tgt_port), args.kc_policy))
    cls_size, cls_thresh = worker.broadcast(sizes_thresholds)
    mine_id, mine_id_priority = mining_ids(cls_size, args.mine_id_number, args.mine_thresh)
    logger.info('mine_id %s, mine_id_priority %s', mine_id, mine_id_priority)
    if worker.is_root():
        _write_stats(paths.stats, cls_size, cls_thresh, mine_id, mine_id_priority)
    logger.info('Kc determination done in %.2f s.', time.time() - t0)
    with np.printoptions(precision=4, suppress=True):
        logger.info('class thresholds %s', cls_thresh)
        logger.info('class sizes %s', cls_size)
    return cls_size, cls_thresh, mine_id, mine_id_priority


def _scores(**matrices):
    """The kept scores of each confusion matrix given (rank 0 with ground truth), by key."""
    scores = {}
    for key, cm in matrices.items():
        if cm is not None:
            all_scores = cm.scores()
            scores[key] = {k: all_scores[k] for k in SCORES}
    return scores


def _finish_round(run, stats, thresh):
    """Once every worker's labels are written: the soft labels' recipe (LRENT), the marker, the maps dropped."""
    paths, root = run.paths, worker.is_root()
    worker.barrier()  # every worker's pseudo-labels are written
    if root and run.alpha:
        # CRST-LRENT: the low-resolution maps stay; training recomputes its soft labels from them.
        from issegm.engine.objective import SoftLabelStore
        SoftLabelStore.save_recipe(paths.round_dir, paths.probmap, thresh, run.alpha, run.spec.stride,
                                   prior_dataset=run.args.dataset if run.with_prior else None)
    if root:
        _write_json(paths.marker, {'config': run.config, 'stats': stats})
    if root and not run.alpha:
        # As the reference, the maps are dropped once the round's labels exist.
        shutil.rmtree(paths.probmap, ignore_errors=True)
    worker.barrier()
    logger.info('round %d: pseudo-labels done (%s)', run.r, paths.pseudo_labelIds)


# ---------------------------------------------------------------------------- the health record
def _merge_confidence(folder, confidence):
    """Rank 0's confidence sums over every worker's images (the others get None)."""
    from issegm.report.health import ConfidenceStats
    parts = worker.gather(folder, 'health', confidence.to_arrays(), root_only=True)
    if parts is None:
        return None
    merged = ConfidenceStats()
    for part in parts:
        merged.merge_arrays(part)
    return merged


def _observe(run, cls_thresh, confidence, cm_np, cm_sp, stats=None):
    """Rank 0 writes the round's health record (``{output}/{r}/health.json``); a failure only warns.

    The record observes the round: nothing the phase computes depends on it.
    """
    if not worker.is_root():
        return
    from issegm.report import observe
    args, info = run.args, run.info
    try:
        if confidence is not None:
            observe.record_confidence(run.paths.round_dir, run.r, confidence, run.spec.classes)
        scores = _health_scores(cm_np, cm_sp, stats)
        source = observe.source_shares(run.paths.stats, args.dataset, args.split, args.data_root, info)
        observe.record_pseudo_labels(args.output, run.r, run.items, info, cls_thresh, args.kc_policy,
                                     args.init_tgt_port, run.with_prior, source, scores)
        logger.info('round %d: health record %s', run.r, os.path.join(run.paths.round_dir, 'health.json'))
    except Exception as exc:  # an observer never fails the phase
        logger.warning('round %d: health record not written (%s)', run.r, describe_failure(exc)[1])


def _health_scores(cm_np, cm_sp, stats):
    """The argmax's scores against the target labels (and with the prior), or None without labels."""
    if cm_np is None:
        return stats.get('scores_np') if stats else None
    keys = ('pixel_acc', 'mean_acc', 'mean_iou', 'class_iou')
    scores = {k: v for k, v in cm_np.scores().items() if k in keys}
    if cm_sp is not None:
        scores['with_prior'] = {k: v for k, v in cm_sp.scores().items() if k in keys}
    return scores


# ---------------------------------------------------------------------------- files
def _write_pred(ids_folder, color_folder, name, train_ids, info):
    save_prediction(info, train_ids, RoundPaths.png(ids_folder, name), RoundPaths.png(color_folder, name))


def _load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json(path, obj):
    with atomic_write(path) as f:
        json.dump(obj, f, indent=1, sort_keys=True)


def _write_stats(stats_dir, cls_size, cls_thresh, mine_id, mine_id_priority):
    save_npy_atomic(os.path.join(stats_dir, 'mine_id.npy'), mine_id)
    save_npy_atomic(os.path.join(stats_dir, 'mine_id_priority.npy'), mine_id_priority)
    save_npy_atomic(os.path.join(stats_dir, 'cls_thresh.npy'), cls_thresh)
    save_npy_atomic(os.path.join(stats_dir, 'cls_size.npy'), cls_size)


def _write_training_list(run):
    """The target training list, as the reference writes it, and the round's own copy."""
    lines = ['%s\t%s\n' % (image, RoundPaths.png(run.paths.pseudo_labelIds, sample_name(image)))
             for image, _ in run.items]
    for target in (run.paths.training_list, run.train_list):
        with atomic_write(target) as f:
            f.writelines(lines)
