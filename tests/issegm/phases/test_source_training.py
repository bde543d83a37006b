"""train_src.py: ImageNet-format start (body loaded, head initialised), checkpoint names, lr policies."""
import os
import re

import mxnet as mx
import numpy as np
import pytest

from issegm.testing.checkpoints import recipe_params
from issegm import train_src
from issegm.phases import source_training
from issegm.engine.model import get_symbol, param_shapes
from util.mxutil import load_params_from_file

MODEL = 'gta_rna-t1_cls19_s8'
HEAD = ['conv6a_weight', 'conv6a_bias', 'linear19_weight', 'linear19_bias']


@pytest.fixture(scope='module')
def imagenet_weights(tmp_path_factory):
    """A recipe checkpoint of the thin ImageNet classifier, named as the released one."""
    label = 'ilsvrc-cls_rna-t1_cls1000'
    args, auxs = param_shapes(get_symbol(label), data_shape=(1, 3, 64, 64))
    rows = [('arg:' + n, s) for n, s in sorted(args.items())] + [('aux:' + n, s) for n, s in sorted(auxs.items())]
    path = tmp_path_factory.mktemp('imagenet') / (label + '_ep-0001.params')
    mx.nd.save(str(path), recipe_params(rows, seed=1))
    return str(path)


def _iter(n=4, batch=2, size=32, seed=0):
    """Stand-in for FileIter: normalised crops and labels at the stride centres."""
    rng = np.random.RandomState(seed)
    data = rng.standard_normal((n, 3, size, size)).astype(np.float32)
    label = rng.randint(0, 19, (n, (size // 8) ** 2)).astype(np.float32)
    label[:, :3] = 255
    return mx.io.NDArrayIter(data, label, batch, shuffle=False, label_name='softmax_label')


def _argv(out, weights, *extra):
    return ['--gpus', '0', '--split', 'train', '--output', out, '--model', MODEL, '--batch-images', '2',
            '--crop-size', '32', '--scale-rate-range', '0.7,1.3', '--weights', weights, '--kvstore', 'local',
            '--prefetch-threads', '1', '--prefetcher', 'thread', '--cache-images', '0', '--origin-size', '64'] \
        + list(extra)


def test_from_imagenet_body_loaded_head_initialised(tmp_path, imagenet_weights):
    out = str(tmp_path / 'gta_train')
    # lr 0: the parameters after one epoch are exactly the initial ones.
    args = train_src.parse_args(_argv(out, imagenet_weights, '--lr-type', 'fixed', '--base-lr', '0',
                                      '--to-epoch', '1', '--backward-do-mirror'))
    paths = source_training.run(args, dataiter=_iter())
    assert args.from_epoch == 0 and args.dataset == 'gta'          # weights' label differs from --model
    assert paths == [os.path.join(out, MODEL + '_ep-0001.params')]
    assert os.path.isfile(os.path.join(out, MODEL + '_ep-symbol.json'))
    assert os.path.isfile(os.path.join(out, MODEL + '.log'))
    arg, aux = load_params_from_file(paths[0])
    src_arg, src_aux = load_params_from_file(imagenet_weights)
    body = [n for n in src_arg if not n.startswith('linear')]
    assert body and all(np.array_equal(arg[n].asnumpy(), src_arg[n].asnumpy()) for n in body)
    assert all(np.array_equal(aux[n].asnumpy(), src_aux[n].asnumpy()) for n in src_aux)
    assert 'linear1000_weight' not in arg
    for name in HEAD:
        assert name in arg and name not in src_arg
    # Xavier(gaussian, in, 2): std sqrt(2 / fan_in); biases zero
    w = arg['linear19_weight'].asnumpy()
    fan_in = np.prod(w.shape[1:])
    assert abs(w.std() / np.sqrt(2. / fan_in) - 1) < 0.1
    assert not arg['conv6a_bias'].asnumpy().any()


def test_continue_from_own_checkpoint_and_epoch_numbering(tmp_path, imagenet_weights):
    out = str(tmp_path / 'run')
    first = source_training.run(train_src.parse_args(_argv(out, imagenet_weights, '--base-lr', '0.01', '--to-epoch', '1')),
                          dataiter=_iter())[0]
    # weights named like --model: training continues at the weights' epoch (docs/behaviour.md 2)
    args = train_src.parse_args(_argv(str(tmp_path / 'run2'), first, '--base-lr', '0.01', '--to-epoch', '2'))
    paths = source_training.run(args, dataiter=_iter())
    assert args.from_epoch == 1
    assert paths == [os.path.join(str(tmp_path / 'run2'), MODEL + '_ep-0002.params')]
    a, _ = load_params_from_file(first)
    b, _ = load_params_from_file(paths[0])
    assert not np.array_equal(a['linear19_weight'].asnumpy(), b['linear19_weight'].asnumpy())
    # --model omitted: taken from the weights' file name
    args = train_src.parse_args(_argv(out, first, '--to-epoch', '3')[:0] + [
        '--weights', first, '--batch-images', '2', '--crop-size', '32', '--to-epoch', '3', '--stop-epoch', '2',
        '--output', out])
    source_training.resolve_args(args)
    assert args.model == MODEL and args.from_epoch == 1 and args.stop_epoch == 2 and args.lr_type == 'fixed'
    assert args.base_lr == 0.1 and args.kvstore == 'device' and args.data_root == os.path.join('data', 'gta')


def _lrs(tmp_path, weights, *extra, epochs=2, from_epoch=0):
    seen = []
    argv = _argv(str(tmp_path / ('lr%d' % from_epoch + '_'.join(extra))), weights, '--base-lr', '0.01',
                 '--to-epoch', str(epochs), '--from-epoch', str(from_epoch), *extra)
    source_training.run(train_src.parse_args(argv), dataiter=_iter(),
                  batch_end_callback=lambda e, b, loss, lr: seen.append(lr))
    return np.array(seen)


def test_lr_policies(tmp_path, imagenet_weights):
    # 2 batches an epoch, 2 epochs: updates n = 1..4; decays span to_iter + 1 = 5 updates (reference).
    n = np.arange(1, 5)
    np.testing.assert_allclose(_lrs(tmp_path, imagenet_weights, '--lr-type', 'fixed'), 0.01)
    np.testing.assert_allclose(_lrs(tmp_path, imagenet_weights, '--lr-type', 'step', '--lr-steps', '2'),
                               [0.01, 0.01, 0.001, 0.001])
    np.testing.assert_allclose(_lrs(tmp_path, imagenet_weights, '--lr-type', 'linear'), 0.01 * (1 - n / 5.))
    np.testing.assert_allclose(_lrs(tmp_path, imagenet_weights, '--lr-type', 'poly'),
                               0.01 * (1 - n / 5.) ** 0.9, rtol=1e-6)
    # resumed at epoch 1 of 2: the schedule continues where it stood (offset = 2 updates)
    np.testing.assert_allclose(_lrs(tmp_path, imagenet_weights, '--lr-type', 'linear', from_epoch=1),
                               0.01 * (1 - np.arange(3, 5) / 5.))


@pytest.mark.parametrize('extra,needle', [
    (['--to-epoch', '2', '--lr-type', 'cosine'], '--lr-type cosine: expected fixed, step, linear or poly'),
    (['--to-epoch', '2', '--lr-type', 'step'], 'needs --lr-steps'),
    ([], '--to-epoch is required'),
    (['--to-epoch', '2', '--kvstore', 'dist'], '--kvstore must be'),
    (['--to-epoch', '2', '--dataset', 'synthia'], 'predicts 19 classes but dataset synthia has 16'),
])
def test_bad_arguments_one_line(tmp_path, imagenet_weights, capsys, extra, needle):
    assert train_src.main(_argv(str(tmp_path / 'x'), imagenet_weights, *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not os.path.exists(str(tmp_path / 'x'))


def _gta_layout(tmp_path, n=4):
    """A GTA-5 layout of ``n`` 64 x 128 images (images/, labels/ with Cityscapes ids) and its train list."""
    from PIL import Image
    from issegm.storage.datasets import get_dataset
    info = get_dataset('gta')
    root = tmp_path / 'gta'
    (root / 'images').mkdir(parents=True)
    (root / 'labels').mkdir()
    rng = np.random.RandomState(0)
    lines = []
    for i in range(n):
        train = np.kron(rng.randint(0, 19, (4, 8)), np.ones((16, 16), int)).astype(np.uint8)
        train[:8] = 255
        Image.fromarray((rng.rand(64, 128, 3) * 255).astype(np.uint8)).save(str(root / 'images' / ('%05d.png' % i)))
        Image.fromarray(np.where(train == 255, 0, info.train2label[train]).astype(np.uint8)).save(
            str(root / 'labels' / ('%05d.png' % i)))
        lines.append('images/%05d.png\tlabels/%05d.png' % (i, i))
    os.makedirs('issegm/data_list/gta')
    with open('issegm/data_list/gta/train.lst', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return root


def _gta_argv(root, weights, *extra):
    return ['--gpus', '0', '--split', 'train', '--data-root', str(root), '--output', 'gta_train',
            '--model', MODEL, '--batch-images', '2', '--crop-size', '30', '--scale-rate-range',
            '0.7,1.3', '--weights', weights, '--lr-type', 'poly', '--base-lr', '0.001',
            '--to-epoch', '1', '--kvstore', 'local', '--prefetch-threads', '2', '--prefetcher',
            'thread', '--cache-images', '0', '--origin-size', '128'] + list(extra)


@pytest.mark.parametrize('kind, needle', [
    ('size', 'labels/00002.png: 100x64 (width x height) but its image is 128x64'),
    ('16-bit', 'labels/00001.png: 16-bit label'),
    ('truncated', 'images/00003.png: truncated PNG'),
    ('spaces', 'train.lst line 2: expected a TAB between image and label, found spaces')])
def test_damaged_training_files_are_one_line_before_the_first_step(tmp_path, monkeypatch, imagenet_weights, capsys,
                                                                    kind, needle):
    from PIL import Image
    monkeypatch.chdir(tmp_path)
    root = _gta_layout(tmp_path)
    if kind == 'size':
        Image.fromarray(np.zeros((64, 100), np.uint8)).save(str(root / 'labels' / '00002.png'))
    elif kind == '16-bit':
        Image.fromarray(np.zeros((64, 128), np.uint16)).save(str(root / 'labels' / '00001.png'))
    elif kind == 'truncated':
        path = root / 'images' / '00003.png'
        path.write_bytes(path.read_bytes()[:-100])
    else:
        lines = open('issegm/data_list/gta/train.lst').read().splitlines()
        lines[1] = lines[1].replace('\t', ' ')
        open('issegm/data_list/gta/train.lst', 'w').write('\n'.join(lines) + '\n')
    assert train_src.main(_gta_argv(root, imagenet_weights)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('train_src.py: error: ') and needle in err[0], err
    assert not [f for f in os.listdir('gta_train') if f.endswith('.params')]


def test_one_epoch_on_miniature_gta_with_fileiter(tmp_path, monkeypatch, imagenet_weights):
    """The real data path: a GTA-5 layout (images/, labels/ with Cityscapes ids), FileIter, one epoch."""
    from PIL import Image
    from issegm.storage.datasets import get_dataset
    monkeypatch.chdir(tmp_path)
    root = _gta_layout(tmp_path)
    rc = train_src.main(_gta_argv(root, imagenet_weights))
    assert rc == 0
    arg, _ = load_params_from_file(os.path.join('gta_train', MODEL + '_ep-0001.params'))
    assert set(HEAD) <= set(arg) and 'linear1000_weight' not in arg
    log = open(os.path.join('gta_train', MODEL + '.log')).read()
    assert 'Epoch[1] loss=' in log and 'body loaded; head' in log
    loss = float(log.split('Epoch[1] loss=')[1].split()[0])
    assert 0 < loss < 10    # a real NLL over labelled stride centres (ln 19 = 2.94 at chance)


def test_a_changed_rerun_is_refused_restart_starts_again_and_a_longer_fixed_schedule_continues(
        tmp_path, imagenet_weights, capsys):
    out = str(tmp_path / 'run')
    first = _argv(out, imagenet_weights, '--base-lr', '0.01', '--to-epoch', '1')
    source_training.run(train_src.parse_args(first), dataiter=_iter())
    ckpt = os.path.join(out, MODEL + '_ep-0001.params')
    mtime = os.path.getmtime(ckpt)
    # A later --to-epoch under a fixed rate changes no number of epoch 1: it continues.
    paths = source_training.run(train_src.parse_args(_argv(out, imagenet_weights, '--base-lr', '0.01', '--to-epoch', '2')),
                          dataiter=_iter())
    assert paths[-1].endswith('_ep-0002.params') and os.path.getmtime(ckpt) == mtime
    # ... and ends where one run to epoch 2 ends, bit for bit (momentum carried in the .states).
    one = source_training.run(train_src.parse_args(_argv(str(tmp_path / 'one'), imagenet_weights, '--base-lr', '0.01',
                                                   '--to-epoch', '2')), dataiter=_iter())
    a, b = load_params_from_file(paths[-1])[0], load_params_from_file(one[-1])[0]
    assert all(np.array_equal(a[k].asnumpy(), b[k].asnumpy()) for k in a)
    capsys.readouterr()
    assert train_src.main(_argv(out, imagenet_weights, '--base-lr', '0.05', '--to-epoch', '2')) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and '--base-lr 0.01 (now 0.05)' in err[0] and '--restart' in err[0], err
    assert os.path.getmtime(ckpt) == mtime
    paths = source_training.run(train_src.parse_args(_argv(out, imagenet_weights, '--base-lr', '0.05', '--to-epoch', '1',
                                                     '--restart')), dataiter=_iter())
    assert paths == [ckpt] and not os.path.exists(os.path.join(out, MODEL + '_ep-0002.params'))
    assert os.path.getmtime(ckpt) != mtime


def test_output_that_is_a_file_and_a_full_disk_are_one_line(tmp_path, imagenet_weights, capsys, monkeypatch):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    assert train_src.main(_argv(str(blocker / 'out'), imagenet_weights, '--to-epoch', '1')) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'a file stands where a folder is needed' in err[0], err
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(mx.nd, 'save', full)
    monkeypatch.setattr(source_training, 'make_dataiter', lambda *a: _iter())
    out = str(tmp_path / 'full')
    assert train_src.main(_argv(out, imagenet_weights, '--to-epoch', '1')) == 1
    # the run's own log lines (timestamped) come first on the console; the failure is one line after them
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not re.match(r'\d{4}-\d\d-\d\d ', line)]
    assert err == ['train_src.py: error: disk full while writing in %s: free space there, then rerun the same '
                   'command (finished work is kept)' % out], err
    assert not [f for f in os.listdir(out) if '.tmp' in f]


def test_a_file_of_other_classes_is_named_before_from_epoch_is_asked_for(tmp_path, capsys):
    label = 'synthia_rna-t1_cls16_s8'
    args, auxs = param_shapes(get_symbol(label))
    rows = [('arg:' + n, s) for n, s in sorted(args.items())] + [('aux:' + n, s) for n, s in sorted(auxs.items())]
    path = str(tmp_path / 'synthia16.params')   # a name that tells no epoch
    mx.nd.save(path, recipe_params(rows, seed=1))
    assert train_src.main(_argv(str(tmp_path / 'out'), path, '--to-epoch', '1')) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'does not fit the network' in err[0] and 'linear16' in err[0], err
    assert '--from-epoch' not in err[0]


def test_a_crop_larger_than_every_image_is_a_warning_before_training(tmp_path, imagenet_weights, monkeypatch, caplog):
    import logging
    monkeypatch.setattr(source_training, '_train_locked', lambda *a: [])
    with caplog.at_level(logging.WARNING):
        source_training.run(train_src.parse_args(_argv(str(tmp_path / 'out'), imagenet_weights, '--to-epoch', '1',
                                                       '--crop-size', '96')), dataiter=_iter())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and 'crop' in r.getMessage()]
    assert len(warnings) == 1 and 'longer side is at most 83' in warnings[0], warnings
