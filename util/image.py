"""Image helpers with the reference's resampling and normalisation rules.

All resizing in CBST goes through :func:`resize`, which chooses the filter as
the reference does (``util.get_interp_method`` with
``choose_interpolation_method`` on): both sides shrink -> Lanczos, both sides
grow -> bicubic, anything else -> bilinear. PIL does the resampling, as in the
reference, so the numbers match; float maps go through PIL mode ``'F'``.
"""
import numpy as np
from PIL import Image

from util.io import atomic_path

__all__ = ['MEAN_RGB', 'STD_RGB', 'interp_method', 'resize',
           'longer_side_shape', 'normalize', 'Normalizer', 'REFERENCE', 'IMAGENET_FLOAT32',
           'save_png', 'read_image', 'read_label']

# ImageNet statistics used by the released ResNet-38 weights.
MEAN_RGB = np.array([0.485, 0.456, 0.406])
STD_RGB = np.array([0.229, 0.224, 0.225])


def interp_method(src_hw, dst_hw):
    """PIL filter the reference uses to go from ``src_hw`` to ``dst_hw``."""
    (sh, sw), (dh, dw) = src_hw, dst_hw
    if dh < sh and dw < sw:
        return Image.LANCZOS
    if dh > sh and dw > sw:
        return Image.BICUBIC
    return Image.BILINEAR


def resize(arr, hw, nearest=False, method=None):
    """Resize an HxW(x3) uint8 image, an HxW uint8 label map or an HxW float map.

    Parameters
    ----------
    arr : numpy.ndarray
        The image or map.
    hw : tuple of int
        The new height and width.
    nearest : bool
        Nearest neighbour, for label maps.
    method : int, optional
        Forces a PIL filter; otherwise the reference rule of
        :func:`interp_method` applies.

    Returns
    -------
    numpy.ndarray
        The resized array (``arr`` itself when the size is already right and no
        ``method`` is forced); float maps come back float32.
    """
    h, w = int(hw[0]), int(hw[1])
    if arr.shape[0] == h and arr.shape[1] == w and method is None:
        return arr
    if nearest:
        method = Image.NEAREST
    elif method is None:
        method = interp_method(arr.shape[:2], (h, w))
    if arr.dtype == np.uint8:
        return np.asarray(Image.fromarray(arr).resize((w, h), method))
    src = np.ascontiguousarray(arr, dtype=np.float32)
    return np.asarray(Image.fromarray(src, mode='F').resize((w, h), method))


def longer_side_shape(hw, size):
    """Shape after scaling so that the longer side equals ``size`` (reference ``Scale``).

    Parameters
    ----------
    hw : tuple of int
        Height and width.
    size : int
        The longer side after scaling.

    Returns
    -------
    tuple of int
        The scaled height and width, the shorter side rounded.
    """
    h, w = hw
    if max(h, w) == size:
        return h, w
    if w >= h:
        return int(np.round(1. * size * h / w)), size
    return size, int(np.round(1. * size * w / h))


def _reference_normalize(img):
    # The reference's arithmetic: float32 scaling, then float64 mean and std.
    data = img.astype(np.float32) * np.float32(1.0 / 255)
    data = (data - MEAN_RGB) / STD_RGB
    return np.ascontiguousarray(data.transpose(2, 0, 1), dtype=np.float32)


# The normalised value of each byte in each channel, computed as the reference
# computes it: looking it up gives the same bits at a fraction of the cost.
_NORMALIZED = _reference_normalize(np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2))[:, :, 0]


def normalize(img, out=None):
    """uint8 HxWx3 RGB -> float32 3xHxW: /255, minus mean, over std (reference order and rounding).

    Parameters
    ----------
    img : numpy.ndarray
        uint8 HxWx3 RGB.
    out : numpy.ndarray, optional
        float32 3xHxW (e.g. a view into a padded batch); receives the result.

    Returns
    -------
    numpy.ndarray
        ``out``, or a new float32 3xHxW array.
    """
    return REFERENCE(img, out)


class Normalizer(object):
    """One network's input preprocessing: uint8 HxWx3 RGB -> float32 3xHxW, by table lookup.

    Parameters
    ----------
    name : str
        What the preprocessing is (for messages and ``repr``).
    table : numpy.ndarray
        float32 (3, 256): the normalised value of each byte in each RGB channel.
    mean_rgb : sequence of float
        The mean the table subtracts, in [0, 1]; the training crops' canvas
        is this colour (truncated to bytes), which normalises to about zero,
        the value inference pads with.
    """

    def __init__(self, name, table, mean_rgb):
        self.name = name
        self.table = np.ascontiguousarray(table, dtype=np.float32)
        self.mean_rgb = np.asarray(mean_rgb, np.float64)

    def __repr__(self):
        return 'Normalizer(%r)' % self.name

    @property
    def canvas_rgb(self):
        """uint8 (3,): the mean colour as the reference's ``astype(np.uint8)`` truncates it."""
        return np.asarray(self.mean_rgb * 255).astype(np.uint8)

    def __call__(self, img, out=None):
        """Normalise ``img`` (uint8 HxWx3 RGB); ``out`` (float32 3xHxW) receives the result.

        Parameters
        ----------
        img : numpy.ndarray
            uint8 HxWx3 RGB.
        out : numpy.ndarray, optional
            float32 3xHxW, e.g. a view into a padded batch.

        Returns
        -------
        numpy.ndarray
            ``out``, or a new float32 3xHxW array.
        """
        img = np.asarray(img, dtype=np.uint8)
        out = np.empty((3,) + img.shape[:2], np.float32) if out is None else out
        for c in range(3):
            out[c] = self.table[c][img[:, :, c]]
        return out


def _float32_table(mean, std):
    # CRST's (and GluonCV's) arithmetic, all in float32: pixel / 255, minus mean, over std.
    bytes_ = np.arange(256, dtype=np.float32)[None, :]
    mean = np.asarray(mean, np.float32)[:, None]
    std = np.asarray(std, np.float32)[:, None]
    return ((bytes_ / np.float32(255.0)) - mean) / std


#: ResNet-38 (the reference's ``normalize``): float32 scaling, float64 mean and std.
REFERENCE = Normalizer('reference (ResNet-38)', _NORMALIZED, MEAN_RGB)

#: CRST's DeepLab-v2 and GluonCV's ImageNet networks: RGB, float32 (x / 255 - mean) / std.
IMAGENET_FLOAT32 = Normalizer('ImageNet float32 (CRST, GluonCV)', _float32_table(MEAN_RGB, STD_RGB), MEAN_RGB)


def read_image(path):
    """Read an image file as uint8 RGB.

    Parameters
    ----------
    path : str
        The image file.

    Returns
    -------
    numpy.ndarray
        uint8 HxWx3.

    Raises
    ------
    FileNotFoundError
        When the file does not exist, naming it.
    ValueError
        When it cannot be read, naming it.
    """
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert('RGB'), dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError('image not found: %s (check --data-root and the list file)' % path)
    except Exception as exc:
        raise ValueError('cannot read image %s: %s (re-extract or re-download this file)' % (path, exc))


def read_label(path):
    """Read a label map (one 8-bit channel) as uint8 HxW.

    Parameters
    ----------
    path : str
        The label file.

    Returns
    -------
    numpy.ndarray
        uint8 HxW label ids.

    Raises
    ------
    FileNotFoundError
        When the file does not exist, naming it.
    ValueError
        When it cannot be read or is not one 8-bit channel, naming it.
    """
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except FileNotFoundError:
        raise FileNotFoundError('label not found: %s (check --data-root and the list file)' % path)
    except Exception as exc:
        raise ValueError('cannot read label %s: %s (re-extract or re-download this file)' % (path, exc))
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError('label %s has shape %s and dtype %s; expected one 8-bit channel of label ids '
                         '(for SYNTHIA run issegm/prepare_data.py synthia first)' % (path, arr.shape, arr.dtype))
    return arr


def save_png(path, arr, palette=None):
    """Save a uint8 array as PNG atomically.

    Parameters
    ----------
    path : str
        The PNG file.
    arr : numpy.ndarray
        The array, converted to uint8.
    palette : array, optional
        768 uint8; makes a 'P' image.
    """
    im = Image.fromarray(np.asarray(arr, dtype=np.uint8))
    if palette is not None:
        im.putpalette(np.asarray(palette, dtype=np.uint8).ravel().tolist())
    with atomic_path(path) as tmp:
        im.save(tmp, format='PNG')
