"""Host work spread over the cores.

NumPy reductions, PIL resampling and PNG/zlib coding release the GIL, so
threads give near-linear speed-ups without pickling large maps to worker
processes: one process-wide pool for per-class upsampling and per-pixel
argmax, and per-loop pools that read images ahead (:func:`prefetch`) and
write results behind (:class:`Writer`) while the main loop only launches work.
"""
import collections
import concurrent.futures
import os

import numpy as np

__all__ = ['thread_pool', 'class_argmax', 'host_workers', 'prefetch', 'Writer']

_POOL = None


def _forget_pool():
    # A forked child (the training iterator's workers) inherits the pool object
    # but not its threads: work submitted there would wait forever.
    global _POOL
    _POOL = None


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_forget_pool)


def thread_pool():
    """The process-wide thread pool.

    Created on first use (anew in a forked child), with one worker per core, at most 8.

    Returns
    -------
    concurrent.futures.ThreadPoolExecutor
        The shared pool.
    """
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    return _POOL


def class_argmax(probs, with_max=False):
    """``probs.argmax(0)`` (and ``probs.max(0)``) of a (C, H, W) map, in row bands across the pool.

    Same values as NumPy's (ties go to the lowest class).

    Parameters
    ----------
    probs : numpy.ndarray
        The (C, H, W) class scores or probabilities.
    with_max : bool
        Also return the maximum over classes.

    Returns
    -------
    pred : numpy.ndarray
        The (H, W) argmax: uint8 when there are at most 256 classes.
    conf : numpy.ndarray
        The (H, W) maximum, of ``probs``' dtype; returned only with ``with_max``.
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


def host_workers():
    """Threads for a loop's reading or writing: one per core."""
    return max(1, os.cpu_count() or 1)


def prefetch(fn, items, workers=None, depth=None):
    """Yield ``(item, future)`` in order, ``fn(item)`` running in ``workers`` threads up to ``depth`` ahead.

    Parameters
    ----------
    fn : callable
        Called on each item.
    items : iterable
        The items, in the order yielded.
    workers : int, optional
        Threads; :func:`host_workers` by default. 0 computes each item when it
        is yielded (no threads).
    depth : int, optional
        Items submitted ahead; ``workers + 1`` by default.

    Yields
    ------
    item : object
        The next item.
    future : concurrent.futures.Future
        ``future.result()`` returns ``fn(item)`` or raises its error, so a bad
        item is reported where it is consumed.
    """
    workers = host_workers() if workers is None else int(workers)
    if workers <= 0:
        for item in items:
            fut = concurrent.futures.Future()
            try:
                fut.set_result(fn(item))
            except Exception as exc:  # noqa: BLE001 - raised by result()
                fut.set_exception(exc)
            yield item, fut
        return
    depth = workers + 1 if depth is None else max(1, int(depth))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending = collections.deque()
        it = iter(items)
        try:
            for item in it:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= depth:
                    break
            while pending:
                item, fut = pending.popleft()
                nxt = next(it, _END)
                if nxt is not _END:
                    pending.append((nxt, pool.submit(fn, nxt)))
                yield item, fut
        finally:
            for _, fut in pending:
                fut.cancel()


_END = object()


class Writer(object):
    """Runs save jobs in ``workers`` threads, at most ``backlog`` unfinished; errors surface here.

    :meth:`submit` blocks while the backlog is full and raises the first
    error of a finished job; :meth:`close` waits for all and raises the
    first error.

    Parameters
    ----------
    workers : int, optional
        Threads; :func:`host_workers` by default. 0 runs each job in :meth:`submit`.
    backlog : int, optional
        Unfinished jobs allowed; twice the workers (at least 2) by default.
    """

    def __init__(self, workers=None, backlog=None):
        workers = host_workers() if workers is None else int(workers)
        self._pool = concurrent.futures.ThreadPoolExecutor(workers) if workers > 0 else None
        self._backlog = 2 * max(1, workers) if backlog is None else int(backlog)
        self._pending = collections.deque()

    def submit(self, fn, *args, **kwargs):
        if self._pool is None:
            fn(*args, **kwargs)
            return
        self._pending.append(self._pool.submit(fn, *args, **kwargs))
        while self._pending and (self._pending[0].done() or len(self._pending) > self._backlog):
            self._pending.popleft().result()

    def close(self):
        """Wait for every job; raise the first error."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
            return False
        # Already failing: finished work still lands (a rerun resumes from it);
        # the loop's error is the one reported.
        for fut in self._pending:
            try:
                fut.result()
            except Exception:  # noqa: BLE001 - secondary to the error being raised
                pass
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        return False
