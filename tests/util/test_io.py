"""Atomic writes: whole files or none, with ordinary permissions."""
import os

import numpy as np
import pytest

from util.io import atomic_path, atomic_write, save_npy_atomic


def test_atomic_write_renames_into_place_with_umask_mode(tmp_path):
    path = tmp_path / 'sub' / 'a.txt'
    old = os.umask(0o022)
    try:
        with atomic_write(str(path)) as f:
            f.write('x')
    finally:
        os.umask(old)
    assert path.read_text() == 'x'
    assert (path.stat().st_mode & 0o777) == 0o644
    assert os.listdir(tmp_path / 'sub') == ['a.txt']


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / 'b.npy'
    with pytest.raises(RuntimeError):
        with atomic_path(str(path)) as tmp:
            with open(tmp, 'w') as f:
                f.write('partial')
            raise RuntimeError('killed')
    assert os.listdir(tmp_path) == []


def test_save_npy_atomic_round_trip(tmp_path):
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    save_npy_atomic(str(tmp_path / 'c.npy'), arr)
    assert np.array_equal(np.load(str(tmp_path / 'c.npy')), arr)
