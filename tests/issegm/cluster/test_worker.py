"""Distributed jobs: the worker side alone, and real ps-lite jobs of 2 workers + 1 server.

The launched runs use the local launcher, the thin network ``rna-t1`` and
the miniature GTA-5 -> Cityscapes layout of ``test_solve``; each is compared
with one process on the same data.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from issegm.cluster import worker
from issegm.errors import DistError
from issegm.testing.miniature import MODEL, SRC_MODEL, script_env, write_layout, write_weights
from util.mxutil import load_params_from_file

from util.child_env import REPO as ROOT  # noqa: E402
WEIGHTS = 'models/%s_ep-0000.params' % SRC_MODEL


# ---------------------------------------------------------------------------- alone
@pytest.fixture
def alone(monkeypatch):
    monkeypatch.delenv('DMLC_ROLE', raising=False)


def test_alone_everything_is_a_job_of_one_worker(alone, tmp_path):
    assert not worker.launched() and worker.init('local') is None
    assert (worker.rank(), worker.num_workers(), worker.is_root()) == (0, 1, True)
    assert worker.shard(range(5)) == [0, 1, 2, 3, 4]
    x = np.array([1.5, -2.0])
    assert np.array_equal(worker.allreduce(x), x) and np.array_equal(worker.broadcast(x), x)
    parts = worker.gather(str(tmp_path), 'tag', {'a': x})
    assert len(parts) == 1 and np.array_equal(parts[0]['a'], x) and os.listdir(str(tmp_path)) == []
    assert worker.log_file('run.log') == 'run.log'


def test_shards_interleave_and_cover_every_item_once(monkeypatch):
    monkeypatch.setattr(worker, 'num_workers', lambda: 2)
    parts = []
    for r in (0, 1):
        monkeypatch.setattr(worker, 'rank', lambda r=r: r)
        parts.append(worker.shard(range(5)))
    assert parts == [[0, 2, 4], [1, 3]]
    monkeypatch.setattr(worker, 'rank', lambda: 1)
    assert worker.log_file('run.log') == 'run.worker1.log'


def test_kvstore_flag_rules(monkeypatch):
    monkeypatch.delenv('DMLC_ROLE', raising=False)
    assert worker.training_kvstore('local') == 'local' and worker.training_kvstore('device') == 'device'
    with pytest.raises(DistError, match='needs the launcher: python -m issegm.launch'):
        worker.training_kvstore('dist_sync')
    with pytest.raises(DistError, match='depend on timing'):
        worker.training_kvstore('dist_async')
    with pytest.raises(DistError, match='--kvstore must be local, device, dist_sync or dist_device_sync'):
        worker.training_kvstore('nccl')
    monkeypatch.setenv('DMLC_ROLE', 'worker')  # under the launcher the one-machine types become dist ones
    assert worker.training_kvstore('local') == 'dist_sync'
    assert worker.training_kvstore('device') == 'dist_device_sync'
    assert worker.training_kvstore('dist_device_sync') == 'dist_device_sync'


def test_train_src_refuses_dist_sync_without_the_launcher(alone, tmp_path, capsys):
    from issegm import train_src
    from issegm.phases import source_training
    code = train_src.main(['--model', SRC_MODEL, '--to-epoch', '1', '--batch-images', '2', '--crop-size', '32',
                           '--kvstore', 'dist_sync', '--output', str(tmp_path / 'out')])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and 'needs the launcher' in err[0]


def test_float64_values_cross_the_servers_as_pieces_exact_in_float32():
    """A server that keeps a float32 copy cannot round a broadcast or a sum: the pieces are whole
    numbers below 2**16 (float32 rounding would turn 2041.8960948596614 into 2041.8961181640625)."""
    values = np.array([[2041.8960948596614, 2.0 ** 24 + 1, -1e-300], [np.inf, 0., 1.5e308]])
    pieces = worker._to_pieces(values)
    assert pieces.dtype == np.float32 and pieces.max() < 2 ** 16 and np.all(pieces == np.rint(pieces))
    back = worker._from_pieces(pieces.astype(np.float32).astype(np.float64), values.shape)
    assert back.tobytes() == values.tobytes()


# ---------------------------------------------------------------------------- launched jobs
@pytest.fixture
def mini(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_layout(str(tmp_path), n_src=6, n_tgt=5)  # 5 target images: shards of 3 and 2
    write_weights(str(tmp_path / WEIGHTS), SRC_MODEL)
    return tmp_path


def launched(argv, workers=2, python_args=(), **kw):
    """``python -m issegm.launch -n workers -s 1 -- python [python_args] argv`` (a Popen)."""
    env = script_env(os.path.join(ROOT, 'tests'))
    cmd = [sys.executable, '-m', 'issegm.launch', '-n', str(workers), '-s', '1', '--grace', '3', '--',
           sys.executable] + list(python_args) + list(argv)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def finished(proc, timeout=180):
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return err


def script(name):
    return os.path.join(ROOT, 'issegm', name)


def train_argv(output, gpus, kvstore, to_epoch=1):
    return ['--gpus', gpus, '--split', 'train', '--data-root', 'gta', '--output', output, '--model', SRC_MODEL,
            '--weights', WEIGHTS, '--batch-images', '2', '--crop-size', '32', '--scale-rate-range', '0.7,1.3',
            '--lr-type', 'fixed', '--base-lr', '0.05', '--to-epoch', str(to_epoch), '--kvstore', kvstore,
            '--prefetch-threads', '1', '--cache-images', '0', '--origin-size', '128']


def params(path):
    arg, aux = load_params_from_file(path)
    return {k: v.asnumpy() for k, v in list(arg.items()) + list(aux.items())}


def test_a_dist_sync_epoch_equals_one_process_with_two_devices(mini):
    from issegm import train_src
    from issegm.phases import source_training
    job = launched([script('train_src.py')] + train_argv('dist', '0', 'dist_sync'))
    # the same global batch of 2 on one process with two devices (two CPU contexts here)
    assert train_src.main(train_argv('one', '0,1', 'device')) == 0
    finished(job)
    ckpt = '%s_ep-0001.params' % SRC_MODEL
    one, dist, start = params(os.path.join('one', ckpt)), params(os.path.join('dist', ckpt)), params(WEIGHTS)
    assert sorted(one) == sorted(dist)
    assert max(np.abs(one[k] - start[k]).max() for k in one) > 1e-3  # an epoch of real updates
    for k in one:
        np.testing.assert_allclose(dist[k], one[k], rtol=0, atol=1e-5, err_msg=k)
    # rank 0 alone wrote the checkpoint, its state, the run's record and its health record; every worker
    # logged the job's loss
    assert sorted(os.listdir('dist')) == sorted([ckpt, ckpt.replace('.params', '.states'), '.lock', 'run.json',
                                                 'health.json',
                                                 '%s_ep-symbol.json' % SRC_MODEL, '%s.log' % SRC_MODEL,
                                                 '%s.worker1.log' % SRC_MODEL])
    loss = lambda path: float(open(path).read().split('Epoch[1] loss=')[1].split()[0])  # noqa: E731
    assert loss('dist/%s.log' % SRC_MODEL) == pytest.approx(loss('one/%s.log' % SRC_MODEL), abs=1e-5)
    assert loss('dist/%s.worker1.log' % SRC_MODEL) == loss('dist/%s.log' % SRC_MODEL)


# Rank 1 stops for good in the middle of epoch 2 (after its first batch) the first time only,
# writing its pid into 'stalled'; the test kills it there.
STALLING = r'''
import os, sys, time
from issegm.cluster import worker
from issegm import train_src
from issegm.phases import source_training
make = source_training.make_dataiter
def stalling(*args):
    it = make(*args)
    state = {'epoch': 0}
    reset, nxt = it.reset, it.next
    def on_reset():
        state['epoch'] += 1
        state['batch'] = 0
        reset()
    def on_next():
        if state['epoch'] == 2 and state['batch'] == 1 and worker.rank() == 1 \
                and not os.path.exists('stalled'):
            with open('stalled.tmp', 'w') as f:
                f.write(str(os.getpid()))
            os.rename('stalled.tmp', 'stalled')
            while True:
                time.sleep(1)
        state['batch'] += 1
        return nxt()
    it.reset, it.next = on_reset, on_next
    return it
source_training.make_dataiter = stalling
sys.exit(train_src.main(sys.argv[1:]))
'''


def test_b_a_worker_killed_mid_epoch_ends_the_job_and_the_rerun_resumes(mini):
    from issegm import train_src
    from issegm.phases import source_training
    argv = train_argv('dist', '0', 'dist_sync', to_epoch=2)
    job = launched(argv, python_args=['-c', STALLING])
    assert train_src.main(train_argv('one', '0,1', 'device', to_epoch=2)) == 0  # uninterrupted, one process
    deadline = time.time() + 180
    while not os.path.exists('stalled'):
        assert job.poll() is None, job.stderr.read()[-3000:]
        assert time.time() < deadline, 'rank 1 never reached the middle of epoch 2'
        time.sleep(0.05)
    os.kill(int(open('stalled').read()), signal.SIGKILL)
    _, err = job.communicate(timeout=120)
    lines = [l for l in err.splitlines() if l.startswith('launch:')]
    assert job.returncode == 128 + signal.SIGKILL and len(lines) == 1, err[-3000:]
    assert 'was killed by SIGKILL; stopped the job (3 other processes)' in lines[0]
    assert 'rerun the same command' in lines[0]
    first, second = ['dist/%s_ep-%04d.params' % (SRC_MODEL, e) for e in (1, 2)]
    assert os.path.exists(first) and not os.path.exists(second)
    before = os.path.getmtime(first)

    finished(launched(argv, python_args=['-c', STALLING]))  # the same command again
    assert os.path.getmtime(first) == before and os.path.exists(second)
    log = open('dist/%s.log' % SRC_MODEL).read()
    assert 'resuming dist/%s_ep from epoch 1' % SRC_MODEL in log and log.count('Epoch[1]') == 1
    assert 'Epoch[2]' in log and 'momentum 0' not in log
    # with the optimizer state rank 0 saved, the resumed job ends where an uninterrupted run ends
    resumed, one = params(second), params(second.replace('dist/', 'one/'))
    for k in one:
        np.testing.assert_allclose(resumed[k], one[k], rtol=0, atol=1e-5, err_msg=k)


VAL = ['--dataset', 'gta', '--dataset-tgt', 'cityscapes', '--data-root', 'gta', '--data-root-tgt', 'cityscapes',
       '--split-tgt', 'train', '--model', MODEL, '--phase', 'val', '--weights', WEIGHTS, '--mine-id-number', '3',
       '--test-scales', '96', '--init-tgt-port', '0.2', '--idx-round', '0', '--test-flipping', '--kc-policy', 'cb']
EVAL = ['--data-root', 'cityscapes', '--dataset', 'cityscapes', '--phase', 'val', '--weights', WEIGHTS, '--model',
        MODEL, '--split', 'train', '--test-scales', '96', '--test-flipping']


def files(folder, pattern):
    return {os.path.relpath(p, folder): open(p, 'rb').read()
            for p in glob.glob(os.path.join(folder, pattern), recursive=True)}


def test_c_sharded_pseudo_labels_and_scores_equal_one_device(mini):
    from issegm import evaluate
    from issegm.phases import evaluation
    from issegm import solve_ST
    # 2 workers with two devices each, against one process on one device
    val_job = launched([script('solve_ST.py')] + VAL + ['--output', 'two', '--gpus', '0,1'])
    assert solve_ST.main(VAL + ['--output', 'one', '--gpus', '0']) == 0
    finished(val_job)
    eval_job = launched([script('evaluate.py')] + EVAL + ['--output', 'ev2', '--gpus', '0,1'])
    one_result = evaluation.run(evaluate.parse_args(EVAL + ['--output', 'ev1', '--gpus', '0']))
    finished(eval_job)

    pngs = files('one', '0/**/*.png')
    assert len(pngs) == 5 * 6 and pngs == files('two', '0/**/*.png')  # every PNG, byte for byte
    stats = files('one', 'stats/*.npy')
    assert len(stats) == 4 and stats == files('two', 'stats/*.npy')
    thresh = np.load('one/0/pseudo_label_thresholds.npy')
    assert (thresh < 1).any() and np.array_equal(thresh, np.load('two/0/pseudo_label_thresholds.npy'))
    marker = [json.load(open('%s/0/pseudo_label.done.json' % d))['stats'] for d in ('one', 'two')]
    assert marker[0] == marker[1] and 'scores_np' in marker[0]
    assert not glob.glob('two/**/.pass1.*', recursive=True)  # the exchanged pools are cleaned up

    result = json.load(open(glob.glob('ev2/*_results.json')[0]))
    assert np.array(one_result['scores']['confusion']).sum() == 5 * 64 * 128
    for key in ('confusion', 'mean_iou', 'class_iou', 'pixel_acc', 'num_images'):
        assert result['scores'][key] == one_result['scores'][key], key
    assert files('ev1', '**/*.png') == files('ev2', '**/*.png') and len(files('ev1', '**/*.png')) == 5 * 4
    assert open(glob.glob('ev1/*_results.md')[0]).read() == open(glob.glob('ev2/*_results.md')[0]).read()


AO = ['--num-round', '2', '--test-scales', '64', '--scale-rate-range', '0.7,1.3', '--dataset', 'gta',
      '--dataset-tgt', 'cityscapes', '--split', 'train', '--split-tgt', 'train', '--data-root', 'gta',
      '--data-root-tgt', 'cityscapes', '--model', MODEL, '--weights', WEIGHTS, '--batch-images', '2',
      '--crop-size', '32', '--origin-size-tgt', '2048', '--init-tgt-port', '0.2', '--init-src-port', '0.5',
      '--max-src-port', '0.6', '--step-src-port', '0.25', '--seed-int', '0', '--mine-port', '0.8',
      '--mine-id-number', '3', '--mine-thresh', '0.001', '--base-lr', '1e-3', '--to-epoch', '1',
      '--source-sample-policy', 'cumulative', '--kc-policy', 'cb', '--prefetch-threads', '1',
      '--with-prior', 'False', '--epoch-per-round', '1']


def test_solve_AO_runs_every_phase_under_the_launcher(mini):
    from issegm import solve_AO
    job = launched([script('solve_AO.py')] + AO + ['--output', 'ao2', '--gpus', '0', '--self-training-script',
                                                   script('solve_ST.py')])
    assert solve_AO.main(AO + ['--output', 'ao1', '--gpus', '0,1']) == 0
    finished(job)
    for r in (0, 1):  # both rounds: pseudo-labels, then training in the same ps-lite connection
        assert files('ao1', '%d/**/*.png' % r) == files('ao2', '%d/**/*.png' % r)
        ckpt = '%d/%s_ep-%04d.params' % (r, MODEL, r + 1)
        one, two = params(os.path.join('ao1', ckpt)), params(os.path.join('ao2', ckpt))
        for k in one:
            np.testing.assert_allclose(two[k], one[k], rtol=0, atol=1e-5, err_msg=k)
    assert 'phases run in this process' in open('ao2/solve_AO.log').read()
