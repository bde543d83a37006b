"""Train a segmentation network on the source domain (docs/behaviour.md sections 1, 2, 11).

    export PYTHONPATH=PYTHONPATH:./
    python issegm/train_src.py --gpus 0,1,2,3 --split train --data-root DATA_ROOT_GTA \\
        --output gta_train --model gta_rna-a1_cls19_s8 --batch-images 16 --crop-size 500 \\
        --scale-rate-range 0.7,1.3 --weights models/ilsvrc-cls_rna-a1_cls1000_ep-0001.params \\
        --lr-type fixed --base-lr 0.0016 --to-epoch 30 --kvstore local --prefetch-threads 16 \\
        --prefetcher process --cache-images 0 --backward-do-mirror --origin-size 1914

Every flag of the reference ``train_src.py`` is accepted with its name and
default; the work is in :mod:`issegm.phases.source_training`.
"""
import argparse
import os
import sys

if __package__ in (None, ''):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from issegm.phases.cli import add_flags, parse, script_main  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description='Train an FCRN on the source domain.')
    add_flags(parser, ['--gpus', '--dataset', '--split', '--data-root', '--output', '--model',
                       '--batch-images', '--crop-size', '--origin-size', '--scale-rate-range', '--weights',
                       '--lr-type', '--base-lr', '--lr-steps', '--weight-decay', '--from-epoch',
                       '--stop-epoch', '--to-epoch', '--phase', '--test-scales', '--test-flipping',
                       '--test-steps', '--save-predictions', '--no-save-results', '--kvstore',
                       '--prefetch-threads', '--prefetcher', '--cache-images', '--log-file', '--check-start',
                       '--check-step', '--debug', '--backward-do-mirror', '--no-cudnn', '--restart'],
              origin_size=None, kvstore='device')
    return parser


def parse_args(argv=None):
    return parse(build_parser(), argv)


def main(argv=None):
    args = parse_args(argv)
    from issegm.phases.source_training import run
    return script_main('train_src.py', run, args)


if __name__ == '__main__':
    sys.exit(main())
