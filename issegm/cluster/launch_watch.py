"""What :mod:`issegm.launch` reads from the job's processes: who joined, how remote ones ended.

* :class:`StartupWatch` follows the scheduler's ps-lite log (the launcher
  starts the scheduler with ``PS_VERBOSE=2``; ps-lite says nothing of this
  by default, so the launcher hides the lines the user did not ask for). A
  server or worker has *reached* the scheduler when its ``ADD_NODE``
  message is logged there, and once all have, the scheduler says it "is
  connected to" them all. Until then only the scheduler's receiving thread
  logs, so these lines arrive whole. The job has *started* when the first
  barrier completes (every node answered the scheduler); those lines may be
  interleaved with the scheduler's main thread's, character by character,
  so that part is a best guess and only ever gives a warning.
* Run as a script (``PYTHON -I launch_watch.py FOLDER GRACE COMMAND...``:
  the repository is at the same path on every host), this file is the
  wrapper of a remote process under ssh, which has no terminal, so its
  output keeps its own streams and line endings (:func:`wrap`): it enters
  the job's folder, starts the command in its own session, passes on the
  signal names the launcher writes to its stdin, ends the command when stdin
  closes (the launcher or the connection is gone), and writes on stderr a
  marker line when the command started and one with its exit status or
  signal. :func:`relay_remote` copies that stderr to ours without the marker
  lines and fills a :class:`RemoteStatus` from them.

The wrapper imports nothing but the standard library (``-I`` keeps this
folder off ``sys.path``): the job's environment reaches only the command.
"""
import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time

__all__ = ['StartupWatch', 'RemoteStatus', 'MARK', 'split_marks', 'relay_remote', 'relay_scheduler', 'wrap']

#: Prefix of the wrapper's marker lines on a remote process's stderr.
MARK = b'@@issegm.launch '

# ps-lite's PS_VLOG lines at the scheduler, as MXNet 1.9's ps-lite writes them.
_ADD_NODE = re.compile(r'\? => 1\. Meta: .*cmd=ADD_NODE, node=\{ role=(\w+), ip=([^,\s]+), port=(\d+)')
_CONNECTED = re.compile(r'the scheduler is connected to \d+ workers and \d+ servers')
_BARRIER_DONE = re.compile(r'=> \d+\. Meta: request=0, .*cmd=BARRIER')   # the scheduler releases a barrier
_PREFIX_ONLY = re.compile(r'^[\s\[\]\d:]*(\S*ps-lite/src/\S*:\d+:)?\s*$')   # what interleaving leaves
_CHATTER = ('Meta: ', 'Bind to ', 'assign rank=', 'is connected to', 'Barrier count for', 'is stopping',
            'is stopped')


class StartupWatch(object):
    """The servers and workers that reached the scheduler, from its ps-lite log lines.

    Nodes are told apart by role and address (``DMLC_NODE_HOST``): several
    processes of one role on one host are counted, not named.
    """

    def __init__(self):
        self.bound = False                       # the scheduler's "Bind to" line: its log is readable
        self.reached = collections.Counter()     # (role, address) -> ADD_NODE messages
        self.connected = False                   # every node reached the scheduler
        self.started = False                     # a barrier completed: every node answered it
        self._lock = threading.Lock()

    def feed(self, line):
        """Note one line of the scheduler's stderr; returns True for ps-lite's verbose chatter."""
        with self._lock:
            self.bound = self.bound or 'Bind to role=scheduler' in line
            m = _ADD_NODE.search(line)
            if m and not self.connected:
                self.reached[m.group(1), m.group(2)] += 1
            self.connected = self.connected or bool(_CONNECTED.search(line))
            self.started = self.started or (self.connected and bool(_BARRIER_DONE.search(line)))
        # the scheduler only runs ps-lite: a phrase of its log anywhere (lines may be interleaved) is chatter
        return any(c in line for c in _CHATTER) or bool(_PREFIX_ONLY.match(line))


class RemoteStatus(object):
    """What a remote process's wrapper reported: started, its exit status (negative: signal), an error."""

    def __init__(self):
        self.started = False
        self.code = None
        self.error = None
        self.done = threading.Event()   # its stderr reached the end

    def note(self, text):
        if text == 'started':
            self.started = True
        elif text.startswith('exit '):
            self.code = int(text.split()[1])
        elif text.startswith('error '):
            self.error = text[len('error '):]


def _pending(buf):
    """Length of the end of ``buf`` that may be the start of a marker still arriving."""
    for k in range(min(len(MARK) - 1, len(buf)), 0, -1):
        if buf.endswith(MARK[:k]):
            return k
    return 0


def split_marks(buf, status):
    """``(output, rest)``: the bytes of ``buf`` to copy on, and those to keep for the next read.

    Marker lines (anywhere in a line: the command may end without a newline)
    go to ``status`` instead; a marker not yet complete stays in ``rest``.
    """
    out = []
    while True:
        i = buf.find(MARK)
        if i < 0:
            keep = _pending(buf)
            out.append(buf[:len(buf) - keep])
            return b''.join(out), buf[len(buf) - keep:]
        out.append(buf[:i])
        j = buf.find(b'\n', i)
        if j < 0:
            return b''.join(out), buf[i:]
        status.note(buf[i + len(MARK):j].decode('utf-8', 'replace').strip())
        buf = buf[j + 1:]


def _copy(out, data):
    """Write ``data`` to ``out``, ignoring a closed ``out``: the relay must keep draining its pipe,
    or the process writing to it would block."""
    try:
        out.write(data)
        out.flush()
    except (OSError, ValueError):
        pass


def relay_remote(stream, status, out):
    """Copy ``stream`` (a remote process's stderr, binary) to ``out`` as it comes, markers to ``status``."""
    rest = b''
    try:
        for chunk in iter(lambda: stream.read1(65536), b''):
            data, rest = split_marks(rest + chunk, status)
            if data:
                _copy(out, data)
        if rest:
            _copy(out, rest)
    finally:
        status.done.set()


def relay_scheduler(stream, watch, out, verbose=False):
    """Feed the scheduler's stderr to ``watch``; copy on its lines, ps-lite's chatter only if ``verbose``."""
    for raw in iter(stream.readline, b''):
        if not watch.feed(raw.decode('utf-8', 'replace')) or verbose:
            _copy(out, raw)


def _say(text):
    sys.stderr.buffer.write(MARK + text.encode('utf-8', 'replace') + b'\n')
    sys.stderr.flush()


def _signal_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except OSError:
        pass


def _obey(pid, grace):
    """Send the command the signals named on stdin; at its end, SIGTERM, and SIGKILL after ``grace`` s."""
    for line in iter(sys.stdin.readline, ''):
        name = line.strip()
        if name.startswith('SIG') and hasattr(signal, name):
            _signal_group(pid, getattr(signal, name))
    _signal_group(pid, signal.SIGTERM)
    time.sleep(grace)
    _signal_group(pid, signal.SIGKILL)


def wrap(argv):
    """Run ``argv[2:]`` in folder ``argv[0]`` as a remote process of the job; returns its exit code.

    ``argv[1]`` is the grace in seconds between SIGTERM and SIGKILL once the
    launcher is gone. The exit code is the command's, 128 + N for signal N.
    """
    folder, grace, command = argv[0], float(argv[1]), argv[2:]
    try:
        os.chdir(folder)
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        _say('error %s' % exc)
        return 127
    _say('started')
    threading.Thread(target=_obey, args=(child.pid, grace), daemon=True).start()
    code = child.wait()
    _say('exit %d' % code)
    return code if code >= 0 else 128 - code


if __name__ == '__main__':
    sys.exit(wrap(sys.argv[1:]))
