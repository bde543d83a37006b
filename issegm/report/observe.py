"""The health record's sections of a round, from the files the round has written.

The pseudo-label phase calls :func:`record_pseudo_labels` once its labels are
complete: it reads the round's PNGs (``self_train/pseudo_labelIds``, the
argmax ``results/nplabelIds`` or, with the prior, ``self_train/splabelIds``,
and the previous round's ``results/nplabelIds``) in threads, so the record
is the same whether the labels were just made or restored on a rerun.
:func:`record_source` and :func:`record_evaluation` give the records of
``train_src.py`` and ``evaluate.py``.
"""
import os

import numpy as np

from issegm.report import health
from issegm.storage.datasets import list_path, read_list, sample_name
from issegm.storage.round_paths import RoundPaths
from util.image import read_label
from util.parallel import thread_pool

__all__ = ['record_confidence', 'record_pseudo_labels', 'record_epoch', 'source_shares', 'round_counts',
           'record_evaluation']


def record_confidence(round_dir, r, stats, num_classes):
    """Write the ``confidence`` section (a :class:`health.ConfidenceStats` over the target images)."""
    health.update(round_dir, kind='round', round=int(r), confidence=stats.summary(num_classes))


def source_shares(stats_dir, dataset, split, data_root, info):
    """The source's class shares (cached in ``stats_dir``), or ``{'share': None, ...}`` when unreadable."""
    listed = list_path(dataset, split)
    key = '%s %s %s' % (dataset, listed, os.path.abspath(data_root or ''))

    def compute():
        items = read_list(listed, data_root, need_labels=True)
        paths = [os.path.join(data_root, label) for _, label in items]
        return health.source_class_shares(paths, info.label2train, info.num_classes, read_label)
    return health.cached_source_shares(stats_dir, key, compute)


def _image_counts(label2train, num_classes, paths, previous):
    """Counts of one image: pseudo-labels, argmax and the labels' rule's argmax per class, pixels, agreeing pixels."""
    labels = label2train[read_label(paths['label'])]
    argmax = label2train[read_label(paths['argmax'])]
    rule = label2train[read_label(paths['rule'])] if paths['rule'] else argmax
    agree = None
    if previous is not None and os.path.exists(previous):
        prev = label2train[read_label(previous)]
        plain = label2train[read_label(paths['plain'])] if paths['plain'] != paths['argmax'] else argmax
        agree = int(np.sum(prev == plain)) if prev.shape == plain.shape else None
    return (health.class_counts(labels, num_classes), health.class_counts(argmax, num_classes),
            health.class_counts(rule, num_classes), labels.size, agree)


def round_counts(output, r, names, info, with_prior, class_balanced=False):
    """Per-class counts of round ``r``'s pseudo-labels and argmax, all pixels, and agreement with round r-1.

    Parameters
    ----------
    output : str
        The run's output folder.
    r : int
        The round.
    names : list of str
        The images' names.
    info : DatasetInfo
        The target dataset.
    with_prior : bool
        The argmax is the network's with the prior when used.
    class_balanced : bool
        Count the rule's labels (``self_train/rwlabelIds``).

    Returns
    -------
    tuple
        ``(label_counts, predicted_counts, rule_counts, pixels, agreement or
        None)``: the rule's is the class-balanced argmax the labels were cut
        from (with ``class_balanced``); the agreement is over the plain argmax
        (``results/nplabelIds``), None for round 0 or when the previous round's
        maps are not all there.
    """
    paths = RoundPaths(output, r)
    prev = RoundPaths(output, r - 1) if r > 0 else None
    lut = np.asarray(info.label2train, np.uint8)
    jobs = []
    for name in names:
        one = {'label': RoundPaths.png(paths.pseudo_labelIds, name),
               'argmax': RoundPaths.png(paths.splabelIds if with_prior else paths.nplabelIds, name),
               'plain': RoundPaths.png(paths.nplabelIds, name),
               'rule': RoundPaths.png(paths.rwlabelIds, name) if class_balanced else None}
        jobs.append((one, RoundPaths.png(prev.nplabelIds, name) if prev is not None else None))
    results = list(thread_pool().map(lambda job: _image_counts(lut, info.num_classes, *job), jobs))
    labels = np.sum([res[0] for res in results], axis=0) if results else np.zeros(info.num_classes, np.int64)
    predicted, rule = (np.sum([res[k] for res in results], axis=0) if results
                       else np.zeros(info.num_classes, np.int64) for k in (1, 2))
    pixels = int(sum(res[3] for res in results))
    agrees = [res[4] for res in results]
    agree = None if not agrees or any(a is None for a in agrees) else sum(agrees) / float(max(pixels, 1))
    return labels, predicted, rule, pixels, agree


def record_pseudo_labels(output, r, items, info, cls_thresh, kc_policy, tgt_port, with_prior, source, scores=None):
    """Write round ``r``'s ``pseudo_labels`` section from its PNGs; returns the record.

    Parameters
    ----------
    output : str
        The run's output folder.
    r : int
        The round.
    items : list of (image, label)
        The target split (outputs are named after the images).
    info : DatasetInfo
        The target dataset (class names, ``label2train``).
    cls_thresh : array of float
        The round's class thresholds.
    kc_policy, tgt_port, with_prior : str, float, bool
        How the labels were cut.
    source : dict
        :func:`source_shares`' answer.
    scores : dict
        Scores of the argmax against the target labels (``mean_iou``, ``class_iou``, ...), or None.
    """
    names = [sample_name(image) for image, _ in items]
    labels, predicted, rule, pixels, agree = round_counts(output, r, names, info, with_prior, kc_policy == 'cb')
    section = health.label_shares(labels, predicted, pixels, rule)
    section.update({'thresholds': [float(v) for v in cls_thresh], 'kc_policy': kc_policy,
                    'tgt_port': float(tgt_port), 'with_prior': bool(with_prior), 'images': len(names),
                    'source_share': source.get('share'), 'source_images': source.get('images'),
                    'agreement_with_previous': agree})
    if scores:
        section['scores'] = scores
    return health.update(RoundPaths(output, r).round_dir, kind='round', round=int(r),
                         classes=list(info.class_names), pseudo_labels=section)


def record_epoch(folder, entry, kind=None):
    """Add one epoch's entry (:func:`issegm.engine.training.train`'s ``epoch_end_callback``) to ``training``."""
    sections = {'training': {'%04d' % int(entry['epoch']): dict(entry)}}
    if kind is not None and not health.load(folder).get('kind'):
        sections['kind'] = kind
    health.update(folder, **sections)


def record_evaluation(folder, stem, scores, predicted_counts, confidence, class_names):
    """Add one evaluation (result stem ``stem``) to ``{folder}/health.json``'s ``evaluations``."""
    pixels = float(max(int(np.sum(predicted_counts)), 1))
    entry = {'predicted_share': (np.asarray(predicted_counts, np.float64) / pixels).tolist(),
             'confidence': confidence}
    if scores is not None:
        entry['scores'] = {k: scores[k] for k in ('mean_iou', 'pixel_acc', 'mean_acc', 'class_iou') if k in scores}
    # An evaluation written into a round's folder (evaluate.py's default --output) joins that round's record.
    kind = {} if health.load(folder).get('kind') else {'kind': 'evaluation'}
    return health.update(folder, classes=list(class_names), evaluations={stem: entry}, **kind)
