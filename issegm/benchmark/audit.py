"""Per-class coverage and precision of a round's pseudo-labels against ground truth.

Self-training never sees the target's ground truth; this audit does, after
the fact, to show what the class thresholds did. For each class c (train ids):

* coverage: the share of the ground-truth pixels of c that received a
  pseudo-label (of any class);
* recall: the share of the ground-truth pixels of c pseudo-labelled c;
* precision: the share of the pixels pseudo-labelled c whose ground truth is c;
* share: the class's share of the labelled ground-truth pixels.

Pixels whose ground truth is ignored (e.g. the ego vehicle) are left out, as
in evaluation. Pseudo-labels are read from the label-id PNGs that
``solve_ST.py --phase val`` writes (``self_train/pseudo_labelIds``), where
unlabelled pixels hold label id 0.
"""
import os

import numpy as np
from PIL import Image

from issegm.storage.datasets import get_dataset, read_list, sample_name
from issegm.engine.metrics import ConfusionMatrix

__all__ = ['audit', 'audit_folder', 'as_list', 'markdown_table', 'COLUMNS']


def audit(pairs, info):
    """Coverage, precision and share per class over ``pairs`` of (pseudo-label, ground-truth) label-id arrays.

    Returns ``{'coverage': [...], 'recall': [...], 'precision': [...], 'share': [...],
    'labelled': share of all pixels with a pseudo-label, 'pixel_recall':
    share of all pixels labelled right, 'pixel_precision': share of
    pseudo-labelled pixels that are right}``, in [0, 1]; a class
    with no ground truth gets coverage and recall NaN, one never
    pseudo-labelled precision NaN.
    """
    cm = ConfusionMatrix(info.num_classes)
    for pseudo, gt in pairs:
        cm.update(info.label2train[gt], info.label2train[pseudo])
    conf = cm.conf.astype(np.float64)
    gt_pixels = cm.pixels.astype(np.float64)
    labelled = conf.sum(1)
    predicted = conf.sum(0)
    with np.errstate(invalid='ignore', divide='ignore'):
        coverage = labelled / gt_pixels
        recall = np.diag(conf) / gt_pixels
        precision = np.diag(conf) / predicted
    total = gt_pixels.sum()
    return {'coverage': as_list(coverage), 'recall': as_list(recall), 'precision': as_list(precision),
            'share': (gt_pixels / total).tolist() if total else [0.0] * info.num_classes,
            'labelled': float(labelled.sum() / total) if total else 0.0,
            'pixel_recall': float(np.trace(conf) / total) if total else 0.0,
            'pixel_precision': float(np.trace(conf) / labelled.sum()) if labelled.sum() else float('nan')}


def as_list(values):
    """Floats of ``values`` with NaN as None, so that the lists are valid JSON."""
    return [None if v != v else float(v) for v in np.asarray(values, np.float64).ravel()]


def audit_folder(pseudo_folder, gt_list, data_root, dataset='cityscapes'):
    """:func:`audit` of the pseudo-labels in ``pseudo_folder`` (``{name}.png``) for every image of ``gt_list``."""
    info = get_dataset(dataset)

    def pairs():
        for image, label in read_list(gt_list, data_root):
            path = os.path.join(pseudo_folder, sample_name(image) + '.png')
            if not os.path.isfile(path):
                raise FileNotFoundError('no pseudo-label %s for %s (listed in %s)' % (path, image, gt_list))
            with Image.open(path) as pseudo, Image.open(os.path.join(data_root, label)) as gt:
                yield np.asarray(pseudo, np.uint8), np.asarray(gt, np.uint8)
    return audit(pairs(), info)


def _pct(value):
    return '-' if value is None or value != value else '%.1f' % (100. * value)


COLUMNS = ('coverage', 'recall', 'precision')


def markdown_table(audits, class_names):
    """``Class|share|{case} coverage|{case} recall|{case} precision|...`` from ``{case: audit}``, in %.

    The last row is over all pixels: the share labelled, the share labelled
    right, and the precision.
    """
    cases = list(audits)
    lines = ['|'.join(['Class', 'share'] + ['%s %s' % (c, k) for c in cases for k in COLUMNS]),
             '|'.join(['---'] * (2 + len(COLUMNS) * len(cases)))]
    first = audits[cases[0]]
    for i, name in enumerate(class_names):
        cells = [name, _pct(first['share'][i])]
        for c in cases:
            cells += [_pct(audits[c][k][i]) for k in COLUMNS]
        lines.append('|'.join(cells))
    cells = ['all pixels', '100.0']
    for c in cases:
        cells += [_pct(audits[c][k]) for k in ('labelled', 'pixel_recall', 'pixel_precision')]
    lines.append('|'.join(cells))
    return '\n'.join(lines) + '\n'
