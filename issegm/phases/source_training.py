"""Source training: the body of ``train_src.py`` (docs/behaviour.md sections 1, 2, 11).

The loop (SGD, lr policies, per-epoch atomic checkpoints
``{output}/{model}_ep-%04d.params``, resume) is :func:`issegm.engine.training.train`;
the data iterator is :class:`issegm.engine.iterator.FileIter`. Starting from the ImageNet
classifier (``ilsvrc-cls_*``) the body is loaded and the FCN head initialised.
"""
import logging
import os

from issegm.errors import FlagError

logger = logging.getLogger(__name__)

__all__ = ['resolve_args', 'make_dataiter', 'settings', 'run']


def resolve_args(args):
    """The reference's derived defaults and checks.

    * ``--model`` omitted: the weights file name before ``_ep-``;
    * ``--from-epoch`` omitted: the weights' epoch when the weights' label is
      ``--model`` (continuing a run), else 0 (docs/behaviour.md section 2);
    * ``--stop-epoch`` omitted: ``--to-epoch``; ``--lr-type`` omitted: fixed;
      ``--base-lr`` omitted: 0.1; ``--output`` omitted: ``output``;
    * ``--log-file`` omitted: ``{model}.log``; ``--data-root``: ``data/{dataset}``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``train_src.py`` arguments, modified in place.

    Returns
    -------
    tuple
        ``(args, model_spec)``.

    Raises
    ------
    FlagError
        One line for a bad or missing flag.
    """
    from issegm.phases.cli import check_flags
    from issegm.engine.model import label_from_weights, parse_label
    from issegm.engine.training import LR_POLICIES
    check_flags(args)
    if args.phase != 'train':
        raise FlagError('train_src.py runs --phase train; evaluate with issegm/evaluate.py')
    if args.output is None:
        args.output = 'output'
    try:
        if args.weights is not None and args.model is None:
            args.model = label_from_weights(args.weights)
        if args.model is None:
            raise FlagError('Missing argument: --model (or --weights named {label}_ep-NNNN.params)')
        spec = parse_label(args.model)
        if args.from_epoch is None:
            args.from_epoch = _start_epoch(args.weights, spec, args.model)
    except ValueError as exc:
        raise FlagError(str(exc))
    if args.to_epoch is None:
        raise FlagError('--to-epoch is required (the number of epochs of the whole schedule)')
    if args.stop_epoch is None:
        args.stop_epoch = args.to_epoch
    if not args.from_epoch < args.stop_epoch <= args.to_epoch:
        raise FlagError('need --from-epoch < --stop-epoch <= --to-epoch, got %d, %d, %d'
                            % (args.from_epoch, args.stop_epoch, args.to_epoch))
    args.lr_type = args.lr_type or 'fixed'
    if args.lr_type not in LR_POLICIES:
        raise FlagError('--lr-type %s unknown; choose from %s' % (args.lr_type, ', '.join(LR_POLICIES)))
    if args.base_lr is None:
        args.base_lr = 0.1
    args.lr_steps_list = []
    if args.lr_type == 'step':
        try:
            args.lr_steps_list = [int(v) for v in (args.lr_steps or '').split(',') if v.strip()]
        except ValueError:
            raise FlagError('--lr-steps takes comma-separated update counts, got %r' % args.lr_steps)
        if not args.lr_steps_list:
            raise FlagError('--lr-type step needs --lr-steps, e.g. 20000,40000')
    from issegm.cluster.worker import training_kvstore
    from issegm.errors import DistError
    try:
        args.kvstore = training_kvstore(args.kvstore)
    except DistError as exc:
        raise FlagError(str(exc))
    if args.prefetcher not in ('thread', 'process'):
        raise FlagError('--prefetcher must be thread or process, got %r' % args.prefetcher)
    if args.dataset is None:
        args.dataset = spec.dataset
    if args.log_file is None:
        args.log_file = '%s.log' % args.model
    if args.data_root is None:
        args.data_root = os.path.join('data', args.dataset)
    if args.batch_images is None or args.crop_size is None:
        raise FlagError('--batch-images and --crop-size are required')
    try:
        lo, hi = (float(v) for v in args.scale_rate_range.split(','))
    except ValueError:
        raise FlagError('--scale-rate-range takes lo,hi such as 0.7,1.3, got %r' % args.scale_rate_range)
    args.scale_rate = (lo, hi)
    if args.weights is not None and not os.path.isfile(args.weights):
        raise FlagError('weights not found: %s' % args.weights)
    return args, spec


def _start_epoch(weights, spec, model):
    """:func:`issegm.engine.model.start_epoch`; when the name does not tell, a file that does not fit the
    network says so before ``--from-epoch`` is asked for."""
    from issegm.engine.model import load_weights, start_epoch
    try:
        return start_epoch(weights, model)
    except ValueError:
        if weights is not None and os.path.isfile(weights):
            load_weights(spec, weights)
        raise


def make_dataiter(args, spec, info):
    """The reference's source-training iterator (docs/behaviour.md section 5) over ``--split``.

    Images are cached unless ``--cache-images 0`` (the reference caches in
    training by default). A worker of a distributed job reads its part of
    every global batch of ``--batch-images``. The list's files are checked
    first (:func:`issegm.phases.preflight.check_training_list`).

    Parameters
    ----------
    args : argparse.Namespace
        The resolved arguments.
    spec : issegm.engine.model.ModelLabel
        The model's label.
    info : issegm.storage.datasets.DatasetInfo
        The dataset.

    Returns
    -------
    issegm.engine.iterator.FileIter
        The iterator.
    """
    from issegm.cluster import worker
    from issegm.engine.iterator import FileIter
    from issegm.phases.preflight import check_training_list
    from issegm.storage.datasets import list_path, read_list
    listed = list_path(info.name, args.split)
    # The content of every listed file, before the first step (minutes, not hours, in).
    check_training_list(listed, read_list(listed, args.data_root, need_labels=True), args.data_root)
    from issegm.engine.model import preprocessing
    cache = True if args.cache_images is None else bool(args.cache_images)
    return FileIter(dataset=info.name, split=args.split, data_root=args.data_root, sampler='random',
                    batch_images=args.batch_images, crop_size=args.crop_size,
                    origin_size=args.origin_size, scale_rate_range=args.scale_rate,
                    feat_stride=spec.stride, label_stride=spec.stride,
                    prefetch_threads=args.prefetch_threads, prefetcher_type=args.prefetcher,
                    cache_images=cache, num_parts=worker.num_workers(), part_index=worker.rank(),
                    normalizer=preprocessing(spec))


def settings(args, devices):
    """What decides the numbers of this run (``{output}/run.json``; see :mod:`issegm.storage.run_guard`).

    Left out because they change no number: threads, workers, caching, logs,
    ``--stop-epoch``, ``--to-epoch`` under a ``fixed`` or ``step`` rate,
    ``--backward-do-mirror``, and the kvstore with one device.

    Parameters
    ----------
    args : argparse.Namespace
        The resolved arguments.
    devices : int
        Devices of the whole job.

    Returns
    -------
    dict
        The settings by flag.
    """
    from issegm.storage.datasets import list_path
    from issegm.storage.run_guard import file_digest
    listed = list_path(args.dataset, args.split)
    found = {
        '--model': args.model, '--dataset': args.dataset, '--split': args.split,
        '--data-root': os.path.abspath(args.data_root),
        'list sha256': file_digest(listed) if os.path.isfile(listed) else None,
        '--weights sha256': file_digest(args.weights) if args.weights else None,
        '--batch-images': args.batch_images, '--crop-size': args.crop_size, '--origin-size': args.origin_size,
        '--scale-rate-range': list(args.scale_rate), '--lr-type': args.lr_type, '--base-lr': args.base_lr,
        '--weight-decay': args.weight_decay, '--from-epoch': args.from_epoch, 'devices': devices}
    if args.lr_type == 'step':
        found['--lr-steps'] = args.lr_steps_list
    if args.lr_type in ('linear', 'poly'):
        found['--to-epoch'] = args.to_epoch
    if devices > 1:
        found['--kvstore'] = args.kvstore
    return found


def run(args, dataiter=None, batch_end_callback=None):
    """Resolve arguments, build the iterator, train.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``train_src.py`` arguments.
    dataiter : mx.io.DataIter, optional
        Replaces the :class:`issegm.engine.iterator.FileIter` (tests).
    batch_end_callback : callable, optional
        ``batch_end_callback(epoch, nbatch, loss, lr)``, passed to the loop.

    Returns
    -------
    list of str
        The checkpoint paths.
    """
    from issegm.cluster import worker
    from issegm.storage.datasets import dataset_for_model
    from issegm.errors import DataError, FlagError
    from issegm.storage.run_guard import settle
    from issegm.engine.training import last_checkpoint, remove_checkpoints
    from util.device import get_contexts
    args, spec = resolve_args(args)
    try:
        info = dataset_for_model(args.dataset, args.model, spec.classes)
    except DataError as exc:
        raise FlagError(str(exc))
    from issegm.phases.preflight import warn_large_crop
    warn_large_crop(args.crop_size, args.origin_size or max(info.max_shape), args.scale_rate_range, 'training')
    contexts = get_contexts(args.gpus)
    worker.init(args.kvstore)  # under the launcher: join the job, learn this worker's rank
    prefix = os.path.join(args.output, '%s_ep' % args.model)
    devices = len(contexts) * worker.num_workers()  # of the whole job
    with worker.locked(args.output):
        worker.root_only(settle, args.output, 'train_src', settings(args, devices), restart=args.restart,
                              discard=lambda: remove_checkpoints(prefix), what='checkpoints of %s' % args.model,
                              has_work=lambda: last_checkpoint(prefix) is not None)
        return _train_locked(args, spec, info, contexts, prefix, dataiter, batch_end_callback)


def _train_locked(args, spec, info, contexts, prefix, dataiter, batch_end_callback):
    from issegm.cluster import worker
    from issegm.engine.training import train
    if dataiter is None:
        dataiter = make_dataiter(args, spec, info)
    worker.set_logger(args.output, args.log_file, args.debug)
    logger.info('start with arguments %s', args)
    logger.info('and model specs %s', dict(spec._asdict()))
    return train(args.model, dataiter, prefix, weights=args.weights, contexts=contexts,
                 from_epoch=args.from_epoch, to_epoch=args.to_epoch, stop_epoch=args.stop_epoch,
                 base_lr=args.base_lr, lr_policy=args.lr_type, lr_steps=args.lr_steps_list,
                 weight_decay=args.weight_decay, kvstore=args.kvstore,
                 backward_do_mirror=args.backward_do_mirror, batch_end_callback=batch_end_callback,
                 epoch_end_callback=_health_callback(args.output) if worker.is_root() else None)


def _health_callback(folder):
    """The per-epoch entry of ``{folder}/health.json`` (an observer: a failure only warns)."""
    def record(entry):
        from issegm.report.observe import record_epoch
        try:
            record_epoch(folder, entry, kind='source_training')
        except Exception as exc:
            logger.warning('health record of epoch %d not written (%s)', entry['epoch'], exc)
    return record
