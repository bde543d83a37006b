"""A full disk at a checkpoint write is the one-line 'disk full' failure, naming the folder."""
import os
import subprocess
import tempfile

import mxnet as mx
import numpy as np
import pytest

from issegm.phases.cli import describe_failure
from util.io import DiskFullError
from util.mxutil import save_params


def _params():
    return {'w': mx.nd.array(np.ones((64, 1024), np.float32))}, {}


def test_mxnet_incomplete_write_is_disk_full_and_leaves_nothing(tmp_path, monkeypatch):
    def incomplete(path, data):
        with open(path, 'wb') as f:
            f.write(b'partial')
        raise mx.base.MXNetError('[12:00:00] src/io/local_filesys.cc:166: Check failed: nwrite == size (4096 vs. '
                                 '262144) : FileStream.Write incomplete')
    monkeypatch.setattr(mx.nd, 'save', incomplete)
    with pytest.raises(DiskFullError) as info:
        save_params(str(tmp_path / 'm_ep-0001.params'), *_params())
    code, line = describe_failure(info.value)
    assert code == 1 and line.startswith('disk full while writing in %s' % tmp_path)
    assert os.listdir(str(tmp_path)) == []


@pytest.fixture
def tiny_filesystem():
    """A 64 KiB tmpfs (root only): a real full disk, for the MXNet writer itself."""
    folder = tempfile.mkdtemp()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', folder],
                      capture_output=True).returncode != 0:
        os.rmdir(folder)
        pytest.skip('cannot mount a small tmpfs here (needs root): the stand-in test above covers the mapping')
    yield folder
    subprocess.run(['umount', folder], capture_output=True)
    os.rmdir(folder)


def test_a_real_full_disk_at_a_params_write_names_itself(tiny_filesystem):
    with pytest.raises(DiskFullError) as info:
        save_params(os.path.join(tiny_filesystem, 'm_ep-0001.params'), *_params())  # 256 KiB of weights
    assert describe_failure(info.value)[1].startswith('disk full while writing in %s' % tiny_filesystem)
    assert os.listdir(tiny_filesystem) == []
