"""The retraining phase of a round (``solve_ST.py --phase train``; docs/behaviour.md section 7).

:func:`retrain` selects the source images
(``np.random.seed(seed); np.random.choice(N, n_src, replace=False)``), adds
every target image with its pseudo-label and trains through
:func:`issegm.engine.training.train`, checkpointing ``{output}/{r}/{model}_ep-%04d.params``
(in a launched job with ``dist_sync``). Training reads the round's own
``target_training.lst`` and continues from the last whole epoch checkpoint
and its optimizer state, bit for bit.
"""
import logging
import os

import numpy as np

from issegm.cluster import worker
from issegm.errors import PhaseError
from issegm.storage.datasets import list_path, read_list, sample_name, target_dataset
from issegm.storage.round_paths import RoundPaths, training_list_path
from util.io import atomic_write

__all__ = ['select_source', 'training_samples', 'retrain', 'make_dataiter']

logger = logging.getLogger(__name__)


def retrain(args, dataiter_factory=None):
    """Spec section 7 for round ``args.idx_round``: train on the selected source and pseudo-labelled target images.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``solve_ST.py`` arguments.
    dataiter_factory : callable, optional
        ``dataiter_factory(args, spec, source, target, mine_id, mine_id_priority)``
        builds the iterator (default :func:`make_dataiter`); tests pass a cheap one.

    Returns
    -------
    list of str
        The checkpoint paths in epoch order.

    Raises
    ------
    PhaseError
        When training fails or diverges (exit code 2), naming the round.
    """
    from issegm.phases.cli import weights_from_args
    from issegm.engine.model import parse_label
    from issegm.engine.training import checkpoint_path, train
    from issegm.errors import DivergenceError
    from util.device import get_contexts
    spec = parse_label(args.model)
    if args.to_epoch is None:
        raise ValueError('--phase train needs --to-epoch')
    stop_epoch = args.to_epoch if args.stop_epoch is None else args.stop_epoch
    r = int(args.idx_round)
    prefix = RoundPaths(args.output, r).checkpoint_prefix(args.model)
    final = checkpoint_path(prefix, stop_epoch)
    if os.path.exists(final):
        # Checked before building the iterator so that a finished round costs nothing.
        logger.info('round %d: already trained to epoch %d (%s); nothing to do', r, stop_epoch, final)
        return [final]
    contexts = get_contexts(args.gpus)
    source, target, num_source = training_samples(args)
    mine_id, mine_id_priority = _load_mining(args.mine_id_address)
    weights = weights_from_args(args)
    _log_round(args, r, len(source), len(target), mine_id, mine_id_priority, weights)
    dataiter = (dataiter_factory or make_dataiter)(args, spec, source, target, mine_id, mine_id_priority)
    try:
        return train(args.model, dataiter, prefix, contexts=contexts, stop_epoch=stop_epoch,
                     epoch_end_callback=_health_callback(RoundPaths(args.output, r).round_dir),
                     **_train_options(args, num_source, weights))
    except DivergenceError as exc:
        raise PhaseError('phase train round %d: %s' % (r, exc), code=2) from exc
    except Exception as exc:
        from issegm.phases.cli import describe_failure
        raise PhaseError('phase train round %d failed (checkpoints %s-NNNN.params): %s; then rerun the same '
                         'command to resume from the last whole epoch' % (r, prefix, describe_failure(exc)[1])) \
            from exc


def _health_callback(folder):
    """Rank 0's per-epoch entry in ``{folder}/health.json`` (an observer: a failure only warns)."""
    if not worker.is_root():
        return None

    def record(entry):
        from issegm.report.observe import record_epoch
        try:
            record_epoch(folder, entry)
        except Exception as exc:
            logger.warning('health record of epoch %d not written (%s)', entry['epoch'], exc)
    return record


def _log_round(args, r, num_source, num_target, mine_id, mine_id_priority, weights):
    from issegm.method.crst import describe
    logger.info('round %d: %d source images (portion %s, seed %d) + %d target images; mine_id %s, '
                'mine_id_priority %s', r, num_source, args.init_src_port, args.seed_int, num_target,
                mine_id, mine_id_priority)
    for line in describe(weights):
        logger.info('round %d: %s', r, line)


def _train_options(args, num_source, weights):
    """The keyword arguments of :func:`issegm.engine.training.train` that the phase's flags give."""
    from issegm.engine.objective import Objective
    return dict(weights=args.weights, from_epoch=int(args.from_epoch), to_epoch=int(args.to_epoch),
                base_lr=args.base_lr if args.base_lr is not None else 0.1,
                lr_policy=args.lr_type or 'fixed',
                lr_steps=[int(s) for s in args.lr_steps.split(',')] if args.lr_steps else (),
                weight_decay=args.weight_decay, kvstore=args.kvstore,
                backward_do_mirror=args.backward_do_mirror, seed=args.seed_int,
                # The reference's schedule counts (whole source list) // batch updates an epoch, whatever
                # the round's real epoch length.
                schedule_batches=max(1, num_source // int(args.batch_images or 1)),
                objective=Objective(weights) if weights.active else None)


def select_source(num_source, portion, seed):
    """Indices of the source images of this round (docs/behaviour.md 7), exactly as the reference draws them.

    ``n_src = int(N * portion)``; numpy's legacy global generator is seeded
    and ``np.random.choice(N, n_src, replace=False)`` taken, so with the
    ``cumulative`` policy (same seed each round) a larger portion extends
    the smaller one's selection and the same images as the reference are chosen.

    Parameters
    ----------
    num_source : int
        N, the number of source images.
    portion : float or str
        The source portion of the round.
    seed : int
        The seed of numpy's global generator.

    Returns
    -------
    numpy.ndarray
        The indices, in draw order.
    """
    # One implementation of the draw, shared with the data layer's list parsing.
    from issegm.engine.iterator import select_source_indices
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
    """The source and target training items of this round.

    Source paths are joined to ``--data-root``; target images to
    ``--data-root-tgt`` and target labels are the pseudo-label paths of the
    training list, used as written (as the reference does). Also writes
    ``{output}/{r}/source_selected.lst`` (lines of the source list, in the
    order drawn).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``solve_ST.py`` arguments.

    Returns
    -------
    tuple
        ``(source_items, target_items, num_source)``; items are ``(image, label)`` paths.
    """
    paths = RoundPaths(args.output, args.idx_round)
    source, num_source = _selected_source(args, paths)
    return source, _pseudo_labelled_targets(args, paths), num_source


def _selected_source(args, paths):
    """This round's source ``(image, label)`` paths, recorded in ``source_selected.lst``; the list's length."""
    src = read_list(list_path(args.dataset, args.split), args.data_root, need_labels=True)
    idx = select_source(len(src), args.init_src_port, args.seed_int)
    with atomic_write(paths.source_selected) as f:
        for i in idx:
            image, label = src[i]
            f.write('%s\t%s\n' % (image, label) if label is not None else '%s\n' % image)
    return [(os.path.join(args.data_root, src[i][0]), os.path.join(args.data_root, src[i][1])) for i in idx], len(src)


def _pseudo_labelled_targets(args, paths):
    """Every target image with its pseudo-label, from the round's training list (all looked up now)."""
    tgt_list = paths.training_list
    if not os.path.exists(tgt_list):
        # Rounds made before the per-round copy existed.
        tgt_list = training_list_path(args.dataset_tgt, args.split_tgt, args.gpus)
        logger.warning('%s not found: reading the shared %s (another run in this working folder may '
                       'have rewritten it)', paths.training_list, tgt_list)
    hint = 'check --data-root-tgt; missing pseudo-labels: run --phase val of round %d first' % args.idx_round
    return [(os.path.join(args.data_root_tgt, image), label)
            for image, label in read_list(tgt_list, args.data_root_tgt, label_root=None, hint=hint)]


def make_dataiter(args, spec, source, target, mine_id, mine_id_priority):
    """The training iterator of this round: selected source images plus pseudo-labelled targets.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``solve_ST.py`` arguments.
    spec : issegm.engine.model.ModelLabel
        The parsed ``--model``.
    source, target : list of tuple
        ``(image, label)`` paths, from :func:`training_samples`.
    mine_id, mine_id_priority : numpy.ndarray
        The round's mining classes.

    Returns
    -------
    issegm.engine.iterator.FileIter
        The iterator (a worker of a distributed job reads its part of every global batch).

    Raises
    ------
    ValueError
        Without ``--batch-images`` and ``--crop-size``.
    """
    from issegm.engine.iterator import SOURCE, TARGET, FileIter, Sample
    if args.batch_images is None or args.crop_size is None:
        raise ValueError('--phase train needs --batch-images and --crop-size')
    samples = [Sample(i, l, SOURCE) for i, l in source] + [Sample(i, l, TARGET) for i, l in target]
    # Pseudo-labels hold label ids of the target's table (cityscapes16 for SYNTHIA -> Cityscapes).
    tgt = target_dataset(args.dataset, args.dataset_tgt, spec.classes)
    # The reference caches images in training unless --cache-images says otherwise.
    cache = True if args.cache_images is None else bool(args.cache_images)
    from issegm.engine.objective import training_targets
    from issegm.engine.model import preprocessing
    from issegm.phases.cli import weights_from_args
    targets = training_targets(weights_from_args(args), spec.classes, RoundPaths(args.output, args.idx_round).round_dir,
                               [sample_name(image) for image, _ in target])
    # A worker of a distributed job reads its part of every global batch.
    return FileIter(args.dataset, dataset_tgt=tgt.name, samples=samples, num_parts=worker.num_workers(),
                    part_index=worker.rank(), batch_images=args.batch_images, crop_size=args.crop_size,
                    feat_stride=spec.stride,
                    origin_size=args.origin_size, origin_size_tgt=args.origin_size_tgt,
                    scale_rate_range=[float(v) for v in args.scale_rate_range.split(',')],
                    prefetch_threads=args.prefetch_threads, prefetcher_type=args.prefetcher,
                    cache_images=cache,
                    meta={'mine_port': args.mine_port, 'mine_id': mine_id,
                          'mine_id_priority': mine_id_priority, 'gpus': args.gpus},
                    targets=targets, normalizer=preprocessing(spec))
