"""One phase of one self-training round (``solve_ST.py``; spec sections 6 and 7).

``--phase val`` (:func:`generate_pseudo_labels`) runs the network on every
target image and writes class-balanced pseudo-labels in two passes:

1. forward, keep the network's low-resolution probabilities on disk
   (``{output}/{r}/probmap/{name}.npz``, ~2 MB instead of the reference's
   160 MB full-resolution float32 map), save the plain argmax
   (``results/nplabelIds``, ``results/npcolor``), apply the spatial prior
   (``self_train/splabelIds``, ``spcolor``), collect confidences, score
   against ground truth when the split has it;
2. thresholds and statistics (``{output}/stats/``), the target training list,
   then for every image redo the deterministic upsampling (and prior) and
   write ``self_train/pseudo_labelIds``, ``pseudo_color`` and, with ``cb``,
   ``rwlabelIds``/``rwcolor``.

Everything after the forward (upsampling, prior, argmax, confidences,
scores, thresholded labels) is :class:`issegm.postprocess.Postprocessor`, on
the network's device or on the host (``--postprocess``); images and maps are
read ahead and PNGs written behind in threads.

``--phase train`` (:func:`retrain`) selects the source images
(``np.random.seed(seed); np.random.choice(N, n_src, replace=False)``), adds
every target image with its pseudo-label and trains through
:func:`issegm.training.train`, checkpointing ``{output}/{r}/{model}_ep-%04d.params``.

Distributed (under :mod:`issegm.launch`): each worker forwards and labels
its share of the images (:func:`issegm.distributed.shard`) on every device
of ``--gpus``; rank 0 merges the workers' confidence pools and confusion
matrices (through files in the round's ``probmap/``; thresholds are order
statistics and sizes counts, so they equal a one-process run's exactly),
writes the statistics, and every worker labels its images with the same
thresholds. Training is :func:`issegm.training.train` with ``dist_sync``.
Rank 0 holds the output's lock and records its settings for the job.

Resuming: every file is written atomically; an image whose pass-1 outputs
exist is not forwarded again (its low-resolution map is reloaded, so the
confidences are the same); a round whose pseudo-labels are complete (marker
``{output}/{r}/pseudo_label.done.json``, written last) is not regenerated;
training continues from the last whole epoch checkpoint and its optimizer
state, bit for bit. Each phase records its settings in ``{output}/{r}/run.json``
and refuses a rerun with others unless ``--restart`` (:mod:`issegm.run_guard`);
training reads the round's own ``target_training.lst``.
"""
import contextlib
import functools
import json
import logging
import math
import os
import shutil
import sys
import time

import numpy as np

from issegm import distributed
from issegm.datasets import LabelAudit, get_dataset, list_path, read_list, sample_name, save_prediction
from issegm.postprocess import Postprocessor, apply_prior
from issegm.spatial_prior import load_prior
from issegm.pseudo_label import ConfidenceCollector, effective_thresholds, mining_ids, threshold_stats
from util.image import read_image, read_label
from util.io import atomic_path, atomic_write, makedirs, save_npy_atomic
from util.log import progress
from util.parallel import Writer, prefetch

__all__ = ['PhaseError', 'complete_args', 'default_log_file', 'RoundPaths',
           'target_dataset', 'training_list_path', 'save_lowres', 'load_lowres',
           'lowres_to_probmap', 'apply_prior', 'generate_pseudo_labels',
           'select_source', 'training_samples', 'retrain', 'make_dataiter', 'run', 'py2_str',
           'round_schedule', 'val_argv', 'train_argv', 'run_rounds']

logger = logging.getLogger('cbst')

MARKER = 'pseudo_label.done.json'


class PhaseError(RuntimeError):
    """A phase failed; the message says where and how to resume (one line).

    ``code`` is the exit code: 1 when the same command continues once the
    cause is fixed, 2 when the command must change.
    """

    def __init__(self, message, code=1):
        super(PhaseError, self).__init__(message)
        self.code = code


def _image_failure(r, step, i, n, image, exc):
    from issegm.cli import describe_failure
    return PhaseError('phase val (pseudo-labels) round %d %s failed at image %d/%d %s: %s; then rerun the same '
                      'command to resume (finished images are kept)'
                      % (r, step, i + 1, n, image, describe_failure(exc)[1]))


# ---------------------------------------------------------------------------- arguments
def complete_args(args):
    """Fill the defaults the reference derives after parsing (its ``parse_args`` tail).

    ``--output`` defaults to the weights' folder in ``val`` and ``output`` in
    ``train``; ``--model`` to the weights' name before ``_ep-``; in ``train``,
    ``--from-epoch`` is the weights' epoch when their label equals
    ``--model``, else 0; ``--log-file`` is named as the reference names it.
    Returns ``args`` (modified in place).
    """
    if args.phase not in ('train', 'val'):
        raise ValueError('unknown --phase %r: use train or val' % (args.phase,))
    if args.output is None:
        args.output = os.path.dirname(args.weights) if args.phase == 'val' and args.weights else 'output'
    from issegm.model import label_from_weights, start_epoch
    if args.model is None and args.weights is not None:
        args.model = label_from_weights(args.weights)
    if args.model is None:
        raise ValueError('missing --model (or --weights named {model}_ep-NNNN.params)')
    if args.from_epoch is None:
        args.from_epoch = start_epoch(args.weights, args.model) if args.phase == 'train' else 0
    if args.log_file is None:
        args.log_file = default_log_file(args)
    if args.with_prior not in ('True', 'False'):
        raise ValueError("--with-prior takes 'True' or 'False', got %r" % (args.with_prior,))
    if args.kc_policy not in ('cb', 'global'):
        raise ValueError("--kc-policy takes 'cb' or 'global', got %r" % (args.kc_policy,))
    if args.data_root is None:
        args.data_root = os.path.join('data', args.dataset or args.model.split('_')[0])
    from issegm.crst import weights_from_args
    weights_from_args(args)  # CRST flags: checked before any work
    if args.phase == 'train':
        args.kvstore = distributed.training_kvstore(args.kvstore)
    return args


def default_log_file(args):
    """``{model}.log`` for training; ``{weights stem}[_{split_tgt}].log`` for pseudo-labels."""
    if args.phase == 'train':
        return '%s.log' % args.model
    suffix = '_%s' % args.split_tgt if args.split_tgt != 'val' else ''
    return '%s%s.log' % (os.path.splitext(os.path.basename(args.weights or args.model))[0], suffix)


# ---------------------------------------------------------------------------- paths
class RoundPaths(object):
    """Output folders of round ``r`` under ``{output}/{r}/``, named as the reference."""

    def __init__(self, output, r):
        self.output = output
        self.round_dir = os.path.join(output, str(r))
        results = os.path.join(self.round_dir, 'results')
        st = os.path.join(self.round_dir, 'self_train')
        self.nplabelIds = os.path.join(results, 'nplabelIds')
        self.npcolor = os.path.join(results, 'npcolor')
        self.pseudo_labelIds = os.path.join(st, 'pseudo_labelIds')
        self.pseudo_color = os.path.join(st, 'pseudo_color')
        self.rwlabelIds = os.path.join(st, 'rwlabelIds')
        self.rwcolor = os.path.join(st, 'rwcolor')
        self.splabelIds = os.path.join(st, 'splabelIds')
        self.spcolor = os.path.join(st, 'spcolor')
        # Per-round (the reference shares one {output}/probmap) so that a
        # killed round can resume from its own maps.
        self.probmap = os.path.join(self.round_dir, 'probmap')
        self.stats = os.path.join(output, 'stats')
        self.marker = os.path.join(self.round_dir, MARKER)
        self.thresholds_used = os.path.join(self.round_dir, 'pseudo_label_thresholds.npy')
        self.source_selected = os.path.join(self.round_dir, 'source_selected.lst')
        # The round's own copy of the target training list: training reads this one, so runs
        # in one working folder never train on each other's pseudo-labels.
        self.training_list = os.path.join(self.round_dir, 'target_training.lst')

    def has_pseudo_label_work(self):
        """Whether the phase has written any per-image output (a failed start leaves none)."""
        return os.path.exists(self.marker) or any(
            os.path.isdir(f) and any(True for _ in os.scandir(f)) for f in (self.nplabelIds, self.pseudo_labelIds))

    def discard_pseudo_labels(self):
        """Remove this round's pseudo-label phase outputs (``--restart``)."""
        for folder in (os.path.dirname(self.nplabelIds), os.path.dirname(self.pseudo_labelIds), self.probmap):
            shutil.rmtree(folder, ignore_errors=True)
        for path in (self.marker, self.thresholds_used, self.training_list):
            if os.path.exists(path):
                os.remove(path)

    @staticmethod
    def png(folder, name):
        return os.path.join(folder, name + '.png')


def training_list_path(dataset_tgt, split_tgt, gpus):
    """``issegm/data_list/{dataset_tgt}/{split_tgt}_training_gpu{gpus}.lst`` (relative to the cwd)."""
    return os.path.join('issegm', 'data_list', dataset_tgt, '%s_training_gpu%s.lst' % (split_tgt, gpus))


def target_dataset(dataset, dataset_tgt, classes):
    """Label tables of the target: SYNTHIA -> Cityscapes uses the 16-class Cityscapes mapping.

    The reference keys this on the (source, target) pair; the list files stay
    under ``--dataset-tgt``.
    """
    name = dataset_tgt
    if dataset_tgt == 'cityscapes' and (dataset == 'synthia' or classes == 16):
        name = 'cityscapes16'
    info = get_dataset(name)
    if info.num_classes != classes:
        raise ValueError('the model has %d classes but the target %s has %d'
                         % (classes, name, info.num_classes))
    return info


# ---------------------------------------------------------------------------- low-res maps
def save_lowres(path, low, orig_hw):
    """Store a :class:`issegm.inference.LowRes` (probabilities, scaled size, their stride) and the image size."""
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            np.savez(f, probs=np.asarray(low.probs, np.float32), im_hw=np.asarray(low.im_hw, np.int64),
                     stride=np.int64(low.stride), orig_hw=np.asarray(orig_hw, np.int64))


def load_lowres(path, net_stride):
    """``(LowRes, orig_hw)`` written by :func:`save_lowres`.

    Maps stored before their stride was (no sub-stride steps then) are at ``net_stride``.
    """
    from issegm.inference import LowRes
    with np.load(path) as z:
        stride = int(z['stride']) if 'stride' in z.files else int(net_stride)
        low = LowRes(z['probs'], tuple(int(v) for v in z['im_hw']), stride)
        return low, tuple(int(v) for v in z['orig_hw'])


def lowres_to_probmap(low, orig_hw, prior=None):
    """Full-resolution ``probmap`` (C, H, W) float32 of a stored ``LowRes`` on the host (PIL), times the prior.

    The host recipe of :class:`issegm.postprocess.Postprocessor`, for callers
    that need the whole map (CRST's soft labels, tests).
    """
    post = Postprocessor(low.probs.shape[0], 'pil', prior=prior)
    return post.probmap(post.source(stored=(low, orig_hw)), prior=prior is not None)


def _write_pred(ids_folder, color_folder, name, train_ids, info):
    save_prediction(info, train_ids, RoundPaths.png(ids_folder, name), RoundPaths.png(color_folder, name))


def _forward_config(args):
    config = {'weights': args.weights, 'model': args.model, 'test_scales': str(args.test_scales),
              'test_flipping': bool(args.test_flipping)}
    if int(args.test_steps) != 1:
        # Only when set: rounds recorded before the flag worked stay complete.
        config['test_steps'] = int(args.test_steps)
    return config


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


def _write_training_list(path, items, paths):
    """The target training list, as the reference writes it, and the round's own copy."""
    lines = ['%s\t%s\n' % (image, RoundPaths.png(paths.pseudo_labelIds, sample_name(image))) for image, _ in items]
    for target in (paths.training_list, path):
        with atomic_write(target) as f:
            f.writelines(lines)


def _make_predictor(args, spec, contexts):
    from issegm.inference import Predictor
    from issegm.model import get_model
    net = get_model(args.model, weights=args.weights, ctx=contexts)
    return Predictor(net, spec.classes, stride=spec.stride, flip=bool(args.test_flipping), ctx=contexts,
                     steps=int(args.test_steps))


# ---------------------------------------------------------------------------- phase val
def generate_pseudo_labels(args, predictor=None):
    """Spec section 6 for round ``args.idx_round``; returns the round's statistics as a dict.

    ``predictor`` (an :class:`issegm.inference.Predictor`-like object) is built
    from ``--model``/``--weights`` when not given; tests pass a cheap one.
    """
    from issegm.inference import check_steps
    from issegm.model import parse_label
    spec = parse_label(args.model)
    check_steps(int(args.test_steps), spec.stride)
    r = int(args.idx_round)
    paths = RoundPaths(args.output, r)
    info = target_dataset(args.dataset, args.dataset_tgt, spec.classes)
    if args.data_root_tgt is None:
        raise ValueError('--phase val needs --data-root-tgt (the Cityscapes root)')
    items = read_list(list_path(args.dataset_tgt, args.split_tgt), args.data_root_tgt)
    names = [sample_name(image) for image, _ in items]
    if len(set(names)) != len(names):
        raise ValueError('image names in %s are not unique; outputs are named by file name'
                         % list_path(args.dataset_tgt, args.split_tgt))
    with_prior = args.with_prior == 'True'
    portion = float(args.init_tgt_port)
    from issegm.crst import weights_from_args
    alpha = weights_from_args(args).lr_ent  # CRST-LRENT when > 0
    train_list = training_list_path(args.dataset_tgt, args.split_tgt, args.gpus)
    config = dict(_forward_config(args), init_tgt_port=portion, kc_policy=args.kc_policy,
                  with_prior=with_prior, dataset=args.dataset, dataset_tgt=args.dataset_tgt,
                  split_tgt=args.split_tgt, mine_id_number=int(args.mine_id_number),
                  mine_thresh=float(args.mine_thresh), images=len(items))
    if alpha:
        config['lr_weight_ent'] = alpha

    root = distributed.is_root()
    done = _load_json(paths.marker)
    distributed.barrier()  # every worker has read the marker before rank 0 changes it
    if done is not None and done.get('config') == config:
        logger.info('round %d: pseudo-labels already complete (%s); not regenerated', r, paths.marker)
        return _restore_round(paths, done['stats'], train_list, items, keep_maps=bool(alpha))
    if done is not None:
        logger.warning('round %d: %s was made with other settings; regenerating', r, paths.marker)
        if root:
            os.remove(paths.marker)

    folders = [paths.nplabelIds, paths.npcolor, paths.pseudo_labelIds, paths.pseudo_color, paths.probmap,
               paths.stats]
    if with_prior:
        folders += [paths.splabelIds, paths.spcolor]
    if args.kc_policy == 'cb':
        folders += [paths.rwlabelIds, paths.rwcolor]
    for folder in folders:
        makedirs(folder)
    fwd_path = os.path.join(paths.probmap, 'forward.json')
    fwd = _load_json(fwd_path)
    if root and fwd is not None and fwd != _forward_config(args):
        logger.warning('round %d: stored network outputs come from other settings; forwarding again', r)
        shutil.rmtree(paths.probmap)
        makedirs(paths.probmap)
        if os.path.exists(paths.thresholds_used):
            os.remove(paths.thresholds_used)
    if root:
        _write_json(fwd_path, _forward_config(args))
    distributed.barrier()  # stale maps are gone before anyone writes new ones

    prior = load_prior(args.dataset, spec.classes) if with_prior else None
    has_gt = args.split_tgt in ('train', 'val') and all(label is not None for _, label in items)
    x_num = len(items)

    def pass1_done(name):
        needed = [os.path.join(paths.probmap, name + '.npz'), RoundPaths.png(paths.nplabelIds, name),
                  RoundPaths.png(paths.npcolor, name)]
        if with_prior:
            needed += [RoundPaths.png(paths.splabelIds, name), RoundPaths.png(paths.spcolor, name)]
        return all(os.path.exists(p) for p in needed)

    mine = distributed.shard(range(x_num))  # this worker's images
    finished = {i: pass1_done(names[i]) for i in mine}
    if predictor is None:
        from util.device import get_contexts
        contexts = get_contexts(args.gpus)
        # Built before the loop so that a bad checkpoint is not blamed on an image.
        predictor = _make_predictor(args, spec, contexts) if not all(finished.values()) else None
    else:
        contexts = getattr(predictor, 'contexts', getattr(predictor, 'ctx', None))
    # Reloaded maps are post-processed where new ones would be: the same numbers on resume.
    post = Postprocessor(spec.classes, getattr(args, 'postprocess', 'auto'), ctx=contexts, prior=prior)
    logger.info('round %d: post-processing %s', r, post.mode)
    run = _Round(args, r, paths, info, items, names, post, spec.stride)

    collector, cm_np, cm_sp = run.pass_one(predictor, mine, finished, _single_scale(args.test_scales), has_gt)
    _write_training_list(train_list, items, paths)  # on every worker: the working folder need not be shared
    # Read before rank 0 replaces it: pass 2 keeps the labels made by the same rule.
    old = np.load(paths.thresholds_used) if os.path.exists(paths.thresholds_used) else None

    # ---- thresholds and statistics (rank 0 merges every worker's pools and scores)
    collector, cm_np, cm_sp = _merge_pass1(paths.probmap, collector, cm_np, cm_sp)
    cls_size, cls_thresh, mine_id, mine_id_priority = _round_thresholds(args, paths, collector, spec.classes)
    del collector

    thresh = effective_thresholds(cls_thresh)
    run.pass_two(mine, thresh, alpha, old, save_rule=root)

    stats = {'cls_size': cls_size.tolist(), 'cls_thresh': cls_thresh.tolist(),
             'mine_id': mine_id.tolist(), 'mine_id_priority': mine_id_priority.tolist()}
    if cm_np is not None:
        stats['scores_np'] = {k: cm_np.scores()[k] for k in ('pixel_acc', 'mean_acc', 'mean_iou')}
    if cm_sp is not None:
        stats['scores_sp'] = {k: cm_sp.scores()[k] for k in ('pixel_acc', 'mean_acc', 'mean_iou')}
    distributed.barrier()  # every worker's pseudo-labels are written
    if root and alpha:
        # CRST-LRENT: the low-resolution maps stay; training recomputes its soft labels from them.
        from issegm.crst import SoftLabelStore
        SoftLabelStore.save_recipe(paths.round_dir, paths.probmap, thresh, alpha, spec.stride,
                                   prior_dataset=args.dataset if with_prior else None)
    if root:
        _write_json(paths.marker, {'config': config, 'stats': stats})
    if root and not alpha:
        # As the reference, the maps are dropped once the round's labels exist.
        shutil.rmtree(paths.probmap, ignore_errors=True)
    distributed.barrier()
    logger.info('round %d: pseudo-labels done (%s)', r, paths.pseudo_labelIds)
    return stats


class _Round(object):
    """The two passes of one round's pseudo-labelling over the split (see :func:`generate_pseudo_labels`).

    Each pass reads ahead in threads (images or stored low-resolution maps),
    launches image i+1's forward and post-processing before waiting for
    image i's small results, and writes PNGs behind in threads; a failure
    names its image and says how to resume.
    """

    def __init__(self, args, r, paths, info, items, names, post, net_stride):
        self.args, self.r, self.paths, self.info = args, r, paths, info
        self.items, self.names, self.post = items, names, post
        self.net_stride = net_stride   # of maps stored before they carried their stride

    def _fail(self, step, i, exc):
        return _image_failure(self.r, 'pass %d' % step, i, len(self.items), self.items[i][0], exc)

    def _guarded(self, step, i, fn, *args):
        def job():
            try:
                fn(*args)
            except Exception as exc:
                raise self._fail(step, i, exc) from exc
        return job

    def _npz(self, i):
        return os.path.join(self.paths.probmap, self.names[i] + '.npz')

    def pass_one(self, predictor, mine, finished, scale, has_gt):
        """Forward (or reload) this worker's images ``mine``: argmax maps, low-res maps, pooled confidences, scores."""
        from issegm.inference import LOOP_DEPTH, ahead
        from issegm.metrics import ConfusionMatrix
        args, paths, num_classes = self.args, self.paths, self.post.num_classes
        with_prior = self.post.ops.prior is not None
        collector = ConfidenceCollector(num_classes)
        audit = LabelAudit(self.info)
        cm_np = ConfusionMatrix(num_classes) if has_gt else None
        cm_sp = ConfusionMatrix(num_classes) if has_gt and with_prior else None

        def read(i):  # in a reader thread
            image, label = self.items[i]
            if finished[i]:
                data = load_lowres(self._npz(i), self.net_stride)
            else:
                data = predictor.prepare(read_image(os.path.join(args.data_root_tgt, image)), [scale])
            gt = finding = None
            if has_gt:
                gt_path = os.path.join(args.data_root_tgt, label)
                gt_ids = read_label(gt_path)
                finding = audit.inspect(gt_path, gt_ids)  # unknown ids: ignored by the scores, reported once
                gt = np.take(self.info.label2train, gt_ids)
            return data, gt, finding

        def launch(record):
            # Image i+1's forward and post-processing are queued before image i's results are awaited.
            i, future = record
            data, gt, finding = future.result()
            audit.add(finding)
            job = None if finished[i] else predictor.launch(data)
            orig_hw = data[1] if job is None else tuple(job.orig_hw)
            if gt is not None and gt.shape != tuple(orig_hw):
                raise ValueError('label is %dx%d but the image is %dx%d' % (gt.shape + tuple(orig_hw)))
            source = self.post.source(job=job) if job is not None else self.post.source(stored=data)
            return job, self.post.collect(source, gt)

        def save(i, out, low):
            name = self.names[i]
            if low is not None:
                _write_pred(paths.nplabelIds, paths.npcolor, name, out['pred_np'], self.info)
            if with_prior and low is not None:
                _write_pred(paths.splabelIds, paths.spcolor, name, out['pred_sp'], self.info)
            # Written last: its presence means this image's pass 1 is done.
            if low is not None:
                save_lowres(self._npz(i), *low)

        bar = progress(len(mine), 'round %d pass 1/2 forward' % self.r)
        start, forwarded = time.time(), 0
        depth = getattr(predictor, 'depth', LOOP_DEPTH)
        with Writer() as writer, contextlib.closing(prefetch(read, mine)) as records:
            for done_here, launched in enumerate(ahead(records, launch, depth=depth), 1):
                i = launched.item[0]
                try:
                    job, pending = launched.get()
                    out = pending.result()
                    low = None
                    if job is not None:
                        low = job.lowres()[0], job.orig_hw   # the map carries its (sub-)stride
                        forwarded += 1
                    collector.add_kept(*out['kept'])
                    if cm_np is not None:
                        cm_np.add(out['confusion_np'])
                    if cm_sp is not None:
                        cm_sp.add(out['confusion_sp'])
                    writer.submit(self._guarded(1, i, save, i, out, low))
                except PhaseError:
                    raise
                except Exception as exc:
                    raise self._fail(1, i, exc) from exc
                bar.update(1)
                logger.info('Done %d/%d with speed: %.2f/s', done_here, len(mine),
                            done_here / max(time.time() - start, 1e-9))
                if cm_sp is not None:
                    logger.info('with prior, %s', cm_sp.summary())
                if cm_np is not None:
                    logger.info('no prior, %s', cm_np.summary())
        bar.close()
        audit.report(logger)
        logger.info('round %d pass 1: %d images forwarded, %d reloaded', self.r, forwarded, len(mine) - forwarded)
        return collector, cm_np, cm_sp

    def pass_two(self, mine, thresh, alpha, old, save_rule):
        """Pseudo-labels of this worker's images ``mine`` from their stored maps and the class thresholds.

        ``alpha`` > 0: CRST-LRENT's rule. Labels made by the rule ``old`` (the
        previous run's) are kept when it is this one; ``save_rule``: record
        this rule (rank 0).
        """
        from issegm.inference import LOOP_DEPTH, ahead
        paths = self.paths
        # What decides the labels: the thresholds, and alpha with LRENT (so that labels of another rule are redone).
        rule = np.append(thresh, alpha) if alpha else thresh
        reuse = old is not None and np.array_equal(old, rule)
        if save_rule:
            save_npy_atomic(paths.thresholds_used, rule)
        todo = [i for i in mine if not (reuse and os.path.exists(RoundPaths.png(paths.pseudo_labelIds, self.names[i])))]

        def launch(record):
            i, future = record
            return self.post.label(self.post.source(stored=future.result()), thresh, alpha)

        def save(name, out):
            if self.args.kc_policy == 'cb':
                _write_pred(paths.rwlabelIds, paths.rwcolor, name, out['argmax'], self.info)
            # pseudo_labelIds last: training reads it, and it marks the image done.
            _write_pred(paths.pseudo_labelIds, paths.pseudo_color, name, out['label'], self.info)

        bar = progress(len(mine), 'round %d pass 2/2 pseudo-labels' % self.r)
        bar.update(len(mine) - len(todo))
        load = lambda i: load_lowres(self._npz(i), self.net_stride)  # noqa: E731
        with Writer() as writer, contextlib.closing(prefetch(load, todo)) as records:
            for launched in ahead(records, launch, depth=LOOP_DEPTH * self.post.devices):
                i = launched.item[0]
                try:
                    out = launched.get().result()
                    writer.submit(self._guarded(2, i, save, self.names[i], out))
                except PhaseError:
                    raise
                except Exception as exc:
                    raise self._fail(2, i, exc) from exc
                bar.update(1)
        bar.close()


def _restore_round(paths, stats, train_list, items, keep_maps):
    """A complete round: restore the shared files a later round may have overwritten (list, stats)."""
    _write_training_list(train_list, items, paths)
    if distributed.is_root():
        _write_stats(paths.stats, np.array(stats['cls_size']), np.array(stats['cls_thresh']),
                     np.array(stats['mine_id'], np.int64), np.array(stats['mine_id_priority'], np.int64))
        if not keep_maps:  # with LRENT the maps are the soft labels' store
            shutil.rmtree(paths.probmap, ignore_errors=True)
    distributed.barrier()
    return stats


def _merge_pass1(folder, collector, cm_np, cm_sp):
    """Rank 0's collector and matrices over every worker's images (the others get None; alone: as given)."""
    from issegm.metrics import ConfusionMatrix
    arrays = collector.to_arrays()
    for prefix, cm in (('np_', cm_np), ('sp_', cm_sp)):
        if cm is not None:
            arrays.update(cm.to_arrays(prefix))
    parts = distributed.gather(folder, 'pass1', arrays, root_only=True)
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
    if distributed.is_root():
        sizes_thresholds = np.stack(threshold_stats(collector, float(args.init_tgt_port), args.kc_policy))
    cls_size, cls_thresh = distributed.broadcast(sizes_thresholds)
    mine_id, mine_id_priority = mining_ids(cls_size, args.mine_id_number, args.mine_thresh)
    logger.info('mine_id %s, mine_id_priority %s', mine_id, mine_id_priority)
    if distributed.is_root():
        _write_stats(paths.stats, cls_size, cls_thresh, mine_id, mine_id_priority)
    logger.info('Kc determination done in %.2f s.', time.time() - t0)
    with np.printoptions(precision=4, suppress=True):
        logger.info('class thresholds %s', cls_thresh)
        logger.info('class sizes %s', cls_size)
    return cls_size, cls_thresh, mine_id, mine_id_priority


def _single_scale(test_scales):
    if test_scales is None:
        raise ValueError('--phase val needs --test-scales (the longer side, e.g. 1850)')
    scales = sorted(int(s) for s in str(test_scales).split(','))[::-1]
    if len(scales) != 1:
        raise ValueError('multi-scale testing is not implemented in pseudo-labelling (as in the reference); '
                         'pass one --test-scales value')
    return scales[0]


# ---------------------------------------------------------------------------- phase train
def select_source(num_source, portion, seed):
    """Indices of the source images of this round (spec 7), exactly as the reference draws them.

    ``n_src = int(N * portion)``; numpy's legacy global generator is seeded
    and ``np.random.choice(N, n_src, replace=False)`` taken, so with the
    ``cumulative`` policy (same seed each round) a larger portion extends
    the smaller one's selection and the same images as the reference are chosen.
    """
    # One implementation of the draw, shared with the data layer's list parsing.
    from issegm.data import select_source_indices
    return select_source_indices(num_source, int(num_source * float(portion)), seed)


def _load_mining(address):
    if address is None:
        raise ValueError('--phase train needs --mine-id-address (the stats/ folder of the pseudo-label phase)')
    try:
        return (np.load(os.path.join(address, 'mine_id.npy')),
                np.load(os.path.join(address, 'mine_id_priority.npy')))
    except OSError as exc:
        raise FileNotFoundError('cannot read the mining statistics in %s (%s); run --phase val of this round '
                                'first' % (address, exc))


def training_samples(args):
    """``(source_items, target_items, num_source)`` of this round; items are ``(image, label)`` paths.

    Source paths are joined to ``--data-root``; target images to
    ``--data-root-tgt`` and target labels are the pseudo-label paths of the
    training list, used as written (as the reference does). Also writes
    ``{output}/{r}/source_selected.lst`` (lines of the source list, in the
    order drawn).
    """
    src_list = list_path(args.dataset, args.split)
    src = read_list(src_list, args.data_root, need_labels=True)
    idx = select_source(len(src), args.init_src_port, args.seed_int)
    paths = RoundPaths(args.output, args.idx_round)
    with atomic_write(paths.source_selected) as f:
        for i in idx:
            image, label = src[i]
            f.write('%s\t%s\n' % (image, label) if label is not None else '%s\n' % image)
    source = [(os.path.join(args.data_root, src[i][0]), os.path.join(args.data_root, src[i][1]))
              for i in idx]
    tgt_list = paths.training_list
    if not os.path.exists(tgt_list):
        # Rounds made before the per-round copy existed.
        tgt_list = training_list_path(args.dataset_tgt, args.split_tgt, args.gpus)
        logger.warning('%s not found: reading the shared %s (another run in this working folder may '
                       'have rewritten it)', paths.training_list, tgt_list)
    # Every target image and pseudo-label is looked up before training starts.
    hint = 'check --data-root-tgt; missing pseudo-labels: run --phase val of round %d first' % args.idx_round
    target = [(os.path.join(args.data_root_tgt, image), label)
              for image, label in read_list(tgt_list, args.data_root_tgt, label_root=None, hint=hint)]
    return source, target, len(src)


def retrain(args, dataiter_factory=None):
    """Spec section 7 for round ``args.idx_round``; returns the checkpoint paths in epoch order.

    ``dataiter_factory(args, spec, source, target, mine_id, mine_id_priority)``
    builds the iterator (default :func:`make_dataiter`); tests pass a cheap one.
    """
    from issegm.model import parse_label
    from issegm.training import DivergenceError, train
    from util.device import get_contexts
    spec = parse_label(args.model)
    if args.to_epoch is None:
        raise ValueError('--phase train needs --to-epoch')
    stop_epoch = args.to_epoch if args.stop_epoch is None else args.stop_epoch
    r = int(args.idx_round)
    prefix = os.path.join(args.output, str(r), '%s_ep' % args.model)
    final = '%s-%04d.params' % (prefix, stop_epoch)
    if os.path.exists(final):
        # Checked before building the iterator so that a finished round costs nothing.
        logger.info('round %d: already trained to epoch %d (%s); nothing to do', r, stop_epoch, final)
        return [final]
    contexts = get_contexts(args.gpus)
    source, target, num_source = training_samples(args)
    mine_id, mine_id_priority = _load_mining(args.mine_id_address)
    logger.info('round %d: %d source images (portion %s, seed %d) + %d target images; mine_id %s, '
                'mine_id_priority %s', r, len(source), args.init_src_port, args.seed_int, len(target),
                mine_id, mine_id_priority)
    from issegm.crst import Objective, describe, weights_from_args
    weights = weights_from_args(args)
    for line in describe(weights):
        logger.info('round %d: %s', r, line)
    dataiter = (dataiter_factory or make_dataiter)(args, spec, source, target, mine_id, mine_id_priority)
    # The reference's schedule counts (whole source list) // batch updates an epoch, whatever
    # the round's real epoch length.
    schedule_batches = max(1, num_source // int(args.batch_images or 1))
    try:
        return train(args.model, dataiter, prefix, weights=args.weights, contexts=contexts,
                     from_epoch=int(args.from_epoch), to_epoch=int(args.to_epoch), stop_epoch=stop_epoch,
                     base_lr=args.base_lr if args.base_lr is not None else 0.1,
                     lr_policy=args.lr_type or 'fixed',
                     lr_steps=[int(s) for s in args.lr_steps.split(',')] if args.lr_steps else (),
                     weight_decay=args.weight_decay, kvstore=args.kvstore,
                     backward_do_mirror=args.backward_do_mirror, seed=args.seed_int,
                     schedule_batches=schedule_batches,
                     objective=Objective(weights) if weights.active else None)
    except DivergenceError as exc:
        raise PhaseError('phase train round %d: %s' % (r, exc), code=2) from exc
    except Exception as exc:
        from issegm.cli import describe_failure
        raise PhaseError('phase train round %d failed (checkpoints %s-NNNN.params): %s; then rerun the same '
                         'command to resume from the last whole epoch' % (r, prefix, describe_failure(exc)[1])) \
            from exc


def make_dataiter(args, spec, source, target, mine_id, mine_id_priority):
    """The training iterator of this round: selected source images plus pseudo-labelled targets."""
    from issegm.data import SOURCE, TARGET, FileIter, Sample
    if args.batch_images is None or args.crop_size is None:
        raise ValueError('--phase train needs --batch-images and --crop-size')
    samples = [Sample(i, l, SOURCE) for i, l in source] + [Sample(i, l, TARGET) for i, l in target]
    # Pseudo-labels hold label ids of the target's table (cityscapes16 for SYNTHIA -> Cityscapes).
    tgt = target_dataset(args.dataset, args.dataset_tgt, spec.classes)
    # The reference caches images in training unless --cache-images says otherwise.
    cache = True if args.cache_images is None else bool(args.cache_images)
    from issegm.crst import training_targets
    targets = training_targets(args, spec.classes, RoundPaths(args.output, args.idx_round).round_dir,
                               [sample_name(image) for image, _ in target])
    # A worker of a distributed job reads its part of every global batch.
    return FileIter(args.dataset, dataset_tgt=tgt.name, samples=samples, num_parts=distributed.num_workers(),
                    part_index=distributed.rank(), batch_images=args.batch_images, crop_size=args.crop_size,
                    feat_stride=spec.stride,
                    origin_size=args.origin_size, origin_size_tgt=args.origin_size_tgt,
                    scale_rate_range=[float(v) for v in args.scale_rate_range.split(',')],
                    prefetch_threads=args.prefetch_threads, prefetcher_type=args.prefetcher,
                    cache_images=cache,
                    meta={'mine_port': args.mine_port, 'mine_id': mine_id,
                          'mine_id_priority': mine_id_priority, 'gpus': args.gpus},
                    targets=targets)


# ---------------------------------------------------------------------------- entry
def _guard_phase(args):
    """Lock ``--output``; refuse a rerun of this round's phase with other settings (or restart it)."""
    from issegm.preflight import train_settings, val_settings
    from issegm.run_guard import settle
    from issegm.training import last_checkpoint, remove_checkpoints
    paths = RoundPaths(args.output, args.idx_round)
    prefix = os.path.join(paths.round_dir, '%s_ep' % args.model)
    if args.phase == 'val':
        settle(paths.round_dir, 'pseudo_labels', val_settings(args), restart=args.restart,
               discard=paths.discard_pseudo_labels, what='pseudo-labels of round %d' % args.idx_round,
               has_work=paths.has_pseudo_label_work)
        return
    from util.device import get_contexts

    def discard():
        remove_checkpoints(prefix)
        if os.path.exists(paths.source_selected):
            os.remove(paths.source_selected)

    devices = len(get_contexts(args.gpus)) * distributed.num_workers()  # of the whole job
    settle(paths.round_dir, 'training', train_settings(args, devices, paths.marker),
           restart=args.restart, discard=discard, what='training of round %d' % args.idx_round,
           has_work=lambda: last_checkpoint(prefix) is not None)


def run(args, predictor=None, dataiter_factory=None):
    """Run the phase ``args`` asks for (the body of ``solve_ST.py``); returns an exit code.

    Failures are one line in the log and on stderr; the exit code is 1 when
    the same command can continue after the cause is fixed, 2 when the
    command or its input must change (:func:`issegm.cli.describe_failure`).
    """
    from issegm.cli import apply_env_switches, check_flags
    apply_env_switches(args)
    check_flags(args)
    complete_args(args)
    check_flags(args)  # the derived --output too
    distributed.init(args.kvstore if args.phase == 'train' else 'dist_sync')  # under the launcher: join the job
    with distributed.locked(args.output):
        return _run_phase_locked(args, predictor, dataiter_factory)


def _run_phase_locked(args, predictor, dataiter_factory):
    from issegm.cli import describe_failure
    log = distributed.set_logger(args.output, args.log_file, args.debug)
    log.info('start with arguments %s', args)
    try:
        distributed.root_only(_guard_phase, args)
        if args.phase == 'val':
            generate_pseudo_labels(args, predictor=predictor)
        else:
            retrain(args, dataiter_factory=dataiter_factory)
    except PhaseError as exc:
        log.error('%s', exc)
        return exc.code
    except Exception as exc:
        if args.debug:
            log.exception('phase %s round %s failed', args.phase, args.idx_round)
        code, line = describe_failure(exc)
        log.error('phase %s round %s: %s', args.phase, args.idx_round, line)
        return code
    return 0


# ---------------------------------------------------------------------------- rounds (solve_AO)
def py2_str(value):
    """``str(value)`` as the reference's Python 2 wrote it: floats with 12 significant digits.

    The driver passes portions and learning rates to ``solve_ST`` as text;
    Python 2 printed ``0.15 + 0.05`` as ``0.2`` where Python 3 may print
    ``0.20000000000000001``-like text, and ``floor(n * p)`` can differ.
    """
    return '%.12g' % value if isinstance(value, float) else str(value)


def round_schedule(args):
    """Per-round settings of ``solve_AO`` (spec section 8), as a list of dicts.

    Round r trains to ``to_epoch = (r + 1) * epoch_per_round`` from the last
    epoch of round r-1; the learning rate is divided by sqrt(2) each round;
    portions grow by their step while below their maximum; the seed is
    ``--seed-int`` (``cumulative``) or r (``random``). Values go through
    :func:`py2_str` as they do on the reference's command lines.
    """
    if args.source_sample_policy not in ('cumulative', 'random'):
        raise ValueError("unknown --source-sample-policy %r: use 'cumulative' or 'random'"
                         % (args.source_sample_policy,))
    if args.base_lr is None:
        raise ValueError('solve_AO needs --base-lr')
    if args.model is None or args.weights is None:
        raise ValueError('solve_AO needs --model and --weights (the source model)')
    weights, to_epoch = args.weights, args.epr
    lr, tgt_port, src_port = args.base_lr, args.init_tgt_port, args.init_src_port
    rounds = []
    for r in range(args.num_round):
        seed = args.seed_int if args.source_sample_policy == 'cumulative' else r
        rounds.append({'round': r, 'weights': weights, 'to_epoch': to_epoch, 'lr': py2_str(lr),
                       'tgt_port': py2_str(tgt_port), 'src_port': py2_str(src_port), 'seed': seed,
                       'final': os.path.join(args.output, str(r), '%s_ep-%04d.params' % (args.model, to_epoch))})
        weights = rounds[-1]['final']
        to_epoch += args.epr
        lr = lr / math.sqrt(2)
        if tgt_port < args.max_tgt_port:
            tgt_port = tgt_port + args.step_tgt_port
        if src_port < args.max_src_port:
            src_port = src_port + args.step_src_port
    return rounds


def _flags(pairs):
    argv = []
    for flag, value in pairs:
        if value is True:
            argv.append(flag)
        elif value is not None and value is not False:
            argv += [flag, py2_str(value)]
    return argv


def val_argv(args, rnd):
    """``solve_ST`` arguments of a round's pseudo-label phase (the reference's command)."""
    return _flags([
        ('--dataset', args.dataset), ('--dataset-tgt', args.dataset_tgt), ('--data-root', args.data_root),
        ('--data-root-tgt', args.data_root_tgt), ('--split-tgt', args.split_tgt), ('--output', args.output),
        ('--model', args.model), ('--phase', 'val'), ('--weights', rnd['weights']),
        ('--mine-id-number', args.mine_id_number),
        # Not passed by the reference (which then uses the default 0.001 for
        # mine_id_priority): the user's value is meant.
        ('--mine-thresh', args.mine_thresh),
        ('--test-scales', args.test_scales), ('--gpus', args.gpus), ('--init-tgt-port', rnd['tgt_port']),
        ('--idx-round', rnd['round']), ('--no-cudnn', True), ('--test-flipping', True),
        ('--with-prior', args.with_prior), ('--kc-policy', args.kc_policy),
        # Ours; passed only when chosen, so that the default command stays the reference's.
        ('--postprocess', None if getattr(args, 'postprocess', 'auto') == 'auto' else args.postprocess)]) \
        + _crst_argv(args)


def train_argv(args, rnd):
    """``solve_ST`` arguments of a round's retraining phase (the reference's command)."""
    return _flags([
        ('--gpus', args.gpus), ('--dataset', args.dataset), ('--split', args.split),
        ('--dataset-tgt', args.dataset_tgt), ('--split-tgt', args.split_tgt), ('--data-root', args.data_root),
        ('--data-root-tgt', args.data_root_tgt), ('--output', args.output),
        ('--init-src-port', rnd['src_port']), ('--model', args.model), ('--batch-images', args.batch_images),
        ('--crop-size', args.crop_size), ('--scale-rate-range', args.scale_rate_range),
        ('--weights', rnd['weights']), ('--idx-round', rnd['round']), ('--base-lr', rnd['lr']),
        ('--to-epoch', rnd['to_epoch']), ('--prefetch-threads', args.prefetch_threads),
        ('--prefetcher', 'process'), ('--mine-id-address', os.path.join(args.output, 'stats')),
        ('--mine-port', args.mine_port), ('--mine-thresh', args.mine_thresh), ('--cache-images', 0),
        ('--backward-do-mirror', True), ('--origin-size', args.origin_size),
        ('--origin-size-tgt', args.origin_size_tgt), ('--seed-int', rnd['seed']), ('--phase', 'train'),
        # Not in the reference's command: only when asked for (under the launcher local becomes dist_sync).
        ('--kvstore', None if getattr(args, 'kvstore', 'local') == 'local' else args.kvstore)]) \
        + _crst_argv(args)


def _crst_argv(args):
    """The non-zero CRST flags, forwarded to both phases (none for CBST: the reference's commands)."""
    from issegm.crst import flag_argv
    return flag_argv(args)


def _die_with_parent(parent):
    # Runs in the child before exec: the kernel sends it SIGTERM when solve_AO dies, even by SIGKILL.
    import ctypes
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # solve_AO died between the fork and the line above
        os._exit(143)


def _run_child(cmd):
    """Run ``cmd`` under this run's lock; ending this process (signal or exception) ends the child."""
    import subprocess
    from issegm.run_guard import child_lock_env
    env, fds = child_lock_env()
    proc = subprocess.Popen(cmd, env=env, pass_fds=fds,
                            preexec_fn=functools.partial(_die_with_parent, os.getpid()))
    try:
        return proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


def _run_phase(args, argv, what):
    # A worker of a distributed job keeps its one ps-lite connection: its phases run in it.
    if args.self_training_script and not distributed.launched():
        cmd = [sys.executable, args.self_training_script] + argv
        logger.info('running %s', ' '.join(cmd))
        code = _run_child(cmd)
    else:
        from issegm import solve_ST
        logger.info('running solve_ST %s', ' '.join(argv))
        code = solve_ST.main(argv)
    if code == 2:
        raise PhaseError('%s failed (see its error above); no later phase was started' % what, code=2)
    if code:
        raise PhaseError('%s failed (exit code %s); once its cause is fixed, rerun the same solve_AO command '
                         'to continue from there' % (what, code))


def _has_round_work(output, rounds, model):
    """Whether any round of ``output`` has pseudo-label or training outputs."""
    from issegm.training import last_checkpoint
    for rnd in rounds:
        paths = RoundPaths(output, rnd['round'])
        if paths.has_pseudo_label_work() or \
                last_checkpoint(os.path.join(paths.round_dir, '%s_ep' % model)) is not None:
            return True
    return False


def _discard_rounds(output):
    """Remove the round folders and statistics of ``output`` (``solve_AO --restart``)."""
    for name in os.listdir(output):
        if name.isdigit() or name == 'stats':
            shutil.rmtree(os.path.join(output, name))
            logger.info('removed %s', os.path.join(output, name))


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def run_rounds(args):
    """The body of ``solve_AO.py``: for each round, pseudo-labels then retraining.

    Every flag and list of the whole run is checked first
    (:func:`issegm.preflight.check_rounds`); the output is locked and its
    settings compared with the recorded ones. A round whose final checkpoint
    exists is skipped whole; inside a round, each phase resumes by itself, so
    rerunning after a kill continues. Returns an exit code.
    """
    from issegm.cli import check_flags
    from issegm.preflight import check_rounds, rounds_settings
    from issegm.run_guard import settle
    from util.device import get_contexts
    check_flags(args)
    rounds = round_schedule(args)
    check_rounds(args, rounds)
    distributed.init(getattr(args, 'kvstore', 'local'))  # under the launcher: join the job for every phase
    devices = len(get_contexts(args.gpus)) * distributed.num_workers()  # of the whole job
    with distributed.locked(args.output):
        distributed.root_only(settle, args.output, 'solve_AO', rounds_settings(args, devices), restart=args.restart,
                              discard=lambda: _discard_rounds(args.output), what='self-training rounds',
                              has_work=lambda: _has_round_work(args.output, rounds, args.model))
        return _rounds_locked(args, rounds)


@contextlib.contextmanager
def _sigterm_as_exit():
    """SIGTERM raises SystemExit in the main thread, so a running child phase is ended first."""
    import signal
    try:
        old = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _rounds_locked(args, rounds):
    from issegm.cli import describe_failure
    log = distributed.set_logger(args.output, 'solve_AO.log')
    log.info('solve_AO with arguments %s', args)
    if args.self_training_script and distributed.launched():
        log.info('under the launcher the phases run in this process (--self-training-script %s not started)',
                 args.self_training_script)
    from issegm.crst import describe, weights_from_args
    for line in describe(weights_from_args(args)):
        log.info('%s', line)
    try:
        with _sigterm_as_exit():
            for rnd in rounds:
                _run_round(args, rnd, log)
                # Logging may have been redirected by an in-process phase.
                log = distributed.set_logger(args.output, 'solve_AO.log')
    except PhaseError as exc:
        log = distributed.set_logger(args.output, 'solve_AO.log')
        log.error('%s', exc)
        return exc.code
    except Exception as exc:
        log = distributed.set_logger(args.output, 'solve_AO.log')
        if args.debug:
            log.exception('solve_AO failed')
        code, line = describe_failure(exc)
        log.error('%s', line)
        return code
    log.info('all %d rounds done', args.num_round)
    return 0


def _run_round(args, rnd, log):
    r = rnd['round']
    log.info('round %d: weights %s, lr %s, tgt_port %s, src_port %s, seed %d, to_epoch %d',
             r, rnd['weights'], rnd['lr'], rnd['tgt_port'], rnd['src_port'], rnd['seed'], rnd['to_epoch'])
    if os.path.exists(rnd['final']):
        log.info('round %d: already complete (%s); skipped', r, rnd['final'])
        return
    _run_phase(args, val_argv(args, rnd), 'round %d pseudo-label phase (solve_ST --phase val)' % r)
    _run_phase(args, train_argv(args, rnd), 'round %d training phase (solve_ST --phase train)' % r)
