"""End to end: solve_ST.py and solve_AO.py on a miniature GTA-5 -> Cityscapes layout.

The thin ResNet-38 member ``rna-t1`` stands in for A1 so that two rounds with
the published flags (scaled down) run in well under a minute on a CPU.
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from issegm.testing.miniature import MODEL, SHAPE, SRC_MODEL, ndarray_factory, scene, script_env, write_weights
from util.child_env import REPO as ROOT


def test_solve_ST_val_as_a_script_with_spatial_prior(mini):
    import scipy.io
    os.makedirs('spatial_prior/gta')  # named after the SOURCE dataset
    prior = np.full((19,) + SHAPE, 0.05, np.float32)
    prior[[0, 2, 10]] = 1.0  # road, building, sky favoured everywhere
    scipy.io.savemat('spatial_prior/gta/prior_array.mat', {'prior_array': prior})
    cmd = [sys.executable, os.path.join(ROOT, 'issegm', 'solve_ST.py'), '--dataset', 'gta', '--dataset-tgt',
           'cityscapes', '--data-root', 'gta', '--data-root-tgt', 'cityscapes', '--split-tgt', 'train',
           '--output', 'st', '--model', MODEL, '--phase', 'val', '--weights',
           'models/%s_ep-0000.params' % SRC_MODEL, '--mine-id-number', '3', '--test-scales', '96',
           '--gpus', '0', '--init-tgt-port', '0.2', '--idx-round', '0', '--no-cudnn', '--test-flipping',
           '--with-prior', 'True', '--kc-policy', 'cb', '--postprocess', 'device']
    proc = subprocess.run(cmd, env=script_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for sub in ('results/nplabelIds', 'results/npcolor', 'self_train/pseudo_labelIds', 'self_train/pseudo_color',
                'self_train/rwlabelIds', 'self_train/rwcolor', 'self_train/splabelIds', 'self_train/spcolor'):
        files = sorted(os.listdir(os.path.join('st', '0', sub)))
        assert files == ['aachen_%06d_000019_leftImg8bit.png' % i for i in range(4)], sub
    label = np.asarray(Image.open('st/0/self_train/pseudo_labelIds/aachen_000000_000019_leftImg8bit.png'))
    assert label.shape == SHAPE and set(np.unique(label)) <= {0, 7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24,
                                                               25, 26, 27, 28, 31, 32, 33}
    for stat in ('cls_size', 'cls_thresh', 'mine_id', 'mine_id_priority'):
        assert os.path.exists('st/stats/%s.npy' % stat)
    assert np.load('st/stats/mine_id.npy').shape == (3,)
    assert os.path.exists('issegm/data_list/cityscapes/train_training_gpu0.lst')
    log = open('st/%s_ep-0000_train.log' % SRC_MODEL).read()
    assert 'Kc determination done' in log and 'pixel acc' in log and 'post-processing device' in log
    assert not os.path.exists('st/0/probmap')
    # the prior dominates the near-uniform untrained network: only its favoured classes remain
    sp = np.stack([np.asarray(Image.open(p)) for p in glob.glob('st/0/self_train/splabelIds/*.png')])
    assert set(np.unique(sp)) <= {7, 11, 23}
    assert 'with prior, pixel acc' in log


def test_solve_ST_val_with_sub_stride_steps(mini):
    from issegm import solve_ST
    from issegm.storage.datasets import get_dataset
    from issegm.engine.inference import Predictor
    from issegm.engine.model import get_model
    weights = 'models/%s_ep-0000.params' % SRC_MODEL
    argv = ['--dataset', 'gta', '--dataset-tgt', 'cityscapes', '--data-root-tgt', 'cityscapes', '--split-tgt',
            'train', '--output', 'st', '--model', MODEL, '--phase', 'val', '--weights', weights,
            '--test-scales', '96', '--gpus', '0', '--init-tgt-port', '0.2', '--idx-round', '0', '--test-flipping',
            '--with-prior', 'False', '--kc-policy', 'cb']
    assert solve_ST.main(argv + ['--test-steps', '3']) == 2      # not a divisor of the stride: change the command
    assert solve_ST.main(argv + ['--test-steps', '2']) == 0
    name = 'aachen_000001_000019_leftImg8bit'
    got = np.asarray(Image.open('st/0/results/nplabelIds/%s.png' % name))
    img = np.asarray(Image.open('cityscapes/leftImg8bit/train/aachen/%s.png' % name).convert('RGB'))
    net = get_model(MODEL, weights)
    two = Predictor(net, 19, 8, flip=True, steps=2).predict(img, [96]).argmax(0)
    train2label = get_dataset('cityscapes').train2label
    np.testing.assert_array_equal(got, train2label[two])
    assert not np.array_equal(two, Predictor(net, 19, 8, flip=True).predict(img, [96]).argmax(0))


def test_solve_ST_without_arguments_prints_help():
    from issegm import solve_ST
    assert solve_ST.main([]) == 1


def st_args(*argv):
    from issegm.solve_ST import build_parser
    return build_parser().parse_args(list(argv))


ST_COMMON = ['--dataset', 'gta', '--dataset-tgt', 'cityscapes', '--data-root', 'gta', '--data-root-tgt', 'cityscapes',
             '--split', 'train', '--split-tgt', 'train', '--output', 'out', '--model', MODEL, '--gpus', '0']


def val_round_0():
    """solve_ST --phase val of round 0 into out/ (port 0.2, scale 64)."""
    from issegm.phases import self_training as st
    assert st.run(st_args(*ST_COMMON, '--phase', 'val', '--weights', 'models/%s_ep-0000.params' % SRC_MODEL,
                          '--test-scales', '64', '--init-tgt-port', '0.2', '--idx-round', '0')) == 0


def test_solve_ST_train_phase_numbering_source_selection_and_resume(mini):
    from issegm.phases import self_training as st
    common = ST_COMMON
    val_round_0()
    train = common + ['--phase', 'train', '--batch-images', '2', '--crop-size', '32', '--init-src-port', '0.5',
                      '--base-lr', '1e-4', '--mine-id-address', 'out/stats', '--seed-int', '0', '--prefetcher',
                      'process', '--backward-do-mirror', '--cache-images', '0']
    assert st.run(st_args(*train, '--weights', 'models/%s_ep-0000.params' % SRC_MODEL, '--to-epoch', '2',
                          '--idx-round', '0'), dataiter_factory=ndarray_factory) == 0
    # weights of another label: epochs 1..2 of round 0
    assert sorted(os.path.basename(p) for p in glob.glob('out/0/*.params')) == [
        MODEL + '_ep-0001.params', MODEL + '_ep-0002.params']
    np.random.seed(0)
    chosen = np.random.choice(6, 3, replace=False)
    with open('out/0/source_selected.lst') as f:
        assert f.read().splitlines() == ['images/%05d.png\tlabels/%05d.png' % (i + 1, i + 1) for i in chosen]
    assert 'Epoch[2]' in open('out/%s.log' % MODEL).read()
    # weights of this label continue the numbering: round 1 trains epochs 3..4
    r1 = st_args(*train, '--weights', 'out/0/%s_ep-0002.params' % MODEL, '--to-epoch', '4', '--idx-round', '1')
    assert st.run(r1, dataiter_factory=ndarray_factory) == 0
    assert sorted(os.path.basename(p) for p in glob.glob('out/1/*.params')) == [
        MODEL + '_ep-0003.params', MODEL + '_ep-0004.params']
    # resume: drop the last epoch, rerun; only epoch 4 is trained again
    mtime3 = os.path.getmtime('out/1/%s_ep-0003.params' % MODEL)
    os.remove('out/1/%s_ep-0004.params' % MODEL)
    r1 = st_args(*train, '--weights', 'out/0/%s_ep-0002.params' % MODEL, '--to-epoch', '4', '--idx-round', '1')
    assert st.run(r1, dataiter_factory=ndarray_factory) == 0
    assert os.path.exists('out/1/%s_ep-0004.params' % MODEL)
    assert os.path.getmtime('out/1/%s_ep-0003.params' % MODEL) == mtime3
    assert 'resuming' in open('out/%s.log' % MODEL).read()


AO_FLAGS = ['--num-round', '2', '--test-scales', '64', '--scale-rate-range', '0.7,1.3', '--dataset', 'gta',
            '--dataset-tgt', 'cityscapes', '--split', 'train', '--split-tgt', 'train', '--data-root', 'gta',
            '--data-root-tgt', 'cityscapes', '--output', 'ao', '--model', MODEL, '--weights',
            'models/%s_ep-0000.params' % SRC_MODEL, '--batch-images', '2', '--crop-size', '32',
            '--origin-size-tgt', '2048', '--init-tgt-port', '0.2', '--init-src-port', '0.5',
            '--max-src-port', '0.6', '--step-src-port', '0.25', '--seed-int', '0', '--mine-port', '0.8',
            '--mine-id-number', '3', '--mine-thresh', '0.001', '--base-lr', '1e-4', '--to-epoch', '2',
            '--source-sample-policy', 'cumulative', '--kc-policy', 'cb', '--prefetch-threads', '1',
            '--gpus', '0', '--with-prior', 'False', '--epoch-per-round', '2']

AO_CHILD = ('import sys; from issegm.testing import miniature; from issegm.phases import retraining; '
            'from issegm import solve_AO; retraining.make_dataiter = miniature.slow_factory; '
            'sys.exit(solve_AO.main(sys.argv[1:]))')


def ao_child(argv, code=AO_CHILD):
    env = script_env()
    return subprocess.Popen([sys.executable, '-c', code] + argv, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def mtimes(*patterns):
    """{path: modification time} of the files matching any of ``patterns``."""
    return {p: os.path.getmtime(p) for pattern in patterns for p in glob.glob(pattern, recursive=True)}


def kill_when_exists(proc, path, what, poll=0.02):
    """SIGKILL ``proc``'s process group as soon as ``path`` exists (fails if it exits or 120 s pass first)."""
    deadline = time.time() + 120
    while not os.path.exists(path):
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline, what
        time.sleep(poll)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_solve_AO_in_process_killed_inside_round_one_epoch_resumes_from_last_epoch(mini):
    proc = ao_child(AO_FLAGS)
    kill_when_exists(proc, 'ao/1/%s_ep-0003.params' % MODEL, 'round 1 never reached its first epoch')
    final = 'ao/1/%s_ep-0004.params' % MODEL
    assert not os.path.exists(final), 'the kill came too late to test resuming'
    kept = ('ao/0/**/*.png', 'ao/1/self_train/**/*.png', 'ao/*/*.params', 'ao/1/pseudo_label.done.json')
    before = mtimes(*kept)
    assert len(before) > 20

    proc = ao_child(AO_FLAGS)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()[-2000:]
    assert os.path.exists(final)
    after = mtimes(*kept)
    changed = sorted(p for p in after if before.get(p) != after[p])
    assert changed == [final]  # nothing but the missing epoch was redone

    # folder tree and names of the reference
    for r in (0, 1):
        for sub in ('results/nplabelIds', 'results/npcolor', 'self_train/pseudo_labelIds',
                    'self_train/pseudo_color', 'self_train/rwlabelIds', 'self_train/rwcolor'):
            assert len(os.listdir('ao/%d/%s' % (r, sub))) == 4, (r, sub)
        assert os.path.exists('ao/%d/source_selected.lst' % r)
    assert sorted(os.path.basename(p) for p in glob.glob('ao/*/*.params')) == [
        MODEL + '_ep-%04d.params' % e for e in (1, 2, 3, 4)]
    assert sorted(os.listdir('ao/stats')) == ['cls_size.npy', 'cls_thresh.npy', 'mine_id.npy',
                                              'mine_id_priority.npy', 'source_class_shares.json']
    with open('issegm/data_list/cityscapes/train_training_gpu0.lst') as f:
        assert all('\tao/1/self_train/pseudo_labelIds/' in line for line in f)
    # cumulative source selection: round 1 (portion 0.75) extends round 0 (portion 0.5)
    src0 = open('ao/0/source_selected.lst').read().splitlines()
    src1 = open('ao/1/source_selected.lst').read().splitlines()
    assert len(src0) == 3 and len(src1) == 4 and src1[:3] == src0

    log = open('ao/solve_AO.log').read()
    assert 'round 0: weights models/%s_ep-0000.params, lr 0.0001, tgt_port 0.2, src_port 0.5, seed 0, ' \
           'to_epoch 2' % SRC_MODEL in log
    assert 'round 1: weights ao/0/%s_ep-0002.params, lr 7.07106781187e-05, tgt_port 0.25, src_port 0.75, ' \
           'seed 0, to_epoch 4' % MODEL in log
    assert 'round 0: already complete' in log
    val1 = open('ao/%s_ep-0002_train.log' % MODEL).read()
    assert 'pseudo-labels already complete' in val1
    train_log = open('ao/%s.log' % MODEL).read()
    assert 'resuming' in train_log and 'Epoch[4]' in train_log
    assert os.path.exists('ao/%s_ep-0000_train.log' % SRC_MODEL)


def test_solve_AO_subprocess_failure_names_phase_image_and_resume(mini):
    # Damage in the middle (header and end intact) passes the preflight's cheap content check: pass 1 meets it.
    path = 'cityscapes/leftImg8bit/train/aachen/aachen_000002_000019_leftImg8bit.png'
    data = bytearray(open(path, 'rb').read())
    data[60:-20] = bytes(b ^ 0xFF for b in data[60:-20])
    open(path, 'wb').write(bytes(data))
    flags = list(AO_FLAGS)
    flags += ['--self-training-script', os.path.join(ROOT, 'issegm', 'solve_ST.py')]
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'issegm', 'solve_AO.py')] + flags, env=script_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = [l for l in proc.stderr.splitlines() if 'failed' in l]
    assert any('phase val (pseudo-labels) round 0 pass 1 failed at image 3/4' in l
               and 'aachen_000002_000019_leftImg8bit.png' in l and 'rerun the same command' in l for l in lines)
    assert any('round 0 pseudo-label phase (solve_ST --phase val) failed' in l
               and 'rerun the same solve_AO command' in l for l in lines)
    assert len(os.listdir('ao/0/probmap')) == 1 + 2  # forward.json and the two finished images


def test_scripts_run_as_modules():
    env = script_env()
    for mod, flag in (('issegm.solve_AO', '--self-training-script'), ('issegm.solve_ST', '--mine-id-address')):
        proc = subprocess.run([sys.executable, '-m', mod, '--help'], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert flag in proc.stdout


def test_solve_ST_train_schedule_counts_the_whole_source_list_per_epoch(mini):
    """11.4(c): linear/poly decay over to_epoch * (source list length // batch) updates, as the reference."""
    from issegm.phases import self_training as st
    common = ST_COMMON
    val_round_0()
    seen = []
    from issegm.engine import training
    real_train = training.train

    def spy(*a, **kw):
        kw['batch_end_callback'] = lambda e, b, loss, lr: seen.append(lr)
        return real_train(*a, **kw)

    training.train = spy
    try:
        # 1 source image (0.2 of 6) + 4 targets = 2 batches of 2 an epoch; the list has 6 lines: 3 for the schedule
        assert st.run(st_args(*common, '--phase', 'train', '--batch-images', '2', '--crop-size', '32',
                              '--init-src-port', '0.2', '--base-lr', '0.01', '--lr-type', 'linear',
                              '--mine-id-address', 'out/stats', '--weights', 'models/%s_ep-0000.params' % SRC_MODEL,
                              '--to-epoch', '2', '--idx-round', '0'), dataiter_factory=ndarray_factory) == 0
    finally:
        training.train = real_train
    assert seen == pytest.approx([0.01 * (1 - n / 7.) for n in (1, 2, 3, 4)])


# ---------------------------------------------------------------------------- exact resume, guards (issue 10)
def ao_cmd(flags, output):
    flags = list(flags)
    flags[flags.index('--output') + 1] = output
    return [sys.executable, os.path.join(ROOT, 'issegm', 'solve_AO.py')] + flags + [
        '--self-training-script', os.path.join(ROOT, 'issegm', 'solve_ST.py')]


def outputs(folder):
    """Every checkpoint, state-free number and pseudo-label of a run, by path below ``folder``."""
    found = {}
    for path in glob.glob(os.path.join(folder, '*', '*.params')):
        found[os.path.relpath(path, folder)] = {k: v.asnumpy() for k, v in mx.nd.load(path).items()}
    labels = glob.glob(os.path.join(folder, '*', '*', '*', '*.png'))
    for path in labels + glob.glob(os.path.join(folder, 'stats', '*.npy')):
        found[os.path.relpath(path, folder)] = np.asarray(Image.open(path)) if path.endswith('.png') else np.load(path)
    return found


def assert_same_outputs(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        if isinstance(a[key], dict):
            assert a[key].keys() == b[key].keys() and all(np.array_equal(a[key][k], b[key][k]) for k in a[key]), key
        else:
            assert np.array_equal(a[key], b[key]), key


def test_solve_AO_killed_after_a_checkpoint_and_rerun_equals_the_uninterrupted_run(mini):
    """Issue 10: the published command shape (solve_ST subprocesses, real FileIter), SIGKILL to the group
    inside round 1 right after epoch 3's checkpoint; the rerun ends bit for bit where one run ends."""
    whole = subprocess.run(ao_cmd(AO_FLAGS, 'whole'), env=script_env(), capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]
    proc = subprocess.Popen(ao_cmd(AO_FLAGS, 'ao'), env=script_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    kill_when_exists(proc, 'ao/1/%s_ep-0003.params' % MODEL, 'round 1 never saved epoch 3', poll=0.005)
    assert not os.path.exists('ao/1/%s_ep-0004.params' % MODEL), 'the kill came too late'
    assert os.path.exists('ao/1/%s_ep-0003.states' % MODEL)
    open('ao/1/.%s_ep-0004.abcd1234.tmp.params' % MODEL, 'w').close()   # what a kill inside a write leaves
    done = (glob.glob('ao/0/**/*.png', recursive=True) + glob.glob('ao/1/self_train/**/*.png', recursive=True)
            + glob.glob('ao/*/*.params') + ['ao/0/pseudo_label.done.json', 'ao/1/pseudo_label.done.json'])
    before = {p: os.path.getmtime(p) for p in done}
    assert len(before) == 4 * 6 + 4 * 4 + 3 + 2   # round-0 PNGs, round-1 self_train PNGs, ckpts, markers
    rerun = subprocess.run(ao_cmd(AO_FLAGS, 'ao'), env=script_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert_same_outputs(outputs('ao'), outputs('whole'))
    assert {p: os.path.getmtime(p) for p in before} == before   # nothing finished was redone
    assert not glob.glob('ao/**/.*.tmp*', recursive=True)
    log = open('ao/solve_AO.log').read()
    assert 'round 0: already complete' in log
    assert 'round 1: weights ao/0/%s_ep-0002.params, lr 7.07106781187e-05, tgt_port 0.25, src_port 0.75, ' \
           'seed 0, to_epoch 4' % MODEL in log
    assert 'pseudo-labels already complete' in open('ao/%s_ep-0002_train.log' % MODEL).read()
    train_log = open('ao/%s.log' % MODEL).read()
    # Epoch 3's log line follows its checkpoint, so the kill may come before it is written: the run
    # logs epochs 1, 2 and 4, resumes from epoch 3, and does not train epoch 3 again.
    killed, _, resumed = train_log.partition('resuming ao/1/%s_ep from epoch 3' % MODEL)
    assert resumed and all('Epoch[%d]' % e in killed for e in (1, 2))
    assert 'Epoch[4]' in resumed and 'Epoch[3]' not in resumed
    # the pseudo-labels of the last round drive training: label ids, 0 where not selected
    labs = np.stack([np.asarray(Image.open(p)) for p in sorted(glob.glob('ao/1/self_train/pseudo_labelIds/*.png'))])
    assert labs.shape == (4,) + SHAPE and (labs == 0).any() and (labs != 0).any()
    # Each round trains from its own copy of the target list; the shared reference file names the last run's.
    with open('ao/1/target_training.lst') as f:
        assert all('\tao/1/self_train/pseudo_labelIds/' in line for line in f)
    with open('whole/1/target_training.lst') as f:
        assert all('\twhole/1/self_train/pseudo_labelIds/' in line for line in f)


def test_solve_AO_changed_settings_are_refused_and_restart_starts_again(mini):
    flags = [f if f != '2' or AO_FLAGS[i - 1] != '--num-round' else '1' for i, f in enumerate(AO_FLAGS)]
    flags[flags.index('--epoch-per-round') + 1] = '1'
    from issegm import solve_AO
    assert solve_AO.main(flags) == 0
    before = mtimes('ao/**/*.png')
    changed = list(flags)
    changed[changed.index('--init-tgt-port') + 1] = '0.5'
    changed[changed.index('--base-lr') + 1] = '0.05'
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'issegm', 'solve_AO.py')] + changed, env=script_env(),
                          capture_output=True, text=True, timeout=120)
    err = [line for line in proc.stderr.strip().splitlines() if 'no GPU found' not in line]
    assert proc.returncode == 2 and len(err) == 1, proc.stderr
    assert '--init-tgt-port 0.2 (now 0.5)' in err[0] and '--base-lr 0.0001 (now 0.05)' in err[0]
    assert 'another --output, or add --restart' in err[0]
    assert mtimes('ao/**/*.png') == before
    # Settings that change no number: a later --num-round, threads, the way phases run.
    more = [f if f != '1' or flags[i - 1] != '--prefetch-threads' else '2' for i, f in enumerate(flags)]
    assert solve_AO.main(more) == 0
    # --restart: the rounds are made again, pseudo-labels as the reference's procedure makes them at 0.5.
    assert solve_AO.main(changed + ['--restart']) == 0
    expected = oracle_pseudo_labels('models/%s_ep-0000.params' % SRC_MODEL, 0.5)
    for name, ids in expected.items():
        np.testing.assert_array_equal(np.asarray(Image.open('ao/0/self_train/pseudo_labelIds/%s.png' % name)), ids)


def oracle_pseudo_labels(weights, portion, scale=64, flip=True):
    """Pseudo-label ids of the miniature target list by the reference's procedure (tests/reference_cbst.py)."""
    from issegm.storage.datasets import get_dataset, read_list, sample_name
    from issegm.engine.inference import Predictor, upsample_probs
    from issegm.engine.model import get_model
    from issegm.testing.reference_cbst import reference_labels, reference_stats
    from util.image import read_image
    predictor = Predictor(get_model(MODEL, weights), 19, 8, flip=flip)
    maps, names = [], []
    for image_rel, _ in read_list('issegm/data_list/cityscapes/train.lst', 'cityscapes'):
        image = read_image(os.path.join('cityscapes', image_rel))
        low, = predictor.start(image, [scale]).lowres()
        maps.append(upsample_probs(low.probs, low.stride, low.im_hw, image.shape[:2]))
        names.append(sample_name(image_rel))
    _, thresh = reference_stats(maps, portion, 'cb')
    info = get_dataset('cityscapes')
    return {n: info.train2label[reference_labels(m, thresh)[0]] for n, m in zip(names, maps)}


VAL_CHILD = ('import os, sys, time\nfrom issegm.phases import labelling as pseudo_labelling\nfrom issegm import solve_ST\n'
             'real = pseudo_labelling._write_pred\n'
             'calls = []\n'
             'def paused(ids_folder, *a, **k):\n'
             '    if ids_folder.endswith("pseudo_labelIds"):\n'
             '        calls.append(1)\n'
             '        if len(calls) >= 2:  # pass 2 writes behind the loop, in threads: hold every later image\n'
             '            while not [f for f in os.listdir(ids_folder) if not f.startswith(".")]:\n'
             '                time.sleep(0.01)\n'
             '            open(os.path.join(sys.argv[sys.argv.index("--output") + 1], "pass2_paused"), "w").close()\n'
             '            time.sleep(600)\n'
             '    return real(ids_folder, *a, **k)\n'
             'pseudo_labelling._write_pred = paused\n'
             'sys.exit(solve_ST.main(sys.argv[1:]))')


def val_flags(output, port):
    return ['--dataset', 'gta', '--dataset-tgt', 'cityscapes', '--data-root', 'gta', '--data-root-tgt', 'cityscapes',
            '--split-tgt', 'train', '--output', output, '--model', MODEL, '--phase', 'val', '--weights',
            'models/%s_ep-0000.params' % SRC_MODEL, '--test-scales', '64', '--gpus', '0', '--init-tgt-port', port,
            '--idx-round', '0', '--test-flipping', '--kc-policy', 'cb']


def test_solve_ST_val_killed_in_pass_two_then_a_new_port_through_restart_matches_the_oracle(mini):
    """Issue 16: SIGKILL once pass 2 has written one image; the rerun completes the round as one run does.
    Then a new --init-tgt-port into the same round folder: refused, and with --restart regenerated."""
    from issegm import solve_ST
    env = script_env()
    proc = subprocess.Popen([sys.executable, '-c', VAL_CHILD] + val_flags('st', '0.2'), env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    kill_when_exists(proc, 'st/pass2_paused', 'pass 2 never started')
    assert len(os.listdir('st/0/self_train/pseudo_labelIds')) == 1 and not os.path.exists('st/0/pseudo_label.done.json')
    assert solve_ST.main(val_flags('st', '0.2')) == 0
    assert solve_ST.main(val_flags('whole', '0.2')) == 0
    a, b = outputs('st'), outputs('whole')
    assert_same_outputs(a, b)
    expected = oracle_pseudo_labels('models/%s_ep-0000.params' % SRC_MODEL, 0.2)
    for name, ids in expected.items():
        np.testing.assert_array_equal(a['0/self_train/pseudo_labelIds/%s.png' % name], ids)
    # A new portion into the finished round: refused with the difference, then regenerated with --restart.
    assert solve_ST.main(val_flags('st', '0.5')) == 2
    assert solve_ST.main(val_flags('st', '0.5') + ['--restart']) == 0
    expected = oracle_pseudo_labels('models/%s_ep-0000.params' % SRC_MODEL, 0.5)
    for name, ids in expected.items():
        got = np.asarray(Image.open('st/0/self_train/pseudo_labelIds/%s.png' % name))
        np.testing.assert_array_equal(got, ids)
    assert not np.array_equal(np.load('st/stats/cls_thresh.npy'), b['stats/cls_thresh.npy'])


def _with(flags, **changes):
    flags = list(flags)
    for flag, value in changes.items():
        flag = '--' + flag.replace('_', '-')
        if value is None:
            i = flags.index(flag)
            del flags[i:i + 2]
        elif flag in flags:
            flags[flags.index(flag) + 1] = value
        else:
            flags += [flag, value]
    return flags


@pytest.mark.parametrize('changes,needle', [
    ({'init_tgt_port': '-0.1'}, '--init-tgt-port -0.1: expected a portion in (0, 1]'),
    ({'init_tgt_port': '1.5'}, '--init-tgt-port 1.5: expected a portion in (0, 1]'),
    ({'init_src_port': '2'}, '--init-src-port 2.0: expected a portion in [0, 1]'),
    ({'num_round': '0'}, '--num-round 0: expected at least 1 round'),
    ({'test_scales': '8'}, '--test-scales 8: expected comma-separated longer sides of 32 to 8192 pixels'),
    ({'batch_images': '0'}, '--batch-images 0: expected a positive number of images'),
    ({'epoch_per_round': '0'}, '--epoch-per-round 0: expected at least 1 epoch'),
    ({'base_lr': '-0.0001'}, '--base-lr -0.0001: expected a finite rate >= 0'),
    ({'base_lr': 'nan'}, '--base-lr nan: expected a finite rate >= 0'),
    ({'scale_rate_range': '1.3,0.7'}, '--scale-rate-range 1.3,0.7: expected lo,hi with 0 < lo <= hi'),
    ({'crop_size': '0'}, '--crop-size 0: expected a positive size'),
    ({'dataset': 'gta6'}, "unknown dataset 'gta6'"),
    ({'with_prior': 'yes'}, '--with-prior yes: expected True or False'),
    ({'with_prior': 'True'}, '--with-prior True needs spatial_prior/gta/prior_array.mat'),
    ({'weights': 'models/none_ep-0000.params'}, '--weights models/none_ep-0000.params: file not found'),
    ({'batch_images': '16', 'init_src_port': '0.1'}, '--batch-images 16: a round trains on only 4 images'),
    ({'split': 'onecol'}, 'onecol.lst line 1: no label after the image'),
    ({'split_tgt': 'gone'}, '3 file(s) not found'),
    ({'gpus': 'x'}, '--gpus x: expected device ids'),
    ({'max_tgt_port': '0.1'}, '--init-tgt-port 0.2 is above --max-tgt-port 0.1'),
    ({'max_src_port': '0.4'}, '--init-src-port 0.5 is above --max-src-port 0.4'),
    ({'test_scales': '9000'}, '--test-scales 9000: expected comma-separated longer sides of 32 to 8192 pixels'),
])
def test_solve_AO_checks_every_flag_and_list_before_round_0(mini, capsys, changes, needle):
    from issegm import solve_AO
    with open('issegm/data_list/gta/onecol.lst', 'w') as f:
        f.write('images/00001.png\n')
    with open('issegm/data_list/cityscapes/gone.lst', 'w') as f:
        f.write('leftImg8bit/train/aachen/gone_%d.png\n' % 0 + 'a.png\nb.png\n')
    assert solve_AO.main(_with(AO_FLAGS, **changes)) == 2
    err = [l for l in capsys.readouterr().err.strip().splitlines() if 'no GPU found' not in l]
    assert len(err) == 1 and err[0].startswith('solve_AO.py: error: ') and needle in err[0], err
    assert 'rerun the same' not in err[0] and not os.path.exists('ao/0')


@pytest.mark.parametrize('kind, needle', [
    ('source', 'gta/train.lst: 1 file(s) fail the content check: label gta/labels/00003.png: 16-bit label'),
    ('target', 'cityscapes/train.lst: 1 file(s) fail the content check: image cityscapes/leftImg8bit/train/aachen/'
               'aachen_000002_000019_leftImg8bit.png: truncated PNG')])
def test_solve_AO_checks_the_content_of_both_lists_before_round_0(mini, capsys, kind, needle):
    from issegm import solve_AO
    if kind == 'source':
        Image.fromarray(np.zeros(SHAPE, np.uint16)).save('gta/labels/00003.png')
    else:
        path = 'cityscapes/leftImg8bit/train/aachen/aachen_000002_000019_leftImg8bit.png'
        data = open(path, 'rb').read()
        open(path, 'wb').write(data[:-30])
    assert solve_AO.main(AO_FLAGS) == 2
    err = [l for l in capsys.readouterr().err.strip().splitlines() if 'no GPU found' not in l]
    assert len(err) == 1 and err[0].startswith('solve_AO.py: error: ') and needle in err[0], err
    assert not os.path.exists('ao/0')


def test_a_second_solve_AO_on_one_output_is_refused_and_ending_solve_AO_ends_its_child(mini):
    proc = subprocess.Popen(ao_cmd(AO_FLAGS, 'ao'), env=script_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not glob.glob('ao/0/results/nplabelIds/*.png'):   # the pseudo-label child is at work
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.02)
        second = subprocess.run(ao_cmd(AO_FLAGS, 'ao'), env=script_env(), capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 2
        assert 'another run is writing into ao (pid %d' % proc.pid in second.stderr
        with open('/proc/%d/task/%d/children' % (proc.pid, proc.pid)) as f:
            child = int(f.read().split()[0])
        os.kill(proc.pid, signal.SIGKILL)   # only solve_AO, not its process group
        proc.wait()
        deadline = time.time() + 60
        while os.path.exists('/proc/%d' % child) and open('/proc/%d/stat' % child).read().split()[2] != 'Z':
            assert time.time() < deadline, 'the solve_ST child outlived solve_AO'
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.subprocess
def test_sigterm_ends_solve_AO_and_its_child_in_one_line_with_143_and_a_rerun_continues(mini):
    proc = subprocess.Popen(ao_cmd(AO_FLAGS, 'ao'), env=script_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not glob.glob('ao/0/results/nplabelIds/*.png'):   # the pseudo-label child is at work
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.02)
        with open('/proc/%d/task/%d/children' % (proc.pid, proc.pid)) as f:
            child = int(f.read().split()[0])
        os.kill(proc.pid, signal.SIGTERM)   # as a batch system ends a job
        err = proc.communicate(timeout=120)[1].strip().splitlines()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143
    assert err[-1] == 'solve_AO.py: interrupted; rerun the same command to continue', err[-5:]
    assert not any('Traceback' in line for line in err), err
    assert not os.path.exists('/proc/%d' % child) or open('/proc/%d/stat' % child).read().split()[2] == 'Z'
    rerun = subprocess.run(ao_cmd(_with(AO_FLAGS, num_round='1'), 'ao'), env=script_env(), capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert os.path.isfile('ao/0/%s_ep-0002.params' % MODEL)


def test_solve_AO_stops_at_a_diverging_round_and_saves_nothing_after(mini):
    from issegm import solve_AO
    assert solve_AO.main(_with(AO_FLAGS, base_lr='1e6')) == 2
    line = [l for l in open('ao/%s.log' % MODEL).read().splitlines() if 'training diverged' in l]
    assert len(line) == 1 and 'epoch 1, iteration 2/' in line[0] and '--base-lr' in line[0]
    assert 'no checkpoint' in line[0] and 'rerun' not in line[0]
    assert 'round 0 training phase (solve_ST --phase train) failed (see its error above); no later phase' \
        in open('ao/solve_AO.log').read()
    assert not glob.glob('ao/*/*.params') and not os.path.exists('ao/1')


def test_solve_ST_train_names_every_missing_target_file_before_training(mini):
    from issegm.phases import self_training as st
    val_round_0()
    os.remove('out/0/self_train/pseudo_labelIds/aachen_000001_000019_leftImg8bit.png')
    os.remove('cityscapes/leftImg8bit/train/aachen/aachen_000003_000019_leftImg8bit.png')
    train = st_args(*ST_COMMON, '--phase', 'train', '--batch-images', '2', '--crop-size', '32', '--base-lr', '1e-4',
                    '--mine-id-address', 'out/stats', '--weights', 'models/%s_ep-0000.params' % SRC_MODEL,
                    '--to-epoch', '1', '--idx-round', '0')
    assert st.run(train, dataiter_factory=ndarray_factory) == 2
    line = [l for l in open('out/%s.log' % MODEL).read().splitlines() if 'not found' in l]
    assert len(line) == 1 and 'target_training.lst: 2 file(s) not found' in line[0]
    assert 'aachen_000001_000019_leftImg8bit.png (line 2)' in line[0] and 'run --phase val of round 0' in line[0]
    assert not glob.glob('out/0/*.params')


# ---------------------------------------------------------------------------- CRST (issegm/method/crst.py)
CRST_AO_FLAGS = [f if f != '2' or AO_FLAGS[i - 1] != '--num-round' else '1' for i, f in enumerate(AO_FLAGS)] + [
    '--mr-weight-kld', '0.1', '--lr-weight-ent', '0.25']

SLOW_AO_CHILD = ('import sys; from issegm.testing import miniature; from issegm import solve_AO; '
                 'miniature.slow_sample_batches(); '
                 'sys.exit(solve_AO.main(sys.argv[1:]))')


def test_solve_AO_crst_mrkld_lrent_one_round_killed_in_training_resumes(mini):
    from issegm.method.crst import soft_pseudo_labels
    from issegm.storage.datasets import get_dataset
    from issegm.storage.probmaps import load_lowres
    from issegm.engine.postprocess import lowres_to_probmap
    assert CRST_AO_FLAGS[CRST_AO_FLAGS.index('--num-round') + 1] == '1'
    proc = ao_child(CRST_AO_FLAGS, SLOW_AO_CHILD)
    kill_when_exists(proc, 'ao/0/%s_ep-0001.params' % MODEL, 'CRST training never finished an epoch')
    final = 'ao/0/%s_ep-0002.params' % MODEL
    assert not os.path.exists(final), 'the kill came too late to test resuming'
    before = mtimes('ao/0/**/*.png', 'ao/0/probmap/*.npz', 'ao/0/[ps]*_*.json', 'ao/0/*.params')
    assert len(before) == 4 * 6 + 4 + 2 + 1  # PNGs, low-res maps, marker + recipe, epoch 1

    proc = ao_child(CRST_AO_FLAGS, SLOW_AO_CHILD)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()[-2000:]
    assert os.path.exists(final)
    assert mtimes('ao/0/**/*.png') == {p: t for p, t in before.items() if p.endswith('.png')}
    assert {p: os.path.getmtime(p) for p in before} == before  # only the missing epoch was redone

    for log in ('ao/solve_AO.log', 'ao/%s.log' % MODEL):
        text = open(log).read()
        assert 'CRST-LRENT: soft pseudo-labels with alpha = 0.25' in text
        assert '--mr-weight-kld 0.1 -> effective coefficient 0.01 on target pixels' in text
    assert 'resuming' in open('ao/%s.log' % MODEL).read()
    val_cmd = [l for l in open('ao/solve_AO.log') if 'running solve_ST' in l and '--phase val' in l][0]
    assert val_cmd.rstrip().endswith('--mr-weight-kld 0.1 --lr-weight-ent 0.25')

    # the hard labels are LRENT's, recomputed from the kept low-resolution maps and the recipe
    recipe = json.load(open('ao/0/soft_labels.json'))
    assert recipe['alpha'] == 0.25 and recipe['prior_dataset'] is None
    info = get_dataset('cityscapes')
    ignored = 0
    for npz in sorted(glob.glob('ao/0/probmap/*.npz')):
        low, orig_hw = load_lowres(npz, 8)
        hard = soft_pseudo_labels(lowres_to_probmap(low, orig_hw), recipe['thresholds'], 0.25)[1]
        name = os.path.basename(npz)[:-4] + '.png'
        saved = np.asarray(Image.open('ao/0/self_train/pseudo_labelIds/' + name))
        assert np.array_equal(saved, info.train2label[hard])
        ignored += (hard == 255).sum()
    assert ignored < 4 * SHAPE[0] * SHAPE[1]


def test_crst_flags_at_zero_are_cbst_bit_for_bit(mini):
    from issegm.phases import self_training as st
    from issegm.phases.rounds import round_schedule, train_argv, val_argv
    zeros = ['--mr-weight-kld', '0', '--mr-weight-ent', '0', '--mr-weight-l2', '0', '--lr-weight-ent', '0',
             '--mr-weight-src', '0']
    common = ['--dataset', 'gta', '--dataset-tgt', 'cityscapes', '--data-root', 'gta', '--data-root-tgt',
              'cityscapes', '--split', 'train', '--split-tgt', 'train', '--model', MODEL, '--gpus', '0']
    for out, extra in (('cbst', []), ('zeros', zeros)):
        assert st.run(st_args(*common, *extra, '--output', out, '--phase', 'val', '--weights',
                              'models/%s_ep-0000.params' % SRC_MODEL, '--test-scales', '64',
                              '--init-tgt-port', '0.2', '--idx-round', '0')) == 0
        assert st.run(st_args(*common, *extra, '--output', out, '--phase', 'train', '--batch-images', '2',
                              '--crop-size', '32', '--init-src-port', '0.5', '--base-lr', '1e-3',
                              '--mine-id-address', out + '/stats', '--seed-int', '0', '--prefetcher', 'thread',
                              '--weights', 'models/%s_ep-0000.params' % SRC_MODEL, '--to-epoch', '1',
                              '--idx-round', '0')) == 0
    files = sorted(os.path.relpath(p, 'cbst') for p in glob.glob('cbst/0/**/*.png', recursive=True))
    assert len(files) == 4 * 6 and not os.path.exists('zeros/0/soft_labels.json')
    files.append('0/%s_ep-0001.params' % MODEL)
    for rel in files:
        with open(os.path.join('cbst', rel), 'rb') as a, open(os.path.join('zeros', rel), 'rb') as b:
            assert a.read() == b.read(), rel
    # the round driver passes no CRST flag to CBST's phases: the reference's commands
    from issegm.solve_AO import build_parser
    args = build_parser().parse_args(AO_FLAGS)
    rnd = round_schedule(args)[0]
    assert not [w for w in val_argv(args, rnd) + train_argv(args, rnd) if w.startswith(('--mr-', '--lr-w'))]

# -- SYNTHIA -> Cityscapes (16 classes) ----------------------------------------------------------

SYN_SRC_MODEL = 'synthia_rna-t1_cls16_s8'
SYN_MODEL = 'cityscapes_rna-t1_cls16_s8'
# Spec section 4, written out: SYNTHIA id -> train id, and Cityscapes label id -> 16-class train id.
SYNTHIA_TO_TRAIN = {1: 9, 2: 2, 3: 0, 4: 1, 5: 4, 6: 8, 7: 5, 8: 12, 9: 7, 10: 10, 11: 15, 12: 14, 15: 6,
                    17: 11, 19: 13, 21: 3}
CITY16_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 23: 9, 24: 10, 25: 11, 26: 12,
                   28: 13, 32: 14, 33: 15}


def _table(mapping):
    lut = np.full(256, 255, np.uint8)
    for k, v in mapping.items():
        lut[k] = v
    return lut


def synthia_scene(rng):
    """SYNTHIA ids: sky, building, vegetation, road with lane marking, sidewalk, car, pole,
    pedestrian, and void / terrain (ignored)."""
    h, w = SHAPE
    ids = np.full(SHAPE, 1, np.uint16)
    ids[h // 4:h // 2] = 2
    ids[h // 4:h // 2, rng.randint(0, w // 2):][:, :w // 4] = 6
    ids[h // 2:] = 3
    ids[h // 2 + 10:h // 2 + 12] = 22
    ids[h // 2:, :w // 6] = 4
    ids[-4:, -20:] = 16
    ids[:2] = 0
    x = rng.randint(10, w - 30)
    ids[h // 2 + 4:h // 2 + 16, x:x + 20] = 8
    ids[h // 4:h // 2 + 8, x + 24:x + 26] = 7
    ids[h // 2 - 6:h // 2 + 6, rng.randint(0, w - 4):][:, :3] = 10
    colors = rng.randint(0, 256, (256, 3)).astype(np.uint8)
    return colors[ids] // 2 + rng.randint(0, 128, SHAPE + (3,)).astype(np.uint8), ids


@pytest.fixture
def synthia_mini(tmp_path, monkeypatch):
    """SYNTHIA as downloaded (16-bit GT/LABELS) converted by prepare_data.py, a Cityscapes train
    split listed by prepare_data.py, and a 16-class source model."""
    from issegm.testing.minidata import write_synthia_raw
    from issegm import prepare_data
    from issegm.benchmark.layouts import write_cityscapes
    monkeypatch.chdir(tmp_path)
    rng = np.random.RandomState(0)
    raw = {}
    for k in range(4):
        image, ids = synthia_scene(rng)
        instances = rng.randint(0, 3000, SHAPE)        # above 8 bits: must not leak into the ids
        write_synthia_raw('synthia', k, image, ids, instances)
        raw['RGB/%07d.png' % k] = ids
    for k in range(4):
        image, label = scene(rng)
        label[-3:, :] = 22                             # terrain: not one of the 16 classes
        write_cityscapes('cityscapes', 'train', 'aachen', '%06d_000019' % k, 255 - image, label)
    assert prepare_data.main(['synthia', '--data-root', 'synthia', '--quiet']) == 0
    assert prepare_data.main(['cityscapes', '--data-root', 'cityscapes', '--quiet']) == 0
    shutil.copyfile('issegm/data_list/cityscapes/train_full.lst', 'issegm/data_list/cityscapes/train.lst')
    # This draw of untrained weights predicts five classes on these images: the tables get exercised.
    write_weights(str(tmp_path / 'models' / (SYN_SRC_MODEL + '_ep-0000.params')), SYN_SRC_MODEL, seed=2,
                  head_scale=10.)
    return raw


def test_solve_AO_synthia_to_cityscapes_one_round(synthia_mini, monkeypatch):
    """The published SYNTHIA command, scaled down to one round: 16-class pseudo-labels (label ids
    of the 16 shared classes, 0 where unselected) and the iterator feeding the 16-class network
    SYNTHIA ids and pseudo-labels through their own tables."""
    from issegm import solve_AO
    from issegm.engine.iterator import SOURCE, FileIter
    iters, labels_fed = [], []
    init, nxt = FileIter.__init__, FileIter.next

    def recording_init(self, *a, **kw):
        init(self, *a, **kw)
        iters.append(self)

    def recording_next(self):
        batch = nxt(self)
        labels_fed.append(batch.label[0].asnumpy())
        return batch

    monkeypatch.setattr(FileIter, '__init__', recording_init)
    monkeypatch.setattr(FileIter, 'next', recording_next)
    argv = ['--num-round', '1', '--test-scales', '64', '--scale-rate-range', '0.7,1.3', '--dataset', 'synthia',
            '--dataset-tgt', 'cityscapes', '--split', 'train', '--split-tgt', 'train', '--data-root', 'synthia',
            '--data-root-tgt', 'cityscapes', '--output', 'syn2city', '--model', SYN_MODEL, '--weights',
            'models/%s_ep-0000.params' % SYN_SRC_MODEL, '--batch-images', '2', '--crop-size', '32',
            '--origin-size', '1280', '--origin-size-tgt', '2048', '--init-tgt-port', '0.2', '--init-src-port', '0.5',
            '--max-src-port', '0.6', '--seed-int', '0', '--mine-port', '0.8', '--mine-id-number', '3',
            '--mine-thresh', '0.001', '--base-lr', '1e-4', '--to-epoch', '2', '--epoch-per-round', '1',
            '--source-sample-policy', 'cumulative', '--kc-policy', 'cb', '--prefetch-threads', '2', '--gpus', '0',
            '--with-prior', 'False']
    assert solve_AO.main(argv) == 0
    assert os.path.exists('syn2city/0/%s_ep-0001.params' % SYN_MODEL)

    ids16 = set(CITY16_TO_TRAIN)
    assert len(np.load('syn2city/stats/cls_size.npy')) == 16
    predicted = set()
    for sub in ('results/nplabelIds', 'self_train/rwlabelIds', 'self_train/pseudo_labelIds'):
        files = sorted(glob.glob('syn2city/0/%s/*.png' % sub))
        assert len(files) == 4, sub
        values = set(np.unique(np.stack([np.asarray(Image.open(p)) for p in files])).tolist())
        allowed = ids16 | ({0} if sub.endswith('pseudo_labelIds') else set())
        assert values <= allowed, (sub, values - allowed)
        predicted |= values
    assert len(predicted & ids16) >= 4    # the table is exercised: several classes were predicted

    # What the iterator reads: SYNTHIA ids of the converted labels and the pseudo-labels, each through
    # its table; every label fed to the network is a 16-class train id or ignore.
    (it,) = iters
    # Each domain's scale comes from its own origin size and max shape (test_data checks the geometry).
    assert it.reader.origin_sizes == (1280, 2048) and it.reader.max_shapes == ((760, 1280), (1024, 2048))
    syn, city16 = _table(SYNTHIA_TO_TRAIN), _table(CITY16_TO_TRAIN)
    domains = []
    for sample in it.samples:
        train = it.reader.load(sample)[1]
        if sample.domain == SOURCE:
            ids = synthia_mini[os.path.relpath(sample.image, 'synthia')]
            np.testing.assert_array_equal(train, syn[ids])
        else:
            np.testing.assert_array_equal(train, city16[np.asarray(Image.open(sample.label))])
            assert sample.label.startswith('syn2city/0/self_train/pseudo_labelIds/')
        domains.append(sample.domain)
    assert domains.count(SOURCE) == 2 and len(domains) == 6
    fed = np.concatenate([l.ravel() for l in labels_fed])
    assert len(labels_fed) == 3 and set(np.unique(fed).tolist()) <= set(range(16)) | {255}
    assert len(set(np.unique(fed).tolist()) - {255}) >= 3


# ---------------------------------------------------------------------------- other network families (issue 22)
def test_solve_AO_one_round_with_deeplab_v2_from_a_crst_pth(mini):
    """DeepLab-v2 end to end: a CRST-style .pth as --weights, pseudo-labels, one epoch, at 32 x 64.

    ResNet-50 (a member of the family at a quarter of CRST's ResNet-101's cost)
    keeps this short; the ResNet-101 run of the same command takes ~25 s on one core.
    """
    from issegm.testing.deeplab_fixture import random_state_dict
    from issegm.testing.torch_files import write_legacy
    write_legacy('models/gta_src.pth', random_state_dict(50, 19))
    model = 'cityscapes_deeplabv2-r50_cls19_s8'
    flags = _with(AO_FLAGS, model=model, weights='models/gta_src.pth', num_round='1', epoch_per_round='1',
                  to_epoch='1')
    proc = subprocess.run(ao_cmd(flags, 'dl'), env=script_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    checkpoint = 'dl/0/%s_ep-0001.params' % model
    saved = mx.nd.load(checkpoint)
    assert 'arg:layer5_conv2d_list_0_weight' in saved and 'aux:layer4_2_bn3_moving_var' in saved
    start = random_state_dict(50, 19)
    # BN stays frozen (CRST), the network's other weights moved
    assert np.array_equal(saved['arg:bn1_gamma'].asnumpy(), start['bn1.weight'])
    assert not np.array_equal(saved['arg:layer5_conv2d_list_0_weight'].asnumpy(), start['layer5.conv2d_list.0.weight'])
    labels = glob.glob('dl/0/self_train/pseudo_labelIds/*.png')
    assert len(labels) == 4 and all(np.asarray(Image.open(p)).shape == SHAPE for p in labels)
