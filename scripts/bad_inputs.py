"""Bad-input trials: run every documented bad-input case against the quick preset's data and weights.

    python scripts/bad_inputs.py                     # builds the quick preset in a new folder under /tmp
    python scripts/bad_inputs.py --from DIR          # reuses a finished `python -m issegm.benchmark --preset quick`
    python scripts/bad_inputs.py --only launch       # the cases whose name contains "launch"

The quick preset's folder (``python -m issegm.benchmark --preset quick``: the
miniature GTA-5 -> Cityscapes layout, its lists, the source model, the spatial
prior, an evaluation) is built once. Each case then runs in its own copy of
the parts it needs (data, lists, weights, prior, results), so cases do not
disturb each other: it damages the copy (a 16-bit label, a PNG cut in half,
a list separated by spaces, ...), runs the real command as a subprocess, and
checks the exit code and the words its one line must contain
(docs/bad-inputs.md). Two more checks: no work was made before the refusal
(no new or changed file matching the case's work patterns: predictions,
checkpoints, round folders, priors, tables), and no file that was there before
the command is lost or changed (a log may grow). The Markdown table has a row
per case; the last line counts the cases that went as expected.
"""
import argparse
import collections
import fnmatch
import glob
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from util.child_env import REPO as ROOT, child_env

__all__ = ['Case', 'CASES', 'case', 'edit', 'build_quick', 'stage', 'snapshot', 'lost', 'worked', 'the_line', 'run_case',
           'expected', 'row', 'main']

SRC_MODEL = 'gta_rna-t1_cls19_s8'
TGT_MODEL = 'cityscapes_rna-t1_cls19_s8'
WEIGHTS = 'source/%s_ep-0002.params' % SRC_MODEL
OTHER_WEIGHTS = 'source/%s_ep-0001.params' % SRC_MODEL
RESULTS = 'eval/source/%s_ep-0002_results.json' % SRC_MODEL
#: The parts of the quick preset's folder a case may need: what to copy.
PARTS = {
    'data': ['data', 'issegm/data_list'],
    'weights': [WEIGHTS, OTHER_WEIGHTS, 'source/%s_ep-symbol.json' % SRC_MODEL],
    'prior': ['spatial_prior'],
    'results': [RESULTS],
}

#: One bad-input case. ``argv``: the command (a list; ``{py}`` is this interpreter).
#: ``setup(folder)``: damages the copy or makes the first run. ``work``: glob patterns
#: whose new or changed files mean work was done (None: not applicable). ``once``:
#: exactly one output line holds the words (a warning). ``run(case, folder)``: replaces
#: the plain subprocess run, returns ``(rc, output)``.
Case = collections.namedtuple('Case', ['name', 'changed', 'parts', 'argv', 'rc', 'words', 'setup', 'work',
                                       'seconds', 'once', 'run'])


def make(name, changed, argv, rc, words, parts=('data', 'weights'), setup=None, work=(), seconds=120,
         once=False, run=None):
    return Case(name, changed, tuple(parts), list(argv), rc, list(words), setup, work, seconds, once, run)


def script(name):
    return os.path.join(ROOT, 'issegm', name)


def edit(argv, drop=(), **values):
    """``argv`` without the flags of ``drop`` (and their values), with ``values`` set (``lr_steps`` -> --lr-steps)."""
    out, skip = [], False
    flags = dict(('--' + k.replace('_', '-'), v) for k, v in values.items())
    for i, word in enumerate(argv):
        if skip:
            skip = False
            continue
        if word in drop or word in flags:
            skip = i + 1 < len(argv) and not argv[i + 1].startswith('--')
            continue
        out.append(word)
    for flag, value in flags.items():
        out += [flag] if value is True else [flag, str(value)]
    return out


EVAL = [sys.executable, script('evaluate.py'), '--data-root', 'data/cityscapes', '--output', 'ev', '--dataset',
        'cityscapes', '--phase', 'val', '--weights', WEIGHTS, '--split', 'val', '--test-scales', '256', '--gpus', '0']
ST = [sys.executable, script('solve_ST.py'), '--gpus', '0', '--dataset', 'gta', '--split', 'train', '--dataset-tgt',
      'cityscapes', '--split-tgt', 'train', '--data-root', 'data/gta', '--data-root-tgt', 'data/cityscapes',
      '--output', 'st', '--init-src-port', '0.5', '--model', TGT_MODEL, '--batch-images', '4', '--crop-size', '64',
      '--scale-rate-range', '0.7,1.3', '--weights', WEIGHTS, '--idx-round', '0', '--base-lr', '0.005',
      '--to-epoch', '1', '--prefetch-threads', '2', '--mine-port', '0.8', '--mine-thresh', '0.001',
      '--cache-images', '0', '--origin-size', '2048', '--origin-size-tgt', '2048', '--seed-int', '0',
      '--phase', 'train']
AO = [sys.executable, script('solve_AO.py'), '--num-round', '1', '--test-scales', '256', '--scale-rate-range',
      '0.7,1.3', '--dataset', 'gta', '--dataset-tgt', 'cityscapes', '--split', 'train', '--split-tgt', 'train',
      '--data-root', 'data/gta', '--data-root-tgt', 'data/cityscapes', '--output', 'ao', '--model', TGT_MODEL,
      '--weights', WEIGHTS, '--batch-images', '4', '--crop-size', '64', '--origin-size-tgt', '2048',
      '--init-tgt-port', '0.2', '--step-tgt-port', '0.1', '--max-tgt-port', '0.5', '--init-src-port', '0.5',
      '--step-src-port', '0.0', '--max-src-port', '0.5', '--seed-int', '0', '--mine-port', '0.8',
      '--mine-id-number', '3', '--mine-thresh', '0.001', '--base-lr', '0.005', '--epoch-per-round', '1',
      '--to-epoch', '1', '--source-sample-policy', 'cumulative', '--self-training-script', script('solve_ST.py'),
      '--kc-policy', 'cb', '--prefetch-threads', '2', '--gpus', '0', '--with-prior', 'False']
TRAIN = [sys.executable, script('train_src.py'), '--gpus', '0', '--split', 'train', '--data-root', 'data/gta',
         '--output', 'tr', '--model', SRC_MODEL, '--batch-images', '4', '--crop-size', '64', '--scale-rate-range',
         '0.7,1.3', '--lr-type', 'fixed', '--base-lr', '0.02', '--to-epoch', '1', '--kvstore', 'local',
         '--prefetch-threads', '2', '--prefetcher', 'thread', '--cache-images', '1', '--origin-size', '256']
PRIOR = [sys.executable, script('spatial_prior.py'), '--dataset', 'gta', '--split', 'train', '--data-root',
         'data/gta', '--shape', '128,256', '--kernel-size', '9', '--output', 'prior.mat']
MERGE = [sys.executable, '-m', 'issegm.engine.metrics', 'merge']
#: The workers' command of the launcher cases: a file that shows it started.
WORKER = ['--', sys.executable, '-c', 'open("started", "w").close()']
LAUNCH = [sys.executable, '-m', 'issegm.launch', '-n', '1']
EVAL_WORK = ['ev/trainId/*', 'ev/labelId/*', 'ev/color/*', 'ev/*_results.*']
AO_WORK = ['ao/0/*', 'ao/0/*/*', 'ao/0/*/*/*']


# ---- damage done to a case's copy -------------------------------------------------------------------------

def first_entry(folder, dataset, split, column):
    """The path (under the case folder) of the first list entry's image (0) or label (1)."""
    with open(os.path.join(folder, 'issegm', 'data_list', dataset, split + '.lst')) as f:
        rel = f.readline().rstrip('\n').split('\t')[column]
    return os.path.join(folder, 'data', dataset, rel)


def make_16bit(path):
    """Rewrite the label at ``path`` as a 16-bit PNG of the same size and values."""
    import numpy as np
    from PIL import Image
    with Image.open(path) as im:
        values = np.asarray(im).astype(np.uint16)
    os.remove(path)  # the copy may be a hard link of the quick preset's file
    Image.fromarray(values).save(path)


def cut_in_half(path):
    with open(path, 'rb') as f:
        data = f.read()
    os.remove(path)
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])


def rewrite_list(folder, dataset, split, change):
    path = os.path.join(folder, 'issegm', 'data_list', dataset, split + '.lst')
    with open(path) as f:
        lines = f.read().splitlines()
    os.remove(path)
    with open(path, 'w') as f:
        f.write('\n'.join(change(lines)) + '\n')


def first_run(folder):
    """The first evaluation into ``ev``; a case's rerun must leave its results as they are."""
    done = subprocess.run(EVAL, cwd=folder, env=child_env(threads=1), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError('the first evaluation failed: %s' % done.stderr[-500:])


def first_run_then_other_weights(folder):
    first_run(folder)
    os.remove(os.path.join(folder, WEIGHTS))
    shutil.copyfile(os.path.join(folder, OTHER_WEIGHTS), os.path.join(folder, WEIGHTS))


def write_file(name, data):
    def setup(folder):
        with open(os.path.join(folder, name), 'wb') as f:
            f.write(data)
    return setup


def truncated_results(folder):
    cut_in_half(os.path.join(folder, RESULTS))


def a_png(folder):
    shutil.copyfile(first_entry(folder, 'gta', 'train', 1), os.path.join(folder, 'label.png'))


def mixed_hosts(folder):
    with open(os.path.join(folder, 'hosts'), 'w') as f:
        f.write('localhost\nremote-node.example.org\n')


def small_tmpfs(folder):
    """A 256 KiB tmpfs at ``folder/tr``: room for the log and the symbol, not for a 1.8 MB .params."""
    os.makedirs(os.path.join(folder, 'tr'))
    mount = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', os.path.join(folder, 'tr')],
                           capture_output=True, text=True)
    if mount.returncode:
        raise Skip('cannot mount a small tmpfs here (%s)' % (mount.stderr.strip() or 'needs root'))


class Skip(Exception):
    """A case that cannot run on this machine; the reason goes into the table."""


# ---- runs that are more than one command ------------------------------------------------------------------

def run_plain(case, folder):
    try:
        done = subprocess.run(case.argv, cwd=folder, env=child_env(threads=1), capture_output=True, text=True,
                              timeout=case.seconds, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        return None, (exc.stderr or b'').decode(errors='replace') if isinstance(exc.stderr, bytes) else ''
    return done.returncode, done.stderr + done.stdout


def run_port_in_use(case, folder):
    """The launcher with ``--port`` of a socket this script listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        s.listen(1)
        port = s.getsockname()[1]
        return run_plain(case._replace(argv=LAUNCH + ['--port', str(port)] + WORKER), folder)


def run_sigterm(case, folder):
    """train_src.py killed with SIGTERM once its first checkpoint is written, then the same command again.

    The exit code is the first run's; the output holds both runs' lines and the
    rerun's exit code as a last line ``rerun exit N, reached epoch 3, resumed from epoch E``.
    """
    first_ckpt = os.path.join(folder, 'tr', '%s_ep-0001.params' % SRC_MODEL)
    proc = subprocess.Popen(case.argv, cwd=folder, env=child_env(threads=1), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    deadline = time.time() + case.seconds
    while not os.path.exists(first_ckpt) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate()[0]
    done = sorted(glob.glob(os.path.join(folder, 'tr', '*_ep-*.params')))
    again = subprocess.run(case.argv, cwd=folder, env=child_env(threads=1), capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
    last = os.path.exists(os.path.join(folder, 'tr', '%s_ep-0003.params' % SRC_MODEL))
    resumed = 'resuming' in again.stderr + again.stdout
    out += '\n' + again.stderr + again.stdout
    out += '\nrerun exit %d, %s, %s epoch %d' % (
        again.returncode, 'reached epoch 3' if last else 'did not reach epoch 3',
        'resumed from' if resumed else 'did NOT resume from', len(done))
    return proc.returncode, out


def run_disk_full(case, folder):
    try:
        return run_plain(case, folder)
    finally:
        subprocess.run(['umount', os.path.join(folder, 'tr')], capture_output=True)


# ---- the cases --------------------------------------------------------------------------------------------

def _cases():
    ev, tr = EVAL, TRAIN
    return [
        make('evaluate rerun, other settings', '--test-flipping (2nd run, same --output)', edit(ev, test_flipping=True),
             2, ['ev', '--test-flipping'], setup=first_run, work=EVAL_WORK),
        make('evaluate rerun, other weights same name', '--weights (other bytes, 2nd run)', ev, 2,
             ['ev', 'weights'], setup=first_run_then_other_weights, work=EVAL_WORK),
        make('evaluate missing --weights', 'no --weights', edit(ev, drop=['--weights']), 2, ['--weights'],
             work=EVAL_WORK),
        make('evaluate 16-bit label', 'first val label 16-bit', ev, 2, ['16-bit', 'gtFine'],
             setup=lambda d: make_16bit(first_entry(d, 'cityscapes', 'val', 1)), work=EVAL_WORK),
        make('evaluate truncated image', 'first val image cut in half', ev, 2, ['truncated', 'leftImg8bit'],
             setup=lambda d: cut_in_half(first_entry(d, 'cityscapes', 'val', 0)), work=EVAL_WORK),
        make('evaluate --test-scales 60000', '--test-scales 60000', edit(ev, test_scales=60000), 2,
             ['--test-scales'], work=EVAL_WORK, seconds=20),
        make('evaluate duplicate entries', 'first val entry listed twice', ev, 2, ['val.lst', 'twice'],
             setup=lambda d: rewrite_list(d, 'cityscapes', 'val', lambda ls: ls + ls[:1]), work=EVAL_WORK),
        make('evaluate --gpus 5 without GPU', '--gpus 5', edit(ev, gpus=5), 0, ['--gpus 5', 'CPU'], once=True),
        make('solve_ST missing --weights', 'no --weights', edit(ST, drop=['--weights']), 2, ['--weights'],
             work=['st/*']),
        make('solve_ST --lr-steps 50,10', '--lr-type step --lr-steps 50,10', edit(ST, lr_type='step',
             lr_steps='50,10'), 2, ['--lr-steps', '50,10'], parts=(), work=['st/*']),
        make('solve_ST --cache-images 2', '--cache-images 2', edit(ST, cache_images=2), 2,
             ['--cache-images', '0 or 1'], parts=(), work=['st/*']),
        make('solve_AO missing --weights', 'no --weights', edit(AO, drop=['--weights']), 2, ['--weights'],
             work=AO_WORK),
        make('solve_AO --max-tgt-port below --init-tgt-port', '--max-tgt-port 0.1 (init 0.2)',
             edit(AO, max_tgt_port=0.1), 2, ['--init-tgt-port', '--max-tgt-port'], parts=(), work=AO_WORK),
        make('solve_AO 16-bit source label', 'first gta train label 16-bit', AO, 2, ['16-bit', 'labels/'],
             setup=lambda d: make_16bit(first_entry(d, 'gta', 'train', 1)), work=AO_WORK),
        make('solve_AO truncated target image', 'first cityscapes train image cut in half', AO, 2,
             ['truncated', 'leftImg8bit'], setup=lambda d: cut_in_half(first_entry(d, 'cityscapes', 'train', 0)),
             work=AO_WORK),
        make('solve_AO list separated by spaces', 'gta train.lst line 1: spaces, no TAB', AO, 2,
             ['expected a TAB', 'train.lst'],
             setup=lambda d: rewrite_list(d, 'gta', 'train', lambda ls: [ls[0].replace('\t', '   ')] + ls[1:]),
             work=AO_WORK),
        make('train_src crop larger than every image', '--crop-size 352 (images at most 256 x 1.3)',
             edit(tr, crop_size=352), 0, ['--crop-size 352', 'larger than every', '332'], once=True),
        make('train_src SIGTERM mid-run, rerun', 'SIGTERM after epoch 1 of 3, then the same command',
             edit(tr, to_epoch=3), 143, ['interrupted; rerun'], run=run_sigterm, work=None, seconds=300),
        make('spatial_prior --max-images 0', '--max-images 0', edit(PRIOR, max_images=0), 2, ['--max-images'],
             work=['prior.mat']),
        make('spatial_prior --sigma -1', '--sigma -1', edit(PRIOR, sigma=-1), 2, ['--sigma'], work=['prior.mat']),
        make('spatial_prior huge --shape', '--shape 100000,200000', edit(PRIOR, shape='100000,200000'), 2,
             ['--shape'], work=['prior.mat'], seconds=30),
        make('spatial_prior --output a folder', '--output data', edit(PRIOR, output='data'), 2,
             ['--output', 'folder'], work=['data/*.mat']),
        make('spatial_prior target dataset', '--dataset cityscapes (a target)',
             edit(PRIOR, dataset='cityscapes', data_root='data/cityscapes'), 2, ['--dataset', 'cityscapes'],
             work=['prior.mat']),
        make('metrics merge empty JSON', 'an empty .json', MERGE + ['empty.json', '--out', 'table.md'], 2,
             ['empty.json'], parts=(), setup=write_file('empty.json', b''), work=['table.md']),
        make('metrics merge truncated JSON', 'a results .json cut in half', MERGE + [RESULTS, '--out', 'table.md'],
             2, [os.path.basename(RESULTS)], parts=('results',), setup=truncated_results, work=['table.md']),
        make('metrics merge a PNG', 'a label .png', MERGE + ['label.png', '--out', 'table.md'], 2, ['label.png'],
             parts=('data',), setup=a_png, work=['table.md']),
        make('metrics merge --out a folder', '--out eval', MERGE + [RESULTS, '--out', 'eval'], 2,
             ['--out', 'eval'], parts=('results',)),
        make('launch --port 70000', '--port 70000', LAUNCH + ['--port', '70000'] + WORKER, 2, ['--port', '70000'],
             parts=(), work=['started']),
        make('launch --port -5', '--port -5', LAUNCH + ['--port', '-5'] + WORKER, 2, ['--port', '-5'], parts=(),
             work=['started']),
        make('launch port in use', '--port (a port this script listens on)', LAUNCH + WORKER, 1, ['port', 'use'],
             parts=(), work=['started'], run=run_port_in_use),
        make('launch missing command', '-- no-such-command-xyz', LAUNCH + ['--', 'no-such-command-xyz'], 2,
             ['no-such-command-xyz'], parts=(), work=['started']),
        make('launch loopback next to remote host', '--launcher ssh -H (localhost + a remote host)',
             LAUNCH + ['--launcher', 'ssh', '-H', 'hosts'] + WORKER, 2, ['localhost', 'loopback'], parts=(),
             setup=mixed_hosts, work=['started'], seconds=30),
        make('train_src disk full at a .params write', '--output on a 256 KiB tmpfs', tr, 1,
             ['disk full while writing in'], setup=small_tmpfs, run=run_disk_full, work=None),
    ]


CASES = _cases()


def case(name):
    """The case called ``name``."""
    return [c for c in CASES if c.name == name][0]


# ---- running a case ---------------------------------------------------------------------------------------

def build_quick(workdir):
    """``python -m issegm.benchmark --preset quick --output {workdir}/quick``; returns that folder."""
    quick = os.path.join(workdir, 'quick')
    done = subprocess.run([sys.executable, '-m', 'issegm.benchmark', '--preset', 'quick', '--output', quick],
                          cwd=workdir, env=child_env(), capture_output=True, text=True)
    if done.returncode:
        sys.exit('the quick preset failed: %s' % done.stderr[-2000:])
    return quick


def stage(quick, folder, parts):
    """A fresh ``folder`` with a copy of the quick preset's ``parts``."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for part in parts:
        for rel in PARTS[part]:
            src, dst = os.path.join(quick, rel), os.path.join(folder, rel)
            if not os.path.exists(src):
                raise RuntimeError('%s is not in %s: give the folder of a finished quick preset' % (rel, quick))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.isdir(src):
                shutil.copytree(src, dst, copy_function=shutil.copy2)
            else:
                shutil.copy2(src, dst)


def snapshot(folder):
    """``{relative path: bytes}`` of every file under ``folder`` (lock files aside)."""
    out = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            if name == '.lock':
                continue
            path = os.path.join(dirpath, name)
            try:
                with open(path, 'rb') as f:
                    out[os.path.relpath(path, folder)] = f.read()
            except OSError:
                pass
    return out


def lost(before, after):
    """Files of ``before`` missing or changed in ``after``; a log that only grew is kept."""
    gone = []
    for rel, data in before.items():
        now = after.get(rel)
        if now is None or (now != data and not (rel.endswith('.log') and now.startswith(data))):
            gone.append(rel)
    return gone


def worked(before, after, patterns):
    """Files matching ``patterns`` that are new or changed."""
    return [rel for rel, data in after.items() if any(fnmatch.fnmatch(rel, p) for p in patterns)
            and before.get(rel) != data]


def the_line(output, words):
    """``(line, count)``: the first output line holding every word (else the last line), and how many do."""
    lines = [l.strip() for l in output.splitlines() if l.strip()]
    hits = [l for l in lines if all(w.lower() in l.lower() for w in words)]
    return (hits[0] if hits else (lines[-1] if lines else '')), len(hits)


def run_case(c, quick, root):
    """Run case ``c`` in ``{root}/{its name}`` on a copy of ``quick``'s parts; returns a result dict."""
    folder = os.path.join(root, ''.join(ch if ch.isalnum() else '-' for ch in c.name))
    result = dict(case=c, rc=None, line='', count=0, before=None, lost=[], seconds=0.0, skipped=None)
    try:
        stage(quick, folder, c.parts)
        if c.setup:
            c.setup(folder)
    except Skip as exc:
        result['skipped'] = str(exc)
        return result
    before = snapshot(folder)
    start = time.time()
    rc, output = (c.run or run_plain)(c, folder)
    result['seconds'] = time.time() - start
    after = snapshot(folder)
    result['rc'] = rc
    result['line'], result['count'] = the_line(output, c.words)
    if c.run is run_sigterm:
        rerun = the_line(output, ['rerun exit'])[0]
        result['line'] += ' / ' + rerun
        result['rerun_ok'] = (rerun.startswith('rerun exit 0,') and 'reached epoch 3' in rerun
                              and 'NOT' not in rerun and not rerun.endswith('epoch 0'))
    result['lost'] = lost(before, after)
    if c.work is not None:
        result['before'] = not worked(before, after, c.work) and rc != 0 if c.rc else None
    result['ok'] = expected(c, result)
    return result


def expected(c, r):
    """Did case ``c`` go as its row expects?"""
    return (r['rc'] == c.rc and r['count'] >= 1 and (r['count'] == 1 or not c.once) and not r['lost']
            and r['before'] is not False and r['seconds'] <= c.seconds and r.get('rerun_ok', True))


def row(r):
    """The Markdown row of a result."""
    c = r['case']
    if r['skipped']:
        return '| %s | %s | %d | skipped | %s | n/a | n/a | n/a | skipped |' % (
            c.name, c.changed, c.rc, r['skipped'].replace('|', '/'))
    before = {True: 'yes', False: 'NO', None: 'n/a'}[r['before']]
    line = r['line'][:300].replace('|', '/')
    return '| %s | %s | %d | %s | %s | %s | %d | %.1f | %s |' % (
        c.name, c.changed, c.rc, 'timeout' if r['rc'] is None else r['rc'], line, before, len(r['lost']), r['seconds'], 'yes' if r['ok'] else 'NO')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--workdir', default=None, help='where to work (default: a new folder under /tmp)')
    p.add_argument('--from', dest='quick', default=None, help='a finished quick preset\'s folder to reuse')
    p.add_argument('--only', default='', help='only the cases whose name contains this')
    args = p.parse_args(argv)
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix='cbst-bad-inputs-'))
    os.makedirs(workdir, exist_ok=True)
    start = time.time()
    quick = os.path.abspath(args.quick) if args.quick else build_quick(workdir)
    print('workdir %s; quick preset %s' % (workdir, quick))
    print('| case | flags changed | expected rc | got rc | the line | caught before work | data lost | s | as expected |')
    print('|---|---|---|---|---|---|---|---|---|')
    results = []
    for c in [c for c in CASES if args.only in c.name]:
        results.append(run_case(c, quick, os.path.join(workdir, 'cases')))
        print(row(results[-1]), flush=True)
    ran = [r for r in results if not r['skipped']]
    print('%d of %d cases as expected (%d skipped; %.0f s)' % (sum(r['ok'] for r in ran), len(ran),
                                                               len(results) - len(ran), time.time() - start))
    return 0 if all(r['ok'] for r in ran) else 1


if __name__ == '__main__':
    sys.exit(main())
