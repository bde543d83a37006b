"""One phase of one self-training round: the body of ``solve_ST.py`` (docs/behaviour.md sections 6 and 7).

:func:`run` completes the arguments as the reference does
(:func:`complete_args`), joins a launched job, locks ``--output`` and runs
the phase asked for:

* ``--phase val``: pseudo-labels of the target split,
  :func:`issegm.phases.labelling.generate_pseudo_labels`;
* ``--phase train``: retraining on the selected source images and the
  pseudo-labelled targets, :func:`issegm.phases.retraining.retrain`.

Each phase records its settings in ``{output}/{r}/run.json`` and refuses a
rerun with others unless ``--restart`` (:mod:`issegm.storage.run_guard`); rank 0 of a
launched job holds the output's lock and records the settings for the job.
A failure is one line (:class:`issegm.phases.cli.PhaseError` says where and how to
resume). The round's files are :class:`issegm.storage.round_paths.RoundPaths`; the
rounds themselves are :mod:`issegm.phases.rounds` (``solve_AO.py``).
"""
import os

from issegm.cluster import worker
from issegm.errors import FlagError, PhaseError
from issegm.phases.labelling import generate_pseudo_labels
from issegm.phases.retraining import retrain
from issegm.storage.round_paths import RoundPaths

__all__ = ['complete_args', 'default_log_file', 'run']


# ---------------------------------------------------------------------------- arguments
def complete_args(args):
    """Fill the defaults the reference derives after parsing (its ``parse_args`` tail).

    ``--output`` defaults to the weights' folder in ``val`` and ``output`` in
    ``train``; ``--model`` to the weights' name before ``_ep-``; in ``train``,
    ``--from-epoch`` is the weights' epoch when their label equals
    ``--model``, else 0; ``--log-file`` is named as the reference names it.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``solve_ST.py`` arguments, modified in place.

    Returns
    -------
    argparse.Namespace
        ``args``.

    Raises
    ------
    ValueError
        For an unknown ``--phase``, a missing ``--weights`` (:class:`FlagError`)
        or a model that cannot be told.
    """
    if args.phase not in ('train', 'val'):
        raise ValueError('unknown --phase %r: use train or val' % (args.phase,))
    if args.weights is None:
        raise FlagError('--weights is required: the model the %s phase starts from, e.g. '
                        'models/gta_rna-a1_cls19_s8_ep-0000.params' % args.phase)
    if args.output is None:
        args.output = os.path.dirname(args.weights) if args.phase == 'val' and args.weights else 'output'
    from issegm.engine.model import label_from_weights, start_epoch
    if args.model is None and args.weights is not None:
        args.model = label_from_weights(args.weights)
    if args.model is None:
        raise ValueError('missing --model (or --weights named {model}_ep-NNNN.params)')
    if args.from_epoch is None:
        args.from_epoch = start_epoch(args.weights, args.model) if args.phase == 'train' else 0
    if args.log_file is None:
        args.log_file = default_log_file(args)
    if args.data_root is None:
        args.data_root = os.path.join('data', args.dataset or args.model.split('_')[0])
    from issegm.phases.cli import weights_from_args
    weights_from_args(args)  # CRST flags: checked before any work
    if args.phase == 'train':
        args.kvstore = worker.training_kvstore(args.kvstore)
    return args


def default_log_file(args):
    """The log file's default name.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``solve_ST.py`` arguments.

    Returns
    -------
    str
        ``{model}.log`` for training; ``{weights stem}[_{split_tgt}].log`` for pseudo-labels.
    """
    if args.phase == 'train':
        return '%s.log' % args.model
    suffix = '_%s' % args.split_tgt if args.split_tgt != 'val' else ''
    return '%s%s.log' % (os.path.splitext(os.path.basename(args.weights or args.model))[0], suffix)


# ---------------------------------------------------------------------------- entry
def _guard_phase(args):
    """Lock ``--output``; refuse a rerun of this round's phase with other settings (or restart it)."""
    from issegm.phases.preflight import train_settings, val_settings
    from issegm.storage.run_guard import settle
    from issegm.engine.training import last_checkpoint, remove_checkpoints
    paths = RoundPaths(args.output, args.idx_round)
    prefix = paths.checkpoint_prefix(args.model)
    if args.phase == 'val':
        settle(paths.round_dir, 'pseudo_labels', val_settings(args), restart=args.restart,
               discard=paths.discard_pseudo_labels, what='pseudo-labels of round %d' % args.idx_round,
               has_work=paths.has_pseudo_label_work)
        return
    from util.device import get_contexts

    def discard():
        remove_checkpoints(prefix)
        if os.path.exists(paths.source_selected):
            os.remove(paths.source_selected)

    devices = len(get_contexts(args.gpus)) * worker.num_workers()  # of the whole job
    settle(paths.round_dir, 'training', train_settings(args, devices, paths.marker),
           restart=args.restart, discard=discard, what='training of round %d' % args.idx_round,
           has_work=lambda: last_checkpoint(prefix) is not None)


def _collapse_guard(args, stop):
    """The collapse guard on this round's pseudo-labels (rank 0 decides, every worker obeys).

    Warns one line per finding (:mod:`issegm.report.guard`) and records the
    findings in the round's health record; with ``stop`` a finding ends the
    phase with exit code 1 before any retraining.
    """
    import logging
    from issegm.report import guard, health
    log = logging.getLogger('cbst')
    found = []
    if worker.is_root():
        paths = RoundPaths(args.output, args.idx_round)
        found = guard.check(health.load(paths.round_dir), health.load(RoundPaths(args.output, 0).round_dir))
        for line in guard.warning_lines(found):
            log.warning('%s', line)
        if health.load(paths.round_dir):
            health.update(paths.round_dir, guard={'findings': found, 'thresholds': guard.THRESHOLDS})
    if int(worker.broadcast([len(found)])[0]) and stop:
        raise PhaseError('round %d: the collapse guard flagged the pseudo-labels (%s) and --stop-on-collapse '
                         'stops before retraining; inspect them (python -m issegm.report %s), then rerun '
                         'without --stop-on-collapse to continue'
                         % (args.idx_round, '; '.join(f['line'] for f in found) or 'see rank 0', args.output),
                         code=1)


def run(args, predictor=None, dataiter_factory=None):
    """Run the phase ``args`` asks for (the body of ``solve_ST.py``).

    Failures are one line in the log and on stderr.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``solve_ST.py`` arguments.
    predictor : issegm.engine.inference.Predictor, optional
        Passed to :func:`issegm.phases.labelling.generate_pseudo_labels`.
    dataiter_factory : callable, optional
        Passed to :func:`issegm.phases.retraining.retrain`.

    Returns
    -------
    int
        An exit code: 0 done, 1 when the same command can continue after the
        cause is fixed, 2 when the command or its input must change
        (:func:`issegm.phases.cli.describe_failure`).
    """
    from issegm.phases.cli import apply_env_switches, check_flags
    apply_env_switches(args)
    check_flags(args)
    if args.weights is not None and (predictor is None or args.phase == 'train') \
            and not os.path.isfile(args.weights):
        # Before anything is read from its name, the lock and the settings record.
        raise FlagError('weights not found: %s' % args.weights)
    complete_args(args)
    check_flags(args)  # the derived --output too
    worker.init(args.kvstore if args.phase == 'train' else 'dist_sync')  # under the launcher: join the job
    with worker.locked(args.output):
        return _run_phase_locked(args, predictor, dataiter_factory)


def _run_phase_locked(args, predictor, dataiter_factory):
    from issegm.phases.cli import describe_failure
    log = worker.set_logger(args.output, args.log_file, args.debug)
    log.info('start with arguments %s', args)
    try:
        worker.root_only(_guard_phase, args)
        if args.phase == 'val':
            generate_pseudo_labels(args, predictor=predictor)
            _collapse_guard(args, stop=getattr(args, 'stop_on_collapse', False))
        else:
            if getattr(args, 'stop_on_collapse', False):
                _collapse_guard(args, stop=True)
            retrain(args, dataiter_factory=dataiter_factory)
    except PhaseError as exc:
        log.error('%s', exc)
        return exc.code
    except Exception as exc:
        if args.debug:
            log.exception('phase %s round %s failed', args.phase, args.idx_round)
        code, line = describe_failure(exc)
        log.error('phase %s round %s: %s', args.phase, args.idx_round, line)
        return code
    return 0
