"""Command-line plumbing shared by the four scripts.

The scripts accept every flag of the reference with its name, meaning and
default. The flags they share are declared once, in :data:`FLAGS`; a script
lists the ones it takes, in its reference order, changing a default where the
reference script had another (:func:`add_flags`).
"""
import os
import sys

__all__ = ['FLAGS', 'add_flags', 'parse', 'apply_env_switches', 'script_main']

FLAGS = {
    '--dataset': dict(default=None, help='The (source) dataset, e.g. gta, synthia, cityscapes, cityscapes16.'),
    '--dataset-tgt': dict(default=None, help='The target dataset, e.g. cityscapes.'),
    '--split': dict(default='train', help='The (source) split, e.g. train, val.'),
    '--split-tgt': dict(default='val', help='The target split, e.g. train.'),
    '--data-root': dict(default=None, help='The root data dir of the (source) dataset (default data/{dataset}).'),
    '--data-root-tgt': dict(default=None, help='The root data dir of the target dataset.'),
    '--output': dict(default=None, help='The output dir (default: the folder of --weights in val, '
                                        '"output" in train).'),
    '--model': dict(default=None, help='The unique label of this model (default: the weights name before _ep-).'),
    '--weights': dict(default=None, help='The path of a pretrained model.'),
    '--gpus': dict(default='0', help='The devices to use, e.g. 0,1,2,3 (the CPU, after a warning, if none).'),
    '--batch-images': dict(default=None, type=int, help='The number of images per batch.'),
    '--crop-size': dict(default=None, type=int, help='The size of network input during training.'),
    '--origin-size': dict(default=2048, type=int, help='The size of (source) images to crop from.'),
    '--origin-size-tgt': dict(default=2048, type=int, help='The size of target images to crop from.'),
    '--scale-rate-range': dict(default='0.7,1.3', help='The range of rescaling, e.g. 0.7,1.3.'),
    '--lr-type': dict(default=None, help='The learning rate policy: fixed (default), step, linear or poly.'),
    '--base-lr': dict(default=None, type=float, help='The learning rate to start from.'),
    '--lr-steps': dict(default=None, help='With --lr-type step: update counts at which the rate drops 10x.'),
    '--weight-decay': dict(default=0.0005, type=float, help='The weight decay in SGD.'),
    '--from-epoch': dict(default=None, type=int, help='The epoch to start from.'),
    '--stop-epoch': dict(default=None, type=int, help='The epoch to stop after (default --to-epoch).'),
    '--to-epoch': dict(default=None, type=int, help='The epoch the learning-rate schedule ends at.'),
    '--init-tgt-port': dict(default=0.3, type=float, help='The portion of target pixels selected as '
                                                          'pseudo-labels (per class with cb).'),
    '--init-src-port': dict(default=0.3, type=float, help='The portion of source images selected.'),
    '--seed-int': dict(default=0, type=int, help='The random seed of the source selection.'),
    '--mine-port': dict(default=0.5, type=float, help='The probability of a small-class crop.'),
    '--mine-id-number': dict(default=3, type=int, help='The number of rarest classes to mine.'),
    '--mine-thresh': dict(default=0.001, type=float, help='Classes with a smaller pixel share are mined first.'),
    '--phase': dict(default='train', help='Phase of this call, e.g. train, val.'),
    '--with-prior': dict(default='False', help='Multiply by the spatial prior: True or False.'),
    '--kc-policy': dict(default='cb', help='Thresholds: cb (class-balanced, CBST) or global (ST).'),
    '--test-scales': dict(default=None, help='Lengths of the longer side to resize an image into, e.g. 2048; '
                                             'several (1536,2048,2560) average the probabilities.'),
    '--test-flipping': dict(action='store_true', help='Average the predictions of the image and its mirror.'),
    '--test-steps': dict(default=1, type=int, help='Sub-stride prediction: steps x steps shifted forwards '
                                                    'interleaved per image (a divisor of the stride).'),
    '--save-predictions': dict(action='store_true', help='Accepted for compatibility; no effect.'),
    '--no-save-results': dict(dest='save_results', action='store_false', default=True,
                              help='Do not save the predicted label maps.'),
    '--kvstore': dict(default='local', help='The type of kvstore: local, device; dist_sync or dist_device_sync '
                                            'under python -m issegm.launch (where local/device become them).'),
    '--prefetch-threads': dict(default=1, type=int, help='The number of workers reading data.'),
    '--prefetcher': dict(default='thread', help='The type of the data workers: thread or process.'),
    '--cache-images': dict(default=None, type=int, help='Keep encoded images in memory: 0 or 1.'),
    '--log-file': dict(default=None, help='The log file name in --output.'),
    '--check-start': dict(default=1, type=int, help='Accepted for compatibility; every epoch is saved.'),
    '--check-step': dict(default=4, type=int, help='Accepted for compatibility; every epoch is saved.'),
    '--debug': dict(action='store_true', help='Log debug info; run MXNet with its naive engine.'),
    '--backward-do-mirror': dict(action='store_true', help='Recompute in backward: less GPU memory.'),
    '--no-cudnn': dict(dest='no_mxnet_cudnn_autotune_default', action='store_true',
                       help='Turn off cuDNN autotuning.'),
}


def add_flags(parser, names, **changes):
    """Add the shared ``names`` to ``parser``; ``changes`` maps a flag's dest to its own default."""
    for name in names:
        spec = dict(FLAGS[name])
        dest = spec.get('dest', name.lstrip('-').replace('-', '_'))
        if dest in changes:
            spec['default'] = changes.pop(dest)
        parser.add_argument(name, **spec)
    if changes:
        raise ValueError('no such flags: %s' % ', '.join(sorted(changes)))
    return parser


def apply_env_switches(args):
    """MXNet switches the reference sets from flags; they must precede any MXNet work."""
    if getattr(args, 'debug', False):
        os.environ['MXNET_ENGINE_TYPE'] = 'NaiveEngine'
    if getattr(args, 'backward_do_mirror', False):
        os.environ['MXNET_BACKWARD_DO_MIRROR'] = '1'
    if getattr(args, 'no_mxnet_cudnn_autotune_default', False):
        os.environ['MXNET_CUDNN_AUTOTUNE_DEFAULT'] = '0'
    return args


def parse(parser, argv=None):
    """Parse ``argv``; with no arguments print the help and return None (the script exits 1)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        parser.print_help()
        return None
    return apply_env_switches(parser.parse_args(argv))


def script_main(prog, run, args, errors=()):
    """Call ``run(args)``; report the anticipated ``errors`` as one line and exit code 2.

    ``args`` None (no arguments: help was printed) gives exit code 1. A
    worker of a distributed job that fails ends at once (:func:`issegm.distributed.abort`):
    a normal exit would wait for the other workers in ps-lite's last barrier.
    """
    from issegm import distributed
    if args is None:
        return 1
    try:
        result = run(args)
    except errors as exc:
        print('%s: error: %s' % (prog, exc), file=sys.stderr)
        result = 2
    except BaseException:
        if distributed.is_open():
            import traceback
            traceback.print_exc()
            distributed.abort(1)
        raise
    code = result if isinstance(result, int) else 0
    if code and distributed.is_open():
        distributed.abort(code)
    return code
