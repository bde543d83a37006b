"""Writers of miniature datasets in the exact on-disk layouts of the real ones.

Used by tests and benchmark generators, so that code reading the real
datasets is exercised on the same paths and encodings:

* Cityscapes: ``leftImg8bit/{split}/{city}/{city}_{seq}_leftImg8bit.png`` and
  ``gtFine/{split}/{city}/{city}_{seq}_gtFine_labelIds.png`` (8-bit label ids)
  plus ``_gtFine_color.png`` (RGB colours, as shipped);
* GTA-5: ``images/%05d.png`` and ``labels/%05d.png`` (palette PNG whose
  indices are Cityscapes label ids, as shipped);
* SYNTHIA (RAND-CITYSCAPES): ``RGB/%07d.png`` and the raw
  ``GT/LABELS/%07d.png``: a 16-bit, 3-channel PNG whose first channel (R, in
  the file's order) holds the SYNTHIA class id and whose second holds an
  instance id, as in the real data. OpenCV writes and reads such files with
  the channels reversed (B-G-R), so the class id is its index 2. ``issegm/prepare_data.py synthia`` converts it to the
  8-bit ``GT/labels/%07d.png`` that the lists name.

Every writer returns the list entry ``(image_rel, label_rel)``. Raw SYNTHIA labels are read
back by :func:`issegm.storage.preparation.read_synthia_ids`.
"""
import os

import cv2
import numpy as np

from issegm.storage.datasets import get_dataset
from util.image import save_png
from util.io import atomic_path, atomic_write, makedirs

__all__ = ['write_cityscapes', 'write_gta', 'write_synthia_raw', 'write_synthia', 'write_list']


def write_cityscapes(root, split, city, seq_name, image_rgb_uint8, label_ids_uint8, color=True):
    """Write one Cityscapes image and its fine label ids; ``seq_name`` is e.g. ``'000010_000019'``."""
    stem = '%s/%s/%s_%s' % (split, city, city, seq_name)
    rel = ('leftImg8bit/%s_leftImg8bit.png' % stem, 'gtFine/%s_gtFine_labelIds.png' % stem)
    save_png(os.path.join(root, rel[0]), image_rgb_uint8)
    save_png(os.path.join(root, rel[1]), label_ids_uint8)
    if color:
        palette = get_dataset('cityscapes').palette.reshape(256, 3)
        save_png(os.path.join(root, 'gtFine/%s_gtFine_color.png' % stem),
                 palette[np.asarray(label_ids_uint8, np.uint8)])
    return rel


def write_gta(root, index, image, label_ids):
    """Write GTA-5 sample ``index``: RGB image and palette label PNG of Cityscapes ids."""
    rel = ('images/%05d.png' % index, 'labels/%05d.png' % index)
    save_png(os.path.join(root, rel[0]), image)
    save_png(os.path.join(root, rel[1]), label_ids, palette=get_dataset('gta').palette)
    return rel


def write_synthia_raw(root, index, image, synthia_ids, instance_ids=None):
    """Write SYNTHIA sample ``index`` as shipped: RGB and 16-bit ``GT/LABELS`` (class id in channel 0).

    Returns the entry of the *converted* layout (``GT/labels``), the one lists name.
    """
    save_png(os.path.join(root, 'RGB/%07d.png' % index), image)
    ids = np.asarray(synthia_ids, np.uint16)
    inst = np.zeros_like(ids) if instance_ids is None else np.asarray(instance_ids, np.uint16)
    # cv2 arrays are B, G, R: index 2 is the file's first channel (R), the class id.
    raw = np.stack([np.zeros_like(ids), inst, ids], axis=-1)
    path = os.path.join(root, 'GT/LABELS/%07d.png' % index)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(tmp, raw):
            raise IOError('cannot write %s' % path)
    return 'RGB/%07d.png' % index, 'GT/labels/%07d.png' % index


# The brief's name for the raw writer.
write_synthia = write_synthia_raw


def write_list(path, entries):
    """Write a list file, one ``image<TAB>label`` (or ``image``) a line, atomically."""
    makedirs(os.path.dirname(path))
    with atomic_write(path) as f:
        for entry in entries:
            if isinstance(entry, str):
                entry = (entry,)
            f.write('\t'.join(e for e in entry if e) + '\n')
    return path
