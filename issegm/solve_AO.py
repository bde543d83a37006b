"""The CBST round driver: for each round, pseudo-labels then retraining (docs/behaviour.md section 8).

    export PYTHONPATH=PYTHONPATH:./
    python issegm/solve_AO.py --num-round 6 --test-scales 1850 --scale-rate-range 0.7,1.3 \\
        --dataset gta --dataset-tgt cityscapes --split train --split-tgt train \\
        --data-root DATA_ROOT_GTA5 --data-root-tgt DATA_ROOT_CITYSCAPES --output gta2city/cbst-sp \\
        --model cityscapes_rna-a1_cls19_s8 --weights models/gta_rna-a1_cls19_s8_ep-0000.params \\
        --batch-images 2 --crop-size 500 --origin-size-tgt 2048 --init-tgt-port 0.15 --init-src-port 0.03 \\
        --seed-int 0 --mine-port 0.8 --mine-id-number 3 --mine-thresh 0.001 --base-lr 1e-4 --to-epoch 2 \\
        --source-sample-policy cumulative --self-training-script issegm/solve_ST.py --kc-policy cb \\
        --prefetch-threads 2 --gpus 0 --with-prior True

With ``--self-training-script`` each phase runs as a subprocess of that
script (as the reference does); without it, in this process. Rerunning the
same command after a kill continues where it stopped, bit for bit; a rerun
with other settings stops with the differences (``--restart`` starts the
folder again). Under ``python -m issegm.launch`` every worker runs the
rounds, the phases in its own process (one ps-lite connection a process):
pseudo-labels are shared out over the workers and training uses
``dist_sync`` (``--kvstore dist_device_sync`` to sum on the GPUs). Every
flag of the reference ``solve_AO.py`` is accepted with its name and
default; the work is in :func:`issegm.phases.rounds.run_rounds`.
"""
import argparse
import os
import sys

if __package__ in (None, ''):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from issegm.phases.cli import add_flags, parse, script_main  # noqa: E402
from issegm.flags import CRST_FLAGS


def build_parser():
    parser = argparse.ArgumentParser(description='Class-balanced self-trained segmentation ResNet-38 '
                                                 '(CBST rounds).')
    add_flags(parser, ['--dataset', '--dataset-tgt', '--split', '--split-tgt', '--data-root',
                       '--data-root-tgt', '--output', '--model', '--weights', '--batch-images', '--crop-size',
                       '--origin-size', '--origin-size-tgt', '--init-tgt-port', '--init-src-port'])
    parser.add_argument('--max-tgt-port', dest='max_tgt_port', default=0.5, type=float,
                        help='The target portion grows while below this.')
    parser.add_argument('--max-src-port', dest='max_src_port', default=0.06, type=float,
                        help='The source portion grows while below this.')
    parser.add_argument('--step-tgt-port', dest='step_tgt_port', default=0.05, type=float,
                        help='The growth of the target portion per round.')
    parser.add_argument('--step-src-port', dest='step_src_port', default=0.0025, type=float,
                        help='The growth of the source portion per round.')
    parser.add_argument('--epoch-per-round', dest='epr', default=2, type=int,
                        help='Training epochs in each round.')
    add_flags(parser, ['--seed-int', '--mine-port', '--mine-id-number', '--mine-thresh', '--with-prior'])
    parser.add_argument('--num-round', dest='num_round', default=12, type=int,
                        help='The number of self-training rounds.')
    add_flags(parser, ['--test-scales', '--scale-rate-range', '--base-lr', '--to-epoch'])
    parser.add_argument('--source-sample-policy', dest='source_sample_policy', default='cumulative',
                        type=str, help='Source selection seed per round: cumulative (--seed-int) or random '
                                       '(the round number).')
    parser.add_argument('--self-training-script', dest='self_training_script', default=None, type=str,
                        help='The solve_ST.py to run each phase with, as a subprocess (default: in this '
                             'process).')
    add_flags(parser, ['--kc-policy', '--prefetch-threads', '--gpus', '--restart', '--debug', '--kvstore',
                       '--postprocess', '--stop-on-collapse'],
              kc_policy=None)
    add_flags(parser, CRST_FLAGS)  # forwarded to both phases when non-zero
    return parser


def main(argv=None):
    args = parse(build_parser(), argv)
    from issegm.phases.rounds import run_rounds
    return script_main('solve_AO.py', run_rounds, args)


if __name__ == '__main__':
    sys.exit(main())
