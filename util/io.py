"""Atomic file writes: a finished-looking file is always a whole file.

Every output of a long job (PNG, ``.npy``, ``.params``, list files) goes to a
temporary name in the same folder and is renamed into place, so a killed run
never leaves a truncated file that a rerun would take as done.
"""
import contextlib
import errno
import os
import tempfile

import numpy as np

__all__ = ['atomic_path', 'atomic_write', 'save_npy_atomic', 'makedirs', 'DiskFullError']


class DiskFullError(OSError):
    """A write failed for lack of space (or quota).

    Parameters
    ----------
    folder : str
        The folder written into; also the exception's ``filename`` (and ``folder``).
    """

    def __init__(self, folder):
        super(DiskFullError, self).__init__(errno.ENOSPC, 'disk full', folder)
        self.folder = folder


def _disk_full(exc):
    # MXNet's writers report it as an MXNetError: with the C library's words, or (dmlc's
    # FileStream, which checks only the count fwrite wrote) as an incomplete write.
    text = str(exc)
    return (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) \
        or 'No space left on device' in text or 'FileStream.Write incomplete' in text


def makedirs(path):
    """Create ``path`` (and parents) if missing.

    Parameters
    ----------
    path : str
        The folder; an empty string creates nothing.

    Returns
    -------
    str
        ``path`` itself.
    """
    if path:
        os.makedirs(path, exist_ok=True)
    return path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The temporary name keeps the file's extension, so writers that choose the
    format from the name (PIL, numpy, MXNet) behave as for the final name.

    Parameters
    ----------
    path : str
        The final file name.

    Yields
    ------
    str
        The temporary path to write to.

    Raises
    ------
    DiskFullError
        When the write failed for lack of space; the temporary file is removed (as on any error).
    """
    folder = os.path.dirname(os.path.abspath(path))
    makedirs(folder)
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % base, suffix='.tmp' + ext, dir=folder)
    os.close(fd)
    # mkstemp makes the file private (0600); give it the mode a plain open() would.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        if _disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(folder) from exc
        raise


@contextlib.contextmanager
def atomic_write(path, mode='w'):
    """Open a temporary file for writing; it becomes ``path`` when closed cleanly.

    Parameters
    ----------
    path : str
        The final file name.
    mode : str
        The ``open`` mode (a writing one).

    Yields
    ------
    file object
        The open temporary file.
    """
    with atomic_path(path) as tmp:
        with open(tmp, mode) as f:
            yield f


def save_npy_atomic(path, array):
    """``np.save`` that never leaves a partial file at ``path``.

    Parameters
    ----------
    path : str
        The ``.npy`` file to write.
    array : numpy.ndarray
        The array saved.
    """
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            np.save(f, array)
