"""One phase of one CBST round: pseudo-labels (``--phase val``) or retraining (``--phase train``).

    export PYTHONPATH=PYTHONPATH:./
    python issegm/solve_ST.py --phase val --dataset gta --dataset-tgt cityscapes --split-tgt train \\
        --data-root-tgt DATA_ROOT_CITYSCAPES --output gta2city/cbst --model cityscapes_rna-a1_cls19_s8 \\
        --weights models/gta_rna-a1_cls19_s8_ep-0000.params --test-scales 1850 --test-flipping \\
        --init-tgt-port 0.15 --idx-round 0 --kc-policy cb --with-prior False --gpus 0

Usually run by ``solve_AO.py``. Every flag of the reference ``solve_ST.py``
is accepted with its name and default; the work is in :mod:`issegm.phases.self_training`.
"""
import argparse
import os
import sys

if __package__ in (None, ''):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from issegm.phases.cli import add_flags, parse, script_main  # noqa: E402
from issegm.flags import CRST_FLAGS


def build_parser():
    parser = argparse.ArgumentParser(
        description='Self-training phase of CBST: pseudo-labels (val) or retraining (train).')
    add_flags(parser, ['--dataset', '--dataset-tgt', '--split', '--split-tgt', '--data-root',
                       '--data-root-tgt', '--output', '--model', '--batch-images', '--crop-size',
                       '--origin-size', '--origin-size-tgt', '--scale-rate-range', '--weights', '--gpus',
                       '--lr-type', '--base-lr', '--lr-steps', '--weight-decay', '--from-epoch',
                       '--stop-epoch', '--to-epoch'])
    parser.add_argument('--idx-round', dest='idx_round', default=0, type=int,
                        help='The current round (its outputs go to {output}/{round}/).')
    add_flags(parser, ['--init-tgt-port', '--init-src-port', '--seed-int', '--mine-port',
                       '--mine-id-number', '--mine-thresh'])
    parser.add_argument('--mine-id-address', dest='mine_id_address', default=None, type=str,
                        help='The folder of the pseudo-label phase statistics (mine_id.npy, ...).')
    add_flags(parser, ['--phase', '--with-prior', '--test-scales', '--test-flipping', '--test-steps',
                       '--kvstore', '--prefetch-threads', '--prefetcher', '--cache-images', '--log-file',
                       '--check-start', '--check-step', '--debug', '--backward-do-mirror', '--no-cudnn',
                       '--kc-policy', '--restart', '--postprocess', '--stop-on-collapse'])
    add_flags(parser, CRST_FLAGS)
    return parser


def main(argv=None):
    args = parse(build_parser(), argv)
    from issegm.phases import self_training
    return script_main('solve_ST.py', self_training.run, args)


if __name__ == '__main__':
    sys.exit(main())
