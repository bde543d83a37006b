"""util.torch_checkpoint: CRST's tiny .pth fixtures in both formats, hand-made variants, and
refusal of hostile or damaged files."""
import collections
import json
import os
import pickle
import shlex
import zipfile

import numpy as np
import pytest

from issegm.testing.torch_files import Storage, StorageView, Tensor, write_legacy, write_zip
from util.mxutil import CheckpointError
from util.torch_checkpoint import load_state_dict

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'fixtures', 'deeplabv2')
TINY = ('tiny_legacy.pth', 'tiny_zip.pth')


def _fixture(name):
    return os.path.join(FIXTURES, name)


def _refused(path):
    """The one-line CheckpointError message that loading ``path`` raises."""
    with pytest.raises(CheckpointError) as info:
        load_state_dict(path)
    message = str(info.value)
    assert str(path) in message and '\n' not in message
    return message


@pytest.mark.parametrize('name', TINY)
def test_tiny_fixture_gives_exactly_the_expected_arrays(name):
    expected = np.load(_fixture('tiny_values.npz'))
    with open(_fixture('tiny_manifest.json')) as f:
        manifest = json.load(f, object_pairs_hook=collections.OrderedDict)
    state = load_state_dict(_fixture(name))
    assert isinstance(state, collections.OrderedDict)
    assert list(state) == list(manifest) == list(expected.keys())
    for key, array in state.items():
        assert array.dtype == expected[key].dtype == np.dtype(manifest[key]['dtype']), key
        assert array.shape == expected[key].shape == tuple(manifest[key]['shape']), key
        assert array.tobytes() == expected[key].tobytes(), key
        assert array.flags.c_contiguous and array.flags.writeable, key
    assert state['bn.num_batches_tracked'].shape == ()
    assert state['bn.num_batches_tracked'] == 919258752800
    # the view shares shared.full's storage; the transposed weight is read through its strides
    assert np.array_equal(state['shared.slice'], state['shared.full'][1:3, 2:5])
    state['shared.full'][:] = 0  # independent copies, not views of one buffer
    assert state['shared.slice'].any()


class _Payload(object):
    """Unpickles by calling ``func(arg)``."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def _payload(kind, marker):
    if kind == 'posix.system':  # os.system pickles as posix.system, eval (protocol 2) as
        # __builtin__.eval: the message names the global as the file does
        return _Payload(os.system, 'touch %s' % shlex.quote(marker))
    return _Payload(eval, 'open(%r, "w").close()' % marker)


def _main_pickle(path):
    """The pickle that holds the objects: data.pkl of a zip file, the 4th of a legacy one."""
    if zipfile.is_zipfile(path):
        return zipfile.ZipFile(path).read('archive/data.pkl')
    with open(path, 'rb') as f:
        for _ in range(3):
            pickle.load(f)  # the header: plain ints and a dict
        return f.read()


@pytest.mark.parametrize('writer', [write_legacy, write_zip])
@pytest.mark.parametrize('kind', ['posix.system', '__builtin__.eval'])
def test_hostile_pickle_is_refused_and_nothing_runs(tmp_path, writer, kind):
    marker = str(tmp_path / 'pwned')
    state = collections.OrderedDict([('evil', _payload(kind, marker)),
                                     ('w', np.ones(3, np.float32))])
    path = writer(str(tmp_path / 'model.pth'), state)
    # control: the default unpickler does run the payload (then fails on the torch globals)
    with pytest.raises(Exception):
        pickle.loads(_main_pickle(path))
    assert os.path.exists(marker)
    os.remove(marker)
    message = _refused(path)
    assert 'refused to unpickle %s' % kind in message and 'plain state_dict' in message
    assert not os.path.exists(marker)


@pytest.mark.parametrize('name', TINY)
def test_truncated_copies_of_a_tiny_file_are_refused(tmp_path, name):
    data = open(_fixture(name), 'rb').read()
    path = str(tmp_path / name)
    # every 5th length, and every length in the last 64 bytes (inside the last storage's data
    # or the zip directory): all of them would take ~20 s of file writes
    for size in sorted(set(range(1, len(data), 5)) | set(range(len(data) - 64, len(data)))):
        with open(path, 'wb') as f:
            f.write(data[:size])
        with pytest.raises(CheckpointError) as info:
            load_state_dict(path)
        assert path in str(info.value), size


def test_legacy_file_from_a_gpu_under_python2_as_crst_released_it(tmp_path):
    arrays = collections.OrderedDict([
        ('module.conv.weight', np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) - 5),
        ('module.double', np.linspace(-1, 1, 5)),
        ('module.half', np.array([[0.5, -2.0]], np.float16)),
        ('module.int', np.array([-7, 2 ** 31 - 1], np.int32)),
        ('module.byte', np.array([0, 255], np.uint8)),
        ('module.mask', np.array([True, False, True])),
        ('module.bn.num_batches_tracked', np.array(2 ** 40 + 3, np.int64)),
    ])
    path = write_legacy(str(tmp_path / 'gta_src.pth'), arrays, location='cuda:0', python2=True)
    raw = open(path, 'rb').read()
    assert b'cuda:0' in raw and pickle.SHORT_BINSTRING + b'\x06cuda:0' in raw
    state = load_state_dict(path)
    assert list(state) == [k[len('module.'):] for k in arrays]  # DataParallel prefix stripped
    for key, array in arrays.items():
        got = state[key[len('module.'):]]
        assert got.dtype == array.dtype and got.shape == array.shape
        assert np.array_equal(got, array)


@pytest.mark.parametrize('little_endian', [True, False])
def test_legacy_storage_views_of_pytorch_0_4_and_byte_order(tmp_path, little_endian):
    root = Storage(np.arange(20, dtype=np.float64))
    state = collections.OrderedDict([
        ('whole', Tensor(root, 0, (4, 5), (5, 1))),
        ('view', Tensor(StorageView(root, 6, 10), 2, (2, 2), (1, 4))),  # elements 8, 12, 9, 13
    ])
    path = write_legacy(str(tmp_path / 'old.pth'), state, little_endian=little_endian)
    got = load_state_dict(path)
    assert np.array_equal(got['whole'], np.arange(20.0).reshape(4, 5))
    assert got['view'].tolist() == [[8.0, 12.0], [9.0, 13.0]]
    assert got['view'].dtype.isnative


def test_zip_big_endian_and_bfloat16(tmp_path):
    values = np.array([1.5, -0.15625, 2.0 ** 100], np.float32)  # exact in bfloat16
    bf16 = Storage((values.view(np.uint32) >> 16).astype(np.uint16), 'BFloat16Storage')
    state = collections.OrderedDict([('bf16', Tensor(bf16, 0, (3,), (1,))),
                                     ('long', np.array([[1, -2 ** 40]], np.int64))])
    got = load_state_dict(write_zip(str(tmp_path / 'be.pth'), state, byteorder='big'))
    assert got['bf16'].dtype == np.float32 and np.array_equal(got['bf16'], values)
    assert got['long'].dtype == np.int64 and got['long'].tolist() == [[1, -2 ** 40]]


@pytest.mark.parametrize('writer', [write_legacy, write_zip])
@pytest.mark.parametrize('wrapper', ['state_dict', 'model'])
def test_a_checkpoint_dict_is_unwrapped_and_other_entries_are_skipped(tmp_path, writer, wrapper):
    weights = collections.OrderedDict([('module.b', np.ones(2, np.float32)),
                                       ('a.weight', np.zeros((1, 2), np.float32))])
    checkpoint = {'epoch': 7, wrapper: weights, 'optimizer': {'momentum': np.ones(9)}}
    got = load_state_dict(writer(str(tmp_path / 'ckpt.pth'), checkpoint))
    assert list(got) == ['module.b', 'a.weight']  # not every key has the prefix: kept
    assert np.array_equal(got['module.b'], [1, 1]) and got['a.weight'].shape == (1, 2)


def test_missing_empty_and_foreign_files_are_refused(tmp_path):
    assert 'not found' in _refused(str(tmp_path / 'none.pth'))
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    assert 'empty' in _refused(str(empty))
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(100))
    assert 'damaged or was not written by torch.save' in _refused(str(junk))
    plain = tmp_path / 'plain.pth'
    plain.write_bytes(pickle.dumps({'a': 1}, protocol=2))
    assert 'no torch.save magic number' in _refused(str(plain))
    assert 'without <name>/data.pkl' in _refused(_fixture('tiny_values.npz'))


@pytest.mark.parametrize('writer', [write_legacy, write_zip])
def test_empty_and_non_tensor_state_dicts_are_refused(tmp_path, writer):
    assert 'empty state_dict' in _refused(writer(str(tmp_path / 'e.pth'),
                                                 collections.OrderedDict()))
    mixed = collections.OrderedDict([('w', np.ones(2, np.float32)), ('epoch', 3)])
    assert "'epoch' (int) is not a tensor" in _refused(writer(str(tmp_path / 'm.pth'), mixed))
    assert 'holds a list' in _refused(writer(str(tmp_path / 'l.pth'), [np.ones(2)]))
    assert 'holds a tensor, not' in _refused(writer(str(tmp_path / 't.pth'), np.ones(2)))


@pytest.mark.parametrize('layout, words', [
    ((3, (4,), (1,)), 'reaches element 6 of a storage of 6'),  # past the end of the storage
    ((0, (2, 2), (-1, 1)), 'malformed'),
    ((0, (2, 3), (1,)), 'malformed'),
])
def test_a_tensor_outside_its_storage_is_refused_not_read(tmp_path, layout, words):
    offset, shape, stride = layout
    state = {'w': Tensor(Storage(np.arange(6, dtype=np.float32)), offset, shape, stride)}
    assert words in _refused(write_zip(str(tmp_path / 'oob.pth'), state))


def test_zip_variants_torchscript_missing_record(tmp_path):
    script = tmp_path / 'script.pt'
    with zipfile.ZipFile(str(script), 'w') as archive:
        archive.writestr('script/constants.pkl', b'')
        archive.writestr('script/code/__torch__.py', b'')
    assert 'TorchScript' in _refused(str(script))
    path = write_zip(str(tmp_path / 'x.pth'), {'w': np.ones(2, np.float32)})
    cut = tmp_path / 'cut.pth'
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(str(cut), 'w') as dst:
        for name in src.namelist():
            if name != 'archive/data/0':
                dst.writestr(name, src.read(name))
    assert 'record data/0 of a tensor is missing' in _refused(str(cut))
