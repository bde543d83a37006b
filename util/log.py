"""Logging and progress bars shared by every command."""
import logging
import os
import sys

from util.io import makedirs

__all__ = ['set_logger', 'progress']

_FORMAT = '%(asctime)-15s %(message)s'


_console = {'on': True}


class _StderrHandler(logging.StreamHandler):
    """A console handler that writes to ``sys.stderr`` as it is at each message.

    Runs made one after another in one process (the tests, the demo's
    in-process phases) may each replace ``sys.stderr``; a handler that kept
    the first one would write into a closed stream.
    """

    def __init__(self):
        super(_StderrHandler, self).__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass  # always the current sys.stderr


def set_logger(output, log_file, debug=False, console=True):
    """Log to ``{output}/{log_file}`` (appending, as the reference) and to stderr.

    Works on the root logger, so every module's messages (the training loop's
    epochs, the checkpoint loader's notes) land in the log of the phase that
    is running, and phases run one after another in one process each keep a
    single file handler. ``console=False`` shows only warnings and errors on
    stderr and no progress bars (the other workers of a distributed job).
    Returns the ``issegm`` logger (every module logs under its own name, ``issegm.<package>.<module>``).
    """
    _console['on'] = bool(console)
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    fmt = logging.Formatter(_FORMAT)
    path = os.path.abspath(os.path.join(output or '', log_file)) if log_file else None
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler) and h.baseFilename != path:
            root.removeHandler(h)
            h.close()
    if path and not any(isinstance(h, logging.FileHandler) and h.baseFilename == path
                        for h in root.handlers):
        makedirs(os.path.dirname(path))
        handler = logging.FileHandler(path)
        handler.setFormatter(fmt)
        root.addHandler(handler)
    if not any(type(h) is _StderrHandler for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(fmt)
        root.addHandler(handler)
    for h in root.handlers:
        if type(h) is _StderrHandler:
            h.setLevel(logging.NOTSET if console else logging.WARNING)
    return logging.getLogger('issegm')


def progress(total, desc, unit='img'):
    """A tqdm bar on stderr (shown on terminals, silent in logs and CI)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=None if _console['on'] else True,
                leave=False, file=sys.stderr)
