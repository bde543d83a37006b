"""The job launcher: DMLC environment, a real ps-lite job, deaths, signals, ssh commands."""
import glob
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from issegm.cluster import launcher as launch

from util.child_env import REPO as ROOT  # noqa: E402


def launcher(args, cwd, extra_env=(), **kw):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1', **dict(extra_env))
    return subprocess.Popen([sys.executable, '-m', 'issegm.launch'] + args, cwd=str(cwd), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open('/proc/%d/stat' % pid) as f:  # a zombie is gone for our purpose
        return f.read().split(')')[-1].split()[0] != 'Z'


def test_plan_gives_each_process_its_dmlc_environment():
    procs = launch.plan(3, 2, ['me@h1', 'h2'], '10.0.0.9', 9000, local_host='here')
    assert [(p.role, p.index, p.host) for p in procs] == [
        ('scheduler', 0, 'here'), ('server', 0, 'me@h1'), ('server', 1, 'h2'),
        ('worker', 0, 'me@h1'), ('worker', 1, 'h2'), ('worker', 2, 'me@h1')]
    for p in procs:
        assert p.env['DMLC_ROLE'] == p.role
        assert (p.env['DMLC_PS_ROOT_URI'], p.env['DMLC_PS_ROOT_PORT']) == ('10.0.0.9', '9000')
        assert (p.env['DMLC_NUM_SERVER'], p.env['DMLC_NUM_WORKER']) == ('2', '3')
    assert [p.env['DMLC_NODE_HOST'] for p in procs] == ['10.0.0.9', 'h1', 'h2', 'h1', 'h2', 'h1']
    with pytest.raises(SystemExit, match='at least one worker'):
        launch.plan(0, 1, ['h'], 'r', 1)


WORKER = r'''
import os, sys
import mxnet as mx
kv = mx.kv.create('dist_sync')
value = mx.nd.ones((4,)) * (kv.rank + 1)
kv.init('x', mx.nd.zeros((4,)))
kv.pushpull('x', value, out=value)
with open('out.%d' % kv.rank, 'w') as f:
    f.write('%d %d %s' % (kv.rank, kv.num_workers, value.asnumpy().tolist()))
'''


def test_local_job_sums_through_the_parameter_server(tmp_path):
    (tmp_path / 'w.py').write_text(WORKER)
    proc = launcher(['-n', '2', '-s', '1', '--', sys.executable, 'w.py'], tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    results = sorted(open(p).read() for p in glob.glob(str(tmp_path / 'out.*')))
    # ranks 0 and 1 of 2; the sum of the pushed 1s and 2s on both
    assert results == ['0 2 [3.0, 3.0, 3.0, 3.0]', '1 2 [3.0, 3.0, 3.0, 3.0]']


DYING = r'''
import os, signal
import mxnet as mx
kv = mx.kv.create('dist_sync')
with open('pid.%d' % kv.rank, 'w') as f:
    f.write(str(os.getpid()))
if kv.rank == 1:
    os.kill(os.getpid(), signal.SIGKILL)
kv._barrier()  # rank 0 would wait here forever
open('passed', 'w').close()
'''


def test_a_dying_worker_ends_the_job_with_one_line(tmp_path):
    (tmp_path / 'w.py').write_text(DYING)
    proc = launcher(['-n', '2', '-s', '1', '--grace', '2', '--', sys.executable, 'w.py'], tmp_path)
    out, err = proc.communicate(timeout=120)
    lines = [l for l in err.splitlines() if l.startswith('launch:')]
    assert len(lines) == 1 and 'was killed by SIGKILL' in lines[0] and 'stopped the job (3 other' in lines[0], err
    dead = int(open(str(tmp_path / 'pid.1')).read())  # rank 1 (the launcher's numbering may differ)
    assert 'on 127.0.0.1 (pid %d) was killed' % dead in lines[0]
    assert proc.returncode == 128 + signal.SIGKILL
    assert not os.path.exists(str(tmp_path / 'passed'))
    assert not alive(int(open(str(tmp_path / 'pid.0')).read()))


WAITING = r'''
import os, signal, sys
def stop(signum, frame):
    open('got.%d' % os.getpid(), 'w').write(signal.Signals(signum).name)
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
open('ready.%d' % os.getpid(), 'w').close()
while True:
    signal.pause()
'''


def test_ctrl_c_is_forwarded_and_stops_every_process(tmp_path):
    (tmp_path / 'w.py').write_text(WAITING)
    proc = launcher(['-n', '2', '-s', '1', '--grace', '5', '--', sys.executable, 'w.py'], tmp_path)
    deadline = time.time() + 60
    while len(glob.glob(str(tmp_path / 'ready.*'))) < 2:
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT
    assert 'SIGINT received; stopped all 4 processes' in err
    workers = [int(p.rsplit('.', 1)[1]) for p in glob.glob(str(tmp_path / 'ready.*'))]
    for pid in workers:
        assert open(str(tmp_path / ('got.%d' % pid))).read() == 'SIGINT'
        assert not alive(pid)


def test_ssh_dry_run_prints_every_command(tmp_path):
    hosts = tmp_path / 'hosts'
    hosts.write_text('me@h1  # first\n\nh2\n')
    proc = launcher(['-n', '3', '-s', '2', '--launcher', 'ssh', '-H', str(hosts), '--root-uri', '10.0.0.9',
                     '--port', '9000', '--dry-run', '--', 'python', 'issegm/train_src.py', '--kvstore',
                     'dist_sync'], tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0::2] == ['# scheduler 0 on 10.0.0.9', '# server 0 on me@h1', '# server 1 on h2',
                           '# worker 0 on me@h1', '# worker 1 on h2', '# worker 2 on me@h1']
    scheduler = shlex.split(lines[1])
    assert scheduler[0] == 'env' and 'DMLC_ROLE=scheduler' in scheduler and scheduler[-3:] == [
        'python', '-c', 'import mxnet']
    for line, host, role in zip(lines[3::2], ['me@h1', 'h2', 'me@h1', 'h2', 'me@h1'], ['server'] * 2 + ['worker'] * 3):
        words = shlex.split(line)
        assert words[0] == 'ssh' and words[-2] == host
        remote = shlex.split(words[-1])
        assert remote[:3] == ['cd', str(tmp_path), '&&']
        assert {'DMLC_ROLE=' + role, 'DMLC_NUM_WORKER=3', 'DMLC_NUM_SERVER=2', 'DMLC_PS_ROOT_URI=10.0.0.9',
                'DMLC_PS_ROOT_PORT=9000', 'DMLC_NODE_HOST=' + host.split('@')[-1]} <= set(remote)
        tail = ['python', 'issegm/train_src.py', '--kvstore', 'dist_sync'] if role == 'worker' else \
            ['python', '-c', 'import mxnet']
        assert remote[-len(tail):] == tail


@pytest.mark.parametrize('args, message', [
    (['-n', '2'], 'no command'),
    (['-n', '2', '--launcher', 'ssh', '--', 'python', 'x.py'], 'needs -H HOSTFILE'),
    (['-n', '2', '--launcher', 'ssh', '-H', 'missing-hosts', '--', 'python', 'x.py'], 'cannot read the host file'),
])
def test_bad_arguments_give_one_line(tmp_path, args, message):
    proc = launcher(args, tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and message in err and 'Traceback' not in err


FAKE_SSH = '''#!/bin/sh
# Stands in for ssh: drops the options, logs the host, and runs the remote command here in a
# clean environment (a remote login shell inherits nothing from the launcher either).
while [ "$1" = "-o" ]; do shift 2; done
[ "$1" = "-tt" ] && shift
echo "$1" >> "%(log)s"
exec env -i PATH=/usr/bin:/bin HOME="$HOME" /bin/sh -c "$2"
'''

SEEN_ENV = WORKER + r'''
with open('env.%d' % kv.rank, 'w') as f:
    f.write('%s %s' % (os.environ.get('MARKER_NOT_FORWARDED'), os.environ.get('PYTHONPATH') is not None))
'''


def test_ssh_job_sums_through_the_parameter_server(tmp_path):
    """The ssh launcher for real, through an ssh stand-in: commands, quoting, cd and environment."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'ssh').write_text(FAKE_SSH % dict(log=tmp_path / 'ssh.log'))
    (bin_dir / 'ssh').chmod(0o755)
    hosts = tmp_path / 'hosts'
    hosts.write_text('me@localhost\n127.0.0.1\n')   # a user and a name, resolved for ps-lite
    work = tmp_path / 'a dir with spaces'
    work.mkdir()
    (work / 'w.py').write_text(SEEN_ENV)
    proc = launcher(['-n', '2', '-s', '1', '--launcher', 'ssh', '-H', str(hosts), '--root-uri', '127.0.0.1',
                     '--python', sys.executable, '--', sys.executable, 'w.py'], work,
                    extra_env=dict(MARKER_NOT_FORWARDED='yes', PATH=str(bin_dir) + os.pathsep + os.environ['PATH']))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    results = sorted(open(p).read() for p in glob.glob(str(work / 'out.*')))
    assert results == ['0 2 [3.0, 3.0, 3.0, 3.0]', '1 2 [3.0, 3.0, 3.0, 3.0]']
    # the server and both workers went through ssh, each to its host; PYTHONPATH forwarded, the rest not
    assert sorted(open(str(tmp_path / 'ssh.log')).read().split()) == ['127.0.0.1', 'me@localhost', 'me@localhost']
    assert [open(str(work / ('env.%d' % r))).read() for r in (0, 1)] == ['None True'] * 2
