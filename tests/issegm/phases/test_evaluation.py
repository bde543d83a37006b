"""evaluate.py: known predictions on a miniature Cityscapes val, flipping, multi-scale, bad input."""
import json
import os

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from issegm.testing.checkpoints import recipe_params
from issegm import evaluate as evaluate_script
from issegm.phases import evaluation
from issegm.storage.datasets import get_dataset
from issegm.engine.inference import Predictor
from util.image import MEAN_RGB, STD_RGB

INFO = get_dataset('cityscapes')
LABEL = 'cityscapes_rna-t1_cls19_s8'
# One distinct colour per train id (the network below reads them back); ignore = black.
COLOURS = np.array([[(37 * t) % 256, (91 * t + 40) % 256, (53 * t + 120) % 256] for t in range(19)], np.float64)
COLOURS[0] = (250, 10, 10)


class ColourNet(object):
    """A stand-in network with known output: the class whose colour is nearest to each 8x8 cell.

    ``confuse`` maps a true train id to the one it is predicted as.
    """

    def __init__(self, confuse=None):
        self.confuse = confuse or {}

    def __call__(self, data):
        x = data.asnumpy()[0].astype(np.float64)
        rgb = (x * STD_RGB[:, None, None] + MEAN_RGB[:, None, None]) * 255
        _, h, w = rgb.shape
        cells = rgb.reshape(3, h // 8, 8, w // 8, 8).mean((2, 4))
        cls = ((cells[None] - COLOURS[:, :, None, None]) ** 2).sum(1).argmin(0)
        for a, b in self.confuse.items():
            cls[cls == a] = b
        probs = np.full((19,) + cls.shape, 0.1 / 19, np.float32)
        np.put_along_axis(probs, cls[None], 0.9 + 0.1 / 19, axis=0)
        return mx.nd.array(probs[None])


def _scene(seed):
    """32 x 384 train-id map of 16-pixel vertical stripes: every class, a few repeats, two ignored.

    Stripes (not blocks) so that only two classes meet anywhere: bicubic
    upsampling of one-hot maps then splits exactly at the stripe borders.
    """
    rng = np.random.RandomState(seed)
    stripes = np.concatenate([np.arange(19), rng.randint(0, 19, 5)])
    rng.shuffle(stripes)
    stripes[[3, 17]] = 255
    return np.kron(stripes[None], np.ones((32, 16), int)).astype(np.uint8)


def _write_split(root, split, scenes, mirror=False):
    lines = []
    for i, train in enumerate(scenes):
        name = 'lindau_%06d_000019' % i
        img = np.zeros(train.shape + (3,), np.uint8)
        ok = train != 255
        img[ok] = COLOURS[train[ok]].astype(np.uint8)
        label_ids = np.where(ok, INFO.train2label[train], 0).astype(np.uint8)
        if mirror:
            img, label_ids = img[:, ::-1], label_ids[:, ::-1]
        im_rel = 'leftImg8bit/%s/lindau/%s_leftImg8bit.png' % (split, name)
        gt_rel = 'gtFine/%s/lindau/%s_gtFine_labelIds.png' % (split, name)
        for rel, arr in ((im_rel, img), (gt_rel, label_ids)):
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            Image.fromarray(np.ascontiguousarray(arr)).save(os.path.join(root, rel))
        lines.append('%s\t%s' % (im_rel, gt_rel))
    os.makedirs('issegm/data_list/cityscapes', exist_ok=True)
    with open('issegm/data_list/cityscapes/%s.lst' % split, 'w') as f:
        f.write('\n'.join(lines) + ('\n' if lines else ''))


@pytest.fixture
def city(tmp_path, monkeypatch):
    """A miniature Cityscapes val (3 images) under tmp_path, which becomes the working directory."""
    monkeypatch.chdir(tmp_path)
    root = str(tmp_path / 'cityscapes')
    _write_split(root, 'val', [_scene(s) for s in range(3)])
    return root


@pytest.fixture(scope='module')
def t1_weights(tmp_path_factory):
    from issegm.engine.model import get_symbol, param_shapes
    args, auxs = param_shapes(get_symbol(LABEL))
    rows = [('arg:' + n, s) for n, s in sorted(args.items())] + [('aux:' + n, s) for n, s in sorted(auxs.items())]
    path = tmp_path_factory.mktemp('w') / (LABEL + '_ep-0003.params')
    mx.nd.save(str(path), recipe_params(rows, seed=0))
    return str(path)


def _args(root, weights, *extra):
    return evaluate_script.parse_args(['--data-root', root, '--dataset', 'cityscapes', '--phase', 'val',
                                       '--weights', weights, '--split', 'val', '--gpus', '',
                                       '--test-scales', '384'] + list(extra))


def test_known_predictions_scores_and_files(city, tmp_path, monkeypatch):
    weights = str(tmp_path / 'models' / (LABEL + '_ep-0000.params'))
    os.makedirs(os.path.dirname(weights))
    open(weights, 'w').close()   # never read: the network is injected
    # terrain (9) is predicted as vegetation (8); everything else right.
    args = _args(city, weights, '--output', 'out')
    res = evaluation.run(args, net=ColourNet({9: 8}))
    s = res['scores']
    gt = [INFO.label2train[np.asarray(Image.open(os.path.join(city, 'gtFine/val/lindau/lindau_%06d_000019'
                                                              '_gtFine_labelIds.png' % i)))] for i in range(3)]
    n = np.bincount(np.concatenate([g.ravel() for g in gt]), minlength=256)[:19]
    expected = np.ones(19)
    expected[9] = 0.0
    expected[8] = n[8] / (n[8] + n[9])
    np.testing.assert_allclose(s['class_iou'], expected)
    assert s['pixel_acc'] == pytest.approx(1 - n[9] / n.sum())
    assert s['mean_iou'] == pytest.approx(expected.mean())
    assert res['args']['model'] == LABEL and res['test_scales'] == [384]
    # files: predictions as train ids, label ids, colours; json + markdown row
    name = 'lindau_000001_000019_leftImg8bit.png'
    pred = np.asarray(Image.open(os.path.join('out', 'trainId', name)))
    want = np.where(gt[1] == 9, 8, gt[1])
    np.testing.assert_array_equal(pred[gt[1] != 255], want[gt[1] != 255])
    np.testing.assert_array_equal(np.asarray(Image.open(os.path.join('out', 'labelId', name))), INFO.train2label[pred])
    color = Image.open(os.path.join('out', 'color', name))
    assert color.mode == 'P' and np.array_equal(np.asarray(color), INFO.train2label[pred])
    # correctness map: 255 where the ground truth is ignored, 127 right, 0 wrong (the terrain stripes)
    correct = np.asarray(Image.open(os.path.join('out', 'color', 'correct', name)))
    np.testing.assert_array_equal(correct, np.where(gt[1] == 255, 255, np.where(gt[1] == 9, 0, 127)))
    assert set(np.unique(correct)) == {0, 127, 255}
    stem = LABEL + '_ep-0000'
    assert json.load(open(os.path.join('out', stem + '_results.json')))['scores']['mean_iou'] == s['mean_iou']
    md = open(os.path.join('out', stem + '_results.md')).read().splitlines()
    assert md[0].startswith('Case|mIoU|Road|Sidewalk|Building') and md[2].startswith(stem + '|%.1f|100.0' %
                                                                                     (100 * s['mean_iou']))
    assert os.path.isfile(os.path.join('out', stem + '.log'))
    # the saved labelId PNGs scored by the official Cityscapes script give the same numbers
    from issegm.testing.official import official_class_iou, official_evaluation
    official = official_evaluation(city, os.path.abspath(os.path.join('out', 'labelId')), monkeypatch)
    np.testing.assert_allclose(np.array(s['class_iou']) * 100, official_class_iou(official) * 100, atol=0.01)
    assert abs(s['mean_iou'] - official['averageScoreClasses']) * 100 < 0.01


def test_flipping_a_symmetric_input_changes_nothing(city, t1_weights):
    from issegm.engine.model import get_model
    net = get_model(LABEL, t1_weights)
    half = _scene(7)[:, :192]
    sym = np.concatenate([half, half[:, ::-1]], 1)
    _write_split(city, 'sym', [sym])
    _write_split(city, 'symm', [sym], mirror=True)
    a = evaluation.run(_args(city, t1_weights, '--split', 'sym', '--output', 'a', '--test-flipping'), net=net)
    b = evaluation.run(_args(city, t1_weights, '--split', 'symm', '--output', 'b', '--test-flipping'), net=net)
    pa = np.asarray(Image.open('a/trainId/lindau_000000_000019_leftImg8bit.png'))
    pb = np.asarray(Image.open('b/trainId/lindau_000000_000019_leftImg8bit.png'))
    assert len(np.unique(pa)) > 1            # a real prediction, not a constant map
    np.testing.assert_array_equal(pa, pa[:, ::-1])
    np.testing.assert_array_equal(pa, pb)
    assert a['scores'] == b['scores']
    # the flip-averaged probabilities of a symmetric image are mirror images of themselves
    img = np.asarray(Image.open(os.path.join(city, 'leftImg8bit/sym/lindau/lindau_000000_000019_leftImg8bit.png')))
    probs = Predictor(net, 19, 8, flip=True).predict(img, [384])
    np.testing.assert_allclose(probs, probs[:, :, ::-1], atol=1e-6)
    assert not np.allclose(Predictor(net, 19, 8).predict(img, [384]), probs, atol=1e-4)


def test_multi_scale(city, t1_weights):
    from issegm.engine.model import get_model
    net = get_model(LABEL, t1_weights)
    one = evaluation.run(_args(city, t1_weights, '--output', 'one'), net=net)
    same = evaluation.run(_args(city, t1_weights, '--output', 'same', '--test-scales', '384,384'), net=net)
    three = evaluation.run(_args(city, t1_weights, '--output', 'three', '--test-scales', '320,384,448'), net=net)
    name = 'lindau_000002_000019_leftImg8bit.png'
    read = lambda d: np.asarray(Image.open(os.path.join(d, 'trainId', name)))  # noqa: E731
    np.testing.assert_array_equal(read('one'), read('same'))
    assert one['scores']['confusion'] == same['scores']['confusion']
    img = np.asarray(Image.open(os.path.join(city, 'leftImg8bit/val/lindau/' + name)))
    p = Predictor(net, 19, 8)
    mean = sum(p.predict(img, [s]) for s in (320, 384, 448)) / 3
    np.testing.assert_array_equal(read('three'), mean.argmax(0))
    assert not np.array_equal(read('three'), read('one'))
    assert three['test_scales'] == [320, 384, 448]


def test_sub_stride_steps_reach_the_predictor(city, t1_weights):
    from issegm.engine.model import get_model
    net = get_model(LABEL, t1_weights)
    res = evaluation.run(_args(city, t1_weights, '--output', 'two', '--test-steps', '2', '--test-flipping'),
                         net=net)
    assert res['args']['test_steps'] == 2
    name = 'lindau_000001_000019_leftImg8bit.png'
    got = np.asarray(Image.open(os.path.join('two', 'trainId', name)))
    img = np.asarray(Image.open(os.path.join(city, 'leftImg8bit/val/lindau/' + name)))
    np.testing.assert_array_equal(got, Predictor(net, 19, 8, flip=True, steps=2).predict(img, [384]).argmax(0))
    assert not np.array_equal(got, Predictor(net, 19, 8, flip=True).predict(img, [384]).argmax(0))


@pytest.mark.subprocess
def test_script_end_to_end_and_defaults(city, t1_weights):
    """``python issegm/evaluate.py`` as users run it (PYTHONPATH=repo root), defaults from the weights."""
    import subprocess
    import sys
    from util.child_env import REPO as repo
    env = dict(os.environ, PYTHONPATH=repo)
    proc = subprocess.run([sys.executable, os.path.join(repo, 'issegm', 'evaluate.py'), '--data-root', city,
                           '--dataset', 'cityscapes', '--phase', 'val', '--weights', t1_weights, '--split', 'val',
                           '--test-scales', '384', '--test-flipping', '--gpus', '0', '--no-cudnn',
                           '--prefetch-threads', '2'], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = os.path.dirname(t1_weights)      # --output defaults to the weights' folder for --phase val
    stem = LABEL + '_ep-0003'
    res = json.load(open(os.path.join(out, stem + '_results.json')))
    assert res['model'] == LABEL and res['args']['no_mxnet_cudnn_autotune_default'] is True
    assert res['test_flipping'] is True and res['scores']['num_images'] == 3
    assert len(os.listdir(os.path.join(out, 'labelId'))) == 3
    assert 'mean iou' in open(os.path.join(out, stem + '.log')).read()


@pytest.mark.parametrize('case', ['classes', 'missing', 'empty', 'weights', 'scales', 'label', 'steps', 'gone'])
def test_bad_input_is_one_line_error_before_work(city, t1_weights, tmp_path, capsys, case):
    argv = ['--data-root', city, '--phase', 'val', '--weights', t1_weights, '--split', 'val',
            '--test-scales', '384', '--output', 'bad', '--gpus', '']
    if case == 'classes':
        argv += ['--dataset', 'cityscapes16']
        needle = 'predicts 19 classes but dataset cityscapes16 has 16'
    elif case == 'missing':
        os.remove(os.path.join(city, 'gtFine/val/lindau/lindau_000002_000019_gtFine_labelIds.png'))
        needle = 'lindau_000002_000019_gtFine_labelIds.png (line 3)'
    elif case == 'empty':
        _write_split(city, 'val', [])
        needle = 'has no entries'
    elif case == 'weights':
        argv[argv.index(t1_weights)] = str(tmp_path / (LABEL + '_ep-0009.params'))
        needle = 'weights not found'
    elif case == 'scales':
        argv[argv.index('384')] = '38a'
        needle = '--test-scales'
    elif case == 'steps':
        argv += ['--dataset', 'cityscapes', '--test-steps', '3']
        needle = '--test-steps 3 does not divide the network stride 8; use one of 1, 2, 4, 8'
    elif case == 'label':
        unlabelled = tmp_path / 'weights.params'
        unlabelled.write_bytes(open(t1_weights, 'rb').read())
        argv[argv.index(t1_weights)] = str(unlabelled)
        needle = 'pass --model'
    else:   # a missing file is named as missing, not blamed on its name
        argv[argv.index(t1_weights)] = str(tmp_path / 'gone.params')
        needle = 'weights not found: %s' % (tmp_path / 'gone.params')
    assert evaluate_script.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not os.path.exists('bad')       # nothing written


@pytest.mark.threaded
def test_next_image_is_forwarded_while_this_one_is_post_processed(city, tmp_path, monkeypatch):
    from issegm.testing.standin import DeviceStandIn, with_host_delay
    HOST_DELAY = 0.3   # host time a step; the overlap shows with this much slack
    device = DeviceStandIn(0.2)
    spans = []
    from issegm.engine.postprocess import HostOps
    monkeypatch.setattr(HostOps, 'upsample', with_host_delay(HostOps.upsample, HOST_DELAY, spans))
    weights = str(tmp_path / (LABEL + '_ep-0000.params'))
    open(weights, 'w').close()   # never read: the network is injected
    res = evaluation.run(_args(city, weights, '--output', 'out', '--postprocess', 'pil'), net=device)
    assert res['scores']['mean_iou'] >= 0
    fwd = sorted(device.spans)
    assert len(fwd) == 3 and len(spans) == 3
    for i in range(2):
        # Sequential code starts forward i+1 only after upsampling i ended; the overlap starts it
        # as forward i ends, HOST_DELAY before that (slack for a busy machine).
        assert fwd[i + 1][0] < spans[i][1]


class LinearNet(object):
    """Softmax of a fixed random linear map of each 8x8 cell's mean colour: varied, input-dependent maps."""

    def __init__(self, seed=0):
        self.weight = mx.nd.array(np.random.RandomState(seed).randn(19, 3) * 3)

    def __call__(self, data):
        pooled = mx.nd.Pooling(data, kernel=(8, 8), stride=(8, 8), pool_type='avg')
        _, _, h, w = pooled.shape
        logits = mx.nd.dot(self.weight, pooled.reshape((3, -1))).reshape((1, 19, h, w))
        return mx.nd.softmax(logits, axis=1)


@pytest.mark.parametrize('extra', [[], ['--test-flipping', '--test-scales', '320,448'], ['--test-steps', '2']])
def test_device_and_pil_post_processing_agree(city, t1_weights, extra):
    net = LinearNet()
    res = {mode: evaluation.run(_args(city, t1_weights, '--output', mode, '--postprocess', mode, *extra), net=net)
           for mode in ('pil', 'device')}
    same = total = 0
    for i in range(3):
        name = 'lindau_%06d_000019_leftImg8bit.png' % i
        a, b = (np.asarray(Image.open(os.path.join(mode, 'trainId', name))) for mode in ('pil', 'device'))
        assert len(np.unique(a)) > 3          # a real prediction
        same += int((a == b).sum())
        total += a.size
    assert same >= 0.9999 * total
    conf = {mode: np.array(r['scores']['confusion']) for mode, r in res.items()}
    assert np.abs(conf['pil'] - conf['device']).sum() <= 2 * (total - same)
    assert 'post-processing: device' in open(os.path.join('device', LABEL + '_ep-0003.log')).read()


def test_unknown_label_ids_are_ignored_by_the_scores_and_reported_once(city, tmp_path, caplog):
    """11.5 in evaluation: id 200 counts nowhere (as the reference's table maps it), one warning names it."""
    import logging
    weights = str(tmp_path / (LABEL + '_ep-0000.params'))
    open(weights, 'w').close()   # never read: the network is injected
    clean = evaluation.run(_args(city, weights, '--output', 'clean'), net=ColourNet())['scores']
    gt_path = os.path.join(city, 'gtFine/val/lindau/lindau_000001_000019_gtFine_labelIds.png')
    gt = np.asarray(Image.open(gt_path)).copy()
    gt[gt == 0] = 200   # the two ignored stripes: still ignored, now as an unknown id
    Image.fromarray(gt).save(gt_path)
    caplog.set_level(logging.WARNING)
    res = evaluation.run(_args(city, weights, '--output', 'out'), net=ColourNet())['scores']
    assert res['mean_iou'] == clean['mean_iou'] and res['pixel_acc'] == clean['pixel_acc']
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and 'outside the cityscapes label ids (200)' in warnings[0]
    assert 'lindau_000001_000019_gtFine_labelIds.png (200)' in warnings[0]


@pytest.mark.parametrize('kind', ['16-bit', 'rgb', 'truncated', 'size', 'jpeg', 'repeat', 'gpus'])
def test_damaged_files_and_bad_devices_are_one_line_before_any_forward(city, tmp_path, capsys, monkeypatch, kind):
    weights = str(tmp_path / (LABEL + '_ep-0000.params'))
    mx.nd.save(weights, {})
    gt_path = os.path.join(city, 'gtFine/val/lindau/lindau_000001_000019_gtFine_labelIds.png')
    argv = ['--data-root', city, '--dataset', 'cityscapes', '--phase', 'val', '--weights', weights, '--split',
            'val', '--test-scales', '384', '--output', 'out', '--gpus', 'x' if kind == 'gpus' else '']
    if kind == '16-bit':
        Image.fromarray(np.zeros((32, 384), np.uint16)).save(gt_path)
    elif kind == 'rgb':
        Image.fromarray(np.zeros((32, 384, 3), np.uint8)).save(gt_path)
    elif kind == 'truncated':
        data = open(gt_path, 'rb').read()
        open(gt_path, 'wb').write(data[:len(data) // 2])
    elif kind == 'size':
        Image.fromarray(np.zeros((32, 380), np.uint8)).save(gt_path)
    elif kind == 'jpeg':   # an image cut short, listed in place of the first PNG
        jpeg = os.path.join(city, 'cut.jpg')
        Image.fromarray(np.zeros((32, 384, 3), np.uint8)).save(jpeg)
        open(jpeg, 'r+b').truncate(os.path.getsize(jpeg) - 40)
        lines = open('issegm/data_list/cityscapes/val.lst').read().splitlines()
        lines[0] = 'cut.jpg\t' + lines[0].split('\t')[1]
        open('issegm/data_list/cityscapes/val.lst', 'w').write('\n'.join(lines) + '\n')
    elif kind == 'repeat':
        lines = open('issegm/data_list/cityscapes/val.lst').read().splitlines()
        open('issegm/data_list/cityscapes/val.lst', 'w').write('\n'.join(lines + lines[:2]) + '\n')
    forwards = []
    import issegm.engine.model
    monkeypatch.setattr(issegm.engine.model, 'get_model', lambda *a, **k: forwards.append(1) or ColourNet())
    code = evaluate_script.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    needle = {'16-bit': 'lindau_000001_000019_gtFine_labelIds.png: 16-bit label',
              'rgb': 'lindau_000001_000019_gtFine_labelIds.png: a colour label (mode RGB)',
              'truncated': 'lindau_000001_000019_gtFine_labelIds.png: truncated PNG',
              'size': '380x32 (width x height) but its image is 384x32',
              'jpeg': 'val.lst: 1 file(s) fail the content check: image %s: truncated JPEG' % os.path.join(city, 'cut.jpg'),
              'repeat': 'val.lst: 2 entries repeat an earlier image (the first: leftImg8bit/val/lindau/lindau_000000',
              'gpus': '--gpus x: expected device ids'}[kind]
    assert needle in err[0] and 'Traceback' not in err[0], err
    assert not forwards and not os.path.exists('out')   # refused before the network is built or --output made


def test_correct_map_on_a_hand_built_case(tmp_path):
    """The reference's correctness map: 255 where the label id is not evaluated, 127 where the
    predicted label id equals it, 0 elsewhere."""
    ev = evaluation.Evaluation(None, INFO, [64], str(tmp_path))
    # label ids: road 7, sidewalk 8, car 26; 0 (unlabeled) and 1 (ego vehicle) are not evaluated
    label = np.array([[7, 7, 8, 0],
                      [26, 1, 8, 26]], np.uint8)
    pred = np.array([[0, 1, 1, 0],          # train ids: road, sidewalk, sidewalk, road
                     [13, 13, 0, 0]], np.uint8)   # car, car, road, road
    ev.save('x', pred, label)
    correct = np.asarray(Image.open(str(tmp_path / 'color' / 'correct' / 'x.png')))
    np.testing.assert_array_equal(correct, [[127, 0, 127, 255],
                                            [127, 255, 0, 0]])
    np.testing.assert_array_equal(np.asarray(Image.open(str(tmp_path / 'labelId' / 'x.png'))),
                                  [[7, 8, 8, 7], [26, 26, 7, 7]])


@pytest.mark.parametrize('phase', ['test', 'val'])
def test_lists_without_labels_give_predictions_without_scores(city, tmp_path, phase):
    """``--phase test`` (and ``val`` on a list without a label column): every image predicted
    and saved, nothing scored."""
    weights = str(tmp_path / 'models' / (LABEL + '_ep-0000.params'))
    os.makedirs(os.path.dirname(weights))
    open(weights, 'w').close()   # never read: the network is injected
    with open('issegm/data_list/cityscapes/val.lst') as f:
        images = [line.split('\t')[0] for line in f.read().splitlines()]
    with open('issegm/data_list/cityscapes/test.lst', 'w') as f:
        f.write('\n'.join(images) + '\n')
    args = evaluate_script.parse_args(['--data-root', city, '--dataset', 'cityscapes', '--phase', phase,
                                       '--weights', weights, '--split', 'test', '--gpus', '',
                                       '--test-scales', '384', '--output', 'out'])
    assert evaluation.run(args, net=ColourNet({9: 8})) is None
    for i, image in enumerate(images):
        name = os.path.basename(image)
        pred = np.asarray(Image.open(os.path.join('out', 'trainId', name)))
        gt = INFO.label2train[np.asarray(Image.open(os.path.join(
            city, 'gtFine/val/lindau/lindau_%06d_000019_gtFine_labelIds.png' % i)))]
        ok = (gt != 255) & (gt != 9)
        np.testing.assert_array_equal(pred[ok], gt[ok])          # real predictions, not a constant map
        np.testing.assert_array_equal(np.asarray(Image.open(os.path.join('out', 'labelId', name))),
                                      INFO.train2label[pred])
        assert os.path.isfile(os.path.join('out', 'color', name))
    assert not os.path.exists(os.path.join('out', 'color', 'correct'))
    assert not [f for f in os.listdir('out') if f.endswith('_results.json') or f.endswith('_results.md')]
    log = open(os.path.join('out', LABEL + '.log' if phase == 'test' else LABEL + '_ep-0000_test.log')).read()
    assert 'mean iou' not in log and 'Done 3/3' in log


def _files(folder):
    """Every file of ``folder`` but the log and the lock (which names its holder), by relative path -> bytes."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            if not name.endswith('.log') and name != '.lock':
                path = os.path.join(root, name)
                found[os.path.relpath(path, folder)] = open(path, 'rb').read()
    return found


def test_a_rerun_keeps_the_files_and_other_settings_are_refused_before_any_write(city, tmp_path, capsys):
    weights = str(tmp_path / (LABEL + '_ep-0000.params'))
    open(weights, 'w').close()
    evaluation.run(_args(city, weights, '--output', 'out'), net=ColourNet({9: 8}))
    first = _files('out')
    assert 'evaluate' in json.loads(first['run.json'])
    assert json.loads(first['run.json'])['evaluate']['settings']['--test-scales'] == [384]
    # the same settings: recomputed, every file's content unchanged (the results file's date too)
    evaluation.run(_args(city, weights, '--output', 'out'), net=ColourNet({9: 8}))
    assert _files('out') == first
    # other settings into the same --output: one line naming the difference, nothing touched
    argv = ['--data-root', city, '--dataset', 'cityscapes', '--phase', 'val', '--weights', weights, '--split', 'val',
            '--gpus', '', '--test-scales', '384', '--test-flipping', '--output', 'out']
    capsys.readouterr()
    assert evaluate_script.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and '--test-flipping false (now true)' in err[0] and '--restart' in err[0], err
    assert _files('out') == first
    # --restart discards the earlier predictions and records the new settings
    evaluation.run(_args(city, weights, '--output', 'out', '--test-flipping', '--restart'), net=ColourNet({9: 8}))
    assert json.load(open('out/run.json'))['evaluate']['settings']['--test-flipping'] is True
    # other weights under the same name: their checksum differs from the recorded one
    open(weights, 'w').write('other')
    capsys.readouterr()
    assert evaluate_script.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and '--weights sha256 ' in err[0], err


def test_test_scales_whose_maps_cannot_fit_are_one_line_before_any_work(city, tmp_path, capsys, monkeypatch):
    from util import memory
    weights = str(tmp_path / (LABEL + '_ep-0000.params'))
    open(weights, 'w').close()
    monkeypatch.setattr(memory, 'physical_memory', lambda: 10 ** 9)
    assert evaluate_script.main(['--data-root', city, '--dataset', 'cityscapes', '--phase', 'val', '--weights',
                                 weights, '--split', 'val', '--test-scales', '384,4096', '--output', 'out',
                                 '--gpus', '']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['evaluate.py: error: --test-scales 4096: three float32 maps of 19 classes at 2048x4096 need about '
                   '1.9 GB, more than the 1.0 GB of this machine; lower --test-scales'], err
    assert not os.path.exists('out')
