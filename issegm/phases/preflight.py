"""What self-training checks before any work, and the settings that decide each phase's numbers.

:func:`check_rounds` runs before round 0 of ``solve_AO.py``: every flag value
(:func:`issegm.phases.cli.check_flags`), datasets and class counts, every file of
the source and target lists (all missing ones at once), the spatial prior,
the weights, and that a round's training set fills a batch. A bad value is
one line naming the flag, minutes instead of a whole pseudo-label phase in.

:func:`val_settings`, :func:`train_settings` and :func:`rounds_settings` are
what :mod:`issegm.storage.run_guard` records and compares in ``run.json``: only what
changes the numbers written (not threads, workers, logs, ``--num-round``,
``--gpus`` for inference, ``--to-epoch`` under a fixed rate).
"""
import os

from issegm.phases.cli import check_flags
from issegm.errors import FlagError
from issegm.flags import flag_name
from issegm.storage.datasets import get_dataset, list_path, read_list, target_dataset
from issegm.storage.run_guard import file_digest

__all__ = ['check_rounds', 'val_settings', 'train_settings', 'rounds_settings']


def _digest(path):
    return file_digest(path) if path and os.path.isfile(path) else None


def check_rounds(args, rounds):
    """Everything the whole ``solve_AO`` run will use, checked before round 0; ``rounds`` from
    :func:`issegm.phases.rounds.round_schedule`. Raises ``ValueError`` subclasses naming the flag or file.
    """
    from issegm.engine.model import parse_label
    from issegm.phases.labelling import single_scale
    from issegm.method.prior import prior_path
    from util.device import get_contexts
    check_flags(args)
    for flag, value in (('--model', args.model), ('--weights', args.weights), ('--dataset', args.dataset),
                        ('--dataset-tgt', args.dataset_tgt), ('--data-root', args.data_root),
                        ('--data-root-tgt', args.data_root_tgt), ('--batch-images', args.batch_images),
                        ('--crop-size', args.crop_size), ('--base-lr', args.base_lr),
                        ('--test-scales', args.test_scales)):
        if value is None:
            raise FlagError('solve_AO needs %s' % flag)
    spec = parse_label(args.model)
    source = get_dataset(args.dataset)
    if source.num_classes != spec.classes:
        raise FlagError('--dataset %s has %d classes but --model %s has %d'
                        % (args.dataset, source.num_classes, args.model, spec.classes))
    target_dataset(args.dataset, args.dataset_tgt, spec.classes)
    single_scale(args.test_scales)
    get_contexts(args.gpus)
    if not os.path.isfile(args.weights):
        raise FlagError('--weights %s: file not found' % args.weights)
    if args.with_prior == 'True' and not os.path.isfile(prior_path(args.dataset)):
        raise FlagError('--with-prior True needs %s (build it with issegm/spatial_prior.py; the folder is '
                        'named after the SOURCE dataset)' % prior_path(args.dataset))
    src = read_list(list_path(args.dataset, args.split), args.data_root, need_labels=True)
    tgt = read_list(list_path(args.dataset_tgt, args.split_tgt), args.data_root_tgt)
    smallest = min(int(len(src) * float(r['src_port'])) for r in rounds) + len(tgt)
    if smallest < args.batch_images:
        raise FlagError('--batch-images %d: a round trains on only %d images (source portion of %d + %d '
                        'targets); lower it or raise --init-src-port' % (args.batch_images, smallest, len(src),
                                                                         len(tgt)))


def val_settings(args):
    """What decides a round's pseudo-labels (``--phase val``)."""
    from issegm.engine.postprocess import resolved_mode
    from issegm.method.prior import prior_path
    found = {'--weights sha256': _digest(args.weights), '--model': args.model, '--dataset': args.dataset,
             '--dataset-tgt': args.dataset_tgt, '--split-tgt': args.split_tgt,
             '--data-root-tgt': os.path.abspath(args.data_root_tgt or ''),
             'target list sha256': _digest(list_path(args.dataset_tgt, args.split_tgt)),
             '--test-scales': str(args.test_scales), '--test-flipping': bool(args.test_flipping),
             '--test-steps': int(getattr(args, 'test_steps', 1)),
             '--init-tgt-port': float(args.init_tgt_port), '--kc-policy': args.kc_policy,
             '--with-prior': args.with_prior, '--mine-id-number': int(args.mine_id_number),
             '--mine-thresh': float(args.mine_thresh),
             '--lr-weight-ent': float(getattr(args, 'lr_weight_ent', 0.) or 0.)}
    if args.with_prior == 'True':
        found['prior sha256'] = _digest(prior_path(args.dataset))
    mode = resolved_mode(getattr(args, 'postprocess', 'auto'), args.gpus)
    if mode != 'pil':
        # The device path's float32 products differ from PIL's in the last bits. Recorded only
        # off the reference's path, so rounds recorded before the flag existed stay valid.
        found['--postprocess'] = mode
    return found


def _crst(args):
    """The CRST flags in force ('' for CBST)."""
    from issegm.phases.cli import flag_argv
    return ' '.join(flag_argv(args))


def train_settings(args, devices, pseudo_label_marker):
    """What decides a round's training (``--phase train``); ``pseudo_label_marker`` ties it to its labels."""
    lr_type = args.lr_type or 'fixed'
    found = {'--weights sha256': _digest(args.weights), '--model': args.model, '--dataset': args.dataset,
             '--split': args.split, '--data-root': os.path.abspath(args.data_root or ''),
             'source list sha256': _digest(list_path(args.dataset, args.split)),
             '--data-root-tgt': os.path.abspath(args.data_root_tgt or ''),
             'pseudo-labels': _digest(pseudo_label_marker),
             '--init-src-port': float(args.init_src_port), '--seed-int': int(args.seed_int),
             '--batch-images': args.batch_images, '--crop-size': args.crop_size,
             '--origin-size': args.origin_size, '--origin-size-tgt': args.origin_size_tgt,
             '--scale-rate-range': args.scale_rate_range, '--lr-type': lr_type, '--base-lr': args.base_lr,
             '--weight-decay': args.weight_decay, '--from-epoch': int(args.from_epoch),
             '--mine-port': float(args.mine_port), 'devices': devices, 'CRST': _crst(args)}
    if lr_type == 'step':
        found['--lr-steps'] = args.lr_steps
    if lr_type in ('linear', 'poly'):
        found['--to-epoch'] = args.to_epoch
    if devices > 1:
        found['--kvstore'] = args.kvstore
    return found


def rounds_settings(args, devices):
    """What decides a whole ``solve_AO`` run (``--num-round`` may grow: earlier rounds stay the same)."""
    found = {'--weights sha256': _digest(args.weights), 'devices': devices, 'CRST': _crst(args),
             'source list sha256': _digest(list_path(args.dataset, args.split)),
             'target list sha256': _digest(list_path(args.dataset_tgt, args.split_tgt))}
    for dest in ('dataset', 'dataset_tgt', 'split', 'split_tgt', 'model', 'batch_images', 'crop_size',
                 'origin_size', 'origin_size_tgt', 'init_tgt_port', 'init_src_port', 'max_tgt_port',
                 'max_src_port', 'step_tgt_port', 'step_src_port', 'epr', 'seed_int', 'mine_port',
                 'mine_id_number', 'mine_thresh', 'with_prior', 'test_scales', 'scale_rate_range', 'base_lr',
                 'source_sample_policy', 'kc_policy'):
        found[flag_name(dest)] = getattr(args, dest)
    for dest in ('data_root', 'data_root_tgt'):
        found[flag_name(dest)] = os.path.abspath(getattr(args, dest))
    if args.with_prior == 'True':
        from issegm.method.prior import prior_path
        found['prior sha256'] = _digest(prior_path(args.dataset))
    return found

