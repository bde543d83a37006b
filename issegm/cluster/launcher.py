"""Start a job on MXNet's parameter server (ps-lite): one scheduler, servers, workers.

    .venv/bin/python -m issegm.launch -n 2 -s 1 -- python issegm/train_src.py ... --kvstore dist_sync
    .venv/bin/python -m issegm.launch -n 8 -s 2 --launcher ssh -H hosts -- python issegm/solve_AO.py ...

MXNet's ``dist_sync`` / ``dist_device_sync`` KVStores talk to ps-lite, which
needs a scheduler, one or more servers and the workers, each started with
the ``DMLC_*`` environment (role, the scheduler's address and port, the
number of servers and workers). The PyPI wheel does not ship the
``dmlc_tracker`` that ``mxnet/tools/launch.py`` imports, so this module is
the small part of it the project needs:

* ``--launcher local`` starts every process on this machine (tests, one
  multi-GPU machine); ``--launcher ssh`` starts servers and workers on the
  hosts of ``-H HOSTFILE`` (``[user@]host[:port]`` a line, round-robin) in
  the current folder, which must be the same path on every host (a shared
  filesystem: workers read each other's pseudo-labels and rank 0's
  checkpoints); the scheduler runs here. ``--dry-run`` prints the commands.
* A command starting with a bare ``python``/``python3`` runs with this
  launcher's interpreter (``sys.executable``) on every node: a
  non-interactive ssh shell activates no virtual environment.
* Workers run ``COMMAND``; servers and the scheduler run ``PYTHON -c 'import
  mxnet'`` (importing MXNet with ``DMLC_ROLE`` server or scheduler enters
  the server loop, as in dmlc_tracker), so they never run the script itself.
* Remote processes run under a small wrapper (:mod:`issegm.cluster.launch_watch`)
  without a terminal: their stdout and stderr stay apart, signals reach them
  by name, and a failure is reported with its host and the remote exit
  status or signal.
* Before starting anything: the port, the hosts (no loopback address next
  to remote hosts) and, locally, the command are checked; each problem is
  one line. A job whose servers and workers have not all joined within
  ``--start-timeout`` seconds is stopped with one line naming the missing
  ones.
* SIGINT, SIGTERM and SIGHUP are forwarded: workers get the signal, servers
  and the scheduler are stopped, and anything still alive after
  ``--grace`` seconds is killed.
* If any process dies (non-zero exit, killed) the whole job is stopped
  (the survivors would otherwise wait forever for it) and one line says
  which process died and how; the exit code is non-zero.
"""
import argparse
import collections
import errno
import ipaddress
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from issegm.cluster import launch_watch

__all__ = ['Proc', 'Start', 'plan', 'read_hostfile', 'split_host', 'host_addresses', 'check_addresses',
           'check_port', 'check_runnable', 'free_port', 'interpreter_command', 'default_python', 'local_command',
           'remote_env', 'ssh_command', 'Job', 'build_parser', 'main']

#: Environment variables copied into remote commands (ssh launcher): these prefixes and names.
FORWARDED_ENV_PREFIXES = ('DMLC_', 'MXNET_', 'CBST_', 'OMP_', 'PS_')
FORWARDED_ENV = ('PYTHONPATH', 'PYTHONUNBUFFERED', 'CUDA_VISIBLE_DEVICES')

#: Seconds the servers and workers get to join the job (``--start-timeout``).
START_TIMEOUT = 120.0

#: Exit code of a job stopped because it did not start in time.
START_FAILED = 124

#: One process of the job: its role, index within the role, host and environment.
Proc = collections.namedtuple('Proc', ['role', 'index', 'host', 'env'])

#: How to start one process: ``env`` is the whole environment of a local one (None: ours);
#: a ``remote`` one is an ssh command running the wrapper of :mod:`issegm.cluster.launch_watch`.
Start = collections.namedtuple('Start', ['proc', 'argv', 'env', 'remote'])

_HOST = re.compile(r'^(?:[^@\s:/]+@)?[A-Za-z0-9._-]+(?::\d+)?$')
_PYTHON = re.compile(r'^python(\d+(\.\d+)?)?$')


class Refused(SystemExit):
    """A refusal before anything starts: :func:`main` prints its one line and exits with ``exit_code``.

    2 when the command must change, 1 when the same command works once the
    cause is gone (a port in use), as the scripts' exit codes.
    """

    def __init__(self, message, exit_code=2):
        super(Refused, self).__init__(message)
        self.exit_code = exit_code


def _refuse(message, code=2):
    raise Refused('launch: ' + message, code)


def split_host(host):
    """``([user@]host, port)`` of a host-file entry ``[user@]host[:port]``; port is None when absent."""
    target, _, port = host.partition(':')
    return target, (port or None)


def _valid_host(entry):
    port = split_host(entry)[1]
    return bool(_HOST.match(entry)) and (port is None or 1 <= int(port) <= 65535)


def read_hostfile(path):
    """The entries of ``path``, one ``[user@]host[:port]`` a line; blank lines and ``#`` comments skipped.

    Anything else (ssh options, IPv6 addresses) is refused: those belong in
    an ssh configuration file, whose ``Host`` names the file may list.
    """
    try:
        with open(path) as f:
            lines = [line.split('#', 1)[0].strip() for line in f]
    except OSError as exc:
        _refuse('cannot read the host file %s (%s); write one host name a line' % (path, exc))
    hosts = []
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        if not _valid_host(line):
            _refuse('%s line %d: %r is not [user@]host[:port]; put ssh options (port, key, jump host) in '
                    '~/.ssh/config or a file given with --ssh-config, as "Host NAME" with "HostName", "Port", '
                    '..., and list NAME' % (path, number, line))
        hosts.append(line)
    if not hosts:
        _refuse('the host file %s lists no host; write one host name a line' % path)
    return hosts


def free_port(host='127.0.0.1'):
    """A TCP port free on this machine now (the scheduler binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _cannot_listen(address, port, exc):
    if exc.errno == errno.EADDRINUSE:
        _refuse('port %d is in use on this machine, where the scheduler listens; choose another --port or '
                'leave it out for a free one' % port, code=1)  # the same command works once the port is free
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        _refuse('the scheduler\'s address %s is not an address of this machine, where it runs; give --root-uri '
                'one of its addresses' % address)
    _refuse('the scheduler cannot listen on %s:%d here (%s)' % (address, port, exc.strerror or exc))


def check_port(address, port):
    """Refuse (one line) a port out of 1..65535, or one the scheduler could not bind at ``address`` here."""
    if not 1 <= port <= 65535:
        _refuse('--port %d is not a TCP port (1..65535); leave --port out for a free one' % port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # ZeroMQ sets SO_REUSEADDR too: a port left in TIME_WAIT is no obstacle for it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as exc:
            _cannot_listen(address, port, exc)


def check_runnable(program, what):
    """Refuse (one line) a ``program`` this machine cannot run (not on PATH, not executable)."""
    if shutil.which(program) is None:
        _refuse('cannot run %r (%s): no such program on PATH, or not executable' % (program, what))


def _address(host):
    """The IPv4 address of ``[user@]host[:port]``, or its name where this machine cannot resolve it.

    ps-lite binds each node to its ``DMLC_NODE_HOST``, and ZeroMQ binds to
    addresses, not names: a name there ends the node with "bind failed".
    """
    name = split_host(host)[0].rsplit('@', 1)[-1]
    try:
        return socket.gethostbyname(name)
    except OSError:
        return name


def _ssh_hostname(host, ssh_base):
    """The name ssh connects to for ``host`` (``HostName`` of an ssh configuration), else its own name."""
    target, port = split_host(host)
    argv = list(ssh_base) + ['-G'] + (['-p', port] if port else []) + [target]
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ''
    names = [line.split(None, 1)[1].strip() for line in out.splitlines() if line.startswith('hostname ')]
    return names[0] if names else target


def host_addresses(hosts, ssh_base=('ssh',)):
    """``{host: address}`` for ``DMLC_NODE_HOST``: the ``HostName`` ssh would use, resolved here."""
    return {h: _address(_ssh_hostname(h, ssh_base)) for h in hosts}


def _is_loopback(address):
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:   # a name this machine cannot resolve: another machine
        return False


def check_addresses(addresses, root):
    """Refuse (one line) a loopback host or scheduler address next to remote hosts: the job would hang."""
    if all(_is_loopback(a) for a in addresses.values()):
        return
    for host, address in addresses.items():
        if _is_loopback(address):
            _refuse('host %s resolves to %s, a loopback address, next to remote hosts: list this machine by '
                    'an address the others can reach' % (host, address))
    if _is_loopback(root):
        _refuse('the scheduler\'s address %s is a loopback address, next to remote hosts: give --root-uri an '
                'address of this machine the others can reach' % root)


def plan(num_workers, num_servers, hosts, root_uri, port, local_host=None, address=None):
    """The processes of a job: the scheduler, then servers, then workers.

    Servers and workers go round-robin over ``hosts``; the scheduler runs on
    ``local_host`` (this machine). Each gets the ``DMLC_*`` variables ps-lite
    reads, with ``DMLC_NODE_HOST`` the address it is reached at
    (``address(host)``, by default the host's name resolved here).
    """
    if num_workers < 1 or num_servers < 1:
        _refuse('need at least one worker (-n) and one server (-s)')
    address = address or _address
    common = {'DMLC_PS_ROOT_URI': root_uri, 'DMLC_PS_ROOT_PORT': str(port),
              'DMLC_NUM_SERVER': str(num_servers), 'DMLC_NUM_WORKER': str(num_workers)}
    local_host = local_host or root_uri
    procs = [Proc('scheduler', 0, local_host, dict(common, DMLC_ROLE='scheduler', DMLC_NODE_HOST=root_uri))]
    for role, count in (('server', num_servers), ('worker', num_workers)):
        for k in range(count):
            host = hosts[k % len(hosts)]
            procs.append(Proc(role, k, host, dict(common, DMLC_ROLE=role, DMLC_NODE_HOST=address(host))))
    return procs


def interpreter_command(command, executable=None):
    """``command`` with a leading bare ``python``/``python3``/``python3.11`` made this interpreter's path.

    A path (anything with a ``/``) is left alone: it chooses the interpreter.
    """
    if command and _PYTHON.match(command[0]):
        return [executable or sys.executable] + list(command[1:])
    return list(command)


def default_python(command):
    """The interpreter of servers and the scheduler: the command's own python, else ours."""
    first = os.path.basename(command[0]) if command else ''
    return command[0] if first.startswith('python') else sys.executable


def _role_argv(proc, command, python):
    return list(command) if proc.role == 'worker' else [python, '-c', 'import mxnet']


def _scheduler_verbosity(environ):
    """True where the user asked for ps-lite's log (PS_VERBOSE): the scheduler's is shown, at level 2."""
    return environ.get('PS_VERBOSE', '0').strip() not in ('', '0')


def _local_vars(proc):
    """The variables a local process gets on top of ours (the scheduler logs who joins: PS_VERBOSE=2)."""
    return dict(proc.env, PS_VERBOSE='2') if proc.role == 'scheduler' else dict(proc.env)


def local_command(proc, command, python):
    """``(argv, env)`` to start ``proc`` on this machine."""
    env = dict(os.environ)
    env.update(_local_vars(proc))
    return _role_argv(proc, command, python), env


def remote_env(proc, environ=None):
    """The environment of a remote process: ours where forwarded (``DMLC_*``, ``PS_*``, ...), then its own."""
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items() if k in FORWARDED_ENV or k.startswith(FORWARDED_ENV_PREFIXES)}
    env.update(proc.env)
    return env


def ssh_command(proc, command, python, cwd, environ=None, ssh='ssh', grace=10.0, ssh_config=None):
    """``argv`` running ``proc`` on its host over ssh, in ``cwd``, with its environment.

    No terminal (``-T``): the remote streams stay apart and keep their line
    endings. The remote wrapper (:func:`issegm.cluster.launch_watch.wrap`, by the
    path of its file here: the repository is at the same path on every host)
    takes signal names on stdin, ends the command when the connection
    closes, and reports its start and exit status on stderr.
    """
    target, port = split_host(proc.host)
    env = remote_env(proc, environ)
    remote = ['env'] + ['%s=%s' % kv for kv in sorted(env.items())] + [
        python, '-I', os.path.abspath(launch_watch.__file__), cwd, '%g' % grace] + _role_argv(proc, command, python)
    return ([ssh] + (['-F', ssh_config] if ssh_config else []) +
            ['-T', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no'] + (['-p', port] if port else []) +
            [target, ' '.join(shlex.quote(a) for a in remote)])


def _describe(code):
    if code < 0:
        try:
            return 'was killed by %s' % signal.Signals(-code).name
        except ValueError:
            return 'was killed by signal %d' % -code
    return 'exited with code %d' % code


class _Node(object):
    """One started process: its :class:`Start`, ``Popen``, and what its output told (remote status)."""

    def __init__(self, start, popen):
        self.start, self.popen = start, popen
        self.proc, self.remote = start.proc, start.remote
        self.status = launch_watch.RemoteStatus() if start.remote else None

    def name(self):
        if self.remote:
            return '%s %d on %s' % (self.proc.role, self.proc.index, self.proc.host)
        return '%s %d on %s (pid %d)' % (self.proc.role, self.proc.index, self.proc.host, self.popen.pid)


class Job(object):
    """Running processes of one job; :meth:`wait` watches them until the job ends.

    ``starts`` is a list of :class:`Start`, the scheduler among them. With
    ``start_timeout`` (seconds), a job whose servers and workers have not all
    reached the scheduler by then is stopped. ``ps_verbose``: show the
    scheduler's ps-lite log (the user set PS_VERBOSE).
    """

    def __init__(self, starts, grace=10.0, out=sys.stderr, start_timeout=None, ps_verbose=False):
        self.starts = starts
        self.grace = float(grace)
        self.out = out
        self.start_timeout = start_timeout
        self.ps_verbose = ps_verbose
        self.watch = launch_watch.StartupWatch()
        self.running = []          # _Node
        self.threads = []
        self._signal = None
        self._deadline = None

    def _say(self, msg):
        print('launch: %s' % msg, file=self.out, flush=True)

    def _raw_out(self):
        return getattr(self.out, 'buffer', None) or sys.stderr.buffer

    def _thread(self, target, *args):
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        return t

    def _popen(self, start):
        # Own session: a terminal's Ctrl-C reaches only us and we forward it,
        # and stopping a process stops its children (data workers, phases) too.
        pipe = subprocess.PIPE
        scheduler = start.proc.role == 'scheduler'
        popen = subprocess.Popen(start.argv, env=start.env, start_new_session=True,
                                 stdin=pipe if start.remote else None,
                                 stderr=pipe if start.remote or scheduler else None)
        node = _Node(start, popen)
        if start.remote:
            self.threads.append(self._thread(launch_watch.relay_remote, popen.stderr, node.status, self._raw_out()))
        elif scheduler:
            self.threads.append(self._thread(launch_watch.relay_scheduler, popen.stderr, self.watch,
                                             self._raw_out(), self.ps_verbose))
        return node

    def start(self):
        for start in self.starts:
            try:
                self.running.append(self._popen(start))
            except OSError as exc:
                self.stop()
                _refuse('cannot start %s %d on %s: %s (%s)' % (start.proc.role, start.proc.index, start.proc.host,
                                                               start.argv[0], exc.strerror or exc))
        if self.start_timeout:
            self._deadline = time.time() + self.start_timeout
        return self

    def _send(self, node, sig):
        if node.remote and node.popen.stdin is not None:
            # the wrapper there signals the command; SIGKILL also closes the line (the wrapper's end)
            try:
                node.popen.stdin.write(('%s\n' % signal.Signals(sig).name).encode())
                node.popen.stdin.flush()
                if sig == signal.SIGKILL:
                    node.popen.stdin.close()
                return
            except (OSError, ValueError):
                pass
        try:
            os.killpg(node.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _on_signal(self, signum, frame):
        self._signal = signum

    def _alive(self):
        return [n for n in self.running if n.popen.poll() is None]

    def _wait_until(self, deadline):
        while time.time() < deadline and self._alive():
            time.sleep(0.05)

    def stop(self, worker_signal=signal.SIGTERM):
        """Signal every live process (workers ``worker_signal``, others SIGTERM); kill after the grace."""
        for node in self._alive():
            self._send(node, worker_signal if node.proc.role == 'worker' else signal.SIGTERM)
        self._wait_until(time.time() + self.grace)
        for node in self._alive():
            self._send(node, signal.SIGKILL)
        self._wait_until(time.time() + 5.0)   # remote ones: the kill travels to the host first
        for node in self._alive():
            try:
                os.killpg(node.popen.pid, signal.SIGKILL)   # the local ssh client: gives up on the host
            except (ProcessLookupError, PermissionError):
                pass
        for node in self.running:
            node.popen.wait()

    def wait(self, poll=0.05):
        """Watch the job until every worker is done or something dies; returns the exit code."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            return self._watch(poll)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            deadline = time.time() + 3.0   # the last output of the relayed streams
            for t in self.threads:
                t.join(max(0.0, deadline - time.time()))

    def _failure(self, node, code):
        """``(how, exit code)`` of a process that ended with ``code`` (a remote one: from its wrapper)."""
        if not node.remote:
            return '%s %s' % (node.name(), _describe(code)), (code if code > 0 else 128 - code)
        node.status.done.wait(2.0)   # its last stderr lines (the wrapper's status) may still be on the way
        status = node.status
        if status.code:
            return ('%s %s there' % (node.name(), _describe(status.code)),
                    status.code if status.code > 0 else 128 - status.code)
        if status.error:
            return '%s could not start there: %s' % (node.name(), status.error), 1
        if status.started:
            return '%s: its ssh connection ended (code %d) while the command ran there' % (node.name(), code), code
        if code == 255:
            return ('%s: ssh to %s failed (code 255; its message is above)' % (node.name(), node.proc.host),
                    code)
        return ('%s: ended with code %d before the command started there (the message is above; the '
                'repository and its environment must be at the same path on every host)' % (node.name(), code),
                code if code > 0 else 128 - code)

    def _startup_missing(self):
        """``(phrases, missing, total)``: the servers and workers that have not reached the scheduler."""
        groups = collections.OrderedDict()
        for node in self.running:
            if node.proc.role != 'scheduler':
                groups.setdefault((node.proc.role, node.proc.host, node.proc.env['DMLC_NODE_HOST']), []).append(node)
        root = [n for n in self.running if n.proc.role == 'scheduler'][0].proc.env
        scheduler = '%s:%s' % (root['DMLC_PS_ROOT_URI'], root['DMLC_PS_ROOT_PORT'])
        phrases, missing = [], 0
        for (role, host, address), nodes in groups.items():
            n, reached = len(nodes), min(self.watch.reached[role, address], len(nodes))
            started = max(sum(1 for x in nodes if not x.remote or x.status.started), reached)
            for count, what in ((n - started, 'did not start there (see the messages above)'),
                                (started - reached, 'never reached the scheduler at %s' % scheduler)):
                if count > 0:
                    phrases.append('%d %s%s on %s %s' % (count, role, 's' if count > 1 else '', host, what))
            missing += n - reached
        return phrases, missing, sum(len(g) for g in groups.values())

    def _startup_failed(self):
        phrases, missing, total = self._startup_missing()
        if not self.watch.bound:
            phrases.insert(0, 'the scheduler itself was not listening yet')
        others = len(self._alive())
        self.stop()
        self._say('%d of %d servers and workers did not join the job within %g s (--start-timeout): %s; stopped the '
                  'job (%d processes). A worker joins when it opens its KVStore; check that the hosts can reach '
                  'this machine (README: ports), or give them more time'
                  % (missing, total, self.start_timeout, '; '.join(phrases), others))
        return START_FAILED

    def _check_start(self):
        """At the start-up deadline: the exit code if the job must stop, else None (and no deadline now)."""
        if self.watch.started:
            self._deadline = None
            return None
        if time.time() <= self._deadline:
            return None
        if not self.watch.connected:
            return self._startup_failed()
        self._deadline = None
        # every node reached the scheduler; its answer may not have reached them (the log
        # of this step can be garbled, so this is no reason to stop a job that may be running)
        self._say('warning: every server and worker reached the scheduler, but %g s on no barrier has completed: '
                  'if the job hangs, the scheduler cannot reach them back (their ports: README)' % self.start_timeout)
        return None

    def _watch(self, poll):
        workers = [n for n in self.running if n.proc.role == 'worker']
        while True:
            if self._signal is not None:
                name = signal.Signals(self._signal).name
                self.stop(worker_signal=self._signal)
                self._say('%s received; stopped all %d processes of the job. Rerun the same command to '
                          'resume' % (name, len(self.running)))
                return 128 + self._signal
            for node in self.running:
                # Servers and the scheduler exit 0 only after every worker has finalised.
                code = node.popen.poll()
                if code:
                    others = sum(1 for n in self.running if n is not node and n.popen.poll() is None)
                    how, status = self._failure(node, code)
                    self.stop()
                    self._say('%s; stopped the job (%d other processes). Fix the cause reported above and rerun '
                              'the same command: finished work is kept' % (how, others))
                    return status
            if all(n.popen.poll() == 0 for n in workers):
                # Servers and the scheduler end by themselves once the workers have
                # finalised; workers that never opened the KVStore leave them waiting.
                self.grace = min(self.grace, 5.0)
                self.stop()
                return 0
            if self._deadline is not None:
                code = self._check_start()
                if code is not None:
                    return code
            time.sleep(poll)


def _outgoing_address(host):
    """This machine's address as seen from ``host`` (the interface routing to it)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            return s.getsockname()[0]
    except OSError:
        return _address(socket.gethostname())


def build_parser():
    parser = argparse.ArgumentParser(
        prog='python -m issegm.launch', usage='%(prog)s -n WORKERS [-s SERVERS] [--launcher local|ssh] '
                                              '[-H HOSTFILE] [--dry-run] -- COMMAND ...',
        description='Run COMMAND as the workers of a job on MXNet\'s parameter server (ps-lite); '
                    'use --kvstore dist_sync (or dist_device_sync) in training commands. A COMMAND starting '
                    'with a bare python or python3 runs with this launcher\'s own interpreter (%s) here and on '
                    'every host, since a non-interactive ssh shell activates no virtual environment: start the '
                    'launcher with the environment\'s python, or give the interpreter\'s path after --.'
                    % sys.executable,
        epilog='Remote processes get this environment\'s %s* variables and %s, and run in this folder, which '
               'must be at the same path there, as must the repository and its environment.'
               % ('*, '.join(FORWARDED_ENV_PREFIXES), ', '.join(FORWARDED_ENV)))
    parser.add_argument('-n', '--num-workers', type=int, required=True, help='Number of workers.')
    parser.add_argument('-s', '--num-servers', type=int, default=None,
                        help='Number of servers (default: one per host; 1 with --launcher local).')
    parser.add_argument('--launcher', choices=('local', 'ssh'), default='local',
                        help='local: every process on this machine; ssh: on the hosts of -H.')
    parser.add_argument('-H', '--hostfile', default=None,
                        help='Hosts for --launcher ssh, one [user@]host[:port] a line; other ssh settings go in '
                             '~/.ssh/config (or --ssh-config), whose Host names the file may list.')
    parser.add_argument('--ssh-config', default=None, help='An ssh configuration file for every ssh (ssh -F).')
    parser.add_argument('--port', type=int, default=None, help='The scheduler\'s port (default: a free one).')
    parser.add_argument('--root-uri', default=None,
                        help='This machine\'s address for the others (default: 127.0.0.1 locally, else '
                             'that of the interface routing to the first remote host).')
    parser.add_argument('--python', default=None,
                        help='Interpreter of servers and the scheduler (default: the command\'s python).')
    parser.add_argument('--grace', type=float, default=10.0,
                        help='Seconds a stopped process gets before it is killed.')
    parser.add_argument('--start-timeout', type=float, default=START_TIMEOUT,
                        help='Seconds the servers and workers get to join the job (a worker joins when it opens '
                             'its KVStore); then the job is stopped with one line naming the missing ones. 0: no '
                             'limit. Default: %(default)g.')
    parser.add_argument('--dry-run', action='store_true', help='Print the commands and exit (the host file and the '
                                                                 'addresses are checked; the port only for its range).')
    parser.add_argument('command', nargs=argparse.REMAINDER, help='-- then the command of every worker.')
    return parser


def _parse(argv):
    args = build_parser().parse_args(argv)
    command = list(args.command)
    if command and command[0] == '--':
        command = command[1:]
    if not command:
        _refuse('no command: put it after --, e.g. -- python issegm/train_src.py ...')
    if args.launcher == 'ssh' and not args.hostfile:
        _refuse('--launcher ssh needs -H HOSTFILE (one host a line)')
    if args.start_timeout < 0 or args.grace < 0:
        _refuse('--start-timeout and --grace are seconds, 0 or more')
    if args.ssh_config and not os.path.isfile(args.ssh_config):
        _refuse('--ssh-config %s: no such file' % args.ssh_config)
    args.command = interpreter_command(command)
    return args


def _hosts_and_root(args, ssh_base):
    """``(hosts, {host: address}, scheduler address)``, checked."""
    if args.launcher == 'local':
        hosts = ['127.0.0.1']
        addresses = {'127.0.0.1': '127.0.0.1'}
    else:
        hosts = read_hostfile(args.hostfile)
        addresses = host_addresses(hosts, ssh_base)
    remote = [a for a in addresses.values() if not _is_loopback(a)] or list(addresses.values())
    root = _address(args.root_uri) if args.root_uri else (
        '127.0.0.1' if args.launcher == 'local' else _outgoing_address(remote[0]))
    check_addresses(addresses, root)
    return hosts, addresses, root


def _scheduler_port(args, root):
    """The scheduler's port: ``--port`` (checked: a dry run checks only its range) or a free one."""
    if args.dry_run:
        if args.port is not None and not 1 <= args.port <= 65535:
            check_port(root, args.port)
        return args.port if args.port is not None else free_port('')
    if args.port is not None:
        check_port(root, args.port)
        return args.port
    try:
        return free_port(root)
    except OSError as exc:
        _cannot_listen(root, 0, exc)


def _starts(args, procs, python, ssh_base):
    starts = []
    for proc in procs:
        if args.launcher == 'local' or proc.role == 'scheduler':
            argv, env = local_command(proc, args.command, python)
            starts.append(Start(proc, argv, env, False))
        else:
            argv = ssh_command(proc, args.command, python, os.getcwd(), ssh=ssh_base[0], grace=args.grace,
                               ssh_config=args.ssh_config)
            starts.append(Start(proc, argv, None, True))
    return starts


def _dry_run(starts):
    for start in starts:
        # Local commands carry their own variables in front; ssh ones already hold them.
        argv = start.argv if start.remote else (
            ['env'] + ['%s=%s' % kv for kv in sorted(_local_vars(start.proc).items())] + start.argv)
        print('# %s %d on %s' % (start.proc.role, start.proc.index, start.proc.host))
        print(' '.join(shlex.quote(w) for w in argv))


def main(argv=None):
    """The launcher's command line; returns the exit code (a refusal: its one line on stderr, then 2 or 1)."""
    try:
        return _launch(_parse(sys.argv[1:] if argv is None else argv))
    except Refused as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code


def _launch(args):
    python = args.python or default_python(args.command)
    ssh_base = ['ssh'] + (['-F', args.ssh_config] if args.ssh_config else [])
    hosts, addresses, root = _hosts_and_root(args, ssh_base)
    port = _scheduler_port(args, root)
    check_runnable(python, 'the interpreter of the scheduler and servers')
    if args.launcher == 'local':
        check_runnable(args.command[0], 'the workers\' command')
    elif not args.dry_run:
        check_runnable('ssh', 'the ssh client, for --launcher ssh')
    servers = args.num_servers or (1 if args.launcher == 'local' else len(hosts))
    procs = plan(args.num_workers, servers, hosts, root, port, address=addresses.get)
    starts = _starts(args, procs, python, ssh_base)
    if args.dry_run:
        _dry_run(starts)
        return 0
    job = Job(starts, grace=args.grace, start_timeout=args.start_timeout,
              ps_verbose=_scheduler_verbosity(os.environ)).start()
    return job.wait()


if __name__ == '__main__':
    sys.exit(main())
