"""Device contexts from the ``--gpus`` flag."""
import logging

import mxnet as mx

__all__ = ['get_contexts', 'check_gpus', 'num_gpus']

logger = logging.getLogger(__name__)
_WARNED = set()  # the CPU fallback is said once per process


def num_gpus():
    """Number of GPUs MXNet sees (0 for the CPU build or without CUDA)."""
    try:
        return mx.context.num_gpus()
    except mx.base.MXNetError:
        return 0


def _ids(gpus):
    """The device ids of ``gpus``, or None for the CPU words ('', 'cpu', '-1')."""
    text = str(gpus if gpus is not None else '').strip().lower()
    if text in ('', 'cpu', '-1'):
        return None
    try:
        return [int(t) for t in text.split(',') if t.strip()]
    except ValueError:
        raise ValueError('--gpus takes a comma list of device ids such as 0 or 0,1; got %r' % gpus)


def check_gpus(gpus):
    """Check that ``gpus`` names no device beyond the GPUs MXNet counts.

    Parameters
    ----------
    gpus : str
        The ``--gpus`` value.

    Returns
    -------
    int
        The number of GPUs found; 0 (a CPU-only machine or build) accepts any
        ids: :func:`get_contexts` then falls back to the CPU with one warning.

    Raises
    ------
    ValueError
        One line when ``gpus`` names devices beyond them.
    """
    ids, available = _ids(gpus), num_gpus()
    bad = [i for i in ids or () if i >= available]
    if available and bad:
        raise ValueError('--gpus %s names device(s) %s but only %d GPU(s) exist; use ids 0..%d'
                         % (gpus, bad, available, available - 1))
    return available


def get_contexts(gpus):
    """The device contexts of a ``--gpus`` value.

    Where no GPU exists the run goes on on the CPU after one warning line,
    instead of failing at the first allocation as the reference does, with
    one CPU context per listed device (``'0,1'`` -> ``[cpu(0), cpu(1)]``), so
    that a batch is split across devices exactly as on the GPUs.

    Parameters
    ----------
    gpus : str
        ``'0,1'`` -> ``[mx.gpu(0), mx.gpu(1)]``; ``''``/``'cpu'``/``'-1'`` -> ``[mx.cpu()]``.

    Returns
    -------
    list of mx.Context
        The contexts.

    Raises
    ------
    ValueError
        For a value that is not a comma list of ids, or ids beyond the GPUs found.
    """
    ids = _ids(gpus)
    if ids is None:
        return [mx.cpu()]
    if check_gpus(gpus) == 0:
        text = str(gpus).strip().lower()
        if text not in _WARNED:
            logger.warning('no GPU found (--gpus %s): running on the CPU', gpus)
            _WARNED.add(text)
        return [mx.cpu(i) for i in range(max(1, len(ids)))]
    return [mx.gpu(i) for i in ids]
