"""Prepare the datasets' files: lists, GTA-5 resize, SYNTHIA label conversion.

A thin entry point; the work is in :mod:`issegm.storage.preparation`.
"""
import os
import sys

if __package__ in (None, ''):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from issegm.errors import DataError  # noqa: E402
from issegm.storage.preparation import GTA_SHAPE, convert_synthia, make_lists, resize_gta  # noqa: E402

__all__ = ['parse_args', 'main']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Prepare GTA-5 / SYNTHIA / Cityscapes roots for CBST.')
    parser.add_argument('dataset', choices=['gta', 'synthia', 'cityscapes', 'cityscapes16'],
                        help='cityscapes writes the cityscapes16 lists too (the same files)')
    parser.add_argument('--data-root', required=True, help='the dataset root as downloaded')
    parser.add_argument('--output-root', default=None,
                        help='gta: write the pairs resized to 1052x1914 here (a new folder)')
    parser.add_argument('--list-dir', default=None,
                        help='where list files go (default: issegm/data_list/{dataset} under the cwd)')
    parser.add_argument('--force', action='store_true',
                        help='replace existing list files with other content (e.g. the published ones)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def main(argv=None):
    """Command line entry point; returns the exit status (2 on a data error, with one line on stderr)."""
    args = parse_args(argv)
    try:
        root = args.data_root
        if not os.path.isdir(root):
            raise DataError('--data-root %s is not a folder' % root)
        if args.dataset == 'gta' and args.output_root:
            pairs, worked = resize_gta(root, args.output_root, quiet=args.quiet)
            print('gta: %d pairs at %dx%d in %s (%d files written now)'
                  % (len(pairs), GTA_SHAPE[0], GTA_SHAPE[1], args.output_root, worked))
            root = args.output_root
        elif args.output_root:
            raise DataError('--output-root is only for gta')
        if args.dataset == 'synthia':
            total, converted = convert_synthia(root, quiet=args.quiet)
            print('synthia: %d labels in GT/labels (%d converted now)' % (total, converted))
        datasets = [args.dataset]
        if args.dataset == 'cityscapes' and args.list_dir is None:
            # The 16-class evaluation (SYNTHIA models) reads its own list folder.
            datasets.append('cityscapes16')
        for dataset in datasets:
            for path, n in make_lists(dataset, root, args.list_dir, force=args.force).items():
                print('list %s: %d lines' % (path, n))
    except DataError as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
