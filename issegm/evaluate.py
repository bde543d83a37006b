"""Evaluate a checkpoint on a labelled split; save predictions (spec sections 1, 9, 11).

    export PYTHONPATH=PYTHONPATH:./
    python issegm/evaluate.py --data-root DATA_ROOT_CITYSCAPES --output val/gta-city \\
        --dataset cityscapes --phase val --weights models/gta_rna-a1_cls19_s8_ep-0000.params \\
        --split val --test-scales 2048 --test-flipping --gpus 0 --no-cudnn

Every flag of the reference ``evaluate.py`` is accepted with its name and
default; the work is in :mod:`issegm.evaluation`.
"""
import argparse
import os
import sys

if __package__ in (None, ''):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_parser():
    parser = argparse.ArgumentParser(description='Evaluate an FCRN checkpoint on a labelled split.')
    parser.add_argument('--gpus', default='0', help='The devices to use, e.g. 0,1,2,3 (CPU if none)')
    parser.add_argument('--dataset', default=None,
                        help='The dataset to use, e.g. cityscapes, cityscapes16, gta, synthia.')
    parser.add_argument('--split', default='train', help='The split to use, e.g. train, val.')
    parser.add_argument('--data-root', dest='data_root', default=None, type=str,
                        help='The root data dir (default data/{dataset}).')
    parser.add_argument('--output', default=None,
                        help='The output dir (default: the folder of --weights for --phase val).')
    parser.add_argument('--model', default=None,
                        help='The unique label of this model (default: the weights name before _ep-).')
    parser.add_argument('--weights', default=None, help='The path of a pretrained model.')
    parser.add_argument('--phase', default='train', type=str,
                        help='Phase of this call: val (predict and score) or test (predict).')
    # for testing
    parser.add_argument('--test-scales', dest='test_scales', default=None, type=str,
                        help='Lengths of the longer side to resize an image into, e.g. 2048; several '
                             '(1536,2048,2560) average the upsampled probabilities.')
    parser.add_argument('--test-flipping', dest='test_flipping', default=False, action='store_true',
                        help='Average predictions of original and flipped images.')
    parser.add_argument('--test-steps', dest='test_steps', default=1, type=int,
                        help='The number of steps to take, for predictions at a higher resolution '
                             '(only 1 is supported).')
    parser.add_argument('--save-predictions', dest='save_predictions', default=False, action='store_true',
                        help='Accepted for compatibility; no effect in evaluation (as in the reference).')
    parser.add_argument('--no-save-results', dest='save_results', default=True, action='store_false',
                        help='Do not save the predicted pixel-wise labels.')
    parser.add_argument('--prefetch-threads', dest='prefetch_threads', default=1, type=int,
                        help='The number of threads to read images ahead.')
    parser.add_argument('--cache-images', dest='cache_images', default=None, type=int,
                        help='Accepted for compatibility (no effect in evaluation).')
    parser.add_argument('--log-file', dest='log_file', default=None, type=str)
    parser.add_argument('--debug', default=False, action='store_true', help='True means logging debug info.')
    parser.add_argument('--no-cudnn', dest='no_mxnet_cudnn_autotune_default', default=False,
                        action='store_true', help='Turn off cuDNN autotuning.')
    return parser


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
    if args.no_mxnet_cudnn_autotune_default:
        os.environ['MXNET_CUDNN_AUTOTUNE_DEFAULT'] = '0'
    return args


def main(argv=None):
    args = parse_args(argv)
    from issegm.evaluation import EvalError, run
    from util.mxutil import CheckpointError
    try:
        run(args)
    except (EvalError, CheckpointError) as exc:
        print('evaluate.py: error: %s' % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
