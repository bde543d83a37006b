"""The training loop shared by source training and self-training (docs/behaviour.md section 7).

SGD with momentum 0.9 and weight decay, gradients rescaled by 1 / number of
devices, BatchNorm statistics frozen, parameters the weights do not provide
initialised with Xavier(gaussian, in, 2). After every epoch the checkpoint
``{prefix}-{epoch:04d}.params`` (and ``{prefix}-symbol.json``) is written
atomically, numbered as MXNet's ``do_checkpoint`` numbers them (the epoch
that has just finished, counted from 1), with ``{prefix}-{epoch:04d}.states``
beside it (SGD momentum, schedule position, numpy's random state). A run
resumes from the last whole checkpoint after a kill or a stop and ends bit
for bit where the uninterrupted run ends: the random streams (data order,
scale draws, crops, flips, dropout) are reseeded from ``seed + epoch`` at
every epoch, and the rest is in the ``.states``. A ``.params`` without
``.states`` (older runs) resumes with momentum 0, after one warning.

A non-finite loss stops training before the update (:class:`DivergenceError`);
nothing is saved after it.

Under :mod:`issegm.launch` (``--kvstore dist_sync`` / ``dist_device_sync``)
every worker trains on its part of each global batch (the iterator's
``num_parts``) and the KVStore sums the gradients of all devices of the job
(:class:`GradientSum`); the servers only sum, and the SGD update runs on the
workers, identically on each, so the optimizer state is on every worker and
rank 0 checkpoints it (``.states``) as one process does; every worker resumes
from the epoch rank 0 finds, with that state. With more than one device in
the job, each device's dropout generator is seeded per step from (seed,
epoch, batch, device number in the job), so one process with two devices and
two workers with one device each draw the same masks (:class:`JobStep`).

The logged metric is the reference's: the mean negative log-probability of
the true class over non-ignored pixels.
"""
import glob
import logging
import math
import os
import pickle
import re
import tempfile
import time

import mxnet as mx
import numpy as np

from issegm.errors import DivergenceError
from issegm.cluster import worker
from issegm.engine.model import get_module, get_symbol, head_initializer, load_weights
from issegm.storage.run_guard import file_digest
from util.io import atomic_path
from util.log import progress
from util.mxutil import CheckpointError, load_params_from_file, params_dict

__all__ = ['LR_POLICIES', 'FixedScheduler', 'LinearScheduler', 'PolyScheduler',
           'make_lr_scheduler', 'NllMetric', 'last_checkpoint', 'checkpoint_path', 'states_path',
           'save_checkpoint', 'load_states', 'remove_checkpoints', 'DivergenceError', 'train']

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

    Parameters
    ----------
    policy : str
        One of :data:`LR_POLICIES`. ``step``: multiply by ``factor`` at each
        update count in ``steps`` (steps already passed are applied to the base
        rate); ``linear`` / ``poly``: decay to the end of training (``to_iter``)
        as in the reference, floored at ``base_lr / 100`` capped at 1e-6
        (linear) or 1e-8 (poly); ``fixed``: ``base_lr`` throughout.
    base_lr : float
        The learning rate at update 0.
    from_iter : int
        Updates already done.
    to_iter : int
        Update count at the end of training.
    steps : sequence of int
        The ``step`` policy's update counts.
    factor : float
        The ``step`` policy's factor.

    Returns
    -------
    mx.lr_scheduler.LRScheduler
        The schedule, counting updates from ``from_iter``.

    Raises
    ------
    ValueError
        For an unknown policy (``--lr-type``).
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

    Dropout masks then depend on which device of the job runs a slice of the
    batch, not on how the devices are grouped into processes.

    Parameters
    ----------
    mod : mx.mod.Module
        The bound training Module; its executors' ``forward`` is wrapped.
    seed : int
        The run's seed.
    first_device : int
        Device k of this process is device ``first_device + k`` of the job.
    step : dict
        Holds the current ``epoch`` and ``batch``.
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

    Parameters
    ----------
    kv : mx.kvstore.KVStore
        The job's store.
    mod : mx.mod.Module
        The bound training Module whose gradients are summed.
    """

    def __init__(self, kv, mod):
        self.kv = kv
        self.grads = mod._exec_group.grad_arrays
        run = worker.new_key()
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
    root = float(worker.broadcast([total])[0])
    if root != total:
        raise worker.DistError('worker %d starts from other weights than worker 0 (%s): every machine '
                                    'must see the same files (one shared output folder)'
                                    % (worker.rank(), what))


class JobStep(object):
    """What a training step does beyond one process on one device.

    With more than one device in the job, each device's generator is seeded
    before its forward (:func:`seed_devices_per_step`); in a distributed job
    the gradients are summed over every device of the job before the update
    (:class:`GradientSum`).
    """

    def __init__(self, mod, kv, seed, devices, first_device):
        self.position = {'epoch': 0, 'batch': 0}
        self.sum_gradients = GradientSum(kv, mod) if kv is not None else None
        if seed is not None and devices > 1:
            seed_devices_per_step(mod, seed, first_device, self.position)

    def start(self, epoch, nbatch):
        self.position.update(epoch=epoch, batch=nbatch)

    def exchange(self):
        if self.sum_gradients is not None:
            self.sum_gradients()


def _save_epoch(mod, prefix, epoch, updates, arg_params, aux_params):
    """Rank 0 saves epoch ``epoch`` (the other workers hold the same weights and optimizer state).

    Returns the checkpoint's path once it exists for every worker.
    """
    if worker.rank() == 0:
        save_checkpoint(mod, prefix, epoch, updates, arg_params, aux_params)
    worker.barrier()
    return checkpoint_path(prefix, epoch)


def _job_loss(metric, workers):
    """The epoch's loss over the whole job (every worker's pixels)."""
    if workers == 1:
        return metric.get()[1]
    total, count = worker.allreduce([metric.sum_metric, metric.num_inst])
    return total / max(count, 1)


def checkpoint_path(prefix, epoch):
    return '%s-%04d.params' % (prefix, epoch)


def states_path(prefix, epoch):
    """The optimizer state saved beside ``checkpoint_path(prefix, epoch)``.

    Parameters
    ----------
    prefix : str
        Checkpoint prefix.
    epoch : int
        Epoch number.

    Returns
    -------
    str
        ``{prefix}-{epoch:04d}.states``.
    """
    return '%s-%04d.states' % (prefix, epoch)


def last_checkpoint(prefix, upto=None):
    """Highest epoch with a checkpoint ``{prefix}-NNNN.params``.

    Checkpoints are only ever renamed into place whole, so any file found is complete.

    Parameters
    ----------
    prefix : str
        Checkpoint prefix.
    upto : int, optional
        Highest epoch considered.

    Returns
    -------
    int or None
        The epoch, or None when there is none.
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


def remove_checkpoints(prefix):
    """Delete the checkpoints (``.params``, ``.states``) and symbol of ``prefix`` (before a restart).

    Parameters
    ----------
    prefix : str
        Checkpoint prefix.

    Returns
    -------
    list of str
        The paths removed.
    """
    pattern = re.compile(re.escape(os.path.basename(prefix)) + r'-(\d{4,}\.(params|states)|symbol\.json)$')
    removed = [p for p in glob.glob(glob.escape(prefix) + '-*') if pattern.match(os.path.basename(p))]
    for path in removed:
        os.remove(path)
    if removed:
        logger.info('removed %d checkpoint file(s) of %s', len(removed), prefix)
    return removed


# ---------------------------------------------------------------------------- states
# Everything a resumed run needs beyond the weights lives in these two
# functions, so that another way of keeping optimizer state (a distributed
# kvstore) changes only them.
STATES_FORMAT = 'cbst-mx-states/1'


def save_checkpoint(mod, prefix, epoch, num_update, arg_params, aux_params):
    """Write ``{prefix}-%04d.params`` (released format) and ``.states`` beside it.

    The ``.states`` file holds the SGD momentum (MXNet's optimizer states),
    the number of updates done (the schedule position), numpy's global random
    state and the digest of the ``.params`` it belongs to. Order: the weights
    are written under a temporary name, the states renamed into place, then
    the weights: a ``.params`` on disk therefore always has its ``.states``.

    Parameters
    ----------
    mod : mx.mod.Module
        The training Module, whose optimizer states are saved.
    prefix : str
        Checkpoint prefix.
    epoch : int
        Epoch number of the checkpoint.
    num_update : int
        Updates done (the schedule position).
    arg_params, aux_params : dict of str to mx.nd.NDArray
        The weights.

    Returns
    -------
    str
        The ``.params`` path.
    """
    params = checkpoint_path(prefix, epoch)
    with atomic_path(params) as params_tmp:
        mx.nd.save(params_tmp, params_dict(arg_params, aux_params))
        with atomic_path(states_path(prefix, epoch)) as opt_tmp:
            mod.save_optimizer_states(opt_tmp)
            with open(opt_tmp, 'rb') as f:
                optimizer = f.read()
            state = {'format': STATES_FORMAT, 'epoch': int(epoch), 'num_update': int(num_update),
                     'optimizer': optimizer, 'numpy_random': np.random.get_state(),
                     'params_sha256': file_digest(params_tmp)}
            with open(opt_tmp, 'wb') as f:
                pickle.dump(state, f, protocol=4)
    return params


def load_states(prefix, epoch):
    """The state saved with epoch ``epoch``'s checkpoint.

    Parameters
    ----------
    prefix : str
        Checkpoint prefix.
    epoch : int
        Epoch number of the checkpoint.

    Returns
    -------
    dict or None
        The state :func:`save_checkpoint` wrote; None (with one warning) when
        the ``.states`` file is absent.

    Raises
    ------
    CheckpointError
        When the ``.states`` does not belong to its ``.params`` (another run's
        file, a damaged one).
    """
    path = states_path(prefix, epoch)
    params = checkpoint_path(prefix, epoch)
    if not os.path.exists(path):
        logger.warning('%s has no optimizer state beside it (%s; written by an older version or copied '
                       'alone): resuming with SGD momentum 0, so the result will differ slightly from an '
                       'uninterrupted run', params, os.path.basename(path))
        return None
    try:
        with open(path, 'rb') as f:
            state = pickle.load(f)
        ok = isinstance(state, dict) and state.get('format') == STATES_FORMAT
    except Exception:
        ok = False
    if not ok:
        raise CheckpointError('%s is not an optimizer state this program wrote (damaged?); delete it to '
                              'resume from %s with momentum 0' % (path, params))
    if state['params_sha256'] != file_digest(params):
        raise CheckpointError('%s was saved with other weights than %s (files from two runs mixed?); '
                              'delete the pair to resume from the epoch before' % (path, params))
    return state


def _restore_states(mod, state, restore_numpy):
    """Put the momentum of ``state`` into the bound optimizer of ``mod`` (and numpy's generator when asked)."""
    fd, tmp = tempfile.mkstemp(suffix='.states')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(state['optimizer'])
        mod.load_optimizer_states(tmp)
    finally:
        os.remove(tmp)
    if restore_numpy:
        np.random.set_state(state['numpy_random'])


def _resume_point(label, prefix, weights, from_epoch, stop_epoch, resume, symbol):
    """``(begin, arg_params, aux_params, missing, state, done)`` of a run.

    ``begin`` is the last whole epoch of this run found under ``prefix``
    (or ``from_epoch``); ``state`` what :func:`load_states` gives for it.
    """
    found = last_checkpoint(prefix, upto=stop_epoch) if resume else None
    if worker.num_workers() > 1:  # the epoch rank 0 finds, on every worker
        found = int(worker.broadcast([-1 if found is None else found])[0])
        found = None if found < 0 else found
    if found is not None and found > from_epoch:
        done = [checkpoint_path(prefix, e) for e in range(from_epoch + 1, found + 1)
                if os.path.exists(checkpoint_path(prefix, e))]
        if found == stop_epoch:
            return found, None, None, [], None, done
        logger.info('resuming %s from epoch %d', prefix, found)
        arg_params, aux_params = load_params_from_file(checkpoint_path(prefix, found))
        return found, arg_params, aux_params, [], load_states(prefix, found), done
    if weights is not None:
        arg_params, aux_params, missing = load_weights(label, weights, symbol=symbol)
        return from_epoch, arg_params, aux_params, missing, None, []
    return from_epoch, None, None, True, None, []


def _nonfinite_gradients(mod):
    """'the gradients are not finite' when any gradient holds inf or nan, else ''.

    One norm per parameter, computed on its device: a non-finite value
    anywhere makes the sum non-finite. (A nan input or weight can give a
    finite loss, as ReLU maps nan to 0, so the loss alone is not enough.)
    """
    # Fixed parameters (DeepLab-v2's BN) have no gradient: a list of Nones.
    for device_grads in zip(*[g for g in mod._exec_group.grad_arrays if g is not None and g[0] is not None]):
        total = mx.nd.add_n(*[g.norm() for g in device_grads]).asscalar()
        if not math.isfinite(total):
            return 'the gradients are not finite'
    return ''


def _all_finite(params):
    return all(np.isfinite(v.asnumpy()).all() for v in params.values())


def _diverged(what, epoch, nbatch, batches, lr, prefix):
    last = last_checkpoint(prefix, upto=epoch)
    kept = ('nothing was saved after %s' % checkpoint_path(prefix, last)) if last is not None \
        else 'no checkpoint was saved'
    return DivergenceError(
        'training diverged: %s at epoch %d, iteration %d/%d (lr %.3e); likely cause: a learning rate too '
        'high for this data (--base-lr), or crops with hardly any labelled pixel (--crop-size larger than '
        'the images); %s' % (what, epoch + 1, nbatch + 1, batches, lr, kept))


def _train_epoch(mod, dataiter, metric, epoch, stop_epoch, batches, prefix, batch_end_callback, job):
    """One pass over ``dataiter``; returns ``(updates, images, seconds)``. Stops before a non-finite update.

    ``job`` is the :class:`JobStep` of this process.
    """
    dataiter.reset()
    metric.reset()
    bar = progress(batches, 'epoch %d/%d' % (epoch + 1, stop_epoch), unit='batch')
    start, seen, nbatch = time.time(), 0, -1
    for nbatch, batch in enumerate(dataiter):
        job.start(epoch, nbatch)
        mod.forward_backward(batch)
        # The loss is read before the update, so a non-finite one never reaches the weights.
        mod.update_metric(metric, batch.label)
        loss = metric.get()[1]
        bad = 'the loss is %s' % loss if not math.isfinite(loss) else _nonfinite_gradients(mod)
        if bad:
            raise _diverged(bad, epoch, nbatch, batches, mod._optimizer.learning_rate, prefix)
        job.exchange()
        mod.update()
        lr = mod._optimizer.learning_rate  # the rate this update used
        seen += batch.data[0].shape[0]
        bar.set_postfix(loss='%.4f' % loss, img_s='%.1f' % (seen / (time.time() - start)), lr='%.2e' % lr)
        bar.update(1)
        if batch_end_callback is not None:
            batch_end_callback(epoch, nbatch, loss, lr)
    bar.close()
    return nbatch + 1, seen, time.time() - start


def train(label, dataiter, prefix, weights=None, contexts=None, from_epoch=0, to_epoch=1,
          stop_epoch=None, base_lr=1e-4, lr_policy='fixed', lr_steps=(), lr_factor=0.1,
          weight_decay=5e-4, momentum=0.9, kvstore='local', resume=True,
          backward_do_mirror=False, batch_end_callback=None, seed=0, schedule_batches=None, objective=None,
          epoch_end_callback=None):
    """Train the network of ``label`` on ``dataiter``; checkpoint to ``{prefix}-%04d.params``.

    Parameters
    ----------
    label : str
        Model label of the network being trained (docs/behaviour.md section 2).
    dataiter : mx.io.DataIter
        Yields ``data`` / ``softmax_label`` batches; ``reset()`` starts an epoch.
    prefix : str
        Checkpoint prefix, ``{output}/{label}_ep``.
    weights : str
        Starting ``.params`` (may be the ImageNet classifier: the head is then
        initialised). Ignored when resuming from a checkpoint of this run.
    contexts : list of mx.Context
        Devices of this process (default: CPU).
    from_epoch, to_epoch, stop_epoch : int
        Epoch numbering of the reference: epochs ``from_epoch+1 .. stop_epoch``
        are trained; the learning-rate schedule spans ``from_epoch .. to_epoch``.
    base_lr, lr_policy, lr_steps, lr_factor
        The learning-rate schedule (:func:`make_lr_scheduler`).
    weight_decay, momentum : float
        SGD's.
    kvstore : str
        The KVStore type (``dist_sync`` / ``dist_device_sync`` under
        :mod:`issegm.launch`).
    resume : bool
        Continue from the last whole checkpoint in ``(from_epoch, stop_epoch]``,
        with the optimizer state saved beside it (:func:`save_checkpoint`), so
        that the result is bit for bit the uninterrupted run's.
    backward_do_mirror : bool
        Sets ``MXNET_BACKWARD_DO_MIRROR``.
    batch_end_callback : callable
        Called after each update with ``(epoch, nbatch, loss, lr)``.
    seed : int
        Seeds MXNet's generator (initialisation, dropout) and numpy's global
        one (the iterator's permutations) before initialisation and at each
        epoch from ``seed + epoch``, so runs repeat exactly and a resumed run
        draws what an uninterrupted one would. None leaves them as they are.
    schedule_batches : int
        Updates an epoch counts for the learning-rate schedule (default: the
        iterator's batches per epoch; ``solve_ST`` passes the reference's count).
    objective : issegm.engine.objective.Objective
        Another loss than the network's SoftmaxOutput (CRST): gives the
        Module and the logged metric. The checkpoints are the same network's.
    epoch_end_callback : callable
        Called after each epoch's checkpoint with a dict: ``epoch`` (counted
        from 1), ``loss`` (the logged one, ``metric`` its name), ``lr``,
        ``images``, ``seconds``, ``checkpoint``; it observes, it changes nothing.

    Returns
    -------
    list of str
        The checkpoint paths written or found, in epoch order.

    Raises
    ------
    DivergenceError
        When the loss or the weights stop being finite.
    ValueError
        Unless ``from_epoch < stop_epoch <= to_epoch``.
    """
    contexts = contexts or [mx.cpu()]
    kv = worker.init(worker.training_kvstore(kvstore))
    workers, rank = worker.num_workers(), worker.rank()
    devices = len(contexts) * workers  # of the whole job
    stop_epoch = to_epoch if stop_epoch is None else stop_epoch
    if not from_epoch < stop_epoch <= to_epoch:
        raise ValueError('need from_epoch < stop_epoch <= to_epoch, got %d, %d, %d'
                         % (from_epoch, stop_epoch, to_epoch))
    if backward_do_mirror:
        os.environ['MXNET_BACKWARD_DO_MIRROR'] = '1'
    symbol = get_symbol(label)
    begin, arg_params, aux_params, missing, state, done = _resume_point(
        label, prefix, weights, from_epoch, stop_epoch, resume, symbol)
    if begin == stop_epoch:
        logger.info('%s: already trained to epoch %d, nothing to do', prefix, begin)
        return done

    batches = _batches_per_epoch(dataiter)
    per_epoch = schedule_batches or batches
    scheduler = make_lr_scheduler(lr_policy, base_lr, from_epoch * per_epoch, to_epoch * per_epoch,
                                  steps=lr_steps, factor=lr_factor)
    # The schedule counts updates from from_epoch: a resumed run starts at the count it stopped at.
    updates = state['num_update'] if state is not None else (begin - from_epoch) * batches
    _seed(seed, 0)
    mod = _initialised_module(label, contexts, objective, dataiter, arg_params, aux_params, missing)
    _init_sgd(mod, kvstore=None if kv else kvstore, scheduler=scheduler, momentum=momentum, wd=weight_decay,
              devices=devices, updates=updates)
    job = JobStep(mod, kv, seed, devices, rank * len(contexts))
    if state is not None:
        _restore_states(mod, state, restore_numpy=seed is None)
    if workers > 1:
        _check_same_start(mod, checkpoint_path(prefix, begin) if begin > from_epoch else weights)
    if rank == 0:
        with atomic_path(prefix + '-symbol.json') as tmp:
            symbol.save(tmp)

    metric = NllMetric() if objective is None else objective.metric()
    for epoch in range(begin, stop_epoch):
        _seed(seed, epoch + 1)
        n, seen, seconds = _train_epoch(mod, dataiter, metric, epoch, stop_epoch, batches, prefix,
                                        batch_end_callback, job)
        updates += n
        path, loss, lr = _end_epoch(mod, prefix, epoch, n, batches, updates, metric,
                                    seen / max(seconds, 1e-9))
        done.append(path)
        if epoch_end_callback is not None:
            epoch_end_callback({'epoch': epoch + 1, 'loss': loss, 'metric': metric.name, 'lr': lr,
                                'images': seen * worker.num_workers(), 'seconds': seconds, 'checkpoint': path})
    return done


def _batches_per_epoch(dataiter):
    batches = getattr(dataiter, 'batches_per_epoch', None)
    return dataiter.num_data // dataiter.batch_size if batches is None else batches


def _initialised_module(label, contexts, objective, dataiter, arg_params, aux_params, missing):
    """The training Module of ``label`` (or of ``objective``), bound to ``dataiter``, its weights set.

    Layers the weights miss (a classifier's head) are initialised by :func:`issegm.engine.model.head_initializer`.
    """
    mod = get_module(label, contexts) if objective is None else objective.module(label, contexts)
    mod.bind(dataiter.provide_data, dataiter.provide_label, for_training=True)
    mod.init_params(initializer=head_initializer(), arg_params=arg_params, aux_params=aux_params,
                    allow_missing=bool(missing))
    return mod


def _init_sgd(mod, kvstore, scheduler, momentum, wd, devices, updates):
    """SGD on ``mod`` from update ``updates`` of ``scheduler``; gradients summed over ``devices`` are averaged."""
    # learning_rate replaces the scheduler's base rate in MXNet: give it the scheduler's own
    # (a step schedule resumed past a step starts lower).
    mod.init_optimizer(kvstore=kvstore, optimizer='sgd', optimizer_params={
        'learning_rate': scheduler.base_lr, 'momentum': momentum, 'wd': wd,
        'lr_scheduler': scheduler, 'rescale_grad': 1.0 / devices, 'begin_num_update': updates})


def _end_epoch(mod, prefix, epoch, n, batches, updates, metric, speed):
    """After epoch ``epoch`` (``n`` updates): check the weights, save them (rank 0), log.

    Returns ``(checkpoint path, logged loss, learning rate)``.
    """
    arg_now, aux_now = mod.get_params()
    if not _all_finite(arg_now):
        raise _diverged('the weights are no longer finite', epoch, n - 1, batches,
                        mod._optimizer.learning_rate, prefix)
    path = _save_epoch(mod, prefix, epoch + 1, updates, arg_now, aux_now)
    workers = worker.num_workers()
    loss, lr = _job_loss(metric, workers), mod._optimizer.learning_rate
    logger.info('Epoch[%d] loss=%.6f lr=%.3e speed=%.2f img/s, %s %s', epoch + 1, loss,
                lr, speed * workers, 'saved' if worker.rank() == 0 else 'rank 0 saved',
                path)
    return path, loss, lr
