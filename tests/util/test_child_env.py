import os
import subprocess
import sys

from util.child_env import REPO, child_env


def test_repo_is_the_checkout_holding_the_scripts():
    assert os.path.isfile(os.path.join(REPO, 'issegm', 'solve_AO.py'))


def test_repository_comes_first_then_the_given_paths_then_the_callers(monkeypatch):
    monkeypatch.setenv('PYTHONPATH', '/callers/own')
    env = child_env('/extra/a', '/extra/b')
    assert env['PYTHONPATH'].split(os.pathsep) == [REPO, '/extra/a', '/extra/b', '/callers/own']


def test_no_empty_entry_when_the_caller_has_no_pythonpath(monkeypatch):
    # An empty entry would put the child's working directory on its path.
    monkeypatch.delenv('PYTHONPATH', raising=False)
    assert child_env()['PYTHONPATH'] == REPO


def test_threads_are_a_default_the_caller_can_override(monkeypatch):
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    assert child_env(threads=1)['OMP_NUM_THREADS'] == '1'
    assert 'OMP_NUM_THREADS' not in child_env()
    monkeypatch.setenv('OMP_NUM_THREADS', '2')
    assert child_env(threads=1)['OMP_NUM_THREADS'] == '2'


def test_a_child_started_elsewhere_imports_the_project(tmp_path):
    out = subprocess.run([sys.executable, '-c', 'import issegm, util; print(issegm.__file__)'], cwd=str(tmp_path),
                         env=child_env(), capture_output=True, text=True, check=True).stdout
    assert out.strip().startswith(os.path.join(REPO, 'issegm'))
