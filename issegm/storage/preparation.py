"""Prepare dataset roots for CBST: list files, GTA-5 resizing, SYNTHIA label conversion.

    python issegm/prepare_data.py gta --data-root GTA5 --output-root GTA5_1052x1914
    python issegm/prepare_data.py synthia --data-root RAND_CITYSCAPES
    python issegm/prepare_data.py cityscapes --data-root CITYSCAPES

Run from the repository root: list files go to ``issegm/data_list/{dataset}/``
relative to the working directory, where the training and evaluation scripts
look for them (as the reference does), or to ``--list-dir``.

* ``gta``: with ``--output-root``, every image is resized to 1052 x 1914
  (the size the README recommends; images bicubic, labels nearest; files
  already at that size are copied byte for byte) into a NEW root, which must
  not be the input root or contain it: inputs are never modified. A few
  GTA-5 labels differ in size from their images; resizing both fixes that.
  The list (``train.lst``) names the pairs of the resized root.
* ``synthia``: the shipped ``GT/LABELS/*.png`` are 16-bit, 3-channel PNGs.
  SYNTHIA's README: "the first channel contains the class of that pixel, the
  second the unique ID of the instance". "First" is the file's R-G-B order
  (imageio's ``[..., 0]``); OpenCV returns B-G-R, so we read
  ``cv2.imread(path, cv2.IMREAD_UNCHANGED)[..., 2]``. The class ids become
  8-bit ``GT/labels/*.png`` (palette PNGs of SYNTHIA ids) beside them, the
  paths the lists name. The reference gives no converter; this follows the
  dataset's README.
* ``cityscapes``: ``leftImg8bit/{train,val}/*/*_leftImg8bit.png`` with
  ``gtFine/.../*_gtFine_labelIds.png``; the full train split is written as
  ``train_full.lst`` (the published ``train.lst`` is the 505-image subset
  used for self-training) and the val split as ``val.lst``. The
  ``cityscapes16`` lists are the same files and are written too (unless
  ``--list-dir`` names one folder).

A list that already exists with different content is not overwritten unless
``--force`` is given: the published lists in ``issegm/data_list`` fix which
images the reference used (and, through the line order, which source images
a seed selects). Writing an identical list again is a no-op.

Every output is written atomically (temporary name, then rename) and finished
outputs are skipped, so a killed run is finished by running the same command
again.
"""
import glob
import os
import shutil

import numpy as np
from PIL import Image

from issegm.errors import DataError
from issegm.storage.datasets import get_dataset
from util.image import save_png
from util.io import atomic_path, atomic_write, makedirs

__all__ = ['GTA_SHAPE', 'find_pairs', 'list_dir_of', 'write_list_file', 'make_lists', 'resize_gta',
           'read_synthia_ids', 'convert_synthia']

GTA_SHAPE = (1052, 1914)  # (h, w) used for GTA-5 in source training (README)


def _progress(iterable, total, desc, quiet):
    if quiet:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc=desc, unit='img')


def _rel(root, path):
    return os.path.relpath(path, root).replace(os.sep, '/')


def find_pairs(dataset, root, split='train'):
    """``[(image_rel, label_rel)]`` of a dataset root in its real layout, sorted by image path.

    ``dataset`` is gta (``images/`` + ``labels/``), synthia (``RGB/`` +
    ``GT/labels/``) or cityscapes (``leftImg8bit/{split}`` + ``gtFine/{split}``).
    A missing label is a :class:`DataError` naming it: lists must be complete.
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
            hint = ' (run issegm/prepare_data.py synthia to convert GT/LABELS)' if dataset == 'synthia' else ''
            raise DataError('label missing for %s: %s%s' % (dataset, label, hint))
    return [(_rel(root, i), _rel(root, l)) for i, l in zip(images, labels)]


def list_dir_of(dataset):
    """Default folder of ``dataset``'s lists: ``issegm/data_list/{dataset}`` (relative to the cwd)."""
    return os.path.join('issegm', 'data_list', dataset)


def _list_text(pairs):
    return ''.join('%s\t%s\n' % pair for pair in pairs)


def _check_overwrite(path, text, force):
    """True when ``path`` must be (re)written; an existing list with other content needs ``force``."""
    if not os.path.isfile(path):
        return True
    with open(path) as f:
        old = f.read()
    if old == text:
        return False
    if not force:
        raise DataError('%s exists with other content (%d lines, new %d); it may be a published list. '
                        'Write elsewhere with --list-dir, or replace it with --force'
                        % (path, len(old.splitlines()), len(text.splitlines())))
    return True


def write_list_file(path, pairs, force=False):
    """Write ``image<TAB>label`` lines atomically; returns True if the file changed.

    An existing file with other content is a :class:`DataError` unless
    ``force``: it may be a published list.
    """
    text = _list_text(pairs)
    if not _check_overwrite(path, text, force):
        return False
    makedirs(os.path.dirname(path))
    with atomic_write(path) as f:
        f.write(text)
    return True


def make_lists(dataset, root, list_dir=None, force=False):
    """Write the list files of ``root``; returns ``{list path: number of lines}``.

    gta and synthia: ``train.lst``; cityscapes: ``train_full.lst`` and
    ``val.lst`` for the splits present. ``list_dir`` defaults to
    :func:`list_dir_of` ``(dataset)``. Every list is checked before any is
    written, so a refusal leaves none of them half updated.
    """
    list_dir = list_dir or list_dir_of(dataset)
    jobs = []
    if dataset in ('cityscapes', 'cityscapes16'):
        for split, name in (('train', 'train_full'), ('val', 'val')):
            if os.path.isdir(os.path.join(root, 'leftImg8bit', split)):
                jobs.append((os.path.join(list_dir, name + '.lst'), find_pairs(dataset, root, split)))
        if not jobs:
            raise DataError('no leftImg8bit/train or leftImg8bit/val under %s' % root)
    else:
        jobs.append((os.path.join(list_dir, 'train.lst'), find_pairs(dataset, root)))
    for path, pairs in jobs:
        _check_overwrite(path, _list_text(pairs), force)
    written = {}
    for path, pairs in jobs:
        write_list_file(path, pairs, force=force)
        written[path] = len(pairs)
    return written


def _check_new_root(src_root, out_root):
    src, out = os.path.realpath(src_root), os.path.realpath(out_root)
    if src == out:
        raise DataError('--output-root must be a new folder, not the input root %s '
                        '(resizing in place would overwrite the originals)' % src_root)
    if src.startswith(out + os.sep):
        raise DataError('--output-root %s contains the input root %s; choose a separate folder'
                        % (out_root, src_root))


def _resize_one(src_root, out_root, rel, is_label, shape):
    """Resize (or copy) one GTA-5 file; returns True when work was done."""
    h, w = shape
    src, dst = os.path.join(src_root, rel), os.path.join(out_root, rel)
    if os.path.exists(dst):   # atomic writes: an existing output is a whole one
        return False
    try:
        with Image.open(src) as im:
            im.load()
            size, mode = im.size, im.mode
            arr = np.asarray(im) if is_label else np.asarray(im.convert('RGB'))
    except Exception as exc:
        raise DataError('cannot read %s: %s (the file is damaged; copy it again)' % (src, exc))
    if size == (w, h):
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    elif is_label:
        if arr.ndim != 2 or arr.dtype != np.uint8:
            raise DataError('GTA-5 label %s (mode %s) is not a one-channel 8-bit label-id image' % (src, mode))
        resized = np.asarray(Image.fromarray(arr).resize((w, h), Image.NEAREST))
        save_png(dst, resized, palette=get_dataset('gta').palette)
    else:
        save_png(dst, np.asarray(Image.fromarray(arr).resize((w, h), Image.BICUBIC)))
    return True


def resize_gta(src_root, out_root, shape=GTA_SHAPE, quiet=False):
    """Resize every GTA-5 image (bicubic) and label (nearest) of ``src_root`` to ``shape`` under ``out_root``.

    ``out_root`` must be a new folder (not ``src_root``, not containing it);
    nothing under ``src_root`` is written. Returns ``(pairs, number of files
    written now)``; outputs that exist are whole (atomic writes) and skipped.
    """
    _check_new_root(src_root, out_root)
    pairs = find_pairs('gta', src_root)
    worked = 0
    for image, label in _progress(pairs, len(pairs), 'gta resize', quiet):
        worked += _resize_one(src_root, out_root, image, False, shape)
        worked += _resize_one(src_root, out_root, label, True, shape)
    return pairs, worked


def read_synthia_ids(path):
    """SYNTHIA class ids (uint8 HxW) from a shipped 16-bit ``GT/LABELS`` PNG.

    The class id is the file's first (R) channel, index 2 of OpenCV's B-G-R
    array. Values beyond SYNTHIA's last id (22) mean the file is not a class
    map in that channel and are a :class:`DataError`.
    """
    import cv2
    raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DataError('cannot read SYNTHIA label %s (missing or damaged; copy it again)' % path)
    if raw.ndim == 2:
        ids = raw
    elif raw.ndim == 3 and raw.shape[2] >= 3:
        ids = raw[..., 2]
        if not ids.any() and raw[..., 0].any():
            raise DataError('SYNTHIA label %s: the first (R) channel is all zero but the third is not; '
                            'class ids are expected in the first channel, as SYNTHIA ships them' % path)
    else:
        raise DataError('SYNTHIA label %s has shape %s: expected a 3-channel 16-bit PNG' % (path, raw.shape))
    last = max(sid for _, sid, _, _ in _synthia_table())
    top = int(ids.max())
    if top > last:
        raise DataError('SYNTHIA label %s holds class id %d in its first channel; SYNTHIA ids stop at %d'
                        % (path, top, last))
    return ids.astype(np.uint8)


def _synthia_table():
    from issegm.storage.datasets import SYNTHIA_LABELS
    return SYNTHIA_LABELS


def convert_synthia(root, quiet=False):
    """Convert ``GT/LABELS/*.png`` (16-bit, class id in the first channel) to 8-bit ``GT/labels/*.png``.

    The inputs are only read. Returns ``(number of labels, number converted now)``.
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
        save_png(dst, read_synthia_ids(raw), palette=palette)
        converted += 1
    return len(raws), converted
