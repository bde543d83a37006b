"""Read PyTorch checkpoint files (``.pth``) into numpy arrays, without PyTorch.

Both formats of ``torch.save`` are read: the legacy one (PyTorch <= 1.5, or
``_use_new_zipfile_serialization=False``; CRST's released weights, written by PyTorch 0.4 on a
GPU) and the zip one (PyTorch >= 1.6). A ``.pth`` file is a pickle, and unpickling runs whatever
callables the file names; so the unpickler here resolves only the few globals a state_dict needs
(``collections.OrderedDict``, the ``torch._utils`` tensor/parameter rebuilders, ``torch.Size``
and the ``torch.*Storage`` types, all replaced by inert stand-ins) and refuses every other one
before anything runs.
"""
import collections
import io
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np
from numpy.lib.stride_tricks import as_strided

from util.mxutil import CheckpointError

__all__ = ['load_state_dict']

_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001
_REFUSAL_FIX = 'only tensors are read; re-save the checkpoint as a plain state_dict'

# Element type of each torch storage class, as stored on disk (little-endian unless the file
# says otherwise). numpy has no bfloat16: its 16 bits are read and widened to float32.
_STORAGE_DTYPES = {
    'DoubleStorage': '<f8', 'FloatStorage': '<f4', 'HalfStorage': '<f2',
    'BFloat16Storage': '<u2', 'LongStorage': '<i8', 'IntStorage': '<i4', 'ShortStorage': '<i2',
    'CharStorage': '|i1', 'ByteStorage': '|u1', 'BoolStorage': '|b1',
    'ComplexFloatStorage': '<c8', 'ComplexDoubleStorage': '<c16',
}


class _StorageType(object):
    """What a ``torch.<Name>Storage`` global unpickles to: its name and element type."""

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _StorageRef(object):
    """A storage named by a persistent id: record ``key``, or ``numel`` elements of it from
    ``offset`` (a legacy storage view); ``numel`` None means the whole record."""

    __slots__ = ('key', 'offset', 'numel')

    def __init__(self, key, offset=0, numel=None):
        self.key, self.offset, self.numel = key, offset, numel


class _TensorRef(object):
    """A tensor as pickled: a storage and the layout of the tensor in it (in elements)."""

    __slots__ = ('storage', 'offset', 'shape', 'stride')

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride


class _Unpickler(pickle.Unpickler):
    """Unpickler that rebuilds tensors as :class:`_TensorRef` and refuses every other global.

    The rebuilders are bound methods and the storage types fresh instances, so a hostile
    pickle cannot alter them for later files (a bound method takes no attributes); they only
    record what they are given, and :func:`_to_array` checks it.
    """

    def __init__(self, f, path):
        super(_Unpickler, self).__init__(f, encoding='utf-8')  # Python 2 ``str`` -> str
        self.path = path
        self.storage_types = {}
        self._globals = {
            ('collections', 'OrderedDict'): collections.OrderedDict,
            ('torch', 'Size'): tuple,
            ('torch._utils', '_rebuild_tensor'): self._rebuild_tensor,
            ('torch._utils', '_rebuild_tensor_v2'): self._rebuild_tensor,
            ('torch._utils', '_rebuild_parameter'): self._rebuild_parameter,
            ('torch._utils', '_rebuild_parameter_with_state'): self._rebuild_parameter,
        }

    def find_class(self, module, name):
        if module in ('torch', 'torch.cuda') and name in _STORAGE_DTYPES:
            return _StorageType(name)
        try:
            return self._globals[module, name]
        except KeyError:
            raise CheckpointError('%s: refused to unpickle %s.%s (%s)'
                                  % (self.path, module, name, _REFUSAL_FIX)) from None

    def persistent_load(self, pid):
        # ('storage', type, key, location, numel[, view_metadata]); the location ('cpu',
        # 'cuda:0') is ignored: every storage is read to host memory.
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == 'storage'
                and isinstance(pid[1], _StorageType)):
            raise CheckpointError('%s: unexpected persistent id %.80r; the file is damaged or '
                                  'was not written by torch.save' % (self.path, pid))
        key = str(pid[2])
        self.storage_types.setdefault(key, pid[1])
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return _StorageRef(key)
        # PyTorch <= 0.4 storage views: (view_key, offset, numel) inside the root storage
        _view_key, offset, numel = view
        return _StorageRef(key, offset, numel)

    def _rebuild_tensor(self, storage, storage_offset, size, stride, *_unused):
        # _unused: requires_grad, backward_hooks (v2), metadata; the layout is checked later
        return _TensorRef(storage, storage_offset, size, stride)

    def _rebuild_parameter(self, data, *_unused):
        return data


def load_state_dict(path):
    """Read the tensors of a PyTorch checkpoint as numpy arrays, without PyTorch.

    Reads the legacy ``torch.save`` format (PyTorch <= 1.5) and the zip format. Each tensor
    comes back as a new C-contiguous, writable array of its own dtype and shape (views of a
    shared storage, storage offsets and strides resolved); bfloat16 tensors come back as
    float32. Device locations (``'cuda:0'``) are ignored. A top-level dict that holds a
    ``'state_dict'`` (else ``'model'``) dict is unwrapped to it, and a ``module.`` prefix that
    every key carries (``nn.DataParallel``) is stripped. Only the globals a state_dict needs
    are unpickled; any other one (a whole pickled model, an optimizer with Python objects, a
    hostile file) is refused before it runs.

    Parameters
    ----------
    path : str
        The ``.pth`` file.

    Returns
    -------
    collections.OrderedDict
        ``name -> numpy.ndarray``, in the file's order.

    Raises
    ------
    util.mxutil.CheckpointError
        For a missing, truncated, damaged or refused file, or one that holds no tensors.
    """
    path = os.fspath(path)
    if _sniff(path) == 'zip':
        state, storages = _read_zip(path)
    else:
        state, storages = _read_legacy(path)
    arrays = collections.OrderedDict(
        (name, _to_array(path, name, tensor, storages)) for name, tensor in state.items())
    return _strip_module_prefix(arrays)


def _sniff(path):
    """'zip' or 'legacy' from the first bytes of ``path``."""
    if not os.path.isfile(path):
        raise CheckpointError('checkpoint not found: %s (check the path; a .pth file written '
                              'by torch.save is expected)' % path)
    with open(path, 'rb') as f:
        head = f.read(262)
    if not head:
        raise CheckpointError('%s is empty; copy or download the checkpoint again' % path)
    if head.startswith(b'PK'):
        return 'zip'
    if head[257:262] == b'ustar':
        raise CheckpointError('%s is in the tar format of PyTorch < 0.1.10, which is not read; '
                              'load it with torch and re-save its state_dict' % path)
    return 'legacy'


def _unpickle(unpickler, what):
    """Run ``unpickler``; any failure becomes a one-line CheckpointError naming ``what``."""
    try:
        return unpickler.load()
    except CheckpointError:
        raise
    except Exception as err:  # anything a malformed pickle can raise
        if isinstance(err, EOFError) or 'truncated' in str(err):
            raise CheckpointError('%s is truncated (it ends inside the %s); copy or download '
                                  'it again' % (unpickler.path, what)) from None
        raise CheckpointError('%s: cannot read the %s (%s: %s); the file is damaged or was not '
                              'written by torch.save' % (unpickler.path, what,
                                                         type(err).__name__, err)) from None


def _read_legacy(path):
    """``(state, storages)`` of a legacy-format file."""
    with open(path, 'rb') as f:
        byteorder = _read_legacy_header(f, path)
        unpickler = _Unpickler(f, path)
        state = _pick_state_dict(path, _unpickle(unpickler, 'main pickle'))
        keys = _unpickle(_Unpickler(f, path), 'list of storage keys')
        if not isinstance(keys, list):
            raise CheckpointError('%s: the list of storage keys is a %s; the file is damaged'
                                  % (path, type(keys).__name__))
        storages = _read_legacy_storages(f, path, [str(k) for k in keys],
                                         unpickler.storage_types, _used_keys(state), byteorder)
    return state, storages


def _read_legacy_header(f, path):
    """Check the magic number and protocol; return the byte order ('<' or '>')."""
    magic = _unpickle(_Unpickler(f, path), 'header')
    if magic != _LEGACY_MAGIC:
        raise CheckpointError('%s is not a PyTorch checkpoint (no torch.save magic number); '
                              'expected a .pth file written by torch.save' % path)
    protocol = _unpickle(_Unpickler(f, path), 'header')
    if protocol != _LEGACY_PROTOCOL:
        raise CheckpointError('%s: legacy protocol version %r is not read (only %d); load it '
                              'with torch and re-save it' % (path, protocol, _LEGACY_PROTOCOL))
    sys_info = _unpickle(_Unpickler(f, path), 'header')
    little = sys_info.get('little_endian', True) if isinstance(sys_info, dict) else True
    return '<' if little else '>'


def _read_legacy_storages(f, path, keys, storage_types, used, byteorder):
    """Read the data section: per key an int64 element count, then the raw elements."""
    size = os.fstat(f.fileno()).st_size
    storages = {}
    for key in keys:
        if key not in storage_types:
            raise CheckpointError('%s: the data section holds storage %r, which no tensor uses; '
                                  'the file is damaged' % (path, key))
        dtype = storage_types[key].dtype
        count, = struct.unpack(byteorder + 'q', _read_exact(f, 8, path))
        nbytes = count * dtype.itemsize
        if count < 0 or f.tell() + nbytes > size:
            raise CheckpointError('%s is truncated (the %d bytes of storage %s run past its '
                                  'end); copy or download it again' % (path, nbytes, key))
        if key in used:
            storages[key] = _storage_array(_read_exact(f, nbytes, path), storage_types[key],
                                           byteorder)
        else:  # e.g. optimizer state beside the state_dict
            f.seek(nbytes, io.SEEK_CUR)
    return storages


def _read_exact(f, nbytes, path):
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise CheckpointError('%s is truncated (it ends inside the tensor data); copy or '
                              'download it again' % path)
    return data


def _read_zip(path):
    """``(state, storages)`` of a zip-format file."""
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _zip_prefix(archive, path)
            byteorder = _zip_byteorder(archive, prefix, path)
            unpickler = _Unpickler(io.BytesIO(archive.read(prefix + 'data.pkl')), path)
            state = _pick_state_dict(path, _unpickle(unpickler, 'pickle data.pkl'))
            storages = {key: _zip_storage(archive, prefix, key, unpickler.storage_types[key],
                                          byteorder, path)
                        for key in _used_keys(state)}
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise CheckpointError('%s is a damaged or truncated zip checkpoint (%s); copy or '
                              'download it again' % (path, err)) from None
    return state, storages


def _zip_prefix(archive, path):
    """The record folder of the archive, ``'<name>/'``, which holds ``data.pkl``."""
    names = archive.namelist()
    pickles = [n for n in names if n.endswith('/data.pkl') and n.count('/') == 1]
    if pickles:
        return pickles[0][:-len('data.pkl')]
    if any(n.endswith('/constants.pkl') or '/code/' in n for n in names):
        raise CheckpointError('%s is a TorchScript archive (torch.jit.save), not a torch.save '
                              'checkpoint; save the model\'s state_dict with torch.save' % path)
    raise CheckpointError('%s is a zip archive without <name>/data.pkl, so not a torch.save '
                          'checkpoint; pass the .pth file written by torch.save' % path)


def _zip_byteorder(archive, prefix, path):
    try:
        order = archive.read(prefix + 'byteorder').strip()
    except KeyError:  # written before PyTorch 1.10: little-endian
        return '<'
    if order not in (b'little', b'big'):
        raise CheckpointError('%s: record byteorder says %r; the file is damaged' % (path, order))
    return '<' if order == b'little' else '>'


def _zip_storage(archive, prefix, key, storage_type, byteorder, path):
    try:
        data = archive.read(prefix + 'data/' + key)
    except KeyError:
        raise CheckpointError('%s: record data/%s of a tensor is missing; the archive is '
                              'incomplete, copy or download it again' % (path, key)) from None
    return _storage_array(data, storage_type, byteorder)


def _storage_array(data, storage_type, byteorder):
    """The 1-d array of a storage's raw bytes, in native byte order (bfloat16 -> float32)."""
    dtype = storage_type.dtype.newbyteorder(byteorder)
    array = np.frombuffer(data, dtype, len(data) // dtype.itemsize)
    if storage_type.name == 'BFloat16Storage':  # the high half of a float32
        return (array.astype(np.uint32) << 16).view(np.float32)
    native = dtype.newbyteorder('=')
    return array.view(native) if dtype.isnative else array.astype(native)


def _pick_state_dict(path, obj):
    """The name -> tensor dict of the unpickled ``obj`` (unwrapping 'state_dict'/'model')."""
    if isinstance(obj, dict):
        for wrapper in ('state_dict', 'model'):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict):
        raise CheckpointError('%s holds a %s, not a state_dict; re-save it with '
                              'torch.save(model.state_dict(), path)' % (path, _kind(obj)))
    if not obj:
        raise CheckpointError('%s holds an empty state_dict (no tensors); it was saved from a '
                              'model without parameters, save the trained one' % path)
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, _TensorRef):
            raise CheckpointError('%s: entry %.80r (%s) is not a tensor; re-save the checkpoint '
                                  'as a plain state_dict' % (path, name, _kind(value)))
    return obj


def _kind(obj):
    return 'tensor' if isinstance(obj, _TensorRef) else type(obj).__name__


def _used_keys(state):
    """Storage keys the tensors of ``state`` read."""
    return {t.storage.key for t in state.values() if isinstance(t.storage, _StorageRef)}


def _to_array(path, name, tensor, storages):
    """A C-contiguous copy of ``tensor`` read from its storage array."""
    ref = tensor.storage
    if not isinstance(ref, _StorageRef) or ref.key not in storages:
        raise CheckpointError('%s: tensor %s has no storage data in the file; the file is damaged'
                              % (path, name))
    base = _storage_view(path, name, ref, storages[ref.key])
    shape, stride, offset = _layout(path, name, tensor)
    if 0 in shape:
        return np.zeros(shape, base.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
    if last >= len(base):
        raise CheckpointError('%s: tensor %s reaches element %d of a storage of %d; the file is '
                              'damaged or truncated' % (path, name, last, len(base)))
    view = as_strided(base[offset:], shape, [s * base.dtype.itemsize for s in stride],
                      writeable=False)
    return np.array(view, order='C', copy=True)


def _storage_view(path, name, ref, base):
    """The part of a storage array that ``ref`` names (all of it, or a legacy view)."""
    if ref.numel is None:
        return base
    if not _all_ints((ref.offset, ref.numel)) or ref.offset + ref.numel > len(base):
        raise CheckpointError('%s: tensor %s names a storage view outside its storage; the file '
                              'is damaged' % (path, name))
    return base[ref.offset:ref.offset + ref.numel]


def _layout(path, name, tensor):
    """``(shape, stride, offset)`` of ``tensor``, checked to be non-negative ints."""
    shape, stride, offset = tensor.shape, tensor.stride, tensor.offset
    if isinstance(shape, (tuple, list)) and isinstance(stride, (tuple, list)) \
            and len(shape) == len(stride) and _all_ints(tuple(shape) + tuple(stride) + (offset,)):
        return tuple(shape), tuple(stride), offset
    raise CheckpointError('%s: tensor %s has a malformed size, stride or offset; the file is '
                          'damaged' % (path, name))


def _all_ints(values):
    return all(isinstance(v, int) and v >= 0 for v in values)


def _strip_module_prefix(arrays):
    """Drop the ``module.`` prefix that ``nn.DataParallel`` puts on every key."""
    prefix = 'module.'
    if all(name.startswith(prefix) for name in arrays):
        return collections.OrderedDict((name[len(prefix):], a) for name, a in arrays.items())
    return arrays
