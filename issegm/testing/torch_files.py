"""Write small PyTorch checkpoint files by hand, without torch, for tests of the ``.pth`` reader.

Both ``torch.save`` layouts: the legacy one (5 pickles, then the raw storages) and the zip one
(``<name>/data.pkl`` and ``<name>/data/<key>``). The pickles are written by the pure-Python
pickler so that ``torch`` globals can be named without importing torch. Values may be numpy
arrays (each becomes a contiguous tensor with a storage of its own), :class:`Tensor` (any layout
in a shared :class:`Storage` or legacy :class:`StorageView`), or any other picklable object
(e.g. a hostile one). Tests only: the project never writes ``.pth`` files.
"""
import collections
import io
import pickle
import struct
import zipfile

import numpy as np

__all__ = ['Global', 'Storage', 'StorageView', 'Tensor', 'LEGACY_MAGIC', 'contiguous',
           'write_legacy', 'write_zip']

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001
_STORAGE_NAMES = {
    'float64': 'DoubleStorage', 'float32': 'FloatStorage', 'float16': 'HalfStorage',
    'int64': 'LongStorage', 'int32': 'IntStorage', 'int16': 'ShortStorage', 'int8': 'CharStorage',
    'uint8': 'ByteStorage', 'bool': 'BoolStorage',
}


class Global(object):
    """The global ``module.name``, pickled by name (GLOBAL opcode) without importing it."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # the pickler wants reduce functions to be callable
        raise TypeError('stand-in for %s.%s' % (self.module, self.name))


class Storage(object):
    """A torch storage holding the elements of ``array`` (flattened, C order).

    ``type_name`` overrides the storage class, e.g. ``'BFloat16Storage'`` over uint16 bits.
    """

    def __init__(self, array, type_name=None):
        self.array = np.ascontiguousarray(array).ravel()
        self.type_name = type_name or _STORAGE_NAMES[self.array.dtype.name]


class StorageView(object):
    """A PyTorch <= 0.4 storage view: ``numel`` elements of ``root`` from ``offset`` (legacy)."""

    def __init__(self, root, offset, numel):
        self.root, self.offset, self.numel = root, offset, numel


class Tensor(object):
    """A tensor of ``shape`` and ``stride`` (in elements) from ``offset`` of ``storage``."""

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset = storage, offset
        self.shape, self.stride = tuple(shape), tuple(stride)

    def __reduce__(self):
        return (Global('torch._utils', '_rebuild_tensor_v2'),
                (self.storage, self.offset, self.shape, self.stride, False,
                 collections.OrderedDict()))


def contiguous(array):
    """A :class:`Tensor` with a storage of its own holding ``array``."""
    strides = [s // array.itemsize for s in np.array(array, order='C').strides]
    return Tensor(Storage(array), 0, array.shape, strides)


def _save_global(pickler, obj):
    pickler.write(pickle.GLOBAL + ('%s\n%s\n' % (obj.module, obj.name)).encode('ascii'))
    pickler.memoize(obj)


def _save_python2_str(pickler, obj):
    # Python 2 pickles ``str`` as bytes: SHORT_BINSTRING / BINSTRING
    data = obj.encode('utf-8')
    if len(data) < 256:
        pickler.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
    else:
        pickler.write(pickle.BINSTRING + struct.pack('<i', len(data)) + data)
    pickler.memoize(obj)


class _Pickler(pickle._Pickler):
    """Protocol-2 pickler that names storages by persistent id, as torch.save does."""

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[Global] = _save_global

    def __init__(self, f, location, legacy):
        super(_Pickler, self).__init__(f, protocol=2)
        self.location, self.legacy = location, legacy
        self.storages = collections.OrderedDict()  # key -> root Storage, in order of use

    def _key(self, storage):
        for key, known in self.storages.items():
            if known is storage:
                return key
        # legacy files name storages by memory address, zip files by a counter
        key = str(id(storage)) if self.legacy else str(len(self.storages))
        self.storages[key] = storage
        return key

    def persistent_id(self, obj):
        if not isinstance(obj, (Storage, StorageView)):
            return None
        root = obj.root if isinstance(obj, StorageView) else obj
        pid = ('storage', Global('torch', root.type_name), self._key(root), self.location,
               root.array.size)
        if not self.legacy:
            return pid
        if isinstance(obj, StorageView):
            return pid + (('%s_view%d' % (pid[2], obj.offset), obj.offset, obj.numel),)
        return pid + (None,)

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            return contiguous(obj).__reduce__()
        return NotImplemented


class _Python2Pickler(_Pickler):
    """As :class:`_Pickler`, with strings and OrderedDicts as Python 2 pickled them."""

    dispatch = dict(_Pickler.dispatch)
    dispatch[str] = _save_python2_str

    def reducer_override(self, obj):
        if type(obj) is collections.OrderedDict:
            return collections.OrderedDict, ([[k, v] for k, v in obj.items()],)
        return super(_Python2Pickler, self).reducer_override(obj)


def _raw(storage, byteorder):
    array = storage.array
    return array.astype(array.dtype.newbyteorder('<' if byteorder == 'little' else '>')).tobytes()


def write_legacy(path, obj, location='cpu', python2=False, little_endian=True):
    """Write ``obj`` to ``path`` in the legacy ``torch.save`` format (PyTorch <= 1.5).

    Parameters
    ----------
    path : str
    obj : object
        Usually an OrderedDict of name -> numpy array or :class:`Tensor`.
    location : str
        Device named in every persistent id, e.g. ``'cuda:0'``.
    python2 : bool
        Pickle strings and OrderedDicts as Python 2 did (PyTorch 0.4 under Python 2.7).
    little_endian : bool
        Byte order of the header's sys_info and of the storage data.

    Returns
    -------
    str
        ``path``.
    """
    pickler_class = _Python2Pickler if python2 else _Pickler
    order = '<' if little_endian else '>'
    buf = io.BytesIO()
    sys_info = {'protocol_version': _LEGACY_PROTOCOL, 'little_endian': little_endian,
                'type_sizes': {'short': 2, 'int': 4, 'long': 8}}
    for header in (LEGACY_MAGIC, _LEGACY_PROTOCOL, sys_info):
        pickler_class(buf, location, legacy=True).dump(header)
    pickler = pickler_class(buf, location, legacy=True)
    pickler.dump(obj)
    keys = sorted(pickler.storages)  # torch sorts the keys as strings
    pickler_class(buf, location, legacy=True).dump(keys)
    for key in keys:
        storage = pickler.storages[key]
        buf.write(struct.pack(order + 'q', storage.array.size))
        buf.write(_raw(storage, 'little' if little_endian else 'big'))
    with open(path, 'wb') as f:
        f.write(buf.getvalue())
    return path


def write_zip(path, obj, location='cpu', name='archive', byteorder='little'):
    """Write ``obj`` to ``path`` in the zip ``torch.save`` format (PyTorch >= 1.6).

    Parameters
    ----------
    path : str
    obj : object
        As for :func:`write_legacy` (no :class:`StorageView`).
    location : str
        Device named in every persistent id.
    name : str
        The archive's record folder.
    byteorder : str
        ``'little'`` or ``'big'``: the ``byteorder`` record and the data's order.

    Returns
    -------
    str
        ``path``.
    """
    buf = io.BytesIO()
    pickler = _Pickler(buf, location, legacy=False)
    pickler.dump(obj)
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as archive:
        archive.writestr(name + '/data.pkl', buf.getvalue())
        archive.writestr(name + '/byteorder', byteorder)
        for key, storage in pickler.storages.items():
            archive.writestr('%s/data/%s' % (name, key), _raw(storage, byteorder))
        archive.writestr(name + '/version', '3\n')
    return path
