"""The self-training round driver (``solve_AO.py``; docs/behaviour.md section 8).

:func:`run_rounds` checks the whole run, locks the output, then for each
round of :func:`round_schedule` runs the pseudo-label phase and the
retraining phase of ``solve_ST`` with the reference's command lines
(:func:`val_argv`, :func:`train_argv`): as child processes of
``--self-training-script`` (ended with the driver, whatever ends it), or in
this process under the launcher. A round whose final checkpoint exists is
skipped; inside a round each phase resumes by itself.
"""
import functools
import logging
import math
import os
import shutil
import sys

from issegm.cluster import worker
from issegm.errors import PhaseError
from issegm.storage.round_paths import RoundPaths

__all__ = ['py2_str', 'round_schedule', 'val_argv', 'train_argv', 'run_rounds']

logger = logging.getLogger(__name__)

LOG_FILE = 'solve_AO.log'


# ---------------------------------------------------------------------------- schedule and command lines
def py2_str(value):
    """``str(value)`` as the reference's Python 2 wrote it: floats with 12 significant digits.

    The driver passes portions and learning rates to ``solve_ST`` as text;
    Python 2 printed ``0.15 + 0.05`` as ``0.2`` where Python 3 may print
    ``0.20000000000000001``-like text, and ``floor(n * p)`` can differ.

    Parameters
    ----------
    value : object
        The value.

    Returns
    -------
    str
        Its text.
    """
    return '%.12g' % value if isinstance(value, float) else str(value)


def round_schedule(args):
    """Per-round settings of ``solve_AO`` (docs/behaviour.md section 8).

    Round r trains to ``to_epoch = (r + 1) * epoch_per_round`` from the last
    epoch of round r-1; the learning rate is divided by sqrt(2) each round;
    portions grow by their step while below their maximum; the seed is
    ``--seed-int`` (``cumulative``) or r (``random``). Values go through
    :func:`py2_str` as they do on the reference's command lines.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``solve_AO.py`` arguments.

    Returns
    -------
    list of dict
        Per round: ``round``, ``weights``, ``to_epoch``, ``lr``, ``tgt_port``,
        ``src_port``, ``seed`` and ``final`` (the round's last checkpoint).

    Raises
    ------
    ValueError
        For an unknown ``--source-sample-policy``, or without ``--base-lr``,
        ``--model`` or ``--weights``.
    """
    if args.source_sample_policy not in ('cumulative', 'random'):
        raise ValueError("unknown --source-sample-policy %r: use 'cumulative' or 'random'"
                         % (args.source_sample_policy,))
    if args.base_lr is None:
        raise ValueError('solve_AO needs --base-lr')
    if args.model is None or args.weights is None:
        raise ValueError('solve_AO needs --model and --weights (the source model)')
    from issegm.engine.training import checkpoint_path
    weights, to_epoch = args.weights, args.epr
    lr, tgt_port, src_port = args.base_lr, args.init_tgt_port, args.init_src_port
    rounds = []
    for r in range(args.num_round):
        seed = args.seed_int if args.source_sample_policy == 'cumulative' else r
        rounds.append({'round': r, 'weights': weights, 'to_epoch': to_epoch, 'lr': py2_str(lr),
                       'tgt_port': py2_str(tgt_port), 'src_port': py2_str(src_port), 'seed': seed,
                       'final': checkpoint_path(RoundPaths(args.output, r).checkpoint_prefix(args.model), to_epoch)})
        weights = rounds[-1]['final']
        to_epoch += args.epr
        lr = lr / math.sqrt(2)
        if tgt_port < args.max_tgt_port:
            tgt_port = tgt_port + args.step_tgt_port
        if src_port < args.max_src_port:
            src_port = src_port + args.step_src_port
    return rounds


def _flags(pairs):
    argv = []
    for flag, value in pairs:
        if value is True:
            argv.append(flag)
        elif value is not None and value is not False:
            argv += [flag, py2_str(value)]
    return argv


def val_argv(args, rnd):
    """``solve_ST`` arguments of a round's pseudo-label phase (the reference's command).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``solve_AO.py`` arguments.
    rnd : dict
        The round's entry of :func:`round_schedule`.

    Returns
    -------
    list of str
        The arguments.
    """
    return _flags([
        ('--dataset', args.dataset), ('--dataset-tgt', args.dataset_tgt), ('--data-root', args.data_root),
        ('--data-root-tgt', args.data_root_tgt), ('--split-tgt', args.split_tgt), ('--output', args.output),
        ('--model', args.model), ('--phase', 'val'), ('--weights', rnd['weights']),
        ('--mine-id-number', args.mine_id_number),
        # Not passed by the reference (which then uses the default 0.001 for
        # mine_id_priority): the user's value is meant.
        ('--mine-thresh', args.mine_thresh),
        ('--test-scales', args.test_scales), ('--gpus', args.gpus), ('--init-tgt-port', rnd['tgt_port']),
        ('--idx-round', rnd['round']), ('--no-cudnn', True), ('--test-flipping', True),
        ('--with-prior', args.with_prior), ('--kc-policy', args.kc_policy),
        # Ours; passed only when chosen, so that the default command stays the reference's.
        ('--postprocess', None if getattr(args, 'postprocess', 'auto') == 'auto' else args.postprocess),
        # Ours; only when asked for: the guard then stops the run before retraining on a collapsed round.
        ('--stop-on-collapse', bool(getattr(args, 'stop_on_collapse', False)))]) \
        + _crst_argv(args)


def train_argv(args, rnd):
    """``solve_ST`` arguments of a round's retraining phase (the reference's command).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``solve_AO.py`` arguments.
    rnd : dict
        The round's entry of :func:`round_schedule`.

    Returns
    -------
    list of str
        The arguments.
    """
    return _flags([
        ('--gpus', args.gpus), ('--dataset', args.dataset), ('--split', args.split),
        ('--dataset-tgt', args.dataset_tgt), ('--split-tgt', args.split_tgt), ('--data-root', args.data_root),
        ('--data-root-tgt', args.data_root_tgt), ('--output', args.output),
        ('--init-src-port', rnd['src_port']), ('--model', args.model), ('--batch-images', args.batch_images),
        ('--crop-size', args.crop_size), ('--scale-rate-range', args.scale_rate_range),
        ('--weights', rnd['weights']), ('--idx-round', rnd['round']), ('--base-lr', rnd['lr']),
        ('--to-epoch', rnd['to_epoch']), ('--prefetch-threads', args.prefetch_threads),
        ('--prefetcher', 'process'), ('--mine-id-address', os.path.join(args.output, 'stats')),
        ('--mine-port', args.mine_port), ('--mine-thresh', args.mine_thresh), ('--cache-images', 0),
        ('--backward-do-mirror', True), ('--origin-size', args.origin_size),
        ('--origin-size-tgt', args.origin_size_tgt), ('--seed-int', rnd['seed']), ('--phase', 'train'),
        # Not in the reference's command: only when asked for (under the launcher local becomes dist_sync).
        ('--kvstore', None if getattr(args, 'kvstore', 'local') == 'local' else args.kvstore),
        # Ours; only when asked for: the guard then stops the run before retraining on a collapsed round.
        ('--stop-on-collapse', bool(getattr(args, 'stop_on_collapse', False)))]) \
        + _crst_argv(args)


def _crst_argv(args):
    """The non-zero CRST flags, forwarded to both phases (none for CBST: the reference's commands)."""
    from issegm.phases.cli import flag_argv
    return flag_argv(args)


# ---------------------------------------------------------------------------- running the rounds
def run_rounds(args):
    """The body of ``solve_AO.py``: for each round, pseudo-labels then retraining.

    Every flag and list of the whole run is checked first
    (:func:`issegm.phases.preflight.check_rounds`); the output is locked and its
    settings compared with the recorded ones. A round whose final checkpoint
    exists is skipped whole; inside a round, each phase resumes by itself, so
    rerunning after a kill continues.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``solve_AO.py`` arguments.

    Returns
    -------
    int
        An exit code.
    """
    from issegm.phases.cli import check_flags
    from issegm.phases.preflight import check_rounds, rounds_settings
    from issegm.storage.run_guard import settle
    from util.device import get_contexts
    check_flags(args)
    rounds = round_schedule(args)
    check_rounds(args, rounds)
    worker.init(getattr(args, 'kvstore', 'local'))  # under the launcher: join the job for every phase
    devices = len(get_contexts(args.gpus)) * worker.num_workers()  # of the whole job
    with worker.locked(args.output):
        worker.root_only(settle, args.output, 'solve_AO', rounds_settings(args, devices), restart=args.restart,
                              discard=lambda: _discard_rounds(args.output), what='self-training rounds',
                              has_work=lambda: _has_round_work(args.output, rounds, args.model))
        return _rounds_locked(args, rounds)


def _has_round_work(output, rounds, model):
    """Whether any round of ``output`` has pseudo-label or training outputs."""
    from issegm.engine.training import last_checkpoint
    for rnd in rounds:
        paths = RoundPaths(output, rnd['round'])
        if paths.has_pseudo_label_work() or last_checkpoint(paths.checkpoint_prefix(model)) is not None:
            return True
    return False


def _discard_rounds(output):
    """Remove the round folders and statistics of ``output`` (``solve_AO --restart``)."""
    for name in os.listdir(output):
        if name.isdigit() or name == 'stats':
            shutil.rmtree(os.path.join(output, name))
            logger.info('removed %s', os.path.join(output, name))


def _rounds_locked(args, rounds):
    from issegm.phases.cli import describe_failure
    from issegm.method.crst import describe
    from issegm.phases.cli import weights_from_args
    log = _log(args)
    log.info('solve_AO with arguments %s', args)
    if args.self_training_script and worker.launched():
        log.info('under the launcher the phases run in this process (--self-training-script %s not started)',
                 args.self_training_script)
    for line in describe(weights_from_args(args)):
        log.info('%s', line)
    try:
        with _sigterm_as_exit():
            for rnd in rounds:
                _run_round(args, rnd)
    except PhaseError as exc:
        _log(args).error('%s', exc)
        return exc.code
    except Exception as exc:
        log = _log(args)
        if args.debug:
            log.exception('solve_AO failed')
        code, line = describe_failure(exc)
        log.error('%s', line)
        return code
    _log(args).info('all %d rounds done', args.num_round)
    return 0


def _log(args):
    """The driver's logger, writing to ``{output}/solve_AO.log`` again (an in-process phase logs to its own file)."""
    return worker.set_logger(args.output, LOG_FILE)


def _run_round(args, rnd):
    log, r = _log(args), rnd['round']
    log.info('round %d: weights %s, lr %s, tgt_port %s, src_port %s, seed %d, to_epoch %d',
             r, rnd['weights'], rnd['lr'], rnd['tgt_port'], rnd['src_port'], rnd['seed'], rnd['to_epoch'])
    if os.path.exists(rnd['final']):
        log.info('round %d: already complete (%s); skipped', r, rnd['final'])
        return
    _run_phase(args, val_argv(args, rnd), 'round %d pseudo-label phase (solve_ST --phase val)' % r)
    _run_phase(args, train_argv(args, rnd), 'round %d training phase (solve_ST --phase train)' % r)


def _run_phase(args, argv, what):
    # A worker of a distributed job keeps its one ps-lite connection: its phases run in it.
    if args.self_training_script and not worker.launched():
        cmd = [sys.executable, args.self_training_script] + argv
        logger.info('running %s', ' '.join(cmd))
        code = _run_child(cmd)
    else:
        from issegm import solve_ST
        logger.info('running solve_ST %s', ' '.join(argv))
        code = solve_ST.main(argv)
    if code == 2:
        raise PhaseError('%s failed (see its error above); no later phase was started' % what, code=2)
    if code:
        raise PhaseError('%s failed (exit code %s); once its cause is fixed, rerun the same solve_AO command '
                         'to continue from there' % (what, code))


# ---------------------------------------------------------------------------- child processes and signals
def _run_child(cmd):
    """Run ``cmd`` under this run's lock; ending this process (signal or exception) ends the child."""
    import subprocess
    from issegm.storage.run_guard import child_lock_env
    env, fds = child_lock_env()
    proc = subprocess.Popen(cmd, env=env, pass_fds=fds,
                            preexec_fn=functools.partial(_die_with_parent, os.getpid()))
    try:
        return proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


def _die_with_parent(parent):
    # Runs in the child before exec: the kernel sends it SIGTERM when solve_AO dies, even by SIGKILL.
    import ctypes
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # solve_AO died between the fork and the line above
        os._exit(143)


def _sigterm_as_exit():
    """SIGTERM raises :class:`issegm.errors.Terminated` in the main thread, so a running child phase is ended
    first (also when :func:`run_rounds` is called without :func:`issegm.phases.cli.script_main`)."""
    from issegm.phases.cli import sigterm_as_interrupt
    return sigterm_as_interrupt()
