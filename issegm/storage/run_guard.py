"""Guards of an output folder: one run at a time, reruns only of the same work, no debris.

* :func:`lock_output` takes an advisory lock (``fcntl.flock``) on
  ``{folder}/.lock`` for the life of the process. The kernel drops it when the
  process ends, however it ends, so a killed run never leaves it stuck. A
  second run on the same folder stops with one line naming the holder.
  ``solve_AO.py`` hands its lock to the ``solve_ST.py`` children it starts
  (:func:`child_lock_env`): they share it instead of waiting for it.
* :func:`check_settings` keeps, in ``{folder}/run.json``, the settings that
  decide the numbers a run writes there (flags, the weights' checksum),
  with the package versions and git commit. A rerun with other settings stops
  with one line naming the first differences and the ways on (another
  ``--output``, or ``--restart``); other versions only give a warning.
* :func:`remove_debris` deletes the temporary files (``.name.XXXXXXXX.tmp.ext``,
  see :func:`util.io.atomic_path`) that a killed run left.
"""
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time

from issegm.errors import RunRefused
from util.io import atomic_write, makedirs

__all__ = ['RunRefused', 'lock_output', 'release_output', 'locked', 'settle', 'child_lock_env', 'check_settings',
           'forget_settings', 'remove_debris', 'file_digest', 'environment', 'RUN_FILE']

logger = logging.getLogger(__name__)

RUN_FILE = 'run.json'
LOCK_FILE = '.lock'
_ENV = 'CBST_HELD_LOCKS'
_HELD = {}  # lock file path -> descriptor, for this process
_DEBRIS = re.compile(r'^\..+\.[a-z0-9_]{8}\.tmp(\.[^.]+)?$')


# ---------------------------------------------------------------------------- lock
def _inherited(path):
    """The descriptor of ``path``'s lock handed down by a parent run, or None."""
    for entry in filter(None, os.environ.get(_ENV, '').split(os.pathsep)):
        fd, _, held = entry.partition('=')
        if held != path:
            continue
        try:
            mine, theirs = os.fstat(int(fd)), os.stat(path)
        except (OSError, ValueError):
            return None
        if (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino):
            return int(fd)
    return None


def lock_output(folder, flag='--output'):
    """Hold ``{folder}/.lock`` until this process ends.

    Parameters
    ----------
    folder : str
        The output folder (created if missing).
    flag : str
        The option naming the folder, suggested in the message.

    Returns
    -------
    bool
        True when this call took the lock, False when this process (or the
        parent run that started it) already holds it.

    Raises
    ------
    RunRefused
        When another run holds it.
    """
    makedirs(folder)
    path = os.path.realpath(os.path.join(folder, LOCK_FILE))
    if path in _HELD:
        return False
    fd = _inherited(path)
    fresh = fd is None
    if fresh:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode('utf-8', 'replace').strip() or 'unknown process'
            os.close(fd)
            raise RunRefused('another run is writing into %s (%s); wait for it to end, or give this one '
                             'another %s' % (folder, holder, flag)) from None
        os.ftruncate(fd, 0)
        os.write(fd, ('pid %d, started %s: %s' % (os.getpid(), time.strftime('%Y-%m-%d %H:%M:%S'),
                                                  ' '.join(sys.argv))).encode('utf-8', 'backslashreplace'))
    _HELD[path] = fd
    return fresh


@contextlib.contextmanager
def locked(folder, debris=('',), recursive=True):
    """Hold ``folder``'s lock for the ``with`` block; on taking it, clear the ``debris`` subfolders.

    Inside a run that holds it already (an in-process phase, a child of
    ``solve_AO``) this neither locks nor cleans.

    Parameters
    ----------
    folder : str
        The output folder.
    debris : sequence of str
        Subfolders of ``folder`` cleared by :func:`remove_debris` ('' is the folder itself).
    recursive : bool
        Clear below them too.

    Yields
    ------
    bool
        Whether the lock was taken here.
    """
    fresh = lock_output(folder)
    try:
        if fresh:
            for sub in debris:
                remove_debris(os.path.join(folder, sub), recursive)
        yield fresh
    finally:
        if fresh:
            release_output(folder)


def settle(folder, section, settings, restart=False, discard=None, what='this run', has_work=None):
    """Compare ``settings`` with those recorded in ``folder`` (under its run's lock), or restart.

    Parameters
    ----------
    folder : str
        The output folder.
    section : str
        The section of ``run.json``.
    settings : dict
        As in :func:`check_settings`.
    restart : bool
        First call ``discard()``, which removes the earlier work, and forget its recorded settings.
    discard : callable, optional
        Removes the earlier work.
    what : str
        Names the work in the message.
    has_work : callable, optional
        As in :func:`check_settings`.

    Raises
    ------
    RunRefused
        As :func:`check_settings`.
    """
    if restart:
        if discard is not None:
            discard()
        forget_settings(folder, section)
    check_settings(folder, section, settings, what, has_work)


def release_output(folder):
    """Give up the lock :func:`lock_output` took on ``folder`` (in-process callers, at the end of a run).

    Parameters
    ----------
    folder : str
        The output folder.
    """
    path = os.path.realpath(os.path.join(folder, LOCK_FILE))
    fd = _HELD.pop(path, None)
    if fd is not None and fd != _inherited(path):
        os.close(fd)


def child_lock_env(env=None):
    """The environment and descriptors of a child process that works under this process's locks.

    Parameters
    ----------
    env : dict, optional
        The environment to extend; ``os.environ`` by default.

    Returns
    -------
    env : dict
        A copy naming the held locks.
    pass_fds : tuple of int
        Their descriptors, to pass to the child.
    """
    env = dict(os.environ if env is None else env)
    env[_ENV] = os.pathsep.join('%d=%s' % (fd, path) for path, fd in sorted(_HELD.items()))
    return env, tuple(sorted(_HELD.values()))


# ---------------------------------------------------------------------------- settings
def file_digest(path):
    """sha256 of a file's content (weights, lists), read in 1 MiB blocks.

    Parameters
    ----------
    path : str
        The file.

    Returns
    -------
    str
        The hex digest.
    """
    sha = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            sha.update(block)
    return sha.hexdigest()


def environment():
    """Versions that can change the last bits of the numbers, and the git commit (if any).

    Returns
    -------
    dict
        ``python``, ``mxnet``, ``numpy``, ``pillow`` and ``git_commit`` (None without one).
    """
    import mxnet
    import numpy
    import PIL
    env = {'python': sys.version.split()[0], 'mxnet': mxnet.__version__, 'numpy': numpy.__version__,
           'pillow': PIL.__version__}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        env['git_commit'] = subprocess.run(['git', '-C', root, 'rev-parse', 'HEAD'], capture_output=True,
                                           text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env['git_commit'] = None
    return env


def _load(path):
    try:
        with open(path) as f:
            record = json.load(f)
        return record if isinstance(record, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RunRefused('%s is unreadable (%s); delete it, or use --restart, to start the work in %s again'
                         % (path, exc, os.path.dirname(path)))


def _show(value):
    return json.dumps(value) if not isinstance(value, str) else value


def _differences(old, new):
    keys = list(new) + [k for k in old if k not in new]
    return ['%s %s (now %s)' % (k, _show(old.get(k, '-')), _show(new.get(k, '-')))
            for k in keys if old.get(k) != new.get(k)]


def check_settings(folder, section, settings, what='this run', has_work=None):
    """Record ``settings`` under ``section`` of ``{folder}/run.json``, or compare with the recorded ones.

    Parameters
    ----------
    folder : str
        The output folder.
    section : str
        The section of ``run.json``.
    settings : dict
        Flag names to JSON values; only what changes the numbers belongs in it.
    what : str
        Names the earlier work in the message.
    has_work : callable, optional
        ``has_work()`` False says the folder holds nothing of the earlier run
        yet (it stopped before its first output): then the new settings replace
        the recorded ones.

    Raises
    ------
    RunRefused
        Naming the first differences; or when ``run.json`` is unreadable.
    """
    path = os.path.join(folder, RUN_FILE)
    record = _load(path)
    env = environment()
    old = record.get(section)
    if old is not None and has_work is not None and not has_work():
        old = None
    if old is None:
        record[section] = {'settings': settings, 'environment': env,
                           'started': time.strftime('%Y-%m-%d %H:%M:%S')}
        with atomic_write(path) as f:
            json.dump(record, f, indent=1, sort_keys=True)
        return
    diffs = _differences(old.get('settings', {}), json.loads(json.dumps(settings)))
    if diffs:
        shown = ', '.join(diffs[:3]) + (' and %d more' % (len(diffs) - 3) if len(diffs) > 3 else '')
        raise RunRefused('%s holds %s made with other settings: %s; give another --output, or add --restart '
                         'to discard it and start again' % (folder, what, shown))
    changed = _differences(old.get('environment', {}), env)
    if changed:
        logger.warning('%s was started with other versions: %s; what is added now may differ in the last '
                       'bits from an uninterrupted run', folder, ', '.join(changed))


def forget_settings(folder, section):
    """Drop ``section`` from ``{folder}/run.json`` (before a restart)."""
    path = os.path.join(folder, RUN_FILE)
    record = _load(path)
    if record.pop(section, None) is not None:
        with atomic_write(path) as f:
            json.dump(record, f, indent=1, sort_keys=True)


# ---------------------------------------------------------------------------- debris
def remove_debris(folder, recursive=True):
    """Delete the temporary files a killed run left in ``folder`` (and below).

    Call it only while holding the folder's lock: a running writer's
    temporary file looks the same.

    Parameters
    ----------
    folder : str
        The folder.
    recursive : bool
        Also below it.

    Returns
    -------
    int
        How many files were removed.
    """
    removed = 0
    walk = os.walk(folder) if recursive else [(folder, [], os.listdir(folder) if os.path.isdir(folder) else [])]
    for root, _, files in walk:
        for name in files:
            if _DEBRIS.match(name):
                try:
                    os.remove(os.path.join(root, name))
                    removed += 1
                except OSError:
                    pass
    if removed:
        logger.info('removed %d temporary file(s) a killed run left in %s', removed, folder)
    return removed
