"""Prepare dataset roots for CBST: list files, GTA-5 resizing, SYNTHIA label conversion.

    python issegm/prepare_data.py gta --data-root GTA5 --output-root GTA5_1052x1914
    python issegm/prepare_data.py synthia --data-root RAND_CITYSCAPES
    python issegm/prepare_data.py cityscapes --data-root CITYSCAPES

* ``gta``: with ``--output-root``, every image is resized to 1052 x 1914
  (images bicubic, labels nearest; files already at that size are copied
  byte for byte) into the NEW root, which must not be the input root. A few
  GTA-5 labels differ in size from their images; resizing both fixes that.
* ``synthia``: the shipped ``GT/LABELS/*.png`` are 16-bit, 3-channel PNGs with
  the class id in the first channel; they become 8-bit ``GT/labels/*.png``
  (palette PNGs of SYNTHIA ids) beside them, as the lists expect.
* every dataset: list files (``image<TAB>label`` relative to the root). They
  go to ``--list-dir`` (default ``{root}/lists``), not over the published
  lists in ``issegm/data_list`` (whose Cityscapes ``train.lst`` is a 505-image
  subset); Cityscapes' full train split is written as ``train_full.lst``.

Every output is written atomically and finished outputs are skipped, so a
killed run is finished by running the same command again.
"""
import argparse
import glob
import os
import shutil
import sys

if __package__ in (None, ''):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
from PIL import Image

from issegm.datasets import DataError, get_dataset
from issegm.layouts import read_synthia_raw, write_list
from util.image import save_png
from util.io import atomic_path

__all__ = ['GTA_SHAPE', 'find_pairs', 'make_lists', 'resize_gta', 'convert_synthia', 'main']

GTA_SHAPE = (1052, 1914)  # (h, w) used for GTA-5 in source training


def _progress(iterable, total, desc, quiet):
    if quiet:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc=desc, unit='img')


def _rel(root, path):
    return os.path.relpath(path, root).replace(os.sep, '/')


def find_pairs(dataset, root, split='train'):
    """``[(image_rel, label_rel)]`` of a dataset root in its real layout, sorted.

    A missing label is a :class:`DataError` naming it (lists must be complete).
    """
    if dataset == 'gta':
        images = sorted(glob.glob(os.path.join(root, 'images', '*.png')))
        labels = [os.path.join(root, 'labels', os.path.basename(p)) for p in images]
    elif dataset == 'synthia':
        images = sorted(glob.glob(os.path.join(root, 'RGB', '*.png')))
        labels = [os.path.join(root, 'GT', 'labels', os.path.basename(p)) for p in images]
    elif dataset in ('cityscapes', 'cityscapes16'):
        images = sorted(glob.glob(os.path.join(root, 'leftImg8bit', split, '*', '*_leftImg8bit.png')))
        labels = [os.path.join(root, 'gtFine' + _rel(root, p)[len('leftImg8bit'):-len('_leftImg8bit.png')]
                               + '_gtFine_labelIds.png') for p in images]
    else:
        raise DataError('unknown dataset %r' % dataset)
    if not images:
        raise DataError('no %s images found under %s (is --data-root the dataset root?)' % (dataset, root))
    for label in labels:
        if not os.path.isfile(label):
            raise DataError('label missing for %s: %s' % (dataset, label))
    return [(_rel(root, i), _rel(root, l)) for i, l in zip(images, labels)]


def make_lists(dataset, root, list_dir=None):
    """Write the list files of ``root``; returns ``{list path: number of lines}``."""
    list_dir = list_dir or os.path.join(root, 'lists')
    written = {}
    if dataset in ('cityscapes', 'cityscapes16'):
        for split, name in (('train', 'train_full'), ('val', 'val')):
            if os.path.isdir(os.path.join(root, 'leftImg8bit', split)):
                pairs = find_pairs(dataset, root, split)
                written[write_list(os.path.join(list_dir, name + '.lst'), pairs)] = len(pairs)
        if not written:
            raise DataError('no leftImg8bit/train or leftImg8bit/val under %s' % root)
    else:
        pairs = find_pairs(dataset, root)
        written[write_list(os.path.join(list_dir, 'train.lst'), pairs)] = len(pairs)
    return written


def _check_new_root(src_root, out_root):
    src, out = os.path.realpath(src_root), os.path.realpath(out_root)
    if src == out:
        raise DataError('--output-root must be a new folder, not the input root %s '
                        '(resizing in place would overwrite the originals)' % src_root)
    if src.startswith(out + os.sep):
        raise DataError('--output-root %s contains the input root %s; choose a separate folder'
                        % (out_root, src_root))


def _resize_one(src_root, out_root, rel_image, rel_label, shape):
    """Resize (or copy) one GTA-5 pair; returns True when work was done."""
    done = False
    h, w = shape
    for rel, is_label in ((rel_image, False), (rel_label, True)):
        src, dst = os.path.join(src_root, rel), os.path.join(out_root, rel)
        if os.path.exists(dst):   # atomic writes: an existing output is a whole one
            continue
        try:
            im = Image.open(src)
            im.load()
        except Exception as exc:
            raise DataError('cannot read %s: %s (copy it again)' % (src, exc))
        if im.size == (w, h):
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        elif is_label:
            arr = np.asarray(im)
            if arr.ndim != 2:
                raise DataError('GTA-5 label %s is not a one-channel label-id image' % src)
            arr = np.asarray(Image.fromarray(arr).resize((w, h), Image.NEAREST))
            save_png(dst, arr, palette=get_dataset('gta').palette)
        else:
            save_png(dst, np.asarray(im.convert('RGB').resize((w, h), Image.BICUBIC)))
        done = True
    return done


def resize_gta(src_root, out_root, shape=GTA_SHAPE, quiet=False):
    """Resize every GTA-5 image/label of ``src_root`` to ``shape`` under ``out_root``.

    Returns ``(pairs, number of pairs processed now)``; finished outputs are skipped.
    """
    _check_new_root(src_root, out_root)
    pairs = find_pairs('gta', src_root)
    worked = 0
    for image, label in _progress(pairs, len(pairs), 'gta resize', quiet):
        worked += _resize_one(src_root, out_root, image, label, shape)
    return pairs, worked


def convert_synthia(root, quiet=False):
    """Convert ``GT/LABELS/*.png`` (16-bit, class id in channel 0) to 8-bit ``GT/labels/*.png``.

    Returns ``(number of labels, number converted now)``.
    """
    raws = sorted(glob.glob(os.path.join(root, 'GT', 'LABELS', '*.png')))
    if not raws:
        raise DataError('no GT/LABELS/*.png under %s (is --data-root the SYNTHIA RAND-CITYSCAPES root?)' % root)
    palette = get_dataset('synthia').palette
    converted = 0
    for raw in _progress(raws, len(raws), 'synthia labels', quiet):
        dst = os.path.join(root, 'GT', 'labels', os.path.basename(raw))
        if os.path.exists(dst):
            continue
        try:
            ids = read_synthia_raw(raw)
        except ValueError as exc:
            raise DataError(str(exc))
        save_png(dst, ids, palette=palette)
        converted += 1
    return len(raws), converted


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Prepare GTA-5 / SYNTHIA / Cityscapes roots for CBST.')
    parser.add_argument('dataset', choices=['gta', 'synthia', 'cityscapes'])
    parser.add_argument('--data-root', required=True, help='the dataset root as downloaded')
    parser.add_argument('--output-root', default=None,
                        help='gta: write images resized to 1052x1914 here (a new folder)')
    parser.add_argument('--list-dir', default=None, help='where list files go (default: {root}/lists)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        root = args.data_root
        if args.dataset == 'gta' and args.output_root:
            pairs, worked = resize_gta(root, args.output_root, quiet=args.quiet)
            print('gta: %d pairs at %dx%d in %s (%d done now)' % (len(pairs), GTA_SHAPE[0], GTA_SHAPE[1],
                                                                 args.output_root, worked))
            root = args.output_root
        elif args.output_root:
            raise DataError('--output-root is only for gta')
        if args.dataset == 'synthia':
            total, converted = convert_synthia(root, quiet=args.quiet)
            print('synthia: %d labels in GT/labels (%d converted now)' % (total, converted))
        for path, n in make_lists(args.dataset, root, args.list_dir).items():
            print('wrote %s (%d lines)' % (path, n))
    except DataError as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
