"""The job launcher: DMLC environment, a real ps-lite job, deaths, signals, ssh commands, checks, real ssh."""
import contextlib
import glob
import io
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from issegm.cluster import launch_watch
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
    # the scheduler logs who joins for the launcher (PS_VERBOSE=2); nobody asked to see it
    assert 'Meta:' not in err and 'assign rank' not in err, err[-2000:]


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
    hosts.write_text('me@h1  # first\n\nh2:2222\n')
    proc = launcher(['-n', '3', '-s', '2', '--launcher', 'ssh', '-H', str(hosts), '--root-uri', '10.0.0.9',
                     '--port', '9000', '--dry-run', '--', 'python', 'issegm/train_src.py', '--kvstore',
                     'dist_sync'], tmp_path, extra_env=dict(DMLC_INTERFACE='eth9', PS_VERBOSE='1'))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0::2] == ['# scheduler 0 on 10.0.0.9', '# server 0 on me@h1', '# server 1 on h2:2222',
                           '# worker 0 on me@h1', '# worker 1 on h2:2222', '# worker 2 on me@h1']
    scheduler = shlex.split(lines[1])
    # a bare python is the launcher's own interpreter; the scheduler logs who joins
    assert scheduler[0] == 'env' and 'DMLC_ROLE=scheduler' in scheduler and 'PS_VERBOSE=2' in scheduler
    assert scheduler[-3:] == [sys.executable, '-c', 'import mxnet']
    wrapper = os.path.join(ROOT, "issegm", "cluster", "launch_watch.py")
    for line, host, role in zip(lines[3::2], ['me@h1', 'h2:2222'] * 3, ['server'] * 2 + ['worker'] * 3):
        words = shlex.split(line)
        name, _, port = host.partition(':')
        assert words[0] == 'ssh' and words[-2] == name and '-T' in words and '-tt' not in words
        assert (words[words.index('-p') + 1] == port) if port else '-p' not in words
        remote = shlex.split(words[-1])
        assert remote[0] == 'env'
        # the user's DMLC_* and PS_* settings go along; the launcher's own DMLC_* come last and win
        assert {'DMLC_ROLE=' + role, 'DMLC_NUM_WORKER=3', 'DMLC_NUM_SERVER=2', 'DMLC_PS_ROOT_URI=10.0.0.9',
                'DMLC_PS_ROOT_PORT=9000', 'DMLC_NODE_HOST=' + name.split('@')[-1], 'DMLC_INTERFACE=eth9',
                'PS_VERBOSE=1'} <= set(remote)
        k = remote.index('-I')
        assert remote[k - 1:k + 4] == [sys.executable, '-I', wrapper, str(tmp_path), '10']
        tail = [sys.executable, 'issegm/train_src.py', '--kvstore', 'dist_sync'] if role == 'worker' else \
            [sys.executable, '-c', 'import mxnet']
        assert remote[k + 4:] == tail


def test_a_bare_python_becomes_the_launchers_interpreter():
    exe = '/opt/env/bin/python'
    for first in ('python', 'python3', 'python3.11'):
        assert launch.interpreter_command([first, 'x.py', 'python'], exe) == [exe, 'x.py', 'python']
    for first in ('/usr/bin/python3', './python', 'pythonista', 'bash'):
        assert launch.interpreter_command([first, 'x.py'], exe) == [first, 'x.py']


def test_host_file_takes_a_port_and_refuses_ssh_options(tmp_path):
    good = tmp_path / 'good'
    good.write_text('me@h1:2222\nh2  # comment\n10.0.0.3:22\n')
    assert launch.read_hostfile(str(good)) == ['me@h1:2222', 'h2', '10.0.0.3:22']
    assert launch.split_host('me@h1:2222') == ('me@h1', '2222') and launch.split_host('h2') == ('h2', None)
    for line in ('h1 -p 2222', '-i key h1', 'h1:99999', 'h1:ssh', 'fe80::1', 'a@b@c'):
        bad = tmp_path / 'bad'
        bad.write_text('ok\n' + line + '\n')
        with pytest.raises(SystemExit, match=r'bad line 2: .* is not \[user@\]host\[:port\]; put ssh options '
                                             r'.* in ~/.ssh/config'):
            launch.read_hostfile(str(bad))


def test_loopback_next_to_remote_hosts_is_refused():
    launch.check_addresses({'me@localhost': '127.0.0.1', '127.0.1.1': '127.0.1.1'}, '127.0.0.1')  # all here
    launch.check_addresses({'h1': '10.0.0.2', 'h2': 'h2'}, '10.0.0.1')
    with pytest.raises(SystemExit, match='^launch: host vm resolves to 127.0.1.1, a loopback address, next to '
                                         'remote hosts: list this machine by an address the others can reach$'):
        launch.check_addresses({'vm': '127.0.1.1', 'h2': '10.0.0.2'}, '10.0.0.1')
    with pytest.raises(SystemExit, match="scheduler's address 127.0.0.1 is a loopback address, next to remote"):
        launch.check_addresses({'h2': '10.0.0.2'}, '127.0.0.1')


@pytest.mark.parametrize('args, message', [
    (['-n', '2'], 'no command'),
    (['-n', '2', '--launcher', 'ssh', '--', 'python', 'x.py'], 'needs -H HOSTFILE'),
    (['-n', '2', '--launcher', 'ssh', '-H', 'missing-hosts', '--', 'python', 'x.py'], 'cannot read the host file'),
    (['-n', '1', '--port', '70000', '--', 'python', 'x.py'], '--port 70000 is not a TCP port (1..65535)'),
    (['-n', '1', '--port', '-5', '--', 'python', 'x.py'], '--port -5 is not a TCP port (1..65535)'),
    (['-n', '1', '--port', '0', '--dry-run', '--', 'python', 'x.py'], '--port 0 is not a TCP port (1..65535)'),
    (['-n', '1', '--', 'no-such-program-here', 'x'], "cannot run 'no-such-program-here' (the workers' command)"),
    (['-n', '1', '--python', 'no-such-python', '--', 'python', 'x.py'], "cannot run 'no-such-python'"),
    (['-n', '1', '--root-uri', '192.0.2.1', '--', 'python', 'x.py'], 'not an address of this machine'),
    (['-n', '1', '--launcher', 'ssh', '-H', 'hosts', '--ssh-config', 'nope', '--', 'python', 'x.py'],
     '--ssh-config nope: no such file'),
    (['-n', '1', '--launcher', 'ssh', '-H', 'hosts', '--root-uri', '127.0.0.1', '--dry-run', '--', 'python', 'x'],
     "scheduler's address 127.0.0.1 is a loopback address, next to remote hosts"),
    (['-n', '1', '--launcher', 'ssh', '-H', 'mixed', '--dry-run', '--', 'python', 'x'],
     'host localhost resolves to 127.0.0.1, a loopback address, next to remote hosts'),
    (['-n', '1', '--launcher', 'ssh', '-H', 'options', '--dry-run', '--', 'python', 'x'],
     "options line 1: '-p 2222 h1' is not [user@]host[:port]"),
])
def test_bad_arguments_give_one_line(tmp_path, args, message):
    (tmp_path / 'hosts').write_text('198.51.100.7\n')   # TEST-NET-2: never contacted by these runs
    (tmp_path / 'mixed').write_text('198.51.100.7\nlocalhost\n')
    (tmp_path / 'options').write_text('-p 2222 h1\n')
    proc = launcher(args, tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and message in err and 'Traceback' not in err, err
    assert len(err.splitlines()) == 1, err


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        s.listen()
        port = s.getsockname()[1]
        proc = launcher(['-n', '1', '--port', str(port), '--', 'python', '-c', 'open("ran", "w")'], tmp_path)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and err.strip() == (
        'launch: port %d is in use on this machine, where the scheduler listens; choose another --port or '
        'leave it out for a free one' % port)
    assert not (tmp_path / 'ran').exists()


STALLING_ONE = r'''
import os, time
try:
    os.close(os.open('first', os.O_CREAT | os.O_EXCL))   # the first worker here never joins
    time.sleep(600)
except FileExistsError:
    import mxnet as mx
    mx.kv.create('dist_sync')
'''


def test_a_job_not_started_in_time_stops_naming_the_missing(tmp_path):
    (tmp_path / 'w.py').write_text(STALLING_ONE)
    began = time.time()
    proc = launcher(['-n', '2', '-s', '1', '--grace', '2', '--start-timeout', '8', '--', 'python', 'w.py'],
                    tmp_path)
    out, err = proc.communicate(timeout=120)
    lines = [l for l in err.splitlines() if l.startswith('launch:')]
    assert proc.returncode == launch.START_FAILED and len(lines) == 1, err[-2000:]
    assert lines[0].startswith('launch: 1 of 3 servers and workers did not join the job within 8 s '
                               '(--start-timeout): 1 worker on 127.0.0.1 never reached the scheduler at '
                               '127.0.0.1:'), lines[0]
    assert 'server' not in lines[0].split('): ')[1].split(';')[0]
    assert 'Meta:' not in err and time.time() - began < 60


FAKE_SSH = '''#!/bin/sh
# Stands in for ssh: answers -G with the host's name, logs the host, and runs the remote command here in a
# clean environment (a remote login shell inherits nothing from the launcher either). Options come first,
# then the host and the command.
for arg; do host=$command; command=$arg; done
case " $* " in *" -G "*) echo "hostname ${command#*@}"; exit 0;; esac
echo "$host" >> "%(log)s"
exec env -i PATH=/usr/bin:/bin HOME="$HOME" /bin/sh -c "$command"
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
    assert '\r' not in out + err   # no terminal: no CRLF endings


# ---------------------------------------------------------------------------- remote processes, no ssh
def wrapped(folder, command, grace=2):
    """The argv of the remote wrapper running ``command`` in ``folder`` (what ssh runs on a host)."""
    return [sys.executable, '-I', launch_watch.__file__, str(folder), str(grace)] + command


def job_of(tmp_path, worker_argv, grace=2.0):
    """A Job of a stand-in scheduler (a local sleep) and one 'remote' worker started directly, not by ssh."""
    procs = launch.plan(1, 1, ['h1'], '10.0.0.9', 9000, address=lambda h: '10.0.0.1')
    starts = [launch.Start(procs[0], [sys.executable, '-c', 'import time; time.sleep(60)'], None, False),
              launch.Start(procs[2], worker_argv, None, True)]
    out = io.TextIOWrapper(io.BytesIO(), write_through=True)
    return launch.Job(starts, grace=grace, out=out), out


def said(out):
    return out.buffer.getvalue().decode()


@pytest.mark.parametrize('code, expected, status', [
    ('import os, signal; os.kill(os.getpid(), signal.SIGSEGV)', 'worker 0 on h1 was killed by SIGSEGV there',
     128 + signal.SIGSEGV),
    ('import sys; print("oops", file=sys.stderr); sys.exit(3)', 'worker 0 on h1 exited with code 3 there', 3),
])
def test_a_remote_failure_names_the_host_and_the_remote_status(tmp_path, code, expected, status):
    job, out = job_of(tmp_path, wrapped(tmp_path, [sys.executable, '-c', code]))
    assert job.start().wait() == status
    lines = said(out).splitlines()
    assert lines[-1].startswith('launch: %s; stopped the job (1 other' % expected), lines
    assert '@@' not in said(out) and 'pid' not in lines[-1]


@pytest.mark.parametrize('argv, expected, status', [
    (['sh', '-c', 'echo "ssh: connect to host h1 port 22: Connection refused" >&2; exit 255'],
     'launch: worker 0 on h1: ssh to h1 failed (code 255; its message is above)', 255),
    (['sh', '-c', 'echo "sh: 1: /no/python: not found" >&2; exit 127'],
     'launch: worker 0 on h1: ended with code 127 before the command started there', 127),
    ('missing', "launch: worker 0 on h1 could not start there: [Errno 2] No such file or directory: 'no-such-x'", 1),
])
def test_a_remote_start_failure_says_what_failed(tmp_path, argv, expected, status):
    argv = wrapped(tmp_path, ['no-such-x']) if argv == 'missing' else argv
    job, out = job_of(tmp_path, argv)
    assert job.start().wait() == status
    assert said(out).splitlines()[-1].startswith(expected), said(out)


def test_signals_reach_a_remote_command_by_name(tmp_path):
    (tmp_path / 'w.py').write_text(WAITING)
    job, out = job_of(tmp_path, wrapped(tmp_path, [sys.executable, 'w.py']))
    job.start()
    deadline = time.time() + 30
    while not glob.glob(str(tmp_path / 'ready.*')):
        assert time.time() < deadline
        time.sleep(0.02)
    job.stop(worker_signal=signal.SIGINT)
    pid = int(glob.glob(str(tmp_path / 'ready.*'))[0].rsplit('.', 1)[1])
    assert open(str(tmp_path / ('got.%d' % pid))).read() == 'SIGINT' and not alive(pid)


def test_the_remote_command_ends_when_the_launcher_is_gone(tmp_path):
    (tmp_path / 'w.py').write_text('import os, time\nopen("ready.%d" % os.getpid(), "w").close()\ntime.sleep(60)\n')
    wrapper = subprocess.Popen(wrapped(tmp_path, [sys.executable, 'w.py'], grace=1), stdin=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while not glob.glob(str(tmp_path / 'ready.*')):
        assert time.time() < deadline
        time.sleep(0.02)
    wrapper.stdin.close()   # what a lost connection looks like there
    assert wrapper.wait(timeout=20) == 128 + signal.SIGTERM
    assert wrapper.stderr.read().decode().splitlines() == ['@@issegm.launch started', '@@issegm.launch exit -15']


def test_markers_are_taken_out_of_a_stream_read_in_pieces():
    text = b'progress 50%\r@@issegm.launch started\nline\n@@issegm.launch exit -11\ntail'
    for size in (1, 3, 7, len(text)):
        status, out, rest = launch_watch.RemoteStatus(), [], b''
        for k in range(0, len(text), size):
            data, rest = launch_watch.split_marks(rest + text[k:k + size], status)
            out.append(data)
        assert b''.join(out) + rest == b'progress 50%\rline\ntail'
        assert status.started and status.code == -11


class Closed(object):
    def write(self, data):
        raise BrokenPipeError(32, 'Broken pipe')


def test_a_relay_keeps_draining_when_our_stderr_is_gone():
    """Otherwise a process writing more than a pipe holds would block, and the job with it."""
    status, (r, w) = launch_watch.RemoteStatus(), os.pipe()
    reader, writer = os.fdopen(r, 'rb'), os.fdopen(w, 'wb')

    def write():
        with contextlib.suppress(OSError), writer:
            writer.write(b'x' * 300000 + b'\n@@issegm.launch exit 3\n')   # more than a pipe holds

    threading.Thread(target=write, daemon=True).start()
    threading.Thread(target=launch_watch.relay_remote, args=(reader, status, Closed()), daemon=True).start()
    assert status.done.wait(20) and status.code == 3
    reader.close()


def test_the_scheduler_log_tells_who_reached_it():
    watch = launch_watch.StartupWatch()
    log = """[02:24:17] ../3rdparty/ps-lite/src/van.cc:310: Bind to role=scheduler, id=1, ip=10.0.0.1, port=9000, is_recovery=0
[02:24:17] ../3rdparty/ps-lite/src/van.cc:419: ? => 1. Meta: request=0, timestamp=0, control={ cmd=ADD_NODE, node={ role=server, ip=10.0.0.2, port=45513, is_recovery=0 } }
[02:24:18] ../3rdparty/ps-lite/src/van.cc:419: ? => 1. Meta: request=0, timestamp=0, control={ cmd=ADD_NODE, node={ role=worker, ip=10.0.0.2, port=49785, is_recovery=0 } }
something the user should see
"""
    chatter = [watch.feed(line) for line in log.splitlines()]
    assert chatter == [True, True, True, False]
    assert watch.bound and not watch.connected and dict(watch.reached) == {('server', '10.0.0.2'): 1,
                                                                          ('worker', '10.0.0.2'): 1}
    watch.feed('[02:24:18] ../3rdparty/ps-lite/src/van.cc:97: the scheduler is connected to 1 workers and 1 servers')
    assert watch.connected and not watch.started
    watch.feed('[02:24:18] ../3rdparty/ps-lite/src/van.cc:394: ? => 9. Meta: request=0, timestamp=4, '
               'control={ cmd=BARRIER, barrier_group=-986723712 }')
    assert watch.started


# ---------------------------------------------------------------------------- real ssh
SSHD_CONFIG = """ListenAddress %(address)s
HostKey %(tmp)s/host_key
AuthorizedKeysFile %(tmp)s/key.pub
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PidFile none
"""

SSH_CONFIG = """Host *
  User root
  IdentityFile %(tmp)s/key
  IdentitiesOnly yes
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  BatchMode yes
  ConnectTimeout 5
  LogLevel ERROR
"""


def _why_no_real_ssh():
    if os.geteuid() != 0:
        return 'needs root (a network namespace and sshd)'
    for tool in ('ssh', 'ssh-keygen', 'ip'):
        if shutil.which(tool) is None:
            return 'no %s here (apt-get install openssh-client iproute2)' % tool
    if not os.access('/usr/sbin/sshd', os.X_OK):
        return 'no /usr/sbin/sshd here (apt-get install openssh-server)'
    return None


def _run(*argv):
    subprocess.run(argv, check=True, timeout=20, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_port(address, port, sshd):
    deadline = time.time() + 15
    while True:
        assert sshd.poll() is None, sshd.stderr.read().decode()
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError:
            assert time.time() < deadline, 'sshd on %s:%d did not answer' % (address, port)
            time.sleep(0.1)


@contextlib.contextmanager
def two_hosts(tmp):
    """Two ssh hosts on this machine: this one (an sshd on a veth address) and a network namespace.

    The namespace has the other end of a veth pair and its own sshd; the
    addresses are in 198.18.0.0/15 (set aside for network tests) on the veth
    only, so all traffic stays on this machine. Yields ``(namespace host, this host)``.
    """
    tag = os.getpid() % 100000
    ns, near, far = 'cbst%d' % tag, 'cbh%d' % tag, 'cbn%d' % tag
    net = '198.18.%d' % (tag % 250 + 1)
    here, there = net + '.1', net + '.2'
    sshds = []
    _run('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(tmp / 'host_key'))
    _run('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(tmp / 'key'))
    os.makedirs('/run/sshd', mode=0o755, exist_ok=True)   # sshd's privilege separation folder
    try:
        _run('ip', 'netns', 'add', ns)
        _run('ip', 'link', 'add', near, 'type', 'veth', 'peer', 'name', far)
        _run('ip', 'link', 'set', far, 'netns', ns)
        _run('ip', 'addr', 'add', here + '/30', 'dev', near)
        _run('ip', 'link', 'set', near, 'up')
        for args in (('addr', 'add', there + '/30', 'dev', far), ('link', 'set', far, 'up'),
                     ('link', 'set', 'lo', 'up')):
            _run('ip', 'netns', 'exec', ns, 'ip', *args)
        for address, port, prefix in ((there, 22, ['ip', 'netns', 'exec', ns]), (here, 2222, [])):
            config = tmp / ('sshd_%s' % address)
            config.write_text(SSHD_CONFIG % dict(address='%s:%d' % (address, port), tmp=tmp))
            sshds.append(subprocess.Popen(prefix + ['/usr/sbin/sshd', '-D', '-e', '-f', str(config)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            _wait_for_port(address, port, sshds[-1])
        (tmp / 'ssh_config').write_text(SSH_CONFIG % dict(tmp=tmp))
        yield there, here + ':2222'
    finally:
        for sshd in sshds:
            sshd.terminate()
            try:
                sshd.wait(timeout=5)
            except subprocess.TimeoutExpired:
                sshd.kill()
                sshd.wait()
        subprocess.run(['ip', 'netns', 'del', ns], stderr=subprocess.DEVNULL, timeout=20)
        subprocess.run(['ip', 'link', 'del', near], stderr=subprocess.DEVNULL, timeout=20)


REAL_WORKER = WORKER + r"""
with open('env.%d' % kv.rank, 'w') as f:
    f.write('%s %s' % (os.environ['DMLC_NODE_HOST'], os.environ.get('CBST_TEST_MARK')))
print('stdout of rank %d' % kv.rank)
"""


def test_a_two_host_job_over_real_ssh(tmp_path):
    """ssh into a network namespace and to this machine's veth address: a sum through the servers, then a
    host whose sshd is not there (ssh's code 255 reported as such)."""
    why = _why_no_real_ssh()
    if why:
        pytest.skip('real ssh test: ' + why)
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'w.py').write_text(REAL_WORKER)
    with contextlib.ExitStack() as stack:
        try:
            far, near = stack.enter_context(two_hosts(tmp_path))
        except (subprocess.SubprocessError, OSError, AssertionError) as exc:
            pytest.skip('real ssh test: cannot set up a network namespace with sshd here (%s)' % (
                getattr(exc, 'stderr', None) or exc))
        hosts = work / 'hosts'
        hosts.write_text('%s\n%s\n' % (far, near))
        common = ['--launcher', 'ssh', '-H', str(hosts), '--ssh-config', str(tmp_path / 'ssh_config'),
                  '--grace', '3', '--start-timeout', '60']
        proc = launcher(['-n', '2', '-s', '2'] + common + ['--', 'python', 'w.py'], work,
                        extra_env=dict(CBST_TEST_MARK='forwarded'))
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results = sorted(open(p).read() for p in glob.glob(str(work / 'out.*')))
        assert results == ['0 2 [3.0, 3.0, 3.0, 3.0]', '1 2 [3.0, 3.0, 3.0, 3.0]']
        seen = sorted(open(p).read() for p in glob.glob(str(work / 'env.*')))
        assert seen == sorted(['%s forwarded' % far, '%s forwarded' % near.split(':')[0]])
        assert sorted(out.splitlines()) == ['stdout of rank 0', 'stdout of rank 1'] and '\r' not in out + err
        # a host with no sshd on its port: ssh's own failure, named with the host
        hosts.write_text('%s\n%s\n' % (far, near.replace('2222', '2223')))
        proc = launcher(['-n', '2', '-s', '1'] + common + ['--', 'python', 'w.py'], work)
        out, err = proc.communicate(timeout=120)
        lines = [l for l in err.splitlines() if l.startswith('launch:')]
        assert proc.returncode == 255 and len(lines) == 1, err[-3000:]
        assert lines[0].startswith('launch: worker 1 on %s: ssh to %s failed (code 255' % (
            near.replace('2222', '2223'), near.replace('2222', '2223'))), lines
