"""run_guard: the output lock (held across a child, gone with a killed holder), settings, debris."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from issegm.storage import run_guard
from issegm.storage.run_guard import check_settings, child_lock_env, lock_output, remove_debris
from issegm.errors import RunRefused

from util.child_env import REPO as ROOT  # noqa: E402
TRY_LOCK = ('import sys; sys.path.insert(0, %r); from issegm.storage.run_guard import lock_output, RunRefused\n'
            'try:\n    lock_output(sys.argv[1]); print("locked")\n'
            'except RunRefused as e:\n    print("refused:", e)\n' % ROOT)
HOLD = ('import sys, time; sys.path.insert(0, %r); from issegm.storage.run_guard import lock_output\n'
        'lock_output(sys.argv[1]); open(sys.argv[2], "w").close(); time.sleep(600)\n' % ROOT)


def _try(folder, env=None, fds=()):
    out = subprocess.run([sys.executable, '-c', TRY_LOCK, folder], capture_output=True, text=True, env=env,
                         pass_fds=fds, timeout=60)
    return out.stdout.strip()


def test_a_held_output_refuses_a_second_run_until_its_holder_is_killed(tmp_path):
    folder, ready = str(tmp_path / 'out'), str(tmp_path / 'ready')
    holder = subprocess.Popen([sys.executable, '-c', HOLD, folder, ready])
    try:
        deadline = time.time() + 60
        while not os.path.exists(ready):
            assert holder.poll() is None and time.time() < deadline
            time.sleep(0.02)
        msg = _try(folder)
        assert msg.startswith('refused: another run is writing into %s (pid %d' % (folder, holder.pid))
        assert msg.endswith('wait for it to end, or give this one another --output')
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert _try(folder) == 'locked'   # a killed run leaves nothing stuck


def test_a_child_shares_its_parents_lock_and_a_stranger_does_not(tmp_path):
    folder = str(tmp_path / 'out')
    assert lock_output(folder) is True
    try:
        assert lock_output(folder) is False            # held by this process already
        env, fds = child_lock_env()
        assert _try(folder, env=env, fds=fds) == 'locked'
        assert _try(folder).startswith('refused')      # no descriptor handed down
    finally:
        os.close(run_guard._HELD.pop(os.path.realpath(os.path.join(folder, '.lock'))))


def test_settings_are_recorded_then_compared(tmp_path, caplog):
    folder = str(tmp_path)
    settings = {'--base-lr': 0.0001, '--init-tgt-port': 0.2, '--kc-policy': 'cb', 'devices': 1}
    check_settings(folder, 'solve_AO', settings)
    check_settings(folder, 'solve_AO', dict(settings))   # the same: continues
    other = dict(settings, **{'--base-lr': 0.05, '--init-tgt-port': 0.6, '--kc-policy': 'global', 'devices': 2})
    with pytest.raises(RunRefused) as err:
        check_settings(folder, 'solve_AO', other, 'self-training rounds')
    msg = str(err.value)
    assert msg.startswith('%s holds self-training rounds made with other settings: --base-lr 0.0001 (now 0.05), '
                          '--init-tgt-port 0.2 (now 0.6), --kc-policy cb (now global) and 1 more' % folder)
    assert msg.endswith('give another --output, or add --restart to discard it and start again')
    check_settings(folder, 'train_src', other)           # another section is another record
    # Other versions: a warning, not a refusal.
    record = json.load(open(os.path.join(folder, 'run.json')))
    record['solve_AO']['environment']['mxnet'] = '0.0'
    json.dump(record, open(os.path.join(folder, 'run.json'), 'w'))
    caplog.set_level('WARNING')
    check_settings(folder, 'solve_AO', settings)
    assert any('mxnet 0.0 (now' in r.getMessage() for r in caplog.records)


def test_debris_of_atomic_writes_is_removed_and_nothing_else(tmp_path):
    from util.io import atomic_path
    keep = ['a.params', '.hidden', 'x.tmp.params', '.a.short.tmp.params']
    (tmp_path / 'sub').mkdir()
    for name in keep:
        (tmp_path / name).write_text('k')
    made = []
    for path in (tmp_path / 'm_ep-0001.params', tmp_path / 'sub' / 'p.png', tmp_path / 'list.lst'):
        with pytest.raises(KeyboardInterrupt):
            with atomic_path(str(path)) as tmp:
                made.append(tmp)
                raise KeyboardInterrupt
        open(made[-1], 'w').close()   # as a SIGKILL leaves it: the except clause never ran
    assert remove_debris(str(tmp_path)) == 3
    assert not any(os.path.exists(p) for p in made)
    assert sorted(os.listdir(str(tmp_path))) == sorted(keep + ['sub']) and os.listdir(str(tmp_path / 'sub')) == []


def test_settings_of_a_run_that_wrote_nothing_yet_give_way(tmp_path):
    folder = str(tmp_path)
    check_settings(folder, 'x', {'--a': 1}, has_work=lambda: False)
    check_settings(folder, 'x', {'--a': 2}, has_work=lambda: False)   # the first stopped before any output
    assert json.load(open(os.path.join(folder, 'run.json')))['x']['settings'] == {'--a': 2}
    with pytest.raises(RunRefused, match=r'--a 2 \(now 3\)'):
        check_settings(folder, 'x', {'--a': 3}, has_work=lambda: True)
