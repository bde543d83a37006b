"""Evaluate a checkpoint on a labelled split; save predictions (docs/behaviour.md sections 1, 9, 11).

    export PYTHONPATH=PYTHONPATH:./
    python issegm/evaluate.py --data-root DATA_ROOT_CITYSCAPES --output val/gta-city \\
        --dataset cityscapes --phase val --weights models/gta_rna-a1_cls19_s8_ep-0000.params \\
        --split val --test-scales 2048 --test-flipping --gpus 0 --no-cudnn

Every flag of the reference ``evaluate.py`` is accepted with its name and
default; the work is in :mod:`issegm.phases.evaluation`.
"""
import argparse
import os
import sys

if __package__ in (None, ''):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from issegm.phases.cli import add_flags, parse, script_main  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description='Evaluate an FCRN checkpoint on a labelled split.')
    add_flags(parser, ['--gpus', '--dataset', '--split', '--data-root', '--output', '--model', '--weights',
                       '--phase', '--test-scales', '--test-flipping', '--test-steps', '--save-predictions',
                       '--no-save-results', '--prefetch-threads', '--cache-images', '--log-file', '--debug',
                       '--no-cudnn', '--postprocess'])
    return parser


def parse_args(argv=None):
    return parse(build_parser(), argv)


def main(argv=None):
    args = parse_args(argv)
    from issegm.phases.evaluation import run
    return script_main('evaluate.py', run, args)


if __name__ == '__main__':
    sys.exit(main())
