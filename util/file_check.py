"""Cheap content checks of image and label files, without decoding pixels.

The existence check of the list files runs before any work, but a file's
content was only checked when reached, hours in. These checks read what is
cheap: the header (through Pillow's lazy :func:`PIL.Image.open`: format,
mode, size; for PNG also the bit depth of the IHDR chunk) and the last bytes
of the file, which tell a truncated PNG or JPEG:

* a PNG ends with its IEND chunk (length 0, ``IEND``, CRC ``AE426082``);
  encoders (libpng, Pillow, OpenCV) write nothing after it, so nothing else
  may follow;
* a JPEG ends with the end marker ``FFD9``; libjpeg writes nothing after it,
  but some camera firmware pads files with zero bytes, which are allowed: a
  cut file whose tail was zero-filled (a preallocated download) still fails,
  since what precedes the zeros is entropy-coded data, which never holds
  ``FFD9``. Any other data after the marker (a phone's appended trailer) is
  reported: the check cannot tell it from a cut.

Damage in the middle of a file (flipped bits) is not seen: that needs the
whole file read. Other formats get the header checks only.
"""
import concurrent.futures
import os
import struct

from PIL import Image

from util.parallel import thread_pool

__all__ = ['check_image', 'check_label', 'check_pairs', 'summarize']

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_END = b'\x00\x00\x00\x00IEND\xaeB`\x82'
_JPEG_END = b'\xff\xd9'
_JPEG_FORMATS = ('JPEG', 'MPO')   # Pillow names some camera JPEGs MPO
_PAD_WINDOW = 65536               # bytes searched for the JPEG marker before zero padding
# Modes whose values exceed 8 bits: read_image's convert('RGB') clips them at 255.
_WIDE_MODES = ('I', 'F', 'I;16', 'I;16B', 'I;16L', 'I;16N')
_REDO = 're-extract or re-download this file'


class _Header(object):
    """What one opening of a file tells: format, mode, size, PNG bit depth and colour type, damage."""

    def __init__(self, format=None, mode=None, size=None, bit_depth=None, color_type=None, problem=None):
        self.format, self.mode, self.size = format, mode, size
        self.bit_depth, self.color_type, self.problem = bit_depth, color_type, problem


def _read_header(path):
    """Open ``path`` once: its header through Pillow and its tail; nothing is decoded."""
    try:
        with open(path, 'rb') as f:
            start = f.read(26)
            if not start:
                return _Header(problem='empty file (%s)' % _REDO)
            f.seek(0)
            try:
                with Image.open(f) as im:
                    head = _Header(im.format, im.mode, im.size)
            except Exception as exc:  # noqa: BLE001 - any failure to identify is the finding
                return _Header(problem='not an image Pillow can read: %s (%s)' % (_reason(exc), _REDO))
            if head.format == 'PNG' and start[:8] == _PNG_SIGNATURE and start[12:16] == b'IHDR':
                head.bit_depth, head.color_type = struct.unpack('>BB', start[24:26])
            head.problem = _truncation(f, head.format)
            return head
    except FileNotFoundError:
        return _Header(problem='not found (check --data-root and the list file)')
    except OSError as exc:
        return _Header(problem='cannot be read: %s' % (exc.strerror or exc))


def _reason(exc):
    # Pillow's own message would name the file object, not the path.
    if isinstance(exc, Image.UnidentifiedImageError):
        return 'cannot identify image file'
    return str(exc) or type(exc).__name__


def _truncation(f, fmt):
    """How the file's end shows a cut, or None."""
    size = f.seek(0, os.SEEK_END)
    if fmt == 'PNG':
        f.seek(max(0, size - len(_PNG_END)))
        if f.read() != _PNG_END:
            return 'truncated PNG: no IEND chunk at its end (%s)' % _REDO
    elif fmt in _JPEG_FORMATS:
        f.seek(max(0, size - 2))
        tail = f.read()
        if tail[-1:] == b'\x00':   # zero padding: look for the marker before it
            f.seek(max(0, size - _PAD_WINDOW))
            tail = f.read().rstrip(b'\x00')
        if not tail.endswith(_JPEG_END):
            return ('truncated JPEG: no end marker FFD9 at its end (%s; if data was appended after the '
                    'image, re-save it)' % _REDO)
    return None


def _image_finding(path):
    """``(size, finding)`` of an image file; ``size`` is (width, height) or None when unreadable."""
    head = _read_header(path)
    if head.format is None:
        return None, 'image %s: %s' % (path, head.problem)
    if head.problem:
        return head.size, 'image %s: %s' % (path, head.problem)
    if head.mode in _WIDE_MODES:
        return head.size, ('image %s: %s values (mode %s), which reading it as RGB clips at 255 '
                           '(save it as 8-bit RGB)' % (path, _depth_text(head), head.mode))
    return head.size, None


def _depth_text(head):
    if head.bit_depth:
        return '%d-bit' % head.bit_depth
    return 'float' if head.mode == 'F' else ('32-bit' if head.mode == 'I' else '16-bit')


def _label_finding(path, image_size):
    head = _read_header(path)
    what = 'label %s: ' % path
    if head.format is None or head.problem:
        return what + head.problem
    if head.bit_depth == 16 or head.mode in _WIDE_MODES:
        hint = ('SYNTHIA ships its GT/LABELS so: run issegm/prepare_data.py synthia and list GT/labels'
                if head.color_type in (2, 6) else 'save it as one 8-bit channel of label ids')
        return what + '%s label (mode %s) (%s)' % (_depth_text(head), head.mode, hint)
    if head.mode in ('RGB', 'RGBA', 'RGBX', 'CMYK', 'YCbCr'):
        return what + 'a colour label (mode %s): use the *_labelIds.png / labels/ ids file' % head.mode
    if head.mode not in ('L', 'P'):
        return what + 'mode %s; a label is one 8-bit channel of label ids (mode L or P)' % head.mode
    if head.format in _JPEG_FORMATS:
        return what + 'JPEG, whose lossy coding changes ids along edges (use the PNG label file)'
    if image_size is not None and tuple(image_size) != tuple(head.size):
        return what + '%dx%d (width x height) but its image is %dx%d (list the label of this image, ' \
                      'or re-extract the pair)' % (tuple(head.size) + tuple(image_size))
    return None


def check_image(path):
    """The problem of an image file as one line naming it and the fix, or None.

    Parameters
    ----------
    path : str
        An image as :func:`util.image.read_image` reads it: any 8-bit mode
        Pillow converts to RGB (RGB, RGBA, L, P, CMYK...).

    Returns
    -------
    str or None
        Not found, empty, not an image, truncated PNG/JPEG, or 16/32-bit or
        float values (read as RGB they would be clipped).
    """
    return _image_finding(path)[1]


def check_label(path, image_size=None):
    """The problem of a label file as one line naming it and the fix, or None.

    Parameters
    ----------
    path : str
        A label-id map: one 8-bit channel (mode L or P).
    image_size : tuple of int, optional
        ``(width, height)`` of its image (``PIL.Image.size``); the label must match.

    Returns
    -------
    str or None
        Not found, empty, not an image, truncated, 16-bit, colour (RGB), another
        mode, JPEG (lossy), or another size than its image.
    """
    return _label_finding(path, image_size)


def _check_pair(pair):
    image, label = pair
    size, found = _image_finding(image)
    findings = [found] if found else []
    if label is not None:
        found = _label_finding(label, size)
        if found:
            findings.append(found)
    return findings


def check_pairs(pairs, threads=None):
    """Check every ``(image_path, label_path_or_None)`` pair; all findings at once, in list order.

    Each file is opened once; the label's size is compared with the size in
    its image's header.

    Parameters
    ----------
    pairs : iterable of (str, str or None)
        Paths as they are opened (data root joined).
    threads : int, optional
        None: the process-wide pool (:func:`util.parallel.thread_pool`, one
        thread per core); 0: no threads; n: a pool of n threads (more threads
        than cores pay off when the files are on a slow or network disk).

    Returns
    -------
    list of str
        One line per problem: the image's before its label's, pairs in order.
    """
    pairs = list(pairs)
    if threads == 0:
        return [f for found in map(_check_pair, pairs) for f in found]
    if threads is None:
        return [f for found in thread_pool().map(_check_pair, pairs) for f in found]
    with concurrent.futures.ThreadPoolExecutor(int(threads)) as pool:
        return [f for found in pool.map(_check_pair, pairs) for f in found]


def summarize(source, findings, shown=3):
    """One line for a list's findings, as ``report_missing`` words missing files: the count and the first few.

    Parameters
    ----------
    source : str
        What was checked (the list file).
    findings : list of str
        From :func:`check_pairs`.
    shown : int
        How many findings are quoted.

    Returns
    -------
    str
        ``''`` when there are no findings.
    """
    if not findings:
        return ''
    more = ' and %d more' % (len(findings) - shown) if len(findings) > shown else ''
    return '%s: %d file(s) fail the content check: %s%s' % (source, len(findings), '; '.join(findings[:shown]),
                                                            more)
