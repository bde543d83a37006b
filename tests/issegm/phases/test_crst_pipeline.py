"""crst_seg.py (phases/crst_pipeline.py, engine/crst_forward.py, engine/crst_data.py) against CRST's formulas.

Each difference from CBST is pinned by an expectation written from CRST's
``crst_seg.py`` / ``deeplab/datasets.py`` (OpenCV's resize, logits upsampled
with aligned corners then the softmax, the portion and source schedules, the
patch-mining crop), with independent numpy code, then a miniature run's
outputs (thin ResNet-38, CPU).
"""
import importlib.util
import json
import math
import os
import re

import cv2
import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from issegm.engine import crst_data, crst_forward
from issegm.phases import crst_pipeline
from issegm.testing.miniature import MODEL, write_layout, write_weights

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MEAN_BGR = np.array((0.406, 0.456, 0.485), np.float32)  # CRST's IMG_MEAN, "BGR"
STD_BGR = np.array((0.225, 0.224, 0.229), np.float32)


def crst_seg():
    spec = importlib.util.spec_from_file_location('crst_seg_entry', os.path.join(REPO, 'crst_seg.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------- independent numpy
def upsample_np(x, size):
    """PyTorch's bilinear align_corners=True: output i reads the input at i (h - 1) / (H - 1); float64."""
    h, w = x.shape[-2:]
    H, W = size
    ys = np.arange(H) * ((h - 1) / (H - 1) if H > 1 else 0.)
    xs = np.arange(W) * ((w - 1) / (W - 1) if W > 1 else 0.)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    dy, dx = (ys - y0)[:, None], (xs - x0)[None, :]
    x = np.asarray(x, np.float64)
    rows = x[..., y0, :] * (1 - dy) + x[..., y1, :] * dy
    return rows[..., x0] * (1 - dx) + rows[..., x1] * dx


def softmax_np(z, axis=0):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def crst_test_input(image_rgb, scale):
    """GTA5TestDataSet.__getitem__: BGR, cv2.resize, /255, -mean, /std, to RGB, CHW."""
    bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
    x = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR).astype(np.float32)
    x = (x / 255.0 - MEAN_BGR) / STD_BGR
    return x[:, :, ::-1].transpose(2, 0, 1)


class FakeNet(object):
    """A network stand-in: logits = W . (2x2 average pool of the input) + b, softmax."""

    def __init__(self, classes=5, seed=0):
        rng = np.random.RandomState(seed)
        self.w, self.b = rng.randn(classes, 3).astype(np.float32) * 3, rng.randn(classes).astype(np.float32)

    def logits(self, x):
        x = np.asarray(x, np.float64)[0]
        h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
        pooled = x[:, :h, :w].reshape(3, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
        return np.einsum('kc,chw->khw', self.w, pooled) + self.b[:, None, None]

    def __call__(self, nd):
        return mx.nd.array(softmax_np(self.logits(nd.asnumpy()))[None].astype(np.float32))


def image(seed, shape=(23, 37)):
    return np.random.RandomState(seed).randint(0, 256, shape + (3,)).astype(np.uint8)


# ---------------------------------------------------------------------------- flags
CRST_DEFAULTS = {  # crst_seg.py's constants, as published
    'restore_from': './src_model/gta5/src_model.pth', 'data_src_dir': './dataset/gta5',
    'data_tgt_dir': './dataset/cityscapes', 'data_tgt_train_list': './dataset/list/cityscapes/train_ClsConfSet.lst',
    'data_tgt_test_list': './dataset/list/cityscapes/val.lst', 'data_src_list': './dataset/list/gta5/train.lst',
    'num_rounds': 4, 'epr': 2, 'input_size': '512,1024', 'eval_scale': 0.9, 'test_scale': '0.9,1.0,1.2',
    'test_image_size': '1024,2048', 'init_tgt_port': 0.2, 'max_tgt_port': 0.5, 'tgt_port_step': 0.05,
    'init_src_port': 0.03, 'max_src_port': 0.06, 'src_port_step': 0.0025, 'src_sampling_policy': 'r',
    'mine_port': 1e-3, 'rare_cls_num': 3, 'mine_chance': 0.8, 'ds_rate': 4, 'mr_weight_kld': 0.0,
    'lr_weight_ent': 0.0, 'mr_weight_src': 0.0, 'random_mirror': False, 'random_scale': False, 'rm_prob': False,
    'test_flipping': False, 'save': 'debug', 'power': 0.0, 'learning_rate': 5e-5, 'momentum': 0.9,
    'weight_decay': 0.0005, 'batch_size': 2, 'randseed': 3, 'kc_policy': 'cb', 'kc_value': 'conf',
    'model': 'DeeplabRes', 'num_classes': 19, 'ignore_label': 255, 'data_src': 'gta', 'gpu': 0,
    'log_file': 'self_training_log', 'train_scale_src': '0.5,1.5', 'train_scale_tgt': '0.5,1.5',
    'pin_memory': False, 'debug': False, 'is_training': False, 'eval_training': False,
}


def test_parser_declares_crst_flags_with_their_defaults():
    parser = crst_seg().build_parser()
    flags = [a for a in parser._actions if a.dest != 'help']
    assert len(flags) == 51
    assert vars(parser.parse_args([])) == CRST_DEFAULTS
    # CRST's scripts parse unchanged
    args = parser.parse_args('--random-mirror --random-scale --rm-prob --test-flipping --save results/lrent '
                             '--data-src-dir A --data-tgt-dir B --lr-weight-ent 0.25'.split())
    assert args.lr_weight_ent == 0.25 and args.rm_prob and args.save == 'results/lrent'


def test_missing_default_list_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / 'w.pth'
    weights.write_bytes(b'x')
    code = crst_seg().main(['--restore-from', str(weights), '--model', MODEL])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert 'dataset/list/gta5/train.lst' in err[0] and '--data-src-list' in err[0]


# ---------------------------------------------------------------------------- forward
def test_input_is_opencv_resize_and_crst_normalisation():
    img = image(0)
    got = crst_forward.crst_input(img, 0.9)[0]
    want = crst_test_input(img, 0.9)
    assert got.shape == (3, 21, 33)  # OpenCV rounds 23 * 0.9 and 37 * 0.9
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    # PIL's bilinear resize (CBST's) gives other pixels
    pil = np.asarray(Image.fromarray(img).resize((33, 21), Image.BILINEAR), np.float32)
    pil = ((pil / 255.0 - MEAN_BGR[::-1]) / STD_BGR[::-1]).transpose(2, 0, 1)
    assert np.abs(pil - want).max() > 0.1


def test_probabilities_are_upsampled_logits_then_softmax_flip_averaged():
    net, img, size = FakeNet(), image(1), (23, 37)
    low = crst_forward.forward_lowres(net, img, 0.9, True)
    got = crst_forward.probabilities_from_lowres(low, size)
    x = crst_test_input(img, 0.9)[None]
    p = softmax_np(upsample_np(net.logits(x), size))
    p_flip = softmax_np(upsample_np(net.logits(x[:, :, :, ::-1]), size))[:, :, ::-1]
    want = 0.5 * (p + p_flip)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    # softmax before upsampling (what upsampling probabilities would give) is another map
    assert np.abs(upsample_np(softmax_np(net.logits(x)), size) - p).max() > 1e-3


def test_align_corners_upsampling_matches_numpy():
    x = np.random.RandomState(2).randn(2, 3, 5, 7).astype(np.float32)
    for size in ((5, 7), (9, 13), (40, 61), (3, 4)):
        got = crst_forward.upsample_align_corners(x, size).asnumpy()
        np.testing.assert_allclose(got, upsample_np(x, size), rtol=0, atol=1e-5)
    up = crst_forward.upsample_align_corners(x, (9, 13)).asnumpy()
    np.testing.assert_array_equal(up[..., 0, 0], x[..., 0, 0])  # corners coincide
    np.testing.assert_array_equal(up[..., -1, -1], x[..., -1, -1])


def test_test_scores_argmax_is_crst_multiscale_logits():
    net, img, size = FakeNet(seed=3), image(4), (23, 37)
    got = crst_forward.test_scores(net, img, [0.9, 1.0, 1.2], size, True)
    base = crst_test_input(img, 1.0)
    total = 0
    for s in (0.9, 1.0, 1.2):
        x = upsample_np(base, (int(math.floor(23 * s)), int(math.floor(37 * s))))[None].astype(np.float32)
        z = upsample_np(net.logits(x), size)
        z_flip = upsample_np(net.logits(x[:, :, :, ::-1]), size)[:, :, ::-1]
        total = total + 0.5 * (z + z_flip)
    want = total / 3
    top2 = np.sort(want, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-4
    np.testing.assert_array_equal(np.argmax(got, axis=0)[clear], np.argmax(want, axis=0)[clear])
    assert clear.mean() > 0.95


# ---------------------------------------------------------------------------- schedule and sampling
def test_portion_schedule_sums_round_by_round():
    p, tgt = 0.2, []
    for _ in range(8):
        tgt.append(p)
        p = min(p + 0.05, 0.5)
    assert crst_pipeline.portion_schedule(0.2, 0.05, 0.5, 8) == tgt
    assert tgt[4] == 0.39999999999999997 and tgt[-1] == 0.5
    # floor(n p) sees the sum: 10 sampled pixels keep 3 at round 4, where 0.2 + 4 * 0.05 would keep 4
    assert math.floor(10 * tgt[4]) == 3 and math.floor(10 * (0.2 + 4 * 0.05)) == 4
    src = crst_pipeline.portion_schedule(0.03, 0.0025, 0.06, 4)
    assert src[3] == 0.037500000000000006
    assert crst_pipeline.portion_schedule(0.03, 0.0025, 0.06, 20)[-1] == 0.06


def test_source_sample_per_round():
    n = 19984
    seeds = crst_pipeline.source_seeds(3, 'r', 3)
    assert seeds == [4, 5, 6]
    assert crst_pipeline.source_seeds(3, 'c', 3) == [3, 3, 3]
    portions = crst_pipeline.portion_schedule(0.03, 0.0025, 0.06, 3)
    draws = []
    for seed, portion in zip(seeds, portions):
        np.random.seed(seed)  # crst_seg.py savelst_SrcTgt
        want = list(np.random.choice(n, int(np.floor(n * portion)), replace=False))
        got = crst_pipeline.source_sample(n, portion, seed)
        assert got == want
        draws.append(set(got))
    assert len(draws[0]) == 599 and len(draws[1]) == 649
    assert draws[0] != draws[1]


# ---------------------------------------------------------------------------- training samples
def test_scale_draws_are_crst_tenths():
    rng = np.random.RandomState(0)
    seen = {round(crst_data.scale_factor(0.5, 1.5, rng), 10) for _ in range(500)}
    assert seen == {round(0.5 + k / 10.0, 10) for k in range(11)}


def mined_start_crst(seed, size, crop):
    """datasets.py's mining crop, with Python 2's integer halves."""
    half = crop // 2
    left, right = seed - half, seed + half - 1
    if left < 0:
        left = 0
    elif right > size - 1:
        left = left - ((half - 1) - (size - 1 - seed))
    return left


def test_mining_crop_centres_on_a_mining_pixel():
    label = np.full((20, 30), 1.)
    label[18, 2] = 7.
    for crop in ((8, 10), (7, 9)):
        off = crst_data.mining_offsets(label, [7], crop, np.random.RandomState(0))
        # CRST's even crops (512 x 1024) as its formula; an odd one kept inside the image
        assert off == (min(mined_start_crst(18, 20, crop[0]), 20 - crop[0]), mined_start_crst(2, 30, crop[1]))
        assert isinstance(off[0], (int, np.integer))
        assert label[off[0]:off[0] + crop[0], off[1]:off[1] + crop[1]].shape == crop
    assert mined_start_crst(18, 20, 8) == 12 and mined_start_crst(10, 20, 8) == 6
    assert crst_data.mining_offsets(label, [5], (8, 10)) is None


def test_iterator_gives_full_resolution_crops(tmp_path):
    write_layout(str(tmp_path), n_src=2, n_tgt=1)
    from issegm.storage.datasets import get_dataset
    src = [crst_data.Sample(str(tmp_path / 'gta' / ('images/%05d.png' % i)),
                            str(tmp_path / 'gta' / ('labels/%05d.png' % i)), True, None) for i in (1, 2)]
    aug = crst_data.Augment((16, 24), {True: (0.5, 1.5), False: (0.5, 1.5)}, True, True, 0.8)
    it = crst_data.CrstIter(src, get_dataset('gta').label2train, aug, 2, 19, soft_labels=True)
    np.random.seed(0)
    it.reset()
    batch = it.next()
    assert batch.data[0].shape == (2, 3, 16, 24)
    label, domain = (a.asnumpy() for a in batch.label)
    assert label.shape == (2, 19, 16 * 24) and domain.tolist() == [1., 1.]
    sums = label.sum(axis=1)
    assert set(np.unique(sums)) <= {0., 1.}
    with pytest.raises(StopIteration):
        it.next()


# ---------------------------------------------------------------------------- a miniature run
@pytest.fixture(scope='module')
def mini(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('crst'))
    write_layout(root, n_src=6, n_tgt=4)
    weights = os.path.join(root, 'w', 'w.params')
    write_weights(weights, MODEL, seed=0, head_scale=4.)
    lists = os.path.join(root, 'issegm', 'data_list')
    argv = ['--model', MODEL, '--restore-from', weights, '--data-src-dir', os.path.join(root, 'gta'),
            '--data-tgt-dir', os.path.join(root, 'cityscapes'),
            '--data-src-list', os.path.join(lists, 'gta', 'train.lst'),
            '--data-tgt-train-list', os.path.join(lists, 'cityscapes', 'train.lst'),
            '--data-tgt-test-list', os.path.join(lists, 'cityscapes', 'train.lst'),
            '--save', os.path.join(root, 'out'), '--num-rounds', '2', '--epr', '1', '--input-size', '32,64',
            '--test-image-size', '64,128', '--test-scale', '1.0', '--init-src-port', '0.5', '--max-src-port', '0.5',
            '--init-tgt-port', '0.3', '--random-mirror', '--random-scale', '--test-flipping']
    code = crst_seg().main(argv)
    assert code == 0
    return root, argv


def test_miniature_run_writes_crst_layout(mini):
    root, _ = mini
    out = os.path.join(root, 'out')
    names = ['aachen_%06d_000019_leftImg8bit' % i for i in range(4)]
    for r, folders in ((0, ('pred', 'pred_vis', 'weighted_pred_vis', 'pseudo_label_color', 'testSet_vis',
                            'prob_lowres')), (1, ('trainSet_vis', 'testSet_vis'))):
        for folder in folders:
            assert sorted(os.listdir(os.path.join(out, str(r), folder))) == sorted(
                n + ('.png' if folder == 'pred' else '.npz' if folder == 'prob_lowres' else '_color.png')
                for n in names), folder
    for stat in ('cls_thresh', 'cls_sel_size', 'rare_id', 'mine_id'):
        assert os.path.isfile(os.path.join(out, 'stats', '%s_round0.npy' % stat))
    assert not os.path.exists(os.path.join(out, 'pseudo_label'))  # removed before the last round, as CRST
    assert os.path.isfile(os.path.join(out, 'gta2city_round0-0001.params'))
    assert os.path.isfile(os.path.join(out, 'self_training_log'))
    assert 'crst_seg' in json.load(open(os.path.join(out, 'run.json')))
    src = open(os.path.join(out, 'list', 'src_train.lst')).read().splitlines()
    np.random.seed(3 + 1)  # policy r: the seed advanced before round 0's draw
    want = np.random.choice(6, 3, replace=False)
    assert src == ['images/%05d.png\tlabels/%05d.png' % (i + 1, i + 1) for i in want]
    tgt = open(os.path.join(out, 'list', 'tgt_train.lst')).read().splitlines()
    assert [len(t.split('\t')) for t in tgt] == [2] * 4
    assert tgt[0].split('\t')[1] == os.path.join(out, 'pseudo_label', names[0] + '.png')


def test_miniature_pseudo_labels_follow_crst_formulas(mini):
    root, _ = mini
    out = os.path.join(root, 'out')
    names = ['aachen_%06d_000019_leftImg8bit' % i for i in range(4)]
    probs = []
    for n in names:
        with np.load(os.path.join(out, '0', 'prob_lowres', n + '.npz')) as low:
            p = softmax_np(upsample_np(np.log(low['probs']), (64, 128)))
            p_flip = softmax_np(upsample_np(np.log(low['probs_flip']), (64, 128)))[:, :, ::-1]
        probs.append(0.5 * (p + p_flip))
        pred = np.asarray(Image.open(os.path.join(out, '0', 'pred', n + '.png')))
        assert (pred == probs[-1].argmax(axis=0)).mean() > 0.999
    # thresholds: pooled over images, every 4th, sorted descending, entry floor(n p) - 1
    thresh = np.load(os.path.join(out, 'stats', 'cls_thresh_round0.npy'))
    sel = np.load(os.path.join(out, 'stats', 'cls_sel_size_round0.npy'))
    for k in range(19):
        pool = []
        for p in probs:
            conf = p.max(axis=0)[p.argmax(axis=0) == k].astype(np.float32)
            pool.extend(conf[::4])
        pool.sort(reverse=True)
        assert sel[k] == math.floor(len(pool) * 0.3)
        want = pool[int(sel[k]) - 1] if sel[k] else 1.0
        assert abs(thresh[k] - want) < 1e-5
    assert (sel > 0).sum() >= 2 and (thresh == 1).any()
    for n, p in zip(names, probs):
        colour = np.asarray(Image.open(os.path.join(out, '0', 'pseudo_label_color', n + '_color.png')))
        ratio = p / thresh[:, None, None]
        want = np.where(ratio.max(axis=0) >= 1, ratio.argmax(axis=0), 255)
        assert (colour == want).mean() > 0.999
    assert any((np.asarray(Image.open(os.path.join(out, '0', 'pseudo_label_color', n + '_color.png'))) == 255).any()
               for n in names)


def test_changed_rerun_is_refused(mini, capsys):
    root, argv = mini
    code = crst_seg().main(argv[:-1] + ['--epr', '2'])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and 'epr' in err[0]
    with pytest.raises(ValueError, match='--num-classes'):
        crst_pipeline.model_label(MODEL, 16)


def test_miniature_lrent_run_labels_by_crst_formula(mini, tmp_path):
    root, argv = mini
    save = str(tmp_path / 'lrent')
    argv = argv[:argv.index('--save')] + ['--save', save] + argv[argv.index('--save') + 2:]
    assert crst_seg().main(argv + ['--lr-weight-ent', '0.25', '--mr-weight-kld', '0.1', '--rm-prob']) == 0
    tgt = [t.split('\t') for t in open(os.path.join(save, 'list', 'tgt_train.lst')).read().splitlines()]
    assert [len(t) for t in tgt] == [3] * 4  # image, pseudo-label, and (ours) the stored map
    assert not os.path.exists(os.path.join(save, '0', 'prob_lowres'))  # --rm-prob, after training
    thresh = np.load(os.path.join(save, 'stats', 'cls_thresh_round0.npy')).astype(np.float64)
    with open(os.path.join(save, 'self_training_log')) as f:
        assert 'CRST-LRENT' in f.read()
    colours = [np.asarray(Image.open(os.path.join(save, '0', 'pseudo_label_color', t[0].split('/')[-1][:-4]
                                                  + '_color.png'))) for t in tgt]
    probs_dir = os.path.join(root, 'out', '0', 'prob_lowres')  # same weights and flags: the same maps
    lrent_only = 0
    for t, colour in zip(tgt, colours):
        with np.load(os.path.join(probs_dir, t[0].split('/')[-1][:-4] + '.npz')) as low:
            p = 0.5 * (softmax_np(upsample_np(np.log(low['probs']), (64, 128)))
                       + softmax_np(upsample_np(np.log(low['probs_flip']), (64, 128)))[:, :, ::-1])
        y = np.power(p / thresh[:, None, None], 1 / 0.25)
        y = y / y.sum(axis=0)
        reg = np.sum(-y * np.log(p + 1e-32) + 0.25 * y * np.log(y + 1e-32), axis=0)
        sel = np.sum(-y * np.log(thresh[:, None, None] + 1e-32), axis=0)
        want = np.where(reg >= sel, 255, y.argmax(axis=0))
        assert (colour == want).mean() > 0.999
        # pixels the hard rule (max of p / threshold >= 1) ignores and LRENT keeps
        lrent_only += int(((p / thresh[:, None, None]).max(axis=0) < 1)[colour != 255].sum())
    assert lrent_only > 0


def test_readme_crst_commands_are_crst_scripts():
    import shlex
    lines = [shlex.split(l.strip()) for l in open(os.path.join(REPO, 'README.md'), encoding='utf-8')
             if l.strip().startswith('python crst_seg.py')]
    assert len(lines) == 3  # cbst.sh, mrkld.sh, lrent.sh
    parsed = [crst_seg().build_parser().parse_args(argv[2:]) for argv in lines]
    assert [(a.mr_weight_kld, a.lr_weight_ent) for a in parsed] == [(0., 0.), (0.1, 0.), (0., 0.25)]
    assert all(a.random_mirror and a.random_scale and a.rm_prob and a.test_flipping for a in parsed)


def test_label_size_other_than_test_image_size_is_one_line(mini, tmp_path, capsys):
    root, argv = mini
    argv = list(argv)
    argv[argv.index('--save') + 1] = str(tmp_path / 'other')
    argv[argv.index('--test-image-size') + 1] = '32,64'
    assert crst_seg().main(argv) == 2
    # the run's own log lines (timestamped) may come first on the console; the failure is one line
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not re.match(r'\d{4}-\d\d-\d\d ', line)]
    assert len(err) == 1 and 'is 64x128 but --test-image-size is 32,64' in err[0]


@pytest.mark.subprocess
def test_script_runs_from_anywhere(tmp_path):
    import subprocess
    import sys
    from util.child_env import child_env
    env = dict(child_env(threads=1))
    env.pop('PYTHONPATH', None)  # the script makes its own folder importable
    done = subprocess.run([sys.executable, os.path.join(REPO, 'crst_seg.py'), '--help'], cwd=str(tmp_path), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert '--restore-from' in done.stdout and '--lr-weight-ent' in done.stdout
