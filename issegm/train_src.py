"""Train a segmentation network on the source domain (spec sections 1, 2, 11).

    export PYTHONPATH=PYTHONPATH:./
    python issegm/train_src.py --gpus 0,1,2,3 --split train --data-root DATA_ROOT_GTA \\
        --output gta_train --model gta_rna-a1_cls19_s8 --batch-images 16 --crop-size 500 \\
        --scale-rate-range 0.7,1.3 --weights models/ilsvrc-cls_rna-a1_cls1000_ep-0001.params \\
        --lr-type fixed --base-lr 0.0016 --to-epoch 30 --kvstore local --prefetch-threads 16 \\
        --prefetcher process --cache-images 0 --backward-do-mirror --origin-size 1914

Every flag of the reference ``train_src.py`` is accepted with its name and
default. The loop (SGD, lr policies, per-epoch atomic checkpoints
``{output}/{model}_ep-%04d.params``, resume) is :func:`issegm.training.train`;
the data iterator is :class:`issegm.data.FileIter`. Starting from the ImageNet
classifier (``ilsvrc-cls_*``) the body is loaded and the FCN head initialised.
"""
import argparse
import logging
import os
import sys

if __package__ in (None, ''):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

logger = logging.getLogger('issegm.train_src')


class TrainSrcError(ValueError):
    """Bad arguments found before any work: reported as one line."""


def build_parser():
    p = argparse.ArgumentParser(description='Train an FCRN on the source domain.')
    p.add_argument('--gpus', default='0', help='The devices to use, e.g. 0,1,2,3 (CPU if none)')
    p.add_argument('--dataset', default=None, help='The dataset to use, e.g. gta, synthia (default: from --model).')
    p.add_argument('--split', default='train', help='The split to use, e.g. train, trainval.')
    p.add_argument('--data-root', dest='data_root', default=None, type=str,
                   help='The root data dir (default data/{dataset}).')
    p.add_argument('--output', default=None, help='The output dir (default output).')
    p.add_argument('--model', default=None,
                   help='The unique label of this model (default: the weights name before _ep-).')
    p.add_argument('--batch-images', dest='batch_images', default=None, type=int,
                   help='The number of images per batch.')
    p.add_argument('--crop-size', dest='crop_size', default=None, type=int,
                   help='The size of network input during training.')
    p.add_argument('--origin-size', dest='origin_size', default=None, type=int,
                   help='The size of images to crop from.')
    p.add_argument('--scale-rate-range', dest='scale_rate_range', default='0.7,1.3', type=str,
                   help='The range of rescaling')
    p.add_argument('--weights', default=None, help='The path of a pretrained model.')
    #
    p.add_argument('--lr-type', dest='lr_type', default=None, type=str,
                   help='The learning rate scheduler: fixed (default) / step / linear / poly')
    p.add_argument('--base-lr', dest='base_lr', default=None, type=float,
                   help='The lr to start from (default 0.1).')
    p.add_argument('--lr-steps', dest='lr_steps', default=None, type=str,
                   help='The update counts at which step reduces the lr by 10, e.g. 20000,40000.')
    p.add_argument('--weight-decay', dest='weight_decay', default=0.0005, type=float,
                   help='The weight decay in sgd.')
    #
    p.add_argument('--from-epoch', dest='from_epoch', default=None, type=int, help='The epoch to start from.')
    p.add_argument('--stop-epoch', dest='stop_epoch', default=None, type=int, help='The index of epoch to stop.')
    p.add_argument('--to-epoch', dest='to_epoch', default=None, type=int, help='The number of epochs to run.')
    #
    p.add_argument('--phase', default='train', type=str, help='Phase of this call (train).')
    # for testing (accepted as in the reference; evaluation is issegm/evaluate.py)
    p.add_argument('--test-scales', dest='test_scales', default=None, type=str,
                   help='Unused in training (use evaluate.py).')
    p.add_argument('--test-flipping', dest='test_flipping', default=False, action='store_true',
                   help='Unused in training (use evaluate.py).')
    p.add_argument('--test-steps', dest='test_steps', default=1, type=int, help='Unused in training.')
    p.add_argument('--save-predictions', dest='save_predictions', default=False, action='store_true',
                   help='Unused in training.')
    p.add_argument('--no-save-results', dest='save_results', default=True, action='store_false',
                   help='Unused in training.')
    #
    p.add_argument('--kvstore', dest='kvstore', default='device', type=str,
                   help='The type of kvstore, e.g., local/device.')
    p.add_argument('--prefetch-threads', dest='prefetch_threads', default=1, type=int,
                   help='The number of threads to fetch data.')
    p.add_argument('--prefetcher', dest='prefetcher', default='thread', type=str,
                   help='The type of prefetcher, e.g., process/thread.')
    p.add_argument('--cache-images', dest='cache_images', default=None, type=int,
                   help='If cache images, e.g., 0/1')
    p.add_argument('--log-file', dest='log_file', default=None, type=str)
    p.add_argument('--check-start', dest='check_start', default=1, type=int,
                   help='The first epoch to snapshot (the reference ignores it: every epoch is saved).')
    p.add_argument('--check-step', dest='check_step', default=4, type=int,
                   help='The steps between adjacent snapshots (ignored likewise).')
    p.add_argument('--debug', default=False, action='store_true', help='True means logging debug info.')
    p.add_argument('--backward-do-mirror', dest='backward_do_mirror', default=False, action='store_true',
                   help='True means less gpu memory usage.')
    p.add_argument('--no-cudnn', dest='no_mxnet_cudnn_autotune_default', default=False, action='store_true',
                   help='Turn off cuDNN autotuning.')
    return p


def parse_args(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        parser.print_help()
        sys.exit(1)
    args = parser.parse_args(argv)
    # Environment switches must be set before MXNet runs anything (reference).
    if args.debug:
        os.environ['MXNET_ENGINE_TYPE'] = 'NaiveEngine'
    if args.backward_do_mirror:
        os.environ['MXNET_BACKWARD_DO_MIRROR'] = '1'
    if args.no_mxnet_cudnn_autotune_default:
        os.environ['MXNET_CUDNN_AUTOTUNE_DEFAULT'] = '0'
    return args


def resolve_args(args):
    """The reference's derived defaults and checks; returns ``(args, model_spec)``.

    * ``--model`` omitted: the weights file name before ``_ep-``;
    * ``--from-epoch`` omitted: the weights' epoch when the weights' label is
      ``--model`` (continuing a run), else 0 (spec section 2);
    * ``--stop-epoch`` omitted: ``--to-epoch``; ``--lr-type`` omitted: fixed;
      ``--base-lr`` omitted: 0.1; ``--output`` omitted: ``output``;
    * ``--log-file`` omitted: ``{model}.log``; ``--data-root``: ``data/{dataset}``.
    """
    from issegm.model import epoch_from_weights, label_from_weights, parse_label
    from issegm.training import LR_POLICIES
    if args.phase != 'train':
        raise TrainSrcError('train_src.py runs --phase train; evaluate with issegm/evaluate.py')
    if args.output is None:
        args.output = 'output'
    try:
        if args.weights is not None and args.model is None:
            args.model = label_from_weights(args.weights)
        if args.model is None:
            raise TrainSrcError('Missing argument: --model (or --weights named {label}_ep-NNNN.params)')
        spec = parse_label(args.model)
        if args.weights is not None and args.from_epoch is None:
            if label_from_weights(args.weights) == args.model:
                args.from_epoch = epoch_from_weights(args.weights)
    except ValueError as exc:
        raise TrainSrcError(str(exc))
    if args.from_epoch is None:
        args.from_epoch = 0
    if args.to_epoch is None:
        raise TrainSrcError('--to-epoch is required (the number of epochs of the whole schedule)')
    if args.stop_epoch is None:
        args.stop_epoch = args.to_epoch
    if not args.from_epoch < args.stop_epoch <= args.to_epoch:
        raise TrainSrcError('need --from-epoch < --stop-epoch <= --to-epoch, got %d, %d, %d'
                            % (args.from_epoch, args.stop_epoch, args.to_epoch))
    args.lr_type = args.lr_type or 'fixed'
    if args.lr_type not in LR_POLICIES:
        raise TrainSrcError('--lr-type %s unknown; choose from %s' % (args.lr_type, ', '.join(LR_POLICIES)))
    if args.base_lr is None:
        args.base_lr = 0.1
    args.lr_steps_list = []
    if args.lr_type == 'step':
        try:
            args.lr_steps_list = [int(v) for v in (args.lr_steps or '').split(',') if v.strip()]
        except ValueError:
            raise TrainSrcError('--lr-steps takes comma-separated update counts, got %r' % args.lr_steps)
        if not args.lr_steps_list:
            raise TrainSrcError('--lr-type step needs --lr-steps, e.g. 20000,40000')
    if args.kvstore not in ('local', 'device'):
        raise TrainSrcError('--kvstore must be local or device, got %r' % args.kvstore)
    if args.prefetcher not in ('thread', 'process'):
        raise TrainSrcError('--prefetcher must be thread or process, got %r' % args.prefetcher)
    if args.dataset is None:
        args.dataset = spec.dataset
    if args.log_file is None:
        args.log_file = '%s.log' % args.model
    if args.data_root is None:
        args.data_root = os.path.join('data', args.dataset)
    if args.batch_images is None or args.crop_size is None:
        raise TrainSrcError('--batch-images and --crop-size are required')
    try:
        lo, hi = (float(v) for v in args.scale_rate_range.split(','))
    except ValueError:
        raise TrainSrcError('--scale-rate-range takes lo,hi such as 0.7,1.3, got %r' % args.scale_rate_range)
    args.scale_rate = (lo, hi)
    if args.weights is not None and not os.path.isfile(args.weights):
        raise TrainSrcError('weights not found: %s' % args.weights)
    return args, spec


def make_dataiter(args, spec, info):
    """The reference's source-training iterator (spec section 5) over ``--split``.

    Images are cached unless ``--cache-images 0`` (the reference caches in
    training by default).
    """
    from issegm.data import FileIter
    cache = True if args.cache_images is None else bool(args.cache_images)
    return FileIter(dataset=info.name, split=args.split, data_root=args.data_root, sampler='random',
                    batch_images=args.batch_images, crop_size=args.crop_size,
                    origin_size=args.origin_size, scale_rate_range=args.scale_rate,
                    feat_stride=spec.stride, label_stride=spec.stride,
                    prefetch_threads=args.prefetch_threads, prefetcher_type=args.prefetcher,
                    cache_images=cache)


def setup_logging(output, log_file, debug=False):
    """Console + ``{output}/{log_file}`` for this script and the training loop."""
    from util.io import makedirs
    makedirs(output)
    fmt = logging.Formatter('%(asctime)s %(message)s')
    handlers = [logging.StreamHandler(sys.stderr), logging.FileHandler(os.path.join(output, log_file))]
    for name in ('issegm.train_src', 'issegm.training', 'issegm.model'):
        lg = logging.getLogger(name)
        lg.setLevel(logging.DEBUG if debug else logging.INFO)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        for h in handlers:
            h.setFormatter(fmt)
            lg.addHandler(h)
        lg.propagate = False


def run(args, dataiter=None, batch_end_callback=None):
    """Resolve arguments, build the iterator, train; returns the checkpoint paths.

    ``dataiter`` replaces the :class:`issegm.data.FileIter` (tests);
    ``batch_end_callback(epoch, nbatch, loss, lr)`` is passed to the loop.
    """
    from issegm.datasets import DataError, get_dataset
    from issegm.training import train
    from util.device import get_contexts
    args, spec = resolve_args(args)
    try:
        info = get_dataset(args.dataset)
    except DataError as exc:
        raise TrainSrcError(str(exc))
    if spec.classes != info.num_classes:
        raise TrainSrcError('model %s has %d classes but dataset %s has %d'
                            % (args.model, spec.classes, info.name, info.num_classes))
    contexts = get_contexts(args.gpus)
    if dataiter is None:
        dataiter = make_dataiter(args, spec, info)
    setup_logging(args.output, args.log_file, args.debug)
    logger.info('start with arguments %s', args)
    logger.info('and model specs %s', dict(spec._asdict()))
    prefix = os.path.join(args.output, '%s_ep' % args.model)
    return train(args.model, dataiter, prefix, weights=args.weights, contexts=contexts,
                 from_epoch=args.from_epoch, to_epoch=args.to_epoch, stop_epoch=args.stop_epoch,
                 base_lr=args.base_lr, lr_policy=args.lr_type, lr_steps=args.lr_steps_list,
                 weight_decay=args.weight_decay, kvstore=args.kvstore,
                 backward_do_mirror=args.backward_do_mirror, batch_end_callback=batch_end_callback)


def main(argv=None):
    args = parse_args(argv)
    from issegm.datasets import DataError
    from util.mxutil import CheckpointError
    try:
        run(args)
    except (TrainSrcError, CheckpointError, DataError) as exc:
        print('train_src.py: error: %s' % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
