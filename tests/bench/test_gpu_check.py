"""The GPU check's code path (golden forward, contexts, Module, optimizer, timing) runs on the CPU."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from util.child_env import REPO as ROOT  # noqa: E402


def test_gpu_check_runs_on_cpu_fallback_and_its_numbers_hold():
    out = subprocess.run([sys.executable, '-m', 'bench.gpu_check', '--gpus', '0',
                          '--arch', 't1', '--size', '64', '--repeat', '1',
                          '--eval-images', '2', '--eval-size', '64', '128'],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert 'running on the CPU' in out.stderr
    # The golden forward of the full ResNet-38 through the project's loader, on the fallback device.
    err = float(re.search(r'golden forward on cpu\(0\): max \|diff\| (\S+) -> OK', out.stdout).group(1))
    assert err < 1e-5
    fwd, step = (float(v) for v in re.search(
        r'forward (\S+) s/iter, forward\+backward\+update (\S+) s/iter', out.stdout).groups())
    assert 0 < fwd < 60 and 0 < step < 60
    m = re.search(r'evaluation core at 64x128, pil .*: (\S+) s an image with the next forward launched first, '
                  r'(\S+) s one at a time, (\S+) s forward alone; overlapped/sequential = (\S+)', out.stdout)
    overlapped, sequential, forward, ratio = (float(v) for v in m.groups())
    assert min(overlapped, sequential, forward, ratio) > 0
    for mode in ('pil', 'device'):
        assert 'evaluation core at 64x128, %s post-processing' % mode in out.stdout
    assert 'overlapped/sequential' in out.stdout and 'device/pil time an image' in out.stdout
    assert 'device vs pil' in out.stdout and '-> OK' in out.stdout


def test_gpu_check_fails_on_a_golden_mismatch(tmp_path, monkeypatch, capsys):
    """The golden comparison can fail: against outputs off by 1e-4 it prints FAIL and exits 1."""
    from issegm.testing import checkpoints as checkpoint_recipe
    from bench import gpu_check
    wrong = str(tmp_path / 'golden.npy')
    np.save(wrong, np.load(checkpoint_recipe.GOLDEN) + 1e-4)
    monkeypatch.setattr(checkpoint_recipe, 'GOLDEN', wrong)
    monkeypatch.setattr(sys, 'argv', ['gpu_check.py', '--gpus', '', '--arch', 't1', '--size', '32'])
    with pytest.raises(SystemExit) as code:
        gpu_check.main()
    assert code.value.code == 1
    assert re.search(r'golden forward on cpu\(0\): max \|diff\| 1\.0\de-04 -> FAIL', capsys.readouterr().out)

