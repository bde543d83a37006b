"""Kill trials: SIGKILL solve_AO.py at many points, rerun the same command, compare with one run.

    python scripts/kill_trials.py                 # all kill points, workdir under /tmp
    python scripts/kill_trials.py --points 3      # the first three only
    python scripts/kill_trials.py --only mid-epoch --drop-states   # control: as an older version resumes

On the miniature GTA-5 -> Cityscapes benchmark (issegm/benchmark/toy.py, 128x256) with
the thin network rna-t1, solve_AO.py runs the published command shape
(2 rounds, phases as solve_ST.py subprocesses, the real data iterator) once
uninterrupted. Then, for each kill point, a fresh run is started in its own
process group, killed with SIGKILL as soon as a file that marks the point
appears (an event, not a delay), and the same command is run again to the
end. The rerun's checkpoints, pseudo-labels and statistics are compared with
the uninterrupted run's, byte for byte (weights: max |difference|; labels:
share of pixels that differ). The last line counts the identical reruns.
``--drop-states`` deletes the ``.states`` files after each kill (a resume as
before they existed, momentum 0): a control that the comparison sees a
difference where there is one.
"""
import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from util.child_env import child_env

MODEL = 'cityscapes_rna-t1_cls19_s8'
SRC_MODEL = 'gta_rna-t1_cls19_s8'

# (name, file pattern whose appearance triggers the kill), in the order a run reaches them.
POINTS = [
    ('round 0 pass 1', 'ao/0/results/nplabelIds/*.png'),
    ('round 0 thresholds', 'ao/0/pseudo_label_thresholds.npy'),
    ('round 0 pass 2', 'ao/0/self_train/pseudo_labelIds/*.png'),
    ('round 0 training start', 'ao/0/source_selected.lst'),
    ('round 0 checkpoint write', 'ao/0/.%s_ep-0001.*.tmp.params' % MODEL),
    ('round 0 mid-epoch after a checkpoint', 'ao/0/%s_ep-0001.params' % MODEL),
    ('between rounds', 'ao/0/%s_ep-0002.params' % MODEL),
    ('round 1 pass 1', 'ao/1/results/nplabelIds/*.png'),
    ('round 1 pass 2', 'ao/1/self_train/pseudo_labelIds/*.png'),
    ('round 1 training start', 'ao/1/source_selected.lst'),
    ('round 1 states write', 'ao/1/.%s_ep-0003.*.tmp.states' % MODEL),
    ('round 1 mid-epoch after a checkpoint', 'ao/1/%s_ep-0003.params' % MODEL),
]


def flags(output):
    return ['--num-round', '2', '--test-scales', '256', '--scale-rate-range', '0.7,1.3', '--dataset', 'gta',
            '--dataset-tgt', 'cityscapes', '--split', 'train', '--split-tgt', 'train', '--data-root', 'data/gta',
            '--data-root-tgt', 'data/cityscapes', '--output', output, '--model', MODEL, '--weights',
            'models/%s_ep-0000.params' % SRC_MODEL, '--batch-images', '4', '--crop-size', '64',
            '--origin-size', '256', '--origin-size-tgt', '256', '--init-tgt-port', '0.2', '--init-src-port', '0.5',
            '--max-src-port', '0.6', '--seed-int', '0', '--mine-port', '0.8', '--mine-id-number', '3',
            '--mine-thresh', '0.001', '--base-lr', '0.005', '--to-epoch', '2', '--source-sample-policy',
            'cumulative', '--self-training-script', os.path.join(ROOT, 'issegm', 'solve_ST.py'), '--kc-policy', 'cb',
            '--prefetch-threads', '2', '--gpus', '0', '--with-prior', 'False', '--epoch-per-round', '2']


def env():
    return child_env(threads=1)


def command(output):
    return [sys.executable, os.path.join(ROOT, 'issegm', 'solve_AO.py')] + flags(output)


def prepare(workdir, n_source, n_target):
    """The toy benchmark, its lists where the scripts read them, and initial weights of the thin network."""
    import mxnet as mx
    from issegm.benchmark import toy
    from issegm.engine.model import get_module, head_initializer
    toy.generate(os.path.join(workdir, 'data'), seed=0, n_source=n_source, n_source_val=0,
                 n_target_train=n_target, n_target_val=0)
    for dataset in ('gta', 'cityscapes'):
        dst = os.path.join(workdir, 'issegm', 'data_list', dataset)
        os.makedirs(dst, exist_ok=True)
        src = os.path.join(workdir, 'data', 'lists', dataset)
        for name in os.listdir(src):
            shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
    mx.random.seed(0)
    mod = get_module(SRC_MODEL, [mx.cpu()])
    mod.bind([('data', (1, 3, 64, 64))], [('softmax_label', (1, 64))], for_training=False)
    mod.init_params(initializer=head_initializer())
    arg, aux = mod.get_params()
    from util.mxutil import save_params
    save_params(os.path.join(workdir, 'models', '%s_ep-0000.params' % SRC_MODEL), arg, aux)


def outputs(folder):
    """Checkpoints (as arrays), pseudo-label and prediction PNGs, statistics of a run folder."""
    import mxnet as mx
    from PIL import Image
    found = {}
    for path in glob.glob(os.path.join(folder, '*', '*.params')):
        found[os.path.relpath(path, folder)] = {k: v.asnumpy() for k, v in mx.nd.load(path).items()}
    for path in glob.glob(os.path.join(folder, '*', '*', '*', '*.png')):
        found[os.path.relpath(path, folder)] = np.asarray(Image.open(path))
    for path in glob.glob(os.path.join(folder, 'stats', '*.npy')):
        found[os.path.relpath(path, folder)] = np.load(path)
    return found


def compare(got, want):
    """``(identical, max weight difference, share of label pixels that differ, files missing or extra)``."""
    weight, pixels, total, odd = 0.0, 0, 0, sorted(set(got) ^ set(want))
    for key in set(got) & set(want):
        a, b = got[key], want[key]
        if isinstance(a, dict):
            weight = max([weight] + [float(np.abs(a[k] - b[k]).max()) for k in a if k in b])
        elif key.endswith('.png'):
            pixels += int((a != b).sum())
            total += a.size
        elif not np.array_equal(a, b):
            pixels, total = pixels + 1, total + 1
    share = pixels / float(max(total, 1))
    return weight == 0 and share == 0 and not odd, weight, share, odd


def trial(name, pattern, reference, timeout, drop_states=False):
    shutil.rmtree('ao', ignore_errors=True)
    proc = subprocess.Popen(command('ao'), env=env(), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not glob.glob(pattern) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    landed = proc.poll() is None
    if landed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if drop_states:
        for path in glob.glob('ao/*/*.states'):
            os.remove(path)
    start = time.time()
    rerun = subprocess.run(command('ao'), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.time() - start
    same, weight, share, odd = compare(outputs('ao'), reference)
    debris = glob.glob('ao/**/.*.tmp*', recursive=True)
    return dict(point=name, landed=landed, code=rerun.returncode, same=same, weight=weight, share=share,
                odd=len(odd), debris=len(debris), seconds=seconds,
                error=rerun.stderr.strip().splitlines()[-1:] if rerun.returncode else [])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--workdir', default=None, help='where to work (default: a new folder under /tmp)')
    p.add_argument('--points', type=int, default=len(POINTS), help='how many kill points to try')
    p.add_argument('--n-source', type=int, default=12)
    p.add_argument('--n-target', type=int, default=8)
    p.add_argument('--only', default='', help='only the kill points whose name contains this')
    p.add_argument('--drop-states', action='store_true', help='delete the .states after each kill (control)')
    args = p.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix='cbst-kill-trials-')
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    prepare(workdir, args.n_source, args.n_target)
    start = time.time()
    whole = subprocess.run(command('whole'), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if whole.returncode:
        sys.exit('the uninterrupted run failed: %s' % whole.stderr[-2000:])
    seconds = time.time() - start
    again = subprocess.run(command('again'), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    reference = outputs('whole')
    repeat = compare(outputs('again'), reference)[0]
    print('workdir %s; uninterrupted run %.1f s; a second uninterrupted run identical: %s'
          % (workdir, seconds, 'yes' if repeat and not again.returncode else 'NO'))
    print('| kill point | landed | rerun exit | identical | max weight diff | label pixels differing | debris |')
    print('|---|---|---|---|---|---|---|')
    results = []
    for name, pattern in [p for p in POINTS if args.only in p[0]][:args.points]:
        r = trial(name, pattern, reference, timeout=4 * seconds + 60, drop_states=args.drop_states)
        results.append(r)
        print('| %s | %s | %d | %s | %.3g | %.3g%% | %d |%s' % (
            r['point'], 'yes' if r['landed'] else 'no (finished first)', r['code'], 'yes' if r['same'] else 'NO',
            r['weight'], 100 * r['share'], r['debris'], (' ' + r['error'][0]) if r['error'] else ''), flush=True)
    landed = [r for r in results if r['landed']]
    print('%d of %d killed runs ended identical to the uninterrupted run after one rerun (%d kills landed); '
          'rerun exit codes %s' % (sum(r['same'] for r in landed), len(landed), len(landed),
                                   sorted(set(r['code'] for r in results))))
    return 0 if all(r['same'] and r['code'] == 0 for r in results) else 1


if __name__ == '__main__':
    sys.exit(main())
