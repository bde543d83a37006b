"""The error types of CBST-MX, in one place that imports nothing from the project.

Each is raised before or instead of expensive work and reaches the user as
one line (:func:`issegm.phases.cli.describe_failure`): ``ValueError``
subclasses mean the command or its input must change (exit 2);
:class:`PhaseError` carries its own exit code. The lower layer ``util`` has its
own two: ``util.io.DiskFullError`` and ``util.mxutil.CheckpointError``.
"""
__all__ = ['FlagError', 'DataError', 'RunRefused', 'DistError', 'DivergenceError', 'PhaseError', 'Terminated']


class FlagError(ValueError):
    """A flag value out of its range, or flags that contradict each other; the message names the flag."""


class DataError(ValueError):
    """A list file or data file is missing, unreadable or inconsistent."""


class RunRefused(ValueError):
    """Another run holds the folder, or the folder holds work made with other settings."""


class DistError(ValueError):
    """A distributed setting that cannot work: reported as one line before any work."""


class DivergenceError(RuntimeError):
    """The loss (or the weights) stopped being finite; nothing was saved after the last good epoch."""


class PhaseError(RuntimeError):
    """A phase of self-training failed; the message says where and how to resume (one line).

    Parameters
    ----------
    message : str
        The line shown to the user.
    code : int
        The exit code: 1 when the same command continues once the cause is
        fixed, 2 when the command must change.
    """

    def __init__(self, message, code=1):
        super(PhaseError, self).__init__(message)
        self.code = code


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: the run ends as after Ctrl-C, with exit code 143 (128 + 15).

    A ``KeyboardInterrupt`` so that whatever cleans up after Ctrl-C (ending a
    child phase, closing readers and writers) cleans up after it too.
    """

    code = 143
