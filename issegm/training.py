"""The training loop shared by source training and self-training (spec section 7).

SGD with momentum 0.9 and weight decay, gradients rescaled by 1 / number of
devices, BatchNorm statistics frozen, parameters the weights do not provide
initialised with Xavier(gaussian, in, 2). After every epoch the checkpoint
``{prefix}-{epoch:04d}.params`` (and ``{prefix}-symbol.json``) is written
atomically, numbered as MXNet's ``do_checkpoint`` numbers them (the epoch
that has just finished, counted from 1), so a run can resume from the last
whole checkpoint after a kill.

The logged metric is the reference's: the mean negative log-probability of
the true class over non-ignored pixels.

Under :mod:`issegm.launch` (``--kvstore dist_sync`` / ``dist_device_sync``)
every worker trains on its part of each global batch (the iterator's
``num_parts``) and the KVStore sums the gradients of all devices of the job
(:class:`GradientSum`); the servers only sum, and the SGD update runs on the
workers, identically on each, so the optimizer state is on every worker and
rank 0 can checkpoint it like a one-process run. Rank 0 writes the
checkpoints; every worker resumes from the epoch rank 0 finds. With more than
one device in the job, each device's dropout generator is seeded per step
from (seed, epoch, batch, device number in the job), so one process with two
devices and two workers with one device each draw the same masks.
"""
import glob
import logging
import os
import re
import time

import mxnet as mx
import numpy as np

from issegm import distributed
from issegm.model import get_module, get_symbol, head_initializer, load_weights
from util.io import atomic_path
from util.log import progress
from util.mxutil import load_params_from_file, save_params

__all__ = ['LR_POLICIES', 'FixedScheduler', 'LinearScheduler', 'PolyScheduler',
           'make_lr_scheduler', 'NllMetric', 'last_checkpoint', 'checkpoint_path', 'train']

logger = logging.getLogger(__name__)

LR_POLICIES = ('fixed', 'step', 'linear', 'poly')


class FixedScheduler(mx.lr_scheduler.LRScheduler):
    """The same learning rate at every update."""

    def __call__(self, num_update):
        return self.base_lr


class _DecayScheduler(mx.lr_scheduler.LRScheduler):
    """Decay over ``updates`` total updates, counted from ``offset`` (for resumed runs)."""

    def __init__(self, updates, stop_lr=-1., offset=0, base_lr=0.01):
        super(_DecayScheduler, self).__init__(base_lr=base_lr)
        if updates < 1:
            raise ValueError('a decaying learning rate needs at least one update')
        self.updates, self.stop_lr, self.offset = updates, stop_lr, offset

    def _progress(self, num_update):
        return min(self.offset + num_update, self.updates) / float(self.updates)

    def _decay(self, progress):
        raise NotImplementedError

    def __call__(self, num_update):
        lr = self.base_lr * self._decay(self._progress(num_update))
        return max(lr, self.stop_lr) if self.stop_lr > 0 else lr


class LinearScheduler(_DecayScheduler):
    """``base_lr * (1 - n / updates)``, floored at ``stop_lr``."""

    def _decay(self, progress):
        return 1. - progress


class PolyScheduler(_DecayScheduler):
    """``base_lr * (1 - n / updates) ** power``, floored at ``stop_lr``."""

    def __init__(self, updates, stop_lr=-1., power=0.9, offset=0, base_lr=0.01):
        super(PolyScheduler, self).__init__(updates, stop_lr, offset, base_lr)
        self.power = power

    def _decay(self, progress):
        return (1. - progress) ** self.power


def make_lr_scheduler(policy, base_lr, from_iter, to_iter, steps=(), factor=0.1):
    """The reference's schedules, resumable at ``from_iter`` updates already done.

    ``step``: multiply by ``factor`` at each update count in ``steps`` (steps
    already passed are applied to the base rate); ``linear`` / ``poly``: decay
    to the end of training (``to_iter``) as in the reference, floored at
    ``base_lr / 100`` capped at 1e-6 (linear) or 1e-8 (poly).
    """
    if policy == 'fixed':
        return FixedScheduler(base_lr=base_lr)
    if policy == 'step':
        left = [s - from_iter for s in sorted(steps) if s > from_iter]
        passed = len(steps) - len(left)
        lr = base_lr * factor ** passed
        if not left:
            return FixedScheduler(base_lr=lr)
        return mx.lr_scheduler.MultiFactorScheduler(step=left, factor=factor, base_lr=lr)
    if policy == 'linear':
        return LinearScheduler(to_iter + 1, stop_lr=min(base_lr / 100., 1e-6), offset=from_iter,
                               base_lr=base_lr)
    if policy == 'poly':
        return PolyScheduler(to_iter + 1, stop_lr=min(base_lr / 100., 1e-8), power=0.9,
                             offset=from_iter, base_lr=base_lr)
    raise ValueError('unknown --lr-type %r (choose from %s)' % (policy, ', '.join(LR_POLICIES)))


class NllMetric(mx.metric.EvalMetric):
    """Mean -log p(true class) over pixels whose label is not 255 (reference ``loss``)."""

    def __init__(self):
        super(NllMetric, self).__init__('loss')

    def update(self, labels, preds):
        for label, pred in zip(labels, preds):
            gt = label.asnumpy().ravel()
            valid = gt != 255
            probs = pred.asnumpy()
            n, c = probs.shape[:2]
            flat = np.moveaxis(probs, 1, 0).reshape(c, -1)
            picked = flat[gt[valid].astype(np.int64), np.nonzero(valid)[0]]
            self.sum_metric += float(-np.log(picked.astype(np.float64) + 1e-32).sum())
            self.num_inst += max(int(valid.sum()), 1)


def _seed(seed, offset):
    if seed is not None:
        mx.random.seed(int(seed) + offset)
        np.random.seed((int(seed) + offset) % 2 ** 32)


def _device_seed(seed, epoch, nbatch, device):
    return int(np.random.SeedSequence([int(seed), epoch, nbatch, device]).generate_state(1)[0] % 2 ** 31)


def seed_devices_per_step(mod, seed, first_device, step):
    """Seed each device's generator before its training forward from ``(seed, epoch, batch, device)``.

    ``step`` is a dict holding the current ``epoch`` and ``batch``; device k
    of this process is device ``first_device + k`` of the job. Dropout masks
    then depend on which device of the job runs a slice of the batch, not on
    how the devices are grouped into processes.
    """
    for k, executor in enumerate(mod._exec_group.execs):
        def forward(is_train=False, _forward=executor.forward, _device=first_device + k, _ctx=executor._ctx,
                    **kwargs):
            if is_train:
                mx.random.seed(_device_seed(seed, step['epoch'], step['batch'], _device), ctx=_ctx)
            return _forward(is_train=is_train, **kwargs)
        executor.forward = forward


class GradientSum(object):
    """Replaces every device's gradients with their sum over all devices of the job (KVStore ``pushpull``).

    Module's own KVStore path keys the store by parameter name, so a second
    training in one process (the rounds of ``solve_AO``, which keeps its one
    ps-lite connection) could not initialise its keys again; these keys are
    new for each training run. Then ``Module.update`` (without a KVStore)
    applies the summed gradient on each device, as Module does itself.
    """

    def __init__(self, kv, mod):
        self.kv = kv
        self.grads = mod._exec_group.grad_arrays
        run = distributed.new_key()
        names = mod._exec_group.param_names
        self.keys = ['%s_%s' % (run, name) for name in names]
        live = [(k, g) for k, g in zip(self.keys, self.grads) if g[0] is not None]
        kv.init([k for k, _ in live], [mx.nd.zeros(g[0].shape, dtype=g[0].dtype) for _, g in live])

    def __call__(self):
        for idx, (key, grads) in enumerate(zip(self.keys, self.grads)):
            if grads[0] is not None:
                # Earlier layers first: their gradients are needed first by the next forward.
                self.kv.pushpull(key, grads, out=grads, priority=-idx)


def _check_same_start(mod, what):
    """Every worker must start from the same weights (same files on every machine)."""
    arg, aux = mod.get_params()
    total = sum(float(v.asnumpy().astype(np.float64).sum()) for v in list(arg.values()) + list(aux.values()))
    root = float(distributed.broadcast([total])[0])
    if root != total:
        raise distributed.DistError('worker %d starts from other weights than worker 0 (%s): every machine '
                                    'must see the same files (one shared output folder)'
                                    % (distributed.rank(), what))


def checkpoint_path(prefix, epoch):
    return '%s-%04d.params' % (prefix, epoch)


def last_checkpoint(prefix, upto=None):
    """Highest epoch with a checkpoint ``{prefix}-NNNN.params`` (at most ``upto``), or None.

    Checkpoints are only ever renamed into place whole, so any file found is complete.
    """
    best = None
    pattern = re.compile(re.escape(os.path.basename(prefix)) + r'-(\d{4,})\.params$')
    for path in glob.glob(glob.escape(prefix) + '-*.params'):
        m = pattern.match(os.path.basename(path))
        if m:
            epoch = int(m.group(1))
            if (upto is None or epoch <= upto) and (best is None or epoch > best):
                best = epoch
    return best


def train(label, dataiter, prefix, weights=None, contexts=None, from_epoch=0, to_epoch=1,
          stop_epoch=None, base_lr=1e-4, lr_policy='fixed', lr_steps=(), lr_factor=0.1,
          weight_decay=5e-4, momentum=0.9, kvstore='local', resume=True,
          backward_do_mirror=False, batch_end_callback=None, seed=0):
    """Train the network of ``label`` on ``dataiter``; checkpoint to ``{prefix}-%04d.params``.

    Parameters
    ----------
    label : str
        Model label of the network being trained (spec section 2).
    dataiter : mx.io.DataIter
        Yields ``data`` / ``softmax_label`` batches; ``reset()`` starts an epoch.
    prefix : str
        Checkpoint prefix, ``{output}/{label}_ep``.
    weights : str
        Starting ``.params`` (may be the ImageNet classifier: the head is then
        initialised). Ignored when resuming from a checkpoint of this run.
    from_epoch, to_epoch, stop_epoch : int
        Epoch numbering of the reference: epochs ``from_epoch+1 .. stop_epoch``
        are trained; the learning-rate schedule spans ``from_epoch .. to_epoch``.
    resume : bool
        Continue from the last whole checkpoint in ``(from_epoch, stop_epoch]``.
    seed : int
        Seeds MXNet's generator (initialisation, dropout) and numpy's global
        one (the iterator's permutations) before initialisation and at each
        epoch from ``seed + epoch``, so runs repeat exactly and a resumed run
        draws what an uninterrupted one would. None leaves them as they are.

    Returns the list of checkpoint paths written or found, in epoch order.
    """
    contexts = contexts or [mx.cpu()]
    kv = distributed.init(distributed.training_kvstore(kvstore))
    workers, rank = distributed.num_workers(), distributed.rank()
    stop_epoch = to_epoch if stop_epoch is None else stop_epoch
    if not from_epoch < stop_epoch <= to_epoch:
        raise ValueError('need from_epoch < stop_epoch <= to_epoch, got %d, %d, %d'
                         % (from_epoch, stop_epoch, to_epoch))
    if backward_do_mirror:
        os.environ['MXNET_BACKWARD_DO_MIRROR'] = '1'
    symbol = get_symbol(label)
    begin = from_epoch
    found = last_checkpoint(prefix, upto=stop_epoch) if resume else None
    if workers > 1:  # the epoch rank 0 sees, on every worker
        found = int(distributed.broadcast([-1 if found is None else found])[0])
        found = None if found < 0 else found
    done = []
    if found is not None and found > from_epoch:
        done = [checkpoint_path(prefix, e) for e in range(from_epoch + 1, found + 1)
                if os.path.exists(checkpoint_path(prefix, e))]
        if found == stop_epoch:
            logger.info('%s: already trained to epoch %d, nothing to do', prefix, found)
            return done
        logger.info('resuming %s from epoch %d', prefix, found)
        arg_params, aux_params = load_params_from_file(checkpoint_path(prefix, found))
        missing = []
        begin = found
    elif weights is not None:
        arg_params, aux_params, missing = load_weights(label, weights, symbol=symbol)
    else:
        arg_params, aux_params, missing = None, None, True

    batches = getattr(dataiter, 'batches_per_epoch', None)
    if batches is None:
        batches = dataiter.num_data // dataiter.batch_size
    scheduler = make_lr_scheduler(lr_policy, base_lr, begin * batches, to_epoch * batches,
                                  steps=lr_steps, factor=lr_factor)
    _seed(seed, 0)
    mod = get_module(label, contexts)
    mod.bind(dataiter.provide_data, dataiter.provide_label, for_training=True)
    mod.init_params(initializer=head_initializer(), arg_params=arg_params, aux_params=aux_params,
                    allow_missing=bool(missing))
    # Gradients are summed over every device of the job: rescale by their number.
    mod.init_optimizer(kvstore=None if kv else kvstore, optimizer='sgd', optimizer_params={
        'learning_rate': base_lr, 'momentum': momentum, 'wd': weight_decay,
        'lr_scheduler': scheduler, 'rescale_grad': 1.0 / (len(contexts) * workers)})
    sum_gradients = GradientSum(kv, mod) if kv else None
    if workers > 1:
        _check_same_start(mod, checkpoint_path(prefix, begin) if begin > from_epoch else weights)
    if rank == 0:
        with atomic_path(prefix + '-symbol.json') as tmp:
            symbol.save(tmp)
    step = {'epoch': begin, 'batch': 0}
    if seed is not None and len(contexts) * workers > 1:
        seed_devices_per_step(mod, seed, rank * len(contexts), step)

    metric = NllMetric()
    for epoch in range(begin, stop_epoch):
        _seed(seed, epoch + 1)
        step['epoch'] = epoch
        dataiter.reset()
        metric.reset()
        bar = progress(batches, 'epoch %d/%d' % (epoch + 1, stop_epoch), unit='batch')
        start, seen = time.time(), 0
        for nbatch, batch in enumerate(dataiter):
            step['batch'] = nbatch
            mod.forward_backward(batch)
            if sum_gradients is not None:
                sum_gradients()
            mod.update()
            mod.update_metric(metric, batch.label)
            seen += batch.data[0].shape[0]
            loss = metric.get()[1]
            bar.set_postfix(loss='%.4f' % loss, img_s='%.1f' % (seen / (time.time() - start)),
                            lr='%.2e' % mod._optimizer.learning_rate)
            bar.update(1)
            if batch_end_callback is not None:
                batch_end_callback(epoch, nbatch, loss, mod._optimizer.learning_rate)
        bar.close()
        arg_now, aux_now = mod.get_params()
        path = checkpoint_path(prefix, epoch + 1)
        if rank == 0:
            save_params(path, arg_now, aux_now)
        # The job's loss: every worker's sum over its pixels.
        loss_sum, pixels = distributed.allreduce([metric.sum_metric, metric.num_inst])
        distributed.barrier()  # the checkpoint exists for everyone before the next epoch
        done.append(path)
        logger.info('Epoch[%d] loss=%.6f lr=%.3e speed=%.2f img/s, %s %s', epoch + 1,
                    loss_sum / max(pixels, 1), mod._optimizer.learning_rate,
                    seen * workers / max(time.time() - start, 1e-9), 'saved' if rank == 0 else 'rank 0 saved',
                    path)
    return done
