"""The worker side of a job started by :mod:`issegm.launch`: KVStore, rank, shards, merges.

Every worker of a launched job runs the same command. This module tells a
worker which part of the work is its own and joins the parts:

* :func:`init` opens the process's one ps-lite KVStore (``dist_sync`` or
  ``dist_device_sync``; ps-lite allows one per process, so a ``solve_AO``
  run keeps it for every phase) and gives the worker its :func:`rank`;
* :func:`shard` deals a list of images out to the workers;
* :func:`allreduce` sums small arrays through the KVStore (the epoch's loss);
  :func:`broadcast` gives every worker rank 0's value (the epoch to resume from);
* :func:`gather` collects per-worker results (confidence pools, confusion
  matrices) through files in the output folder, which a multi-machine job
  must share anyway: training reads the pseudo-labels every worker wrote and
  every worker resumes from rank 0's checkpoints. Pools are large and of
  different sizes per worker, a poor fit for fixed-shape KVStore keys;
* :func:`locked` and :func:`root_only` keep one run's guards for the job:
  rank 0 holds the output's lock, clears a killed run's debris and records
  the settings (:mod:`issegm.storage.run_guard`) before any worker writes;
* :func:`abort` ends a failed worker at once: a normal exit would wait in
  ps-lite's final barrier for workers that are still running.

Without the launcher every function describes a job of one worker (rank 0
of 1) and costs nothing, so scripts keep one code path.
"""
import contextlib
import logging
import os
import sys
import time

import numpy as np

from issegm.errors import DistError
from util.io import atomic_path, makedirs

__all__ = ['DistError', 'launched', 'init', 'kvstore', 'is_open', 'rank', 'num_workers', 'is_root',
           'barrier', 'shard', 'new_key', 'allreduce', 'broadcast', 'gather', 'training_kvstore', 'log_file',
           'set_logger', 'locked', 'root_only', 'abort']

logger = logging.getLogger(__name__)

#: KVStore types that need the launcher, and what the one-machine types become under it.
DIST_TYPES = ('dist_sync', 'dist_device_sync')
UNDER_LAUNCHER = {'local': 'dist_sync', 'device': 'dist_device_sync'}

_state = {'kv': None, 'keys': 0}


def launched():
    """True in a worker started by :mod:`issegm.launch` (``DMLC_ROLE=worker``)."""
    return os.environ.get('DMLC_ROLE') == 'worker'


def training_kvstore(kind):
    """The KVStore type training uses for ``--kvstore kind`` in this process.

    Under the launcher ``local``/``device`` become ``dist_sync``/``dist_device_sync``
    (the launcher decides that the job is distributed); without it a ``dist_*``
    type is an error naming the launcher. ``dist_async`` is refused: its
    updates depend on timing, so runs neither repeat nor resume exactly.
    """
    kind = str(kind)
    if kind not in DIST_TYPES + tuple(UNDER_LAUNCHER):
        why = ' (dist_async is left out: its updates depend on timing, so runs neither repeat nor resume)' \
            if kind == 'dist_async' else ''
        raise DistError('--kvstore must be local, device, dist_sync or dist_device_sync, got %r%s' % (kind, why))
    if kind in DIST_TYPES and not launched():
        raise DistError('--kvstore %s needs the launcher: python -m issegm.launch -n WORKERS -- python '
                        'issegm/train_src.py ... (one machine without it: --kvstore local or device)' % kind)
    return UNDER_LAUNCHER.get(kind, kind) if launched() else kind


def init(kind='dist_sync'):
    """Open the job's KVStore when launched (once per process); returns it, or None alone.

    Opening it waits until every worker and server of the job has started.
    A later call asking for another type keeps the open one (ps-lite allows
    one per process) and says so.
    """
    if not launched():
        return None
    kind = training_kvstore(kind)
    if _state['kv'] is None:
        import mxnet as mx
        _state['kv'] = mx.kv.create(kind)
        logger.info('worker %d of %d (%s)', _state['kv'].rank, _state['kv'].num_workers, kind)
    elif _state['kv'].type != kind:
        logger.info('--kvstore %s asked; this process keeps its open %s KVStore', kind, _state['kv'].type)
    return _state['kv']


def kvstore():
    """The open KVStore (opened as ``dist_sync`` when launched and not yet open), or None."""
    return init() if launched() else None


def is_open():
    return _state['kv'] is not None


def rank():
    """This worker's rank (0 without the launcher)."""
    kv = kvstore()
    return kv.rank if kv is not None else 0


def num_workers():
    """Workers in the job (1 without the launcher)."""
    kv = kvstore()
    return kv.num_workers if kv is not None else 1


def is_root():
    """True on the worker that writes the job's shared files (rank 0)."""
    return rank() == 0


def barrier():
    """Wait until every worker gets here (nothing without the launcher)."""
    kv = kvstore()
    if kv is not None and kv.num_workers > 1:
        kv._barrier()


def shard(items):
    """This worker's part of ``items``: every ``num_workers()``-th one from its rank.

    Interleaving keeps the parts within one image of each other in size and
    mixes the cities of a Cityscapes list into every part.
    """
    return list(items)[rank()::num_workers()]


def new_key():
    """A KVStore key no earlier call in this process returned (every worker calls in the same order)."""
    _state['keys'] += 1
    return '__cbst_%d' % _state['keys']


#: A float64 crosses the servers as four 16-bit pieces held in float32 values. Some
#: servers keep a non-float32 value as a float32 copy (MXNet's multi-precision store:
#: seen here with one venv and not another), which rounded a float64 broadcast;
#: whole numbers below 2**16 are exact in any float type, so the pieces always are.
_SHIFTS = np.array([0, 16, 32, 48], np.uint64)


def _to_pieces(values):
    bits = np.ascontiguousarray(values, np.float64).ravel().view(np.uint64)
    return ((bits[:, None] >> _SHIFTS) & np.uint64(0xFFFF)).astype(np.float32).ravel()


def _from_pieces(pieces, shape):
    parts = np.rint(np.asarray(pieces, np.float64)).astype(np.uint64).reshape(-1, len(_SHIFTS))
    return (parts << _SHIFTS).sum(axis=1, dtype=np.uint64).view(np.float64).reshape(shape)


def _through_kvstore(array, total):
    array = np.asarray(array, np.float64)
    kv = kvstore()
    if kv is None or kv.num_workers == 1:
        return array.copy()
    import mxnet as mx
    key, pieces = new_key(), _to_pieces(array)
    if total:
        # Each worker fills its own row; the servers' sum of the rows (no updater there:
        # training updates on the workers) hands every worker every row, which it adds
        # up in float64 in rank order, so all get the same bits whatever the servers keep.
        rows = np.zeros((kv.num_workers, pieces.size), np.float32)
        rows[kv.rank] = pieces
        value = mx.nd.array(rows, dtype='float32')
        kv.init(key, mx.nd.zeros(rows.shape, dtype='float32'))
        kv.pushpull(key, value, out=value)
        rows = [_from_pieces(row, array.shape) for row in value.asnumpy()]
        summed = rows[0].copy()
        for row in rows[1:]:
            summed += row
        return summed
    value = mx.nd.array(pieces, dtype='float32')
    kv.init(key, value)  # the servers keep rank 0's value
    kv.pull(key, out=value)
    return _from_pieces(value.asnumpy(), array.shape)


def allreduce(array):
    """The element-wise sum of ``array`` over the workers (float64; ``array`` itself alone)."""
    return _through_kvstore(array, total=True)


def broadcast(array):
    """Rank 0's ``array`` on every worker (float64)."""
    return _through_kvstore(array, total=False)


def gather(folder, tag, arrays, root_only=False, timeout=120.0):
    """Every worker's ``arrays`` (a dict of numpy arrays), as a list in rank order.

    Each worker writes ``{folder}/.{tag}.{rank}of{n}.npz`` atomically; after a
    barrier the readers (every worker, or rank 0 alone with ``root_only``:
    the others get None) load all of them, waiting up to ``timeout`` seconds
    for a shared filesystem to show another machine's file; the files are
    removed once read. Alone, returns ``[arrays]`` without files.
    """
    n = num_workers()
    if n == 1:
        return [dict(arrays)]
    me = rank()
    paths = [os.path.join(folder, '.%s.%dof%d.npz' % (tag, k, n)) for k in range(n)]
    makedirs(folder)
    with atomic_path(paths[me]) as tmp:
        with open(tmp, 'wb') as f:
            np.savez(f, **arrays)
    barrier()
    parts = None
    if me == 0 or not root_only:
        parts = []
        for path in paths:
            deadline = time.time() + timeout
            while not os.path.exists(path):
                if time.time() > deadline:
                    raise DistError('worker %d: %s did not appear within %d s; the output folder must be one '
                                    'shared filesystem at the same path on every machine' % (me, path, timeout))
                time.sleep(0.2)
            with np.load(path) as z:
                parts.append({name: z[name] for name in z.files})
    if not root_only:
        barrier()  # everyone has read every file
    if me == 0:
        for path in paths:
            os.remove(path)
    return parts


def log_file(name):
    """The log file of this worker: ``name`` on rank 0, ``{stem}.worker{rank}{ext}`` on the others."""
    if not name or rank() == 0:
        return name
    stem, ext = os.path.splitext(name)
    return '%s.worker%d%s' % (stem, rank(), ext or '.log')


def set_logger(output, name, debug=False):
    """:func:`util.log.set_logger` for this worker: its own file; on the terminal only rank 0 talks.

    The other workers show warnings and errors only, and no progress bars.
    """
    from util.log import set_logger as set_log
    return set_log(output, log_file(name), debug, console=rank() == 0)


@contextlib.contextmanager
def locked(folder, *args, **kwargs):
    """:func:`issegm.storage.run_guard.locked` for the job: rank 0 takes the lock (clearing debris), then all go on.

    The other workers write under rank 0's lock and never take it
    themselves (they would find it held by their own job).
    """
    from issegm.storage import run_guard
    if rank() != 0:
        barrier()
        yield False
        return
    with run_guard.locked(folder, *args, **kwargs) as fresh:
        barrier()
        yield fresh


def root_only(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on rank 0 alone, then a barrier; rank 0's result (None elsewhere)."""
    result = fn(*args, **kwargs) if rank() == 0 else None
    barrier()
    return result


def abort(code):
    """End this worker now with ``code`` (flushing output), skipping ps-lite's final barrier."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    os._exit(int(code))
