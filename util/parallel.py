"""Full-resolution array work spread over the cores.

NumPy reductions and PIL resampling release the GIL, so one process-wide
thread pool gives near-linear speed-ups on per-class upsampling and
per-pixel argmax without pickling large maps to worker processes.
"""
import concurrent.futures
import os

import numpy as np

__all__ = ['thread_pool', 'class_argmax']

_POOL = None


def _forget_pool():
    # A forked child (the training iterator's workers) inherits the pool object
    # but not its threads: work submitted there would wait forever.
    global _POOL
    _POOL = None


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_forget_pool)


def thread_pool():
    """The process-wide pool (created on first use, one worker per core, at most 8; anew in a forked child)."""
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    return _POOL


def class_argmax(probs, with_max=False):
    """``probs.argmax(0)`` (and ``probs.max(0)``) of a (C, H, W) map, in row bands across the pool.

    Same values as NumPy's (ties go to the lowest class). The argmax is uint8
    when there are at most 256 classes.
    """
    c, h = probs.shape[:2]
    pred = np.empty(probs.shape[1:], np.uint8 if c <= 256 else np.int64)
    conf = np.empty(probs.shape[1:], probs.dtype) if with_max else None
    workers = thread_pool()._max_workers
    bands = max(1, min(workers, h // 64))
    edges = np.linspace(0, h, bands + 1).astype(int)

    def band(i):
        rows = slice(edges[i], edges[i + 1])
        pred[rows] = probs[:, rows].argmax(0)
        if with_max:
            conf[rows] = probs[:, rows].max(0)

    list(thread_pool().map(band, range(bands)))
    return (pred, conf) if with_max else pred
