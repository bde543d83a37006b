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
import logging
import os

from issegm.phases.cli import check_flags
from issegm.errors import FlagError
from issegm.flags import flag_name
from issegm.storage.datasets import (check_content, count_duplicates, get_dataset, list_path, read_list,
                                     target_dataset)
from issegm.storage.run_guard import file_digest

__all__ = ['check_rounds', 'check_training_list', 'check_scale_memory', 'warn_large_crop', 'val_settings',
           'train_settings', 'rounds_settings']

logger = logging.getLogger(__name__)


def _digest(path):
    return file_digest(path) if path and os.path.isfile(path) else None


def check_rounds(args, rounds):
    """Everything the whole ``solve_AO`` run will use, checked before round 0.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``solve_AO.py`` arguments.
    rounds : list of dict
        From :func:`issegm.phases.rounds.round_schedule`.

    Raises
    ------
    ValueError
        Subclasses (:class:`FlagError`, :class:`DataError`) naming the flag or file.
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
    target = target_dataset(args.dataset, args.dataset_tgt, spec.classes)
    scale = single_scale(args.test_scales)
    get_contexts(args.gpus)
    if not os.path.isfile(args.weights):
        raise FlagError('--weights %s: file not found' % args.weights)
    if args.with_prior == 'True' and not os.path.isfile(prior_path(args.dataset)):
        raise FlagError('--with-prior True needs %s (build it with issegm/spatial_prior.py; the folder is '
                        'named after the SOURCE dataset)' % prior_path(args.dataset))
    src = read_list(list_path(args.dataset, args.split), args.data_root, need_labels=True)
    tgt = read_list(list_path(args.dataset_tgt, args.split_tgt), args.data_root_tgt)
    check_training_list(list_path(args.dataset, args.split), src, args.data_root)
    check_training_list(list_path(args.dataset_tgt, args.split_tgt), tgt, args.data_root_tgt)
    check_scale_memory([scale], target.num_classes, target.max_shape)
    warn_large_crop(args.crop_size, args.origin_size or max(source.max_shape), args.scale_rate_range, 'source')
    warn_large_crop(args.crop_size, args.origin_size_tgt or max(target.max_shape), args.scale_rate_range, 'target')
    smallest = min(int(len(src) * float(r['src_port'])) for r in rounds) + len(tgt)
    if smallest < args.batch_images:
        raise FlagError('--batch-images %d: a round trains on only %d images (source portion of %d + %d '
                        'targets); lower it or raise --init-src-port' % (args.batch_images, smallest, len(src),
                                                                         len(tgt)))


def check_training_list(listed, items, data_root):
    """A training list's content, before the first step.

    Repeated entries are a warning with their count (they weigh twice, as in
    the reference).

    Parameters
    ----------
    listed : str
        The list file, for messages.
    items : list of tuple
        Its ``(image, label)`` entries.
    data_root : str
        Root of the entries' paths.

    Raises
    ------
    DataError
        One line for damaged files (:func:`issegm.storage.datasets.check_content`).
    """
    repeats, first = count_duplicates(items)
    if repeats:
        logger.warning('%s: %d entries repeat an earlier image (the first: %s); they are drawn more often',
                       listed, repeats, first)
    check_content(listed, items, data_root)


def check_scale_memory(scales, num_classes, max_shape):
    """Refuse, in one :class:`FlagError` line, ``--test-scales`` whose class maps cannot fit in memory.

    Parameters
    ----------
    scales : list of int
        The longer sides images are resized to.
    num_classes : int
        The maps per image.
    max_shape : tuple of int
        ``(h, w)`` of the dataset's images: their aspect ratio at the largest scale.

    Notes
    -----
    The estimate is three float32 maps of ``num_classes x H x W`` at the
    largest scale (a scale's maps, their sum over scales, a flipped copy);
    the network's own activations come on top, so passing says little, but
    failing means the run could never finish.
    """
    from util.memory import require_memory
    longest = max(scales)
    h, w = sorted(max_shape)
    side = int(round(longest * h / float(w)))
    hw = (side, longest) if max_shape[0] <= max_shape[1] else (longest, side)
    try:
        require_memory(3 * 4 * num_classes * hw[0] * hw[1],
                       '--test-scales %d: three float32 maps of %d classes at %dx%d' % ((longest, num_classes) + hw),
                       'lower --test-scales')
    except ValueError as exc:
        raise FlagError(str(exc))


def warn_large_crop(crop_size, origin_size, scale_rate_range, which):
    """A warning with the figures when ``--crop-size`` exceeds every (rescaled) ``which`` image.

    Images are rescaled so that their longer side is at most ``origin_size x``
    the upper ``--scale-rate-range``; a larger crop is mostly padding, which
    counts for nothing.

    Parameters
    ----------
    crop_size : int or None
        ``--crop-size``.
    origin_size : int
        The images' origin size.
    scale_rate_range : str
        ``--scale-rate-range``, comma-separated.
    which : str
        ``source`` or ``target``, for the message.

    Returns
    -------
    str or None
        The warning text (or None).
    """
    hi = max(float(v) for v in str(scale_rate_range).split(','))
    longest = int(hi * origin_size)
    if crop_size is None or crop_size <= longest:
        return None
    text = ('--crop-size %d is larger than every %s image: their longer side is at most %d after rescaling '
            '(%d x %g, --origin-size and --scale-rate-range); the rest of each crop is padding that counts for '
            'nothing' % (crop_size, which, longest, origin_size, hi))
    logger.warning('%s', text)
    return text


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
    """What decides a round's training (``--phase train``).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``solve_ST.py`` arguments.
    devices : int
        Devices of the whole job.
    pseudo_label_marker : str
        The round's pseudo-label marker, whose digest ties the settings to its labels.

    Returns
    -------
    dict
        The settings by flag.
    """
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

