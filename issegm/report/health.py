"""The health record of a run: statistics of a round from plain arrays, and ``health.json`` itself.

A self-training round writes ``{output}/{r}/health.json`` section by section
as it runs (each write atomic, a rerun replaces a section): ``confidence``
(mean top probability and entropy of the network's low-resolution maps of
the target images), ``pseudo_labels`` (class thresholds, the kept share of
target pixels overall and per class, the source's class shares, the
agreement of the argmax with the previous round's, scores when the target
split has labels), ``training`` (one entry per epoch) and ``guard`` (the
collapse checks, :mod:`issegm.report.guard`). ``train_src.py`` and
``evaluate.py`` write the same kind of record in their output.
Nothing here feeds back into the run: the record only observes it.
"""
import json
import os
import time

import numpy as np

from util.io import atomic_write

__all__ = ['FORMAT', 'HEALTH', 'SOURCE_SHARES', 'health_path', 'load', 'update', 'ConfidenceStats',
           'class_counts', 'agreement', 'label_shares', 'source_class_shares', 'cached_source_shares']

FORMAT = 'cbst-mx-health/1'
HEALTH = 'health.json'
SOURCE_SHARES = 'source_class_shares.json'
#: Source labels read at most for the class shares (evenly spread over the list): cheap on GTA-5's 25k.
MAX_SOURCE_LABELS = 500


def health_path(folder):
    """``{folder}/health.json``."""
    return os.path.join(folder, HEALTH)


def load(folder_or_path):
    """The record in a folder (or at a path), or ``{}`` when there is none (or it is unreadable)."""
    path = folder_or_path if folder_or_path.endswith('.json') else health_path(folder_or_path)
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def update(folder, **sections):
    """Merge ``sections`` into ``{folder}/health.json`` (created when missing).

    A section whose value is a dict is merged key by key into the stored one,
    so that writers of one section (training epochs, several evaluations) add
    to it; other values replace.

    Parameters
    ----------
    folder : str
        The folder of the record.
    **sections
        The sections by name.

    Returns
    -------
    dict
        The record.
    """
    record = load(folder)
    record.setdefault('format', FORMAT)
    record.setdefault('created', time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(record.get(key), dict):
            record[key].update(value)
        else:
            record[key] = value
    record['updated'] = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
    with atomic_write(health_path(folder)) as f:
        json.dump(_plain(record), f, indent=1, sort_keys=True)
    return record


def _plain(obj):
    """``obj`` with numpy scalars and arrays turned into JSON values (nan -> None)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


class ConfidenceStats(object):
    """Mean top probability and mean entropy (nats) of class maps, summed image by image.

    Sums are float64 so that a merge over workers equals one process's sums
    up to rounding.
    """

    def __init__(self):
        self.top = self.entropy = 0.0
        self.pixels = 0

    def add(self, probs, im_hw=None, stride=None):
        """Add one class map.

        Parameters
        ----------
        probs : array
            The map, (C, h, w).
        im_hw : tuple of int, optional
            With ``stride``: the padding is cut off.
        stride : int, optional
            The map's stride.
        """
        probs = np.asarray(probs, np.float32)
        if im_hw is not None and stride:
            h, w = (int(-(-int(v) // int(stride))) for v in im_hw)
            probs = probs[:, :h, :w]
        p = probs.reshape(probs.shape[0], -1).astype(np.float64)
        self.top += float(p.max(axis=0).sum())
        self.entropy += float(-(p * np.log(np.clip(p, 1e-12, None))).sum())
        self.pixels += p.shape[1]

    def to_arrays(self):
        return {'health_conf': np.array([self.top, self.entropy, self.pixels], np.float64)}

    def merge_arrays(self, arrays):
        top, entropy, pixels = arrays['health_conf']
        self.top += float(top)
        self.entropy += float(entropy)
        self.pixels += int(pixels)

    def summary(self, num_classes):
        """``{'mean_top_prob', 'mean_entropy', 'mean_entropy_normalised', 'pixels'}`` (None without pixels)."""
        if not self.pixels:
            return {'mean_top_prob': None, 'mean_entropy': None, 'mean_entropy_normalised': None, 'pixels': 0}
        mean_entropy = self.entropy / self.pixels
        return {'mean_top_prob': self.top / self.pixels, 'mean_entropy': mean_entropy,
                'mean_entropy_normalised': mean_entropy / np.log(max(num_classes, 2)), 'pixels': self.pixels}


def class_counts(train_ids, num_classes):
    """Pixels of each train id ``0..num_classes-1`` in ``train_ids`` (others, 255 included, left out)."""
    counts = np.bincount(np.asarray(train_ids, np.uint8).ravel(), minlength=256)
    return counts[:num_classes].astype(np.int64)


def agreement(a, b):
    """The share of pixels where two argmax maps agree (None when their shapes differ)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.size == 0:
        return None
    return float(np.mean(a == b))


def label_shares(label_counts, predicted_counts, pixels, rule_counts=None):
    """The pseudo-label section's shares from counts over all target pixels.

    Parameters
    ----------
    label_counts : array of int
        Pseudo-labelled pixels per class.
    predicted_counts : array of int
        Pixels per class of the argmax the labels were cut from.
    pixels : int
        All target pixels.
    rule_counts : array of int
        Pixels per class of the argmax the labels were cut from (CBST's
        class-balanced one); default ``predicted_counts``.

    Returns
    -------
    dict
        ``kept_share`` (labelled / all), ``class_share`` (labelled as c / all),
        ``label_distribution`` (labelled as c / labelled), ``predicted_share``
        (argmax c / all), ``kept_of_predicted`` (labelled as c / the rule's
        argmax c, None where it never gives c).
    """
    labels = np.asarray(label_counts, np.float64)
    predicted = np.asarray(predicted_counts, np.float64)
    rule = predicted if rule_counts is None else np.asarray(rule_counts, np.float64)
    pixels = float(max(pixels, 1))
    kept = labels.sum()
    return {'pixels': int(pixels), 'kept_share': kept / pixels, 'class_share': (labels / pixels).tolist(),
            'label_distribution': (labels / max(kept, 1.)).tolist(),
            'predicted_share': (predicted / pixels).tolist(),
            'kept_of_predicted': [float(l / p) if p else None for l, p in zip(labels, rule)]}


def source_class_shares(label_paths, label2train, num_classes, read_label, limit=MAX_SOURCE_LABELS):
    """Class shares of source pixels from label files.

    Parameters
    ----------
    label_paths : sequence of str
        The label files; at most ``limit`` are read, evenly spread over the list.
    label2train : array
        Map of label ids to train ids.
    num_classes : int
        Number of classes.
    read_label : callable
        Reads a label file into an array of label ids.
    limit : int
        The most label files read.

    Returns
    -------
    dict
        ``{'share': [...], 'images': n, 'of': N}``.
    """
    paths = list(label_paths)
    if len(paths) > limit:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    counts = np.zeros(num_classes, np.int64)
    lut = np.asarray(label2train, np.uint8)
    for path in paths:
        counts += class_counts(lut[read_label(path)], num_classes)
    total = max(int(counts.sum()), 1)
    return {'share': (counts / float(total)).tolist(), 'images': len(paths), 'of': len(label_paths)}


def cached_source_shares(stats_dir, key, compute):
    """The source's class shares cached in ``{stats_dir}/source_class_shares.json`` under ``key``.

    Parameters
    ----------
    stats_dir : str
        The folder of the cache.
    key : object
        The source list and data root the shares are of.
    compute : callable
        ``compute()`` runs once per run (per key).

    Returns
    -------
    dict
        The shares; a failure to read the labels gives ``{'share': None,
        'error': ...}``, never a failed phase.
    """
    path = os.path.join(stats_dir, SOURCE_SHARES)
    cache = load(path)
    if cache.get('key') == key and 'share' in cache:
        return cache
    try:
        found = dict(compute(), key=key)
    except Exception as exc:  # no source labels here (another machine, no --dataset): the record goes on
        return {'share': None, 'error': '%s: %s' % (type(exc).__name__, exc)}
    with atomic_write(path) as f:
        json.dump(_plain(found), f, indent=1, sort_keys=True)
    return found
