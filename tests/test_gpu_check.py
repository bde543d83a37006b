"""The GPU check's code path (contexts, Module, optimizer, timing) runs on the CPU."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_runs_on_cpu_fallback():
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'bench', 'gpu_check.py'), '--gpus', '0',
                          '--arch', 't1', '--size', '64', '--repeat', '1', '--skip-golden',
                           '--eval-images', '2', '--eval-size', '64', '128'],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert 'running on the CPU' in out.stderr
    assert 'forward+backward+update' in out.stdout
    for mode in ('pil', 'device'):
        assert 'evaluation core at 64x128, %s post-processing' % mode in out.stdout
    assert 'overlapped/sequential' in out.stdout and 'device/pil time an image' in out.stdout
    assert 'device vs pil' in out.stdout and '-> OK' in out.stdout
