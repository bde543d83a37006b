"""Checkpoint I/O for the released ``.params`` format.

A checkpoint is an MXNet NDArray dictionary whose keys are ``arg:NAME``
(learned parameters) and ``aux:NAME`` (BatchNorm moving statistics), exactly
as ``mx.model.save_checkpoint`` writes them. Loading checks the file and, into
a network, every name and shape, so that a wrong or damaged file is a one-line
error naming the file and the fix instead of a traceback from the C library.
"""
import logging
import os

import mxnet as mx

from util.io import atomic_path

__all__ = ['CheckpointError', 'load_ndarray_dict', 'has_module_keys', 'load_params_from_file', 'params_dict',
           'save_params', 'load_params', 'check_params']

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint file that is missing, damaged, or does not fit the network."""


def load_ndarray_dict(path):
    """The ``{name: NDArray}`` dictionary of an MXNet parameter file, whatever its key naming.

    Parameters
    ----------
    path : str
        The parameter file.

    Returns
    -------
    dict of str to mx.nd.NDArray
        The arrays by name.

    Raises
    ------
    CheckpointError
        For a missing, truncated or foreign file, or one that holds no named arrays.
    """
    if not os.path.isfile(path):
        raise CheckpointError('checkpoint not found: %s (put the released weights in models/, '
                              'or pass the right path with --weights)' % path)
    try:
        save_dict = mx.nd.load(path)
    except mx.base.MXNetError:
        raise CheckpointError('%s is not a complete MXNet .params file (truncated or another '
                              'format); download or copy it again' % path) from None
    if not isinstance(save_dict, dict) or not save_dict:
        raise CheckpointError('%s holds no named parameters; expected the arg:/aux: dictionary '
                              'that mx.model.save_checkpoint writes' % path)
    return save_dict


def has_module_keys(save_dict):
    """Whether any key of ``save_dict`` is ``arg:NAME`` or ``aux:NAME`` (a Module checkpoint)."""
    return any(key.startswith(('arg:', 'aux:')) for key in save_dict)


def load_params_from_file(path):
    """Load a ``.params`` file into NDArray dicts.

    Parameters
    ----------
    path : str
        A Module checkpoint (``arg:``/``aux:`` keys).

    Returns
    -------
    tuple of dict
        ``(arg_params, aux_params)``.

    Raises
    ------
    CheckpointError
        For a missing, truncated or foreign file.
    """
    arg_params, aux_params = {}, {}
    for key, value in load_ndarray_dict(path).items():
        kind, _, name = key.partition(':')
        if kind == 'arg' and name:
            arg_params[name] = value
        elif kind == 'aux' and name:
            aux_params[name] = value
        else:
            raise CheckpointError('%s: key %r is neither arg:NAME nor aux:NAME; this is not a '
                                  'Module checkpoint (Gluon .params files are not supported)'
                                  % (path, key))
    return arg_params, aux_params


def params_dict(arg_params, aux_params):
    """The ``{'arg:NAME': ..., 'aux:NAME': ...}`` dictionary of the released format, on the CPU."""
    save_dict = {'arg:%s' % k: v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
    save_dict.update({'aux:%s' % k: v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
    return save_dict


def save_params(path, arg_params, aux_params):
    """Write ``arg:``/``aux:`` parameters to ``path`` atomically (released format).

    Parameters
    ----------
    path : str
        The ``.params`` file.
    arg_params, aux_params : dict of str to mx.nd.NDArray
        The parameters.
    """
    with atomic_path(path) as tmp:
        mx.nd.save(tmp, params_dict(arg_params, aux_params))


def load_params(prefix, epoch):
    """Load ``{prefix}-{epoch:04d}.params`` and, if present, ``{prefix}-symbol.json``.

    Parameters
    ----------
    prefix : str
        Checkpoint prefix.
    epoch : int
        Epoch number.

    Returns
    -------
    tuple
        ``(symbol, arg_params, aux_params)``; ``symbol`` None without the json file.
    """
    arg_params, aux_params = load_params_from_file('%s-%04d.params' % (prefix, epoch))
    symbol_path = '%s-symbol.json' % prefix
    symbol = mx.sym.load(symbol_path) if os.path.isfile(symbol_path) else None
    return symbol, arg_params, aux_params


def _shape_text(shape):
    return 'x'.join(str(d) for d in shape)


def check_params(expected, found, path, kind='arg', may_be_missing=()):
    """Compare ``found`` parameters with ``expected`` ``{name: shape}``.

    Parameters
    ----------
    expected : dict of str to tuple
        The network's parameter shapes.
    found : dict of str to mx.nd.NDArray
        The checkpoint's parameters.
    path : str
        The checkpoint, for the message.
    kind : str
        ``arg`` or ``aux``, for the message.
    may_be_missing : sequence of str
        Names that may be absent.

    Returns
    -------
    list of str
        The names in ``may_be_missing`` that are absent (to be initialised by
        the caller).

    Raises
    ------
    CheckpointError
        For any other missing, unexpected or mis-shaped parameter, naming the
        first few and ``path``.
    """
    missing = [n for n in expected if n not in found]
    allowed = [n for n in missing if n in may_be_missing]
    missing = [n for n in missing if n not in may_be_missing]
    extra = [n for n in found if n not in expected]
    wrong = ['%s (file %s, network %s)' % (n, _shape_text(found[n].shape), _shape_text(expected[n]))
             for n in expected if n in found and tuple(found[n].shape) != tuple(expected[n])]
    problems = []
    for what, names in (('missing', missing), ('unexpected', extra), ('mis-shaped', wrong)):
        if names:
            shown = ', '.join(names[:4]) + (', ...' if len(names) > 4 else '')
            problems.append('%d %s %s parameter(s): %s' % (len(names), what, kind, shown))
    if problems:
        raise CheckpointError('%s does not fit the network: %s. Check that --weights and --model '
                              'name the same class count and network' % (path, '; '.join(problems)))
    return allowed
