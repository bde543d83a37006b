"""Command-line plumbing shared by the scripts: parsing, flag checks, one-line failures.

The flags themselves are declared once, in :mod:`issegm.flags`; a script lists
the ones it takes (:func:`add_flags`) and hands its body to
:func:`script_main`, which turns any failure into one line and an exit code.
"""
import contextlib
import os
import sys

from issegm.errors import DivergenceError, FlagError, Terminated
from issegm.flags import CRST_FLAGS, FLAGS, PAIR_RULES, PATH_FLAGS, RULES, flag_name
from issegm.method.crst import CrstWeights

__all__ = ['add_flags', 'parse', 'apply_env_switches', 'script_main', 'sigterm_as_interrupt', 'check_flags',
           'describe_failure', 'weights_from_args', 'flag_argv']


def add_flags(parser, names, **changes):
    """Add the shared flags ``names`` to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The script's parser.
    names : iterable of str
        Flags declared in :data:`issegm.flags.FLAGS`.
    **changes
        Maps a flag's dest to its own default.

    Returns
    -------
    argparse.ArgumentParser
        ``parser``.

    Raises
    ------
    ValueError
        When ``changes`` names a dest of no flag in ``names``.
    """
    for name in names:
        spec = dict(FLAGS[name])
        dest = spec.get('dest', name.lstrip('-').replace('-', '_'))
        if dest in changes:
            spec['default'] = changes.pop(dest)
        parser.add_argument(name, **spec)
    if changes:
        raise ValueError('no such flags: %s' % ', '.join(sorted(changes)))
    return parser


def apply_env_switches(args):
    """MXNet switches the reference sets from flags; they must precede any MXNet work."""
    if getattr(args, 'debug', False):
        os.environ['MXNET_ENGINE_TYPE'] = 'NaiveEngine'
    if getattr(args, 'backward_do_mirror', False):
        os.environ['MXNET_BACKWARD_DO_MIRROR'] = '1'
    if getattr(args, 'no_mxnet_cudnn_autotune_default', False):
        os.environ['MXNET_CUDNN_AUTOTUNE_DEFAULT'] = '0'
    return args


def parse(parser, argv=None):
    """Parse ``argv`` and apply the MXNet switches (:func:`apply_env_switches`).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The script's parser.
    argv : list of str, optional
        Default: ``sys.argv[1:]``.

    Returns
    -------
    argparse.Namespace or None
        With no arguments the help is printed and None returned (the script exits 1).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        parser.print_help()
        return None
    return apply_env_switches(parser.parse_args(argv))


def check_flags(args):
    """Check every flag value of ``args`` that has a rule.

    Then the pairs that contradict each other (:data:`issegm.flags.PAIR_RULES`),
    ``--gpus`` against the GPUs MXNet counts (none: the documented CPU
    fallback, :func:`util.device.get_contexts`), and that path flags are UTF-8.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed arguments.

    Returns
    -------
    argparse.Namespace
        ``args``.

    Raises
    ------
    FlagError
        Naming the first bad one.
    """
    for dest, (check, good) in RULES.items():
        value = getattr(args, dest, None)
        if value is not None and not check(value):
            raise FlagError('%s %s: expected %s' % (flag_name(dest), value, good))
    for low, high, why, exempt in PAIR_RULES:
        a, b = getattr(args, low, None), getattr(args, high, None)
        if a is not None and b is not None and a > b and (a, b) != exempt:
            raise FlagError('%s %s is above %s %s: %s; lower the first or raise the second'
                            % (flag_name(low), a, flag_name(high), b, why))
    if getattr(args, 'gpus', None) is not None:
        from util.device import check_gpus
        try:
            check_gpus(args.gpus)
        except ValueError as exc:
            raise FlagError(str(exc))
    for dest in PATH_FLAGS:
        value = getattr(args, dest, None)
        try:
            if value is not None:
                value.encode('utf-8')
        except UnicodeEncodeError:
            shown = value.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')
            raise FlagError('%s %s: the path is not UTF-8 (paths go into UTF-8 list files); rename it'
                            % (flag_name(dest), shown))
    return args


# ---------------------------------------------------------------------------- CRST flags -> values
def _dest(flag):
    return flag.lstrip('-').replace('-', '_')


def weights_from_args(args):
    """The :class:`CrstWeights` of parsed arguments (absent flags are 0).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed arguments.

    Returns
    -------
    CrstWeights
        The CRST weights.

    Raises
    ------
    FlagError
        For a negative one, or ``--lr-weight-ent`` without ``--kc-policy cb``.
    """
    values = [float(getattr(args, _dest(flag), 0.) or 0.) for flag in CRST_FLAGS]
    for flag, value in zip(CRST_FLAGS, values):
        if not value >= 0:
            raise FlagError('%s must be >= 0 (0 turns it off), got %r' % (flag, value))
    weights = CrstWeights(*values)
    if weights.soft and getattr(args, 'kc_policy', 'cb') not in (None, 'cb'):
        raise FlagError('--lr-weight-ent (CRST-LRENT) needs --kc-policy cb (class-balanced thresholds), '
                         'got --kc-policy %s' % args.kc_policy)
    return weights


def flag_argv(args):
    """The non-zero CRST flags of ``args`` as command-line words (none for CBST, so its commands stay)."""
    argv = []
    for flag, value in zip(CRST_FLAGS, weights_from_args(args)):
        if value:
            argv += [flag, '%.12g' % value]
    return argv



# ---------------------------------------------------------------------------- failures
def describe_failure(exc):
    """The exit code and one line for an exception.

    Parameters
    ----------
    exc : BaseException
        The failure.

    Returns
    -------
    tuple
        ``(exit_code, one_line)``; exit code 2: the command or its input must
        change, 1: a rerun of the same command can succeed (its finished work is kept).
    """
    import errno
    from util.io import DiskFullError
    if isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)):
        where = getattr(exc, 'folder', None) or os.path.dirname(str(exc.filename or '')) or 'the output folder'
        return 1, 'disk full while writing in %s: free space there, then rerun the same command ' \
                  '(finished work is kept)' % where
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return 2, 'cannot write %s: %s; choose a writable --output' % (exc.filename, exc.strerror)
    if isinstance(exc, (FileExistsError, NotADirectoryError)) and exc.filename:
        return 2, '%s: a file stands where a folder is needed (%s); choose another --output' % (
            exc.filename, exc.strerror)
    if isinstance(exc, MemoryError):
        return 1, 'out of memory; lower --batch-images or --crop-size, or free memory, then rerun the same command'
    if isinstance(exc, UnicodeError):
        return 2, 'text that is not UTF-8 (%s); rename the file or folder, or re-save the list as UTF-8' % exc
    if isinstance(exc, (ValueError, LookupError, OSError)):
        # Our checks: bad flags, lists, labels, checkpoints, refused reruns, divergence.
        return 2, str(exc)
    if isinstance(exc, DivergenceError):
        return 2, str(exc)
    text = str(exc).strip().splitlines()
    return 1, '%s: %s (unexpected; rerun with --debug for the traceback)' % (
        type(exc).__name__, text[-1] if text else '')


@contextlib.contextmanager
def sigterm_as_interrupt():
    """For the ``with`` block, SIGTERM raises :class:`issegm.errors.Terminated` in the main thread.

    The run then ends as after Ctrl-C: files are written atomically and a
    rerun continues. Outside the main thread signals are left alone.
    """
    import signal
    try:
        old = signal.signal(signal.SIGTERM, _terminated)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _terminated(signum, frame):
    raise Terminated()


_RUNNING = []  # the scripts whose script_main is running in this process (solve_AO, an in-process solve_ST)


def script_main(prog, run, args):
    """Call ``run(args)``; any failure is one line on stderr (a traceback too with ``--debug``).

    A failed worker of a distributed job ends at once
    (:func:`issegm.cluster.worker.abort`).

    Parameters
    ----------
    prog : str
        The script's name, for messages.
    run : callable
        The script's body; an int it returns is the exit code.
    args : argparse.Namespace or None
        The parsed arguments; None (no arguments: help was printed) gives 1.

    Returns
    -------
    int
        Exit code: 0 done, 1 failed but the same command can continue, 2 the
        command or its input must change (:func:`describe_failure`), 130 after
        Ctrl-C and 143 after SIGTERM (both one line: rerun to continue).
    """
    from issegm.cluster import worker
    if args is None:
        return 1
    _RUNNING.append(prog)
    try:
        with sigterm_as_interrupt():
            result = run(args)
    except KeyboardInterrupt as exc:  # Ctrl-C (130) or SIGTERM (Terminated, 143)
        if len(_RUNNING) > 1:  # a phase run in-process by solve_AO: the driver says it, once
            raise
        print('%s: interrupted; rerun the same command to continue' % prog, file=sys.stderr)
        code = getattr(exc, 'code', 130)
    except SystemExit as exc:  # e.g. solve_AO's SIGTERM
        if not worker.is_open():
            raise
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:
        if getattr(args, 'debug', False):
            import traceback
            traceback.print_exc()
        code, line = describe_failure(exc)
        print('%s: error: %s' % (prog, line), file=sys.stderr)
    else:
        code = result if isinstance(result, int) else 0
    finally:
        _RUNNING.pop()
    if code and worker.is_open():
        # A normal exit would wait for the other workers in ps-lite's last barrier.
        worker.abort(code)
    return code
