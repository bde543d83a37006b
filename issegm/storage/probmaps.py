"""The network's stored outputs between the two passes of a round: low-resolution maps on disk.

``{output}/{r}/probmap/{name}.npz`` holds one image's
:class:`LowRes` (probabilities at the network's or a
sub-stride, ~2 MB) and the image's size; the full-resolution map the
reference kept (160 MB) is recomputed from it, deterministically, whenever
needed (pass 2, CRST's soft labels).
"""
import collections

import numpy as np

from util.io import atomic_path

__all__ = ['LowRes', 'save_lowres', 'load_lowres']

#: A network output before upsampling: class probabilities (C, h, w) float32 (a
#: NumPy array, or an NDArray on the device) at ``stride`` pixels of the scaled
#: image per cell (the network's stride, or stride / steps for sub-stride
#: prediction), and the scaled image's size ``im_hw`` before padding.
LowRes = collections.namedtuple('LowRes', ['probs', 'im_hw', 'stride'])


def save_lowres(path, low, orig_hw):
    """Store a :class:`LowRes` (probabilities, scaled size, their stride) and the image size.

    Parameters
    ----------
    path : str
        The ``.npz`` file, written atomically.
    low : LowRes
        The network output.
    orig_hw : tuple of int
        The image's (H, W).
    """
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            np.savez(f, probs=np.asarray(low.probs, np.float32), im_hw=np.asarray(low.im_hw, np.int64),
                     stride=np.int64(low.stride), orig_hw=np.asarray(orig_hw, np.int64))


def load_lowres(path, net_stride):
    """Read what :func:`save_lowres` wrote.

    Parameters
    ----------
    path : str
        The ``.npz`` file.
    net_stride : int
        The stride of maps stored before their stride was (no sub-stride steps then).

    Returns
    -------
    low : LowRes
        The network output.
    orig_hw : tuple of int
        The image's (H, W).
    """
    with np.load(path) as z:
        stride = int(z['stride']) if 'stride' in z.files else int(net_stride)
        low = LowRes(z['probs'], tuple(int(v) for v in z['im_hw']), stride)
        return low, tuple(int(v) for v in z['orig_hw'])
