"""Start a job on MXNet's parameter server (ps-lite): one scheduler, servers, workers.

    python -m issegm.launch -n 2 -s 1 -- python issegm/train_src.py ... --kvstore dist_sync
    python -m issegm.launch -n 8 -s 2 --launcher ssh -H hosts -- python issegm/solve_AO.py ...

MXNet's ``dist_sync`` / ``dist_device_sync`` KVStores talk to ps-lite, which
needs a scheduler, one or more servers and the workers, each started with
the ``DMLC_*`` environment (role, the scheduler's address and port, the
number of servers and workers). The PyPI wheel does not ship the
``dmlc_tracker`` that ``mxnet/tools/launch.py`` imports, so this module is
the small part of it the project needs:

* ``--launcher local`` starts every process on this machine (tests, one
  multi-GPU machine); ``--launcher ssh`` starts servers and workers on the
  hosts of ``-H HOSTFILE`` (one host a line, round-robin) in the current
  folder, which must be the same path on every host (a shared filesystem:
  workers read each other's pseudo-labels and rank 0's checkpoints);
  the scheduler runs here. ``--dry-run`` prints the commands instead.
* Workers run ``COMMAND``; servers and the scheduler run ``PYTHON -c 'import
  mxnet'`` (importing MXNet with ``DMLC_ROLE`` server or scheduler enters
  the server loop, as in dmlc_tracker), so they never run the script itself.
* SIGINT, SIGTERM and SIGHUP are forwarded: workers get the signal, servers
  and the scheduler are stopped, and anything still alive after
  ``--grace`` seconds is killed.
* If any process dies (non-zero exit, killed) the whole job is stopped
  (the survivors would otherwise wait forever for it) and one line says
  which process died and how; the exit code is non-zero.
"""
import argparse
import collections
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

__all__ = ['Proc', 'plan', 'read_hostfile', 'free_port', 'local_command', 'ssh_command', 'Job', 'main']

#: Environment variables copied into remote commands besides ``DMLC_*`` (ssh launcher).
FORWARDED_ENV_PREFIXES = ('MXNET_', 'CBST_', 'OMP_', 'PS_')
FORWARDED_ENV = ('PYTHONPATH', 'CUDA_VISIBLE_DEVICES')

#: One process of the job: its role, index within the role, host and environment.
Proc = collections.namedtuple('Proc', ['role', 'index', 'host', 'env'])


def read_hostfile(path):
    """Host names of ``path``, one a line (``user@host`` allowed); blank lines and ``#`` comments skipped."""
    try:
        with open(path) as f:
            hosts = [line.split('#', 1)[0].strip() for line in f]
    except OSError as exc:
        raise SystemExit('launch: cannot read the host file %s (%s); write one host name a line' % (path, exc))
    hosts = [h for h in hosts if h]
    if not hosts:
        raise SystemExit('launch: the host file %s lists no host; write one host name a line' % path)
    return hosts


def free_port(host='127.0.0.1'):
    """A TCP port free on this machine now (the scheduler binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _address(host):
    """The IPv4 address of ``[user@]host``, or its name where this machine cannot resolve it.

    ps-lite binds each node to its ``DMLC_NODE_HOST``, and ZeroMQ binds to
    addresses, not names: a name there ends the node with "bind failed".
    """
    name = host.rsplit('@', 1)[-1]
    try:
        return socket.gethostbyname(name)
    except OSError:
        return name


def plan(num_workers, num_servers, hosts, root_uri, port, local_host=None):
    """The processes of a job: the scheduler, then servers, then workers.

    Servers and workers go round-robin over ``hosts``; the scheduler runs on
    ``local_host`` (this machine). Each gets the ``DMLC_*`` variables ps-lite
    reads, with ``DMLC_NODE_HOST`` the address it is reached at.
    """
    if num_workers < 1 or num_servers < 1:
        raise SystemExit('launch: need at least one worker (-n) and one server (-s)')
    common = {'DMLC_PS_ROOT_URI': root_uri, 'DMLC_PS_ROOT_PORT': str(port),
              'DMLC_NUM_SERVER': str(num_servers), 'DMLC_NUM_WORKER': str(num_workers)}
    local_host = local_host or root_uri
    procs = [Proc('scheduler', 0, local_host, dict(common, DMLC_ROLE='scheduler', DMLC_NODE_HOST=root_uri))]
    for role, count in (('server', num_servers), ('worker', num_workers)):
        for k in range(count):
            host = hosts[k % len(hosts)]
            procs.append(Proc(role, k, host, dict(common, DMLC_ROLE=role, DMLC_NODE_HOST=_address(host))))
    return procs


def _role_argv(proc, command, python):
    return list(command) if proc.role == 'worker' else [python, '-c', 'import mxnet']


def local_command(proc, command, python):
    """``(argv, env)`` to start ``proc`` on this machine."""
    env = dict(os.environ)
    env.update(proc.env)
    return _role_argv(proc, command, python), env


def ssh_command(proc, command, python, cwd, environ=None, ssh='ssh'):
    """``argv`` running ``proc`` on its host over ssh, in ``cwd``, with its environment.

    ``-tt`` gives the remote command a terminal, so that stopping the local
    ssh client (job end, Ctrl-C) hangs the remote process up too.
    """
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items()
           if k in FORWARDED_ENV or k.startswith(FORWARDED_ENV_PREFIXES)}
    env.update(proc.env)
    remote = 'cd %s && env %s %s' % (
        shlex.quote(cwd), ' '.join('%s=%s' % (k, shlex.quote(v)) for k, v in sorted(env.items())),
        ' '.join(shlex.quote(a) for a in _role_argv(proc, command, python)))
    return [ssh, '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-tt', proc.host, remote]


def _describe(code):
    if code < 0:
        try:
            return 'was killed by %s' % signal.Signals(-code).name
        except ValueError:
            return 'was killed by signal %d' % -code
    return 'exited with code %d' % code


class Job(object):
    """Running processes of one job; :meth:`wait` watches them until the job ends.

    ``starts`` is a list of ``(Proc, argv, env)``; env None inherits ours.
    """

    def __init__(self, starts, grace=10.0, out=sys.stderr):
        self.starts = starts
        self.grace = float(grace)
        self.out = out
        self.running = []          # (Proc, Popen)
        self._signal = None

    def _say(self, msg):
        print('launch: %s' % msg, file=self.out, flush=True)

    def start(self):
        for proc, argv, env in self.starts:
            # Own session: a terminal's Ctrl-C reaches only us and we forward it,
            # and stopping a process stops its children (data workers, phases) too.
            popen = subprocess.Popen(argv, env=env, start_new_session=True)
            self.running.append((proc, popen))
        return self

    def _send(self, popen, sig):
        try:
            os.killpg(popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _on_signal(self, signum, frame):
        self._signal = signum

    def stop(self, worker_signal=signal.SIGTERM):
        """Signal every live process (workers ``worker_signal``, others SIGTERM); kill after the grace."""
        for proc, popen in self.running:
            if popen.poll() is None:
                self._send(popen, worker_signal if proc.role == 'worker' else signal.SIGTERM)
        deadline = time.time() + self.grace
        while time.time() < deadline and any(p.poll() is None for _, p in self.running):
            time.sleep(0.05)
        for _, popen in self.running:
            if popen.poll() is None:
                self._send(popen, signal.SIGKILL)
        for _, popen in self.running:
            popen.wait()

    def _name(self, proc, popen):
        return '%s %d on %s (pid %d)' % (proc.role, proc.index, proc.host, popen.pid)

    def wait(self, poll=0.05):
        """Watch the job until every worker is done or something dies; returns the exit code."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            return self._watch(poll)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def _watch(self, poll):
        workers = [p for proc, p in self.running if proc.role == 'worker']
        while True:
            if self._signal is not None:
                name = signal.Signals(self._signal).name
                self.stop(worker_signal=self._signal)
                self._say('%s received; stopped all %d processes of the job. Rerun the same command to '
                          'resume' % (name, len(self.running)))
                return 128 + self._signal
            for proc, popen in self.running:
                # Servers and the scheduler exit 0 only after every worker has finalised.
                code = popen.poll()
                if code:
                    others = sum(1 for _, p in self.running if p is not popen and p.poll() is None)
                    self.stop()
                    self._say('%s %s; stopped the job (%d other processes). Fix the cause reported above '
                              'and rerun the same command: finished work is kept'
                              % (self._name(proc, popen), _describe(code), others))
                    return code if code > 0 else 128 - code
            if all(p.poll() == 0 for p in workers):
                # Servers and the scheduler end by themselves once the workers have
                # finalised; workers that never opened the KVStore leave them waiting.
                self.grace = min(self.grace, 5.0)
                self.stop()
                return 0
            time.sleep(poll)


def _outgoing_address(host):
    """This machine's address as seen from ``host`` (the interface routing to it)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((_address(host), 9))
            return s.getsockname()[0]
    except OSError:
        return socket.gethostname()


def default_python(command):
    """The interpreter of servers and the scheduler: the command's own python, else ours."""
    first = os.path.basename(command[0]) if command else ''
    return command[0] if first.startswith('python') else sys.executable


def build_parser():
    parser = argparse.ArgumentParser(
        prog='python -m issegm.launch', usage='%(prog)s -n WORKERS [-s SERVERS] [--launcher local|ssh] '
                                              '[-H HOSTFILE] [--dry-run] -- COMMAND ...',
        description='Run COMMAND as the workers of a job on MXNet\'s parameter server (ps-lite); '
                    'use --kvstore dist_sync (or dist_device_sync) in training commands.')
    parser.add_argument('-n', '--num-workers', type=int, required=True, help='Number of workers.')
    parser.add_argument('-s', '--num-servers', type=int, default=None,
                        help='Number of servers (default: one per host; 1 with --launcher local).')
    parser.add_argument('--launcher', choices=('local', 'ssh'), default='local',
                        help='local: every process on this machine; ssh: on the hosts of -H.')
    parser.add_argument('-H', '--hostfile', default=None, help='Hosts for --launcher ssh, one a line.')
    parser.add_argument('--port', type=int, default=None, help='The scheduler\'s port (default: a free one).')
    parser.add_argument('--root-uri', default=None,
                        help='This machine\'s address for the others (default: 127.0.0.1 locally, else '
                             'the interface routing to the first host).')
    parser.add_argument('--python', default=None,
                        help='Interpreter of servers and the scheduler (default: the command\'s python).')
    parser.add_argument('--grace', type=float, default=10.0,
                        help='Seconds a stopped process gets before it is killed.')
    parser.add_argument('--dry-run', action='store_true', help='Print the commands and exit.')
    parser.add_argument('command', nargs=argparse.REMAINDER, help='-- then the command of every worker.')
    return parser


def _parse(argv):
    args = build_parser().parse_args(argv)
    command = list(args.command)
    if command and command[0] == '--':
        command = command[1:]
    if not command:
        raise SystemExit('launch: no command: put it after --, e.g. -- python issegm/train_src.py ...')
    if args.launcher == 'ssh' and not args.hostfile:
        raise SystemExit('launch: --launcher ssh needs -H HOSTFILE (one host a line)')
    args.command = command
    return args


def main(argv=None):
    args = _parse(sys.argv[1:] if argv is None else argv)
    python = args.python or default_python(args.command)
    if args.launcher == 'local':
        hosts = ['127.0.0.1']
        root = args.root_uri or '127.0.0.1'
    else:
        hosts = read_hostfile(args.hostfile)
        root = args.root_uri or _outgoing_address(hosts[0])
    servers = args.num_servers or (1 if args.launcher == 'local' else len(hosts))
    port = args.port or free_port('127.0.0.1' if args.launcher == 'local' else '')
    procs = plan(args.num_workers, servers, hosts, root, port)
    starts = []
    for proc in procs:
        if args.launcher == 'local' or proc.role == 'scheduler':
            argv, env = local_command(proc, args.command, python)
        else:
            argv, env = ssh_command(proc, args.command, python, os.getcwd()), None
        starts.append((proc, argv, env))
    if args.dry_run:
        for proc, argv, env in starts:
            # Local commands carry their DMLC_* variables in front; ssh ones already hold them.
            words = argv if env is None else ['env'] + ['%s=%s' % kv for kv in sorted(proc.env.items())] + argv
            print('# %s %d on %s' % (proc.role, proc.index, proc.host))
            print(' '.join(shlex.quote(w) for w in words))
        return 0
    job = Job(starts, grace=args.grace).start()
    return job.wait()


if __name__ == '__main__':
    sys.exit(main())
