"""Evaluation of a checkpoint on a labelled split (docs/behaviour.md section 9).

``issegm/evaluate.py`` parses the reference's flags and calls :func:`run`.
The forward pass, flipping and upsampling are :class:`issegm.engine.inference.Predictor`
(the same code as pseudo-labelling); scores are one
:class:`issegm.engine.metrics.ConfusionMatrix` accumulated over the split.

Outputs in ``--output`` (as the reference): ``trainId/``, ``labelId/``,
``color/`` (palette PNG of label ids), ``color/correct/`` (255 where the ground
truth is ignored, 127 where the prediction is right), a log file, and, ours in
addition, ``{stem}_results.json`` (every score, the confusion matrix and the
arguments) and ``{stem}_results.md`` (the paper-style Markdown row).

Deliberate differences from the reference, all where it would fail:
``--test-scales`` with several values averages the upsampled probabilities
over the scales (the reference asserts one scale); an omitted
``--test-scales`` means the dataset's longer image side; images are read
ahead and PNGs written behind in threads, one per core (the reference reads
in the loop and asserts ``--prefetch-threads`` 1; a larger value adds
readers); scoring happens whenever the list has a label column (the
reference keys it on the split name); ``--no-save-results`` skips the PNGs
but still scores. ``--postprocess`` chooses where upsampling, argmax and
scoring run (:mod:`issegm.engine.postprocess`).

Every device of ``--gpus`` takes images in turn. Under :mod:`issegm.launch`
each worker evaluates its share of the images (:func:`issegm.cluster.worker.shard`)
and rank 0 sums the workers' confusion matrices (integer counts, so the
scores equal a one-process run's exactly) and writes the results.
"""
import collections
import contextlib
import logging
import os
import time

import numpy as np

from issegm.cluster import worker
from issegm.engine import metrics
from issegm.storage.datasets import (LabelAudit, check_content, count_duplicates, dataset_for_model, list_path,
                                     read_list, sample_name, save_prediction)
from issegm.errors import DataError, FlagError
from util.image import read_image, read_label, save_png
from util.io import makedirs
from util.parallel import Writer, host_workers, prefetch

__all__ = ['resolve_args', 'prepare', 'settings', 'Evaluation', 'evaluate_split', 'run',
           'sample_name', 'OUTPUT_FOLDERS']

#: The prediction folders evaluation writes in ``--output`` (``--restart`` removes them).
OUTPUT_FOLDERS = ('trainId', 'labelId', 'color')

logger = logging.getLogger(__name__)


def _parse_scales(text, default):
    if text is None or str(text).strip() == '':
        return [int(default)]
    try:
        scales = [int(v) for v in str(text).split(',') if v.strip()]
    except ValueError:
        raise FlagError('--test-scales takes comma-separated integers such as 2048 or 1536,2048,2560; '
                        'got %r' % text)
    if not scales or min(scales) < 1:
        raise FlagError('--test-scales must be positive integers; got %r' % text)
    return scales


def resolve_args(args):
    """Fill in the reference's derived defaults (model, output, log file, data root).

    * ``--model`` omitted: the weights file name before ``_ep-`` (docs/behaviour.md section 2);
    * ``--output`` omitted: the weights' folder for ``--phase val``, else ``output``;
    * ``--log-file`` omitted: ``{weights stem}[_{split} unless val].log``;
    * ``--data-root`` omitted: ``data/{dataset}``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``evaluate.py`` arguments, changed in place.

    Returns
    -------
    argparse.Namespace
        ``args``.

    Raises
    ------
    FlagError
        One line for a bad flag, a missing ``--weights`` file or a bad model label.
    """
    from issegm.phases.cli import check_flags
    from issegm.engine.model import label_from_weights, parse_label
    check_flags(args)
    if args.phase not in ('val', 'test'):
        raise FlagError('evaluate.py runs --phase val (scores and predictions) or test '
                        '(predictions only); got --phase %s' % args.phase)
    if args.weights is None:
        raise FlagError('--weights is required: the checkpoint to evaluate, '
                        'e.g. models/gta_rna-a1_cls19_s8_ep-0000.params')
    if not os.path.isfile(args.weights):
        # Said before anything is read from the name, so a missing file is not blamed on the label.
        raise FlagError('weights not found: %s' % args.weights)
    if args.model is None:
        try:
            args.model = label_from_weights(args.weights)
        except ValueError as exc:
            raise FlagError(str(exc))
    try:
        spec = parse_label(args.model)
    except ValueError as exc:
        raise FlagError(str(exc))
    if args.dataset is None:
        args.dataset = spec.dataset
    if args.output is None:
        args.output = os.path.dirname(args.weights) if args.phase == 'val' else 'output'
    stem = os.path.splitext(os.path.basename(args.weights))[0]
    suffix = '' if args.split == 'val' else '_%s' % args.split
    if args.log_file is None:
        args.log_file = '%s%s.log' % (stem, suffix) if args.phase == 'val' else '%s.log' % args.model
    args.result_stem = '%s%s' % (stem, suffix)
    if args.data_root is None:
        args.data_root = os.path.join('data', args.dataset)
    return args


Prepared = collections.namedtuple('Prepared', ['info', 'spec', 'items', 'scales', 'has_gt'])


def prepare(args):
    """Every check that can fail, before the network is built or any image read.

    Parameters
    ----------
    args : argparse.Namespace
        The arguments, after :func:`resolve_args`.

    Returns
    -------
    Prepared
        ``(info, spec, items, scales, has_gt)``.

    Raises
    ------
    FlagError
        With one line for: unknown dataset, a model whose class count differs
        from the dataset's, a missing weights file, a missing/empty list or a
        file named in it that does not exist, bad scales.
    DataError
        For repeated list entries and files whose content fails the cheap
        checks (:func:`issegm.storage.datasets.check_content`).
    """
    from issegm.engine.inference import check_steps
    from issegm.engine.model import parse_label
    from issegm.phases.preflight import check_scale_memory
    spec = parse_label(args.model)
    try:
        info = dataset_for_model(args.dataset, args.model, spec.classes)
    except DataError as exc:
        raise FlagError(str(exc))
    if not os.path.isfile(args.weights):
        raise FlagError('weights not found: %s' % args.weights)
    try:
        check_steps(args.test_steps, spec.stride)
    except ValueError as exc:
        raise FlagError(str(exc))
    scales = _parse_scales(args.test_scales, max(info.max_shape))
    check_scale_memory(scales, info.num_classes, info.max_shape)
    try:
        items = read_list(list_path(info.name, args.split), args.data_root, check_exists=True)
    except DataError as exc:
        raise FlagError(str(exc))
    listed = list_path(info.name, args.split)
    repeats, first = count_duplicates(items)
    if repeats:
        raise DataError('%s: %d entries repeat an earlier image (the first: %s), which would be scored twice; '
                        'remove the repeated lines' % (listed, repeats, first))
    has_gt = args.phase == 'val' and all(lab is not None for _, lab in items)
    check_content(listed, items, args.data_root, labels=has_gt)  # before the network is built
    if args.phase == 'val' and not has_gt:
        logger.warning('list %s has no label column: saving predictions without scores', listed)
    return Prepared(info, spec, items, scales, has_gt)


def _load_pair(data_root, image_rel, label_rel, with_label):
    image = read_image(os.path.join(data_root, image_rel))
    label = read_label(os.path.join(data_root, label_rel)) if with_label else None
    return image, label


class Evaluation(object):
    """Per-image prediction, saving and scoring; usable without the CLI.

    An image is prepared on the host (:meth:`prepare`, thread-safe),
    launched (:meth:`start`: forwards, upsampling, argmax and confusion counts
    queued on the device) and finished (:meth:`finish`: the uint8 prediction
    comes back, the counts join :attr:`cm`).

    Parameters
    ----------
    predictor : issegm.engine.inference.Predictor
        The network's predictor.
    info : issegm.storage.datasets.DatasetInfo
        The dataset.
    scales : sequence of int
        Test scales.
    output : str
        Folder of the saved predictions.
    save_results : bool
        Whether predictions are saved (``color``, ``labelId``, ``trainId``).
    postprocess : str
        The :class:`issegm.engine.postprocess.Postprocessor` mode (``pil``,
        ``device`` or ``auto``).
    """

    def __init__(self, predictor, info, scales, output, save_results=True, postprocess='auto'):
        from issegm.engine.postprocess import Postprocessor
        self.predictor = predictor
        self.info = info
        self.scales = list(scales)
        self.output = output
        self.save_results = save_results
        self.post = Postprocessor(info.num_classes, postprocess,
                                  ctx=getattr(predictor, 'contexts', getattr(predictor, 'ctx', None)))
        self.cm = metrics.ConfusionMatrix(info.num_classes)
        self.audit = LabelAudit(info)  # unknown ids are ignored by the scores, and reported once
        self.valid = np.zeros(256, bool)
        self.valid[info.valid_label_ids] = True
        # The health record's observations (they change nothing evaluated).
        from issegm.report.health import ConfidenceStats
        self.predicted = np.zeros(info.num_classes, np.int64)
        self.confidence = ConfidenceStats()
        if save_results:
            for sub in ('color', 'labelId', 'trainId'):
                makedirs(os.path.join(output, sub))

    def prepare(self, image):
        """Network inputs of one RGB image (host work: scaling, normalisation, padding)."""
        return self.predictor.prepare(image, self.scales)

    def start(self, image, label=None, image_path=''):
        """Launch one image and, with ``label``, its score.

        Parameters
        ----------
        image : numpy.ndarray or issegm.engine.inference.Inputs
            An RGB array or :meth:`prepare`'s inputs.
        label : numpy.ndarray, optional
            Its label ids.
        image_path : str
            The image, for the message.

        Returns
        -------
        object
            The pending result, for :meth:`finish`.

        Raises
        ------
        FlagError
            When the label's size differs from the image's.
        """
        inputs = image if hasattr(image, 'data') else self.prepare(image)
        gt = None
        if label is not None:
            if label.shape != tuple(inputs.orig_hw):
                raise FlagError('label of %s is %dx%d but the image is %dx%d' % (
                    image_path, label.shape[0], label.shape[1], inputs.orig_hw[0], inputs.orig_hw[1]))
            gt = np.take(self.info.label2train, label)
        job = self.predictor.launch(inputs)
        pending = self.post.evaluate(job, gt)
        pending.observed_job = job  # for the health record's confidence, read in finish()
        return pending

    def finish(self, pending):
        """Train-id prediction of a started image; its counts join :attr:`cm`.

        Parameters
        ----------
        pending : object
            What :meth:`start` returned.

        Returns
        -------
        numpy.ndarray
            uint8 H x W train ids.
        """
        out = pending.result()
        if 'confusion' in out:
            self.cm.add(out['confusion'])
        pred = out['pred'].astype(np.uint8, copy=False)
        self._observe(pred, getattr(pending, 'observed_job', None))
        return pred

    def _observe(self, pred, job):
        """The health record's counts: predicted classes, and the confidence of the network's maps."""
        from issegm.report.health import class_counts
        self.predicted += class_counts(pred, self.info.num_classes)
        lowres = getattr(job, 'lowres', None)
        if lowres is not None:
            for low in lowres():
                self.confidence.add(low.probs, low.im_hw, low.stride)

    def health_arrays(self):
        """The observations as arrays, to gather over the workers."""
        return dict(self.confidence.to_arrays(), health_predicted=self.predicted)

    def predict(self, image, label=None):
        """Train-id prediction of one RGB image (scored when ``label`` is given).

        Parameters
        ----------
        image : numpy.ndarray
            The RGB image.
        label : numpy.ndarray, optional
            Its label ids.

        Returns
        -------
        numpy.ndarray
            uint8 H x W train ids.
        """
        return self.finish(self.start(image, label))

    def save(self, name, pred_train, label=None):
        save_png(os.path.join(self.output, 'trainId', name + '.png'), pred_train)
        label_ids = save_prediction(self.info, pred_train, os.path.join(self.output, 'labelId', name + '.png'),
                                    os.path.join(self.output, 'color', name + '.png'))
        if label is not None:
            # The reference's correctness map: 255 ignored, 127 right, 0 wrong.
            correct = np.where(label == label_ids, np.uint8(127), np.uint8(0))
            correct[~self.valid[label]] = 255
            save_png(os.path.join(self.output, 'color', 'correct', name + '.png'), correct)


def evaluate_split(evaluation, prepared, data_root, prefetch_threads=1, log_every=1, timer=None,
                   background_save=True, overlap=True):
    """Run ``evaluation`` over the split.

    The host keeps up with the device: images are read and prepared by one
    thread per core (at least ``prefetch_threads``) ahead of the loop, and the
    PNGs are written by one thread per core behind it. The loop only launches
    images i+1 and i+2 (their forwards and post-processing,
    :func:`issegm.engine.inference.ahead`) before it waits for image i's prediction.

    Parameters
    ----------
    evaluation : Evaluation
        The per-image work.
    prepared : Prepared
        From :func:`prepare`.
    data_root : str
        Root of the list's paths.
    prefetch_threads : int
        Least number of reader threads.
    log_every : int
        Images between progress lines.
    timer : dict, optional
        Accumulates ``predict`` and ``other`` seconds.
    background_save : bool
        Write PNGs in threads; any write error is raised here.
    overlap : bool
        False waits for each image before launching the next (for benchmarks).

    Returns
    -------
    issegm.engine.metrics.ConfusionMatrix
        The evaluation's confusion matrix.
    """
    from issegm.engine.inference import LOOP_DEPTH, ahead
    x_num = len(prepared.items)
    start = time.time()
    timer = timer if timer is not None else {}
    timer.setdefault('predict', 0.0)
    timer.setdefault('other', 0.0)
    predict_before = timer['predict']

    def predicting(fn, *args):
        # Launches and finishes count as predict; everything else in the loop is other.
        t0 = time.time()
        try:
            return fn(*args)
        finally:
            timer['predict'] += time.time() - t0

    def read(item):  # in a reader thread
        image, label = _load_pair(data_root, item[0], item[1], prepared.has_gt)
        finding = evaluation.audit.inspect(os.path.join(data_root, item[1]), label) if label is not None else None
        return evaluation.prepare(image), label, finding

    def launch(record):
        (image_rel, _), future = record
        inputs, label, finding = future.result()
        return predicting(evaluation.start, inputs, label, image_rel), label, finding

    readers = max(int(prefetch_threads), host_workers())
    writers = host_workers() if background_save and evaluation.save_results else 0
    # closing(): a failure stops the readers at once.
    with Writer(writers) as writer, contextlib.closing(prefetch(read, prepared.items, readers)) as records:
        for i, launched in enumerate(ahead(records, launch, depth=getattr(evaluation.predictor, 'depth', LOOP_DEPTH) if overlap else 0)):
            (image_rel, _), _ = launched.item
            pending, label, finding = launched.get()
            pred = predicting(evaluation.finish, pending)
            evaluation.audit.add(finding)  # unknown ids: ignored by the scores, reported once
            if evaluation.save_results:
                writer.submit(evaluation.save, sample_name(image_rel), pred, label)
            if (i + 1) % log_every == 0 or i + 1 == x_num:
                speed = (i + 1) / max(time.time() - start, 1e-9)
                msg = 'Done {}/{} with speed: {:.2f}/s'.format(i + 1, x_num, speed)
                if label is not None:
                    msg += '; ' + evaluation.cm.summary()
                logger.info(msg)
    timer['other'] += time.time() - start - (timer['predict'] - predict_before)
    evaluation.audit.report(logger)
    logger.info('Done in %.2f s.', time.time() - start)
    return evaluation.cm


def run(args, net=None):
    """The whole of ``evaluate.py`` after argument parsing.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``evaluate.py`` arguments.
    net : callable, optional
        Replaces the network built from ``--weights`` (tests, benchmarks); it
        must map normalised NCHW data to probabilities at 1/stride.

    Returns
    -------
    dict or None
        The result dict.
    """
    from issegm.storage.run_guard import settle
    resolve_args(args)
    prepared = prepare(args)
    worker.init()  # under the launcher: join the job, learn this worker's share
    # The output may be a checkpoint's folder: clean only the folders evaluation writes.
    with worker.locked(args.output, ('',) + OUTPUT_FOLDERS + (os.path.join('color', 'correct'),), False):
        worker.root_only(settle, args.output, 'evaluate', settings(args, prepared),
                         restart=getattr(args, 'restart', False), discard=lambda: _discard(args.output),
                         what='predictions', has_work=lambda: _has_work(args.output))
        return _run_locked(args, prepared, net)


def settings(args, prepared):
    """What decides the files evaluation writes (``{output}/run.json``, section ``evaluate``).

    Threads, logs and ``--gpus`` (beyond the post-processing path it picks)
    change no number and are left out.

    Parameters
    ----------
    args : argparse.Namespace
        The resolved arguments.
    prepared : Prepared
        From :func:`prepare`.

    Returns
    -------
    dict
        The settings by flag.
    """
    from issegm.engine.postprocess import resolved_mode
    from issegm.storage.run_guard import file_digest
    listed = list_path(prepared.info.name, args.split)
    return {'--weights sha256': file_digest(args.weights), '--model': args.model,
            '--dataset': prepared.info.name, '--split': args.split, '--phase': args.phase,
            '--data-root': os.path.abspath(args.data_root),
            'list sha256': file_digest(listed) if os.path.isfile(listed) else None,
            '--test-scales': list(prepared.scales), '--test-flipping': bool(args.test_flipping),
            '--test-steps': int(args.test_steps), '--postprocess': resolved_mode(args.postprocess, args.gpus)}


def _earlier_result(path, scores):
    """The results file at ``path`` when its scores equal ``scores`` (a rerun), else None."""
    import json
    try:
        earlier = metrics.load_results(path)
    except (OSError, ValueError):
        return None
    return earlier if earlier['scores'] == json.loads(json.dumps(scores)) else None


def _has_work(output):
    """Whether ``output`` holds a prediction or a results file (of an earlier evaluation)."""
    for sub in OUTPUT_FOLDERS:
        for _, _, files in os.walk(os.path.join(output, sub)):
            if files:
                return True
    return any(name.endswith('_results.json') for name in os.listdir(output))


def _discard(output):
    """Remove the prediction folders of an earlier evaluation (``--restart``); results files stay."""
    import shutil
    for sub in OUTPUT_FOLDERS:
        if os.path.isdir(os.path.join(output, sub)):
            shutil.rmtree(os.path.join(output, sub))
            logger.info('removed %s', os.path.join(output, sub))


def _run_locked(args, prepared, net):
    from issegm.engine.inference import Predictor
    from issegm.engine.model import get_model, preprocessing
    from util.device import get_contexts
    worker.set_logger(args.output, args.log_file, args.debug)
    logger.info('start with arguments %s', args)
    logger.info('and model specs %s', dict(prepared.spec._asdict()))
    if args.save_predictions:
        logger.info('--save-predictions has no effect in evaluation (as in the reference)')
    contexts = get_contexts(args.gpus)
    if net is None:
        net = get_model(prepared.spec, args.weights, ctx=contexts)
    predictor = Predictor(net, prepared.info.num_classes, prepared.spec.stride, flip=args.test_flipping,
                          ctx=contexts, steps=args.test_steps, normalizer=preprocessing(prepared.spec))
    evaluation = Evaluation(predictor, prepared.info, prepared.scales, args.output, args.save_results,
                            postprocess=args.postprocess)
    logger.info('post-processing: %s on %s', evaluation.post.mode, ', '.join(str(c) for c in contexts))
    timer = {}
    mine = prepared._replace(items=worker.shard(prepared.items))
    cm = evaluate_split(evaluation, mine, args.data_root, args.prefetch_threads, timer=timer)
    logger.info('time: %.2f s predicting (network + post-processing), %.2f s other (waits on readers, '
                'writers, logging)',
                timer['predict'], timer['other'])
    parts = worker.gather(args.output, args.result_stem + '_confusion', dict(cm.to_arrays(), **evaluation.health_arrays()),
                          root_only=True)
    if parts is None:
        return None
    if not prepared.has_gt:
        _record_health(args, prepared, parts, None)
        return None
    cm = metrics.ConfusionMatrix(prepared.info.num_classes)
    for part in parts:
        cm.merge(metrics.ConfusionMatrix.from_arrays(part))
    case = args.result_stem
    extra = {'model': args.model, 'dataset': prepared.info.name, 'split': args.split,
             'test_scales': prepared.scales, 'test_flipping': bool(args.test_flipping)}
    path = os.path.join(args.output, args.result_stem + '_results.json')
    result = _earlier_result(path, cm.scores(prepared.info.class_names))
    if result is None:
        result = metrics.save_results(path, cm, prepared.info.class_names, case, settings=vars(args), extra=extra)
    else:  # a rerun with the same settings: the first record (and its date) stays
        logger.info('%s holds these scores already; kept as it is', path)
    table = metrics.markdown_table([(case, result['scores'])])
    from util.io import atomic_write
    with atomic_write(os.path.join(args.output, args.result_stem + '_results.md')) as f:
        f.write(table)
    logger.info('%s\n%s', cm.summary(), table)
    _record_health(args, prepared, parts, result['scores'])
    return result


def _record_health(args, prepared, parts, scores):
    """Rank 0 adds this evaluation to ``{output}/health.json`` (an observer: a failure only warns)."""
    from issegm.report.health import ConfidenceStats
    from issegm.report.observe import record_evaluation
    try:
        confidence = ConfidenceStats()
        for part in parts:
            confidence.merge_arrays(part)
        predicted = np.sum([part['health_predicted'] for part in parts], axis=0)
        record_evaluation(args.output, args.result_stem, scores, predicted,
                          confidence.summary(prepared.info.num_classes), prepared.info.class_names)
    except Exception as exc:
        logger.warning('health record not written (%s)', exc)
