"""The shared training loop: schedules, checkpoints, resume."""
import os

import mxnet as mx
import numpy as np
import pytest

from issegm.engine.training import checkpoint_path, last_checkpoint, make_lr_scheduler, NllMetric, states_path, train
from util.mxutil import load_params_from_file

LABEL = 'gta_rna-t1_cls19_s8'


def _iter(n=8, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, 3, 32, 32).astype(np.float32)
    y = rng.randint(0, 19, (n, 16)).astype(np.float32)
    y[:, :3] = 255
    return mx.io.NDArrayIter(x, y, batch_size=4, label_name='softmax_label')


def test_lr_policies():
    assert make_lr_scheduler('fixed', 0.1, 0, 100)(57) == 0.1
    lin = make_lr_scheduler('linear', 1.0, 0, 99)
    assert lin(50) == pytest.approx(0.5) and lin(100) == pytest.approx(1e-6)
    poly = make_lr_scheduler('poly', 1.0, 0, 99)
    assert poly(50) == pytest.approx(0.5 ** 0.9)
    resumed = make_lr_scheduler('poly', 1.0, 50, 99)
    assert resumed(0) == pytest.approx(poly(50))
    step = make_lr_scheduler('step', 1.0, 5, 20, steps=[3, 10], factor=0.1)
    assert step(1) == pytest.approx(0.1)
    assert step(6) == pytest.approx(0.01)
    with pytest.raises(ValueError, match='--lr-type'):
        make_lr_scheduler('cosine', 1.0, 0, 10)


def test_nll_metric_ignores_255():
    probs = mx.nd.array(np.array([[[[0.5, 0.25]], [[0.5, 0.75]]]]))  # (1, 2, 1, 2)
    label = mx.nd.array(np.array([[1, 255]]))
    m = NllMetric()
    m.update([label], [probs])
    assert m.get()[1] == pytest.approx(-np.log(0.5))


def test_checkpoints_every_epoch_and_resume(tmp_path):
    prefix = str(tmp_path / (LABEL + '_ep'))
    seen, epochs = [], []
    paths = train(LABEL, _iter(), prefix, to_epoch=2, base_lr=1e-2,
                  batch_end_callback=lambda e, b, loss, lr: seen.append((e, b, lr, loss)),
                  epoch_end_callback=epochs.append)
    assert paths == [checkpoint_path(prefix, 1), checkpoint_path(prefix, 2)]
    # One entry per epoch for the health record: the logged loss (the metric's mean over the epoch's batches).
    assert [(e['epoch'], e['images'], e['lr'], e['checkpoint']) for e in epochs] == [
        (1, 8, 1e-2, paths[0]), (2, 8, 1e-2, paths[1])]
    assert epochs[1]['loss'] == pytest.approx(seen[3][3]) and epochs[1]['seconds'] > 0
    assert os.path.exists(prefix + '-symbol.json')
    assert [s[:2] for s in seen] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert last_checkpoint(prefix) == 2 and last_checkpoint(prefix, upto=1) == 1
    ep2 = load_params_from_file(paths[1])[0]['conv1a_weight'].asnumpy()
    # A rerun with more epochs resumes at 2: epochs 1-2 untouched.
    paths = train(LABEL, _iter(), prefix, to_epoch=3, base_lr=1e-2)
    assert paths[-1] == checkpoint_path(prefix, 3)
    assert np.array_equal(load_params_from_file(paths[1])[0]['conv1a_weight'].asnumpy(), ep2)
    assert not np.array_equal(load_params_from_file(paths[2])[0]['conv1a_weight'].asnumpy(), ep2)
    # A finished run does nothing.
    assert train(LABEL, _iter(), prefix, to_epoch=3)[-1] == checkpoint_path(prefix, 3)


def test_training_lowers_the_loss(tmp_path):
    losses = []
    train(LABEL, _iter(4), str(tmp_path / (LABEL + '_ep')), to_epoch=6, base_lr=0.05,
          batch_end_callback=lambda e, b, loss, lr: losses.append(loss))
    assert losses[-1] < losses[0]


def _file_iter(root):
    """A real FileIter over a few toy GTA-5 images (shuffling, scale draws and flips included)."""
    from issegm.benchmark import toy
    from issegm.engine.iterator import SOURCE, FileIter, Sample
    toy.generate(str(root), seed=1, n_source=6, n_source_val=0, n_target_train=0, n_target_val=0)
    gta = os.path.join(str(root), 'gta')
    samples = [Sample(os.path.join(gta, 'images/%05d.png' % k), os.path.join(gta, 'labels/%05d.png' % k),
                      SOURCE) for k in range(1, 7)]
    return FileIter('gta', samples=samples, batch_images=2, crop_size=32, origin_size=1914,
                    scale_rate_range=(0.7, 1.3), feat_stride=8, meta={'mine_port': 0.5, 'mine_id': [5]})


def test_runs_repeat_exactly_and_resume_draws_what_an_uninterrupted_run_draws(tmp_path):
    it = _file_iter(tmp_path / 'data')
    losses = {'a': [], 'c': []}

    def log(name):
        return lambda epoch, nbatch, loss, lr: losses[name].append((epoch, nbatch, loss))

    a = train(LABEL, it, str(tmp_path / 'a' / (LABEL + '_ep')), to_epoch=2, base_lr=1e-2,
              batch_end_callback=log('a'))
    b = train(LABEL, it, str(tmp_path / 'b' / (LABEL + '_ep')), to_epoch=2, base_lr=1e-2)
    wa, wb = (load_params_from_file(p[-1])[0]['conv1a_weight'].asnumpy() for p in (a, b))
    assert np.array_equal(wa, wb)
    # Stop after epoch 1, then resume: epoch 2 starts from the same weights and
    # draws the same batch and dropout mask, so its first loss is the same.
    c_prefix = str(tmp_path / 'c' / (LABEL + '_ep'))
    train(LABEL, it, c_prefix, to_epoch=2, stop_epoch=1, base_lr=1e-2)
    c = train(LABEL, it, c_prefix, to_epoch=2, base_lr=1e-2, batch_end_callback=log('c'))
    assert np.array_equal(load_params_from_file(c[0])[0]['conv1a_weight'].asnumpy(),
                          load_params_from_file(a[0])[0]['conv1a_weight'].asnumpy())
    first_of_epoch2 = [loss for epoch, nbatch, loss in losses['a'] if (epoch, nbatch) == (1, 0)]
    assert losses['c'][0][:2] == (1, 0) and [losses['c'][0][2]] == first_of_epoch2
    d = train(LABEL, it, str(tmp_path / 'd' / (LABEL + '_ep')), to_epoch=2, base_lr=1e-2, seed=1)
    assert not np.array_equal(load_params_from_file(d[-1])[0]['conv1a_weight'].asnumpy(), wa)


def test_kill_in_the_middle_of_an_epoch_resumes_from_the_last_whole_one(tmp_path):
    it = _file_iter(tmp_path / 'data')
    prefix = str(tmp_path / 'run' / (LABEL + '_ep'))

    def killer(epoch, nbatch, loss, lr):
        if (epoch, nbatch) == (1, 1):  # second batch of epoch 2: a kill mid-epoch
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(LABEL, it, prefix, to_epoch=3, base_lr=1e-2, batch_end_callback=killer)
    folder = os.path.dirname(prefix)
    assert sorted(f for f in os.listdir(folder) if f.endswith('.params')) == [LABEL + '_ep-0001.params']
    assert not [f for f in os.listdir(folder) if f.startswith('.')]  # no half-written file
    ep1 = load_params_from_file(checkpoint_path(prefix, 1))[0]['conv1a_weight'].asnumpy()
    seen = []
    paths = train(LABEL, it, prefix, to_epoch=3, base_lr=1e-2,
                  batch_end_callback=lambda e, b, loss, lr: seen.append((e, b)))
    assert paths == [checkpoint_path(prefix, e) for e in (1, 2, 3)]
    assert seen[0] == (1, 0)  # epoch 1 is not trained again
    assert np.array_equal(load_params_from_file(paths[0])[0]['conv1a_weight'].asnumpy(), ep1)


def _weights(path):
    arg, aux = load_params_from_file(path)
    return {k: v.asnumpy() for k, v in dict(arg, **aux).items()}


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_exact_resume_stopped_or_killed_equals_uninterrupted(tmp_path):
    """Momentum, the poly schedule position, data order and dropout all carry over: bit for bit."""
    it = _file_iter(tmp_path / 'data')
    kw = dict(to_epoch=3, base_lr=0.05, lr_policy='poly')
    whole = train(LABEL, it, str(tmp_path / 'whole' / (LABEL + '_ep')), **kw)
    assert all(os.path.exists(p[:-len('.params')] + '.states') for p in whole)
    stopped = str(tmp_path / 'stopped' / (LABEL + '_ep'))
    train(LABEL, it, stopped, stop_epoch=1, **kw)
    train(LABEL, it, stopped, stop_epoch=2, **kw)
    killed = str(tmp_path / 'killed' / (LABEL + '_ep'))

    def kill(epoch, nbatch, loss, lr):
        if (epoch, nbatch) == (2, 1):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(LABEL, it, killed, batch_end_callback=kill, **kw)
    assert last_checkpoint(killed) == 2
    for prefix in (stopped, killed):
        lrs = []
        paths = train(LABEL, it, prefix, batch_end_callback=lambda e, b, loss, lr: lrs.append(lr), **kw)
        for a, b in zip(paths, whole):
            assert _same(_weights(a), _weights(b)), (a, b)
        # the rates of the third epoch's updates 7..9 of a 10-update poly schedule (reference: to_iter + 1)
        assert lrs[-3:] == pytest.approx([0.05 * (1 - n / 10.) ** 0.9 for n in (7, 8, 9)])
    # Without its .states the same resume restarts momentum: one warning, other weights.
    lost = str(tmp_path / 'lost' / (LABEL + '_ep'))
    train(LABEL, it, lost, stop_epoch=2, **kw)
    os.remove(states_path(lost, 2))
    import logging
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger('issegm.engine.training').addHandler(handler)
    try:
        paths = train(LABEL, it, lost, **kw)
    finally:
        logging.getLogger('issegm.engine.training').removeHandler(handler)
    warnings = [r.getMessage() for r in records if r.levelname == 'WARNING']
    assert len(warnings) == 1 and 'momentum 0' in warnings[0]
    assert not _same(_weights(paths[-1]), _weights(whole[-1]))


def test_states_of_other_weights_are_refused(tmp_path):
    from util.mxutil import CheckpointError
    a, b = (str(tmp_path / n / (LABEL + '_ep')) for n in 'ab')
    train(LABEL, _iter(), a, to_epoch=2, stop_epoch=1, base_lr=1e-2)
    train(LABEL, _iter(seed=1), b, to_epoch=2, stop_epoch=1, base_lr=1e-2)
    os.replace(states_path(b, 1), states_path(a, 1))
    with pytest.raises(CheckpointError, match='other weights'):
        train(LABEL, _iter(), a, to_epoch=2, base_lr=1e-2)


def test_step_schedule_started_past_a_step_keeps_the_decay():
    """11.4(b): at from_iter 5 with steps 3, 10 the rate starts at base * 0.1 and drops at update 10."""
    import mxnet as mx
    sched = make_lr_scheduler('step', 1.0, 5, 20, steps=[3, 10], factor=0.1)
    opt = mx.optimizer.SGD(learning_rate=sched.base_lr, lr_scheduler=sched)
    assert [opt.lr_scheduler(n) for n in (1, 5, 6)] == pytest.approx([0.1, 0.1, 0.01])


def test_a_divergent_loss_stops_before_the_update_and_saves_nothing_after(tmp_path):
    from issegm.errors import DivergenceError
    prefix = str(tmp_path / (LABEL + '_ep'))
    train(LABEL, _iter(), prefix, to_epoch=3, stop_epoch=1, base_lr=1e-2)
    before = _weights(checkpoint_path(prefix, 1))

    class Poisoned(mx.io.NDArrayIter):
        def next(self):
            batch = super(Poisoned, self).next()
            batch.data[0][:] = np.nan
            return batch

    rng = np.random.RandomState(0)
    poisoned = Poisoned(rng.randn(8, 3, 32, 32).astype(np.float32), rng.randint(0, 19, (8, 16)).astype(np.float32),
                        batch_size=4, label_name='softmax_label')
    with pytest.raises(DivergenceError) as err:
        train(LABEL, poisoned, prefix, to_epoch=3, base_lr=1e-2)
    msg = str(err.value)
    assert 'gradients are not finite at epoch 2, iteration 1/2' in msg and 'lr 1.000e-02' in msg
    assert '--base-lr' in msg and msg.endswith('nothing was saved after %s' % checkpoint_path(prefix, 1))
    assert last_checkpoint(prefix) == 1 and _same(_weights(checkpoint_path(prefix, 1)), before)
    # A rate far too high: the second update would take the weights to inf; no checkpoint at all.
    fresh = str(tmp_path / 'high' / (LABEL + '_ep'))
    with pytest.raises(DivergenceError, match=r'epoch 1, iteration 2/2 \(lr 1.000e\+03\).*no checkpoint'):
        train(LABEL, _iter(), fresh, to_epoch=3, base_lr=1e3)
    assert not os.path.exists(os.path.dirname(fresh)) or last_checkpoint(fresh) is None


def _write_weights(path, seed=0):
    from issegm.testing.checkpoints import recipe_params
    from issegm.engine.model import get_symbol, param_shapes
    args, auxs = param_shapes(get_symbol(LABEL))
    rows = [('arg:' + n, s) for n, s in sorted(args.items())] + [('aux:' + n, s) for n, s in sorted(auxs.items())]
    mx.nd.save(path, recipe_params(rows, seed=seed))
    return path


def test_sgd_steps_are_momentum_0_9_and_weight_decay_5e_4_on_two_devices(tmp_path, monkeypatch):
    """Spec 7: SGD, momentum 0.9, weight decay 5e-4, gradients rescaled by 1 / devices.

    Every label is ignored, so every gradient is 0 and each step is weight decay carried by
    momentum alone, which can be computed by hand: v1 = -lr wd w0, w1 = w0 + v1;
    v2 = 0.9 v1 - lr wd w1, w2 = w1 + v2 (weights and BN gammas; biases and betas have
    weight-decay multiplier 0 and stay put)."""
    import issegm.engine.training as training
    modules = []

    def recording(label, contexts, **kw):
        mod = get_module(label, contexts, **kw)
        modules.append(mod)
        return mod

    from issegm.engine.model import get_module
    monkeypatch.setattr(training, 'get_module', recording)
    rng = np.random.RandomState(0)
    x = rng.randn(4, 3, 32, 32).astype(np.float32)
    it = mx.io.NDArrayIter(x, np.full((4, 16), 255, np.float32), batch_size=4, label_name='softmax_label')
    w0 = load_params_from_file(_write_weights(str(tmp_path / 'w.params')))[0]
    prefix = str(tmp_path / (LABEL + '_ep'))
    lr = 10.0   # large, so that one step of weight decay is far above float32 rounding
    paths = train(LABEL, it, prefix, weights=str(tmp_path / 'w.params'), contexts=[mx.cpu(0), mx.cpu(1)],
                  to_epoch=2, base_lr=lr)
    w1, w2 = (load_params_from_file(p)[0] for p in paths)
    # BatchNorm statistics are the weights', frozen (use_global_stats).
    aux0, aux2 = load_params_from_file(str(tmp_path / 'w.params'))[1], load_params_from_file(paths[1])[1]
    assert sorted(aux0) == sorted(aux2) and len(aux0) > 10
    for name in aux0:
        np.testing.assert_array_equal(aux2[name].asnumpy(), aux0[name].asnumpy(), err_msg=name)
    wd = 5e-4
    decayed = [n for n in w0 if n.endswith('_weight') or n.endswith('_gamma')]
    fixed = [n for n in w0 if n.endswith('_bias') or n.endswith('_beta')]
    assert len(decayed) > 10 and len(fixed) > 5
    for name in decayed:
        a0 = w0[name].asnumpy().astype(np.float64)
        v1 = -lr * wd * a0
        a1 = a0 + v1
        a2 = a1 + 0.9 * v1 - lr * wd * a1
        np.testing.assert_allclose(w1[name].asnumpy(), a1, rtol=1e-5, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(w2[name].asnumpy(), a2, rtol=1e-5, atol=1e-7, err_msg=name)
    for name in fixed:
        np.testing.assert_array_equal(w2[name].asnumpy(), w0[name].asnumpy(), err_msg=name)
    # The bound optimizer: plain SGD, gradients summed over the two devices then halved.
    (mod,) = modules
    opt = mod._optimizer
    assert type(opt) is mx.optimizer.SGD and len(mod._context) == 2
    assert (opt.momentum, opt.wd, opt.rescale_grad) == (0.9, 5e-4, 0.5)


def test_poly_schedule_runs_over_all_updates_and_resumes_where_it_stopped(tmp_path):
    """lr = base (1 - n / (updates + 1)) ** 0.9 over the run's 2 epochs x 2 batches; a run stopped
    after epoch 1 and resumed sees the same rates in epoch 2."""
    lrs = {'a': [], 'b': []}

    def log(name):
        return lambda epoch, nbatch, loss, lr: lrs[name].append(lr)

    train(LABEL, _iter(), str(tmp_path / 'a' / (LABEL + '_ep')), to_epoch=2, base_lr=0.1, lr_policy='poly',
          batch_end_callback=log('a'))
    assert lrs['a'] == pytest.approx([0.1 * (1 - n / 5.) ** 0.9 for n in (1, 2, 3, 4)], rel=1e-6)
    prefix = str(tmp_path / 'b' / (LABEL + '_ep'))
    train(LABEL, _iter(), prefix, to_epoch=2, stop_epoch=1, base_lr=0.1, lr_policy='poly')
    train(LABEL, _iter(), prefix, to_epoch=2, base_lr=0.1, lr_policy='poly', batch_end_callback=log('b'))
    assert lrs['b'] == pytest.approx(lrs['a'][2:], rel=1e-6)


def test_an_empty_epoch_range_is_an_error(tmp_path):
    with pytest.raises(ValueError, match='^need from_epoch < stop_epoch <= to_epoch, got 2, 2, 2$'):
        train(LABEL, _iter(), str(tmp_path / (LABEL + '_ep')), from_epoch=2, to_epoch=2)


def test_step_schedule_divides_by_the_default_factor_after_each_step(tmp_path):
    lrs = []
    train(LABEL, _iter(), str(tmp_path / (LABEL + '_ep')), to_epoch=2, base_lr=0.1, lr_policy='step',
          lr_steps=(2,), batch_end_callback=lambda epoch, nbatch, loss, lr: lrs.append(lr))
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01], rel=1e-6)


def test_two_devices_apply_one_update_on_the_averaged_gradient(tmp_path, monkeypatch):
    """Spec 7: with two devices the gradients of both halves of the batch are summed and rescaled by
    1/2 before ONE update. With 'valid' normalisation and equally many labelled pixels per half, that is
    the gradient of the whole batch on one device, so the first step (momentum has nothing yet) is the
    one-device step on the same batch. Devices updating alone, each with its own half, would move the
    (device-averaged) weights half as far. Dropout is left out so that both runs compute the same
    function."""
    import util.symbol.resnet_v2 as resnet_v2
    monkeypatch.setattr(resnet_v2, 'dropout', lambda data, name, p: data)
    rng = np.random.RandomState(1)
    x = rng.randn(4, 3, 32, 32).astype(np.float32)
    y = rng.randint(0, 19, (4, 16)).astype(np.float32)   # every pixel labelled: equal counts per half
    weights = _write_weights(str(tmp_path / 'w.params'))
    w0 = load_params_from_file(weights)[0]
    steps = {}
    for name, contexts in (('one', [mx.cpu(0)]), ('two', [mx.cpu(0), mx.cpu(1)])):
        it = mx.io.NDArrayIter(x, y, batch_size=4, label_name='softmax_label')
        (path,) = train(LABEL, it, str(tmp_path / name / (LABEL + '_ep')), weights=weights, contexts=contexts,
                        base_lr=1.0, weight_decay=0.)
        w1 = load_params_from_file(path)[0]
        steps[name] = {n: w1[n].asnumpy().astype(np.float64) - w0[n].asnumpy() for n in w0}
    moved = [n for n in w0 if np.abs(steps['one'][n]).max() > 1e-4]
    assert len(moved) > len(w0) // 2
    for n in moved:
        scale = np.abs(steps['one'][n]).max()
        np.testing.assert_allclose(steps['two'][n], steps['one'][n], rtol=0, atol=1e-3 * scale, err_msg=n)
