"""Test helpers: a SYNTHIA RAND-CITYSCAPES writer in the real file channel order.

SYNTHIA ships ``GT/LABELS/*.png`` as 16-bit, 3-channel PNGs; its README says
the *first* channel holds the class id and the second the instance id. "First"
is the file's order, R-G-B: what imageio/FreeImage return as ``[..., 0]`` and
what OpenCV (which reorders to B-G-R) returns as ``[..., 2]``. The PNG is
encoded here by hand (zlib + chunks), so the channel order in the file does
not depend on any image library's convention -- the thing under test.
"""
import os
import struct
import zlib

import numpy as np

from util.image import save_png
from util.io import atomic_path

__all__ = ['write_png16_rgb', 'write_synthia_raw']


def _chunk(kind, payload):
    return struct.pack('>I', len(payload)) + kind + payload + struct.pack('>I', zlib.crc32(kind + payload))


def write_png16_rgb(path, rgb):
    """Write an HxWx3 array as a 16-bit RGB PNG whose file channels are ``rgb[..., 0], [1], [2]``."""
    rgb = np.asarray(rgb, np.uint16)
    h, w, c = rgb.shape
    assert c == 3
    rows = rgb.astype('>u2').reshape(h, w * 3).view(np.uint8).reshape(h, w * 6)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter 0 per row
    data = (b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 16, 2, 0, 0, 0))
            + _chunk(b'IDAT', zlib.compress(raw)) + _chunk(b'IEND', b''))
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(data)
    return path


def write_synthia_raw(root, index, image, synthia_ids, instance_ids=None):
    """SYNTHIA sample ``index`` as downloaded: ``RGB/%07d.png`` and 16-bit ``GT/LABELS/%07d.png``
    (class id in the file's first channel, instance id in the second, third zero).

    Returns the list entry of the *converted* layout, ``('RGB/...', 'GT/labels/...')``.
    """
    name = '%07d.png' % index
    save_png(os.path.join(root, 'RGB', name), image)
    ids = np.asarray(synthia_ids, np.uint16)
    inst = np.zeros_like(ids) if instance_ids is None else np.asarray(instance_ids, np.uint16)
    write_png16_rgb(os.path.join(root, 'GT', 'LABELS', name), np.stack([ids, inst, np.zeros_like(ids)], -1))
    return 'RGB/' + name, 'GT/labels/' + name
