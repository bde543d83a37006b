"""Segmentation scores: confusion matrix, result JSON, paper-style Markdown tables.

Semantics (reference ``ScoreUpdater`` in ``issegm/evaluate.py`` / ``solve_ST.py``)
-------------------------------------------------------------------------------
The reference compares label-id maps over its ``valid_labels`` (the label ids
that have a train id). Working in train ids, a pixel counts when its ground
truth is a train id ``0..C-1`` (label ids outside the valid set map to 255 and
are ignored). With ``conf[g, p]`` = pixels of true class g predicted as p and
``pixels[g]`` = pixels of true class g:

* ``class_pixels = pixels + (pixels == 0)`` -- a class absent from the ground
  truth gets a denominator of 1, so its accuracy and IoU are 0 (not NaN) and
  it still counts in the means. This is unlike the official Cityscapes script,
  which leaves such a class out of the average (NaN). On a split where every
  class occurs both agree exactly.
* pixel accuracy = ``trace(conf) / pixels.sum()``
* class accuracy = ``diag / class_pixels``; mean accuracy = its plain mean
* IoU = ``diag / (class_pixels + conf.sum(0) - diag)``; mean IoU = plain mean.
  ``conf.sum(0)`` counts predictions only on pixels with valid ground truth,
  so predictions on ignored pixels are never false positives.
* A predicted value outside ``0..C-1`` on a valid pixel counts in ``pixels``
  (a miss) but in no column, as in the reference.

Scores are fractions in the JSON and percentages with one decimal in the
Markdown rows, as in the published tables (per-class IoU in train-id order).

CLI: ``python -m issegm.engine.metrics merge a.json b.json ... [--names A,B]`` prints
one Markdown table of several result files.
"""
import argparse
import datetime
import json
import os
import sys

import numpy as np

from issegm.storage.datasets import IGNORE_LABEL
from util.io import atomic_write

__all__ = ['ConfusionMatrix', 'confusion_counts', 'header_row', 'separator_row', 'format_row', 'markdown_table',
           'save_results', 'load_results', 'merge_results', 'main']


def confusion_counts(gt, pred, num_classes):
    """``(conf, pixels)`` of one image: (C, C) counts of (truth, prediction) and pixels per true class.

    Ground truth outside ``0..C-1`` is skipped; a prediction outside the
    classes counts in ``pixels`` (a miss) but in no column (reference behaviour).
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError('ground truth shape %s differs from prediction shape %s' % (gt.shape, pred.shape))
    c = int(num_classes)
    gt = gt.ravel().astype(np.int64)
    pred = pred.ravel().astype(np.int64)
    valid = (gt >= 0) & (gt < c)
    gt = gt[valid]
    pred = pred[valid]
    pixels = np.bincount(gt, minlength=c)[:c]
    ok = (pred >= 0) & (pred < c)
    return np.bincount(gt[ok] * c + pred[ok], minlength=c * c).reshape(c, c), pixels


class ConfusionMatrix(object):
    """Confusion matrix over train ids ``0..num_classes-1``, accumulated over a split.

    ``update(gt, pred)`` takes train-id arrays of the same shape; ground truth
    ``ignore_label`` (and any other value outside the classes) is skipped.
    Counts are int64, so a whole Cityscapes split (~3e9 pixels) cannot overflow.
    """

    def __init__(self, num_classes, ignore_label=IGNORE_LABEL):
        self.num_classes = int(num_classes)
        self.ignore_label = ignore_label
        self.reset()

    def reset(self):
        self.conf = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.pixels = np.zeros(self.num_classes, np.int64)
        self.num_images = 0

    def update(self, gt, pred):
        """Add one image (or any batch of pixels). Returns ``self``."""
        return self.add(*confusion_counts(gt, pred, self.num_classes))

    def add(self, conf, pixels=None):
        """Add one image's counts: ``conf`` (C, C) or flat, ``pixels`` per true class (default its row sums)."""
        c = self.num_classes
        conf = np.asarray(conf, dtype=np.int64).reshape(c, c)
        self.conf += conf
        self.pixels += conf.sum(1) if pixels is None else np.asarray(pixels, dtype=np.int64)
        self.num_images += 1
        return self

    def merge(self, other):
        """Add another matrix's counts (e.g. from a parallel worker)."""
        if other.num_classes != self.num_classes:
            raise ValueError('cannot merge %d-class and %d-class matrices' % (self.num_classes, other.num_classes))
        self.conf += other.conf
        self.pixels += other.pixels
        self.num_images += other.num_images
        return self

    def to_arrays(self, prefix=''):
        """The counts as a dict of arrays, keys prefixed with ``prefix`` (to hand to another worker)."""
        return {prefix + 'conf': self.conf, prefix + 'pixels': self.pixels,
                prefix + 'num_images': np.int64(self.num_images)}

    @classmethod
    def from_arrays(cls, arrays, prefix=''):
        """A matrix holding the counts of :meth:`to_arrays`."""
        cm = cls(len(arrays[prefix + 'pixels']))
        cm.conf += arrays[prefix + 'conf']
        cm.pixels += arrays[prefix + 'pixels']
        cm.num_images = int(arrays[prefix + 'num_images'])
        return cm

    # -- scores (reference ScoreUpdater.scores) --------------------------------
    def _parts(self):
        class_pixels = self.pixels.astype(np.float64)
        class_pixels += class_pixels == 0
        tp = np.diag(self.conf).astype(np.float64)
        class_preds = self.conf.sum(0).astype(np.float64)
        return class_pixels, tp, class_preds

    def pixel_accuracy(self):
        total = self.pixels.sum()
        # An empty matrix scores 0 rather than NaN so the JSON stays valid.
        return float(np.diag(self.conf).sum() / total) if total > 0 else 0.0

    def class_accuracy(self):
        class_pixels, tp, _ = self._parts()
        return tp / class_pixels

    def mean_accuracy(self):
        return float(self.class_accuracy().mean())

    def class_iou(self):
        class_pixels, tp, class_preds = self._parts()
        return tp / (class_pixels + class_preds - tp)

    def mean_iou(self):
        return float(self.class_iou().mean())

    def scores(self, class_names=None):
        """All scores as a JSON-ready dict (fractions in [0, 1])."""
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError('%d class names for %d classes' % (len(names), self.num_classes))
        return {
            'pixel_acc': self.pixel_accuracy(),
            'mean_acc': self.mean_accuracy(),
            'mean_iou': self.mean_iou(),
            'class_names': names,
            'class_acc': [float(v) for v in self.class_accuracy()],
            'class_iou': [float(v) for v in self.class_iou()],
            'num_images': int(self.num_images),
            'num_pixels': int(self.pixels.sum()),
            'class_pixels': [int(v) for v in self.pixels],
            'confusion': self.conf.tolist(),
        }

    def summary(self):
        """One log line as the reference prints it."""
        return 'pixel acc: {:.2f}%, mean acc: {:.2f}%, mean iou: {:.2f}%'.format(
            self.pixel_accuracy() * 100, self.mean_accuracy() * 100, self.mean_iou() * 100)


# -- Markdown ---------------------------------------------------------------------
def _title(name):
    return name[:1].upper() + name[1:]


def header_row(class_names):
    """``Case|mIoU|Road|Sidewalk|...`` for the classes in train-id order."""
    return '|'.join(['Case', 'mIoU'] + [_title(n) for n in class_names])


def separator_row(class_names):
    return '|'.join(['---'] * (2 + len(class_names)))


def format_row(case, scores):
    """One table row from a ``scores`` dict: case name, mIoU, per-class IoU, in %."""
    vals = [scores['mean_iou']] + list(scores['class_iou'])
    return '|'.join([str(case)] + ['%.1f' % (100. * v) for v in vals])


def markdown_table(rows):
    """``rows`` = [(case, scores), ...] sharing one class list -> Markdown table text."""
    if not rows:
        raise ValueError('no results to tabulate')
    names = rows[0][1]['class_names']
    for case, s in rows[1:]:
        if list(s['class_names']) != list(names):
            raise ValueError('result %r has classes %s, the first has %s; tabulate them separately'
                             % (case, s['class_names'], names))
    lines = [header_row(names), separator_row(names)] + [format_row(c, s) for c, s in rows]
    return '\n'.join(lines) + '\n'


# -- result files -------------------------------------------------------------------
def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def save_results(path, cm, class_names, case, settings=None, extra=None):
    """Write ``{case, dataset scores, args}`` to ``path`` atomically; return the dict.

    ``settings`` (a dict: the command's flags) is stored under ``args`` so a
    result can be traced back to the command that produced it.
    """
    data = {
        'case': case,
        'scores': cm.scores(class_names),
        'args': _jsonable(settings or {}),
        'created': datetime.datetime.now().isoformat(timespec='seconds'),
    }
    if extra:
        data.update(_jsonable(extra))
    with atomic_write(path) as f:
        json.dump(data, f, indent=1)
        f.write('\n')
    return data


def load_results(path):
    with open(path) as f:
        data = json.load(f)
    if 'scores' not in data or 'class_iou' not in data['scores']:
        raise ValueError('%s is not a result file written by issegm.engine.metrics.save_results' % path)
    return data


def merge_results(paths, names=None):
    """Markdown table of several result files (one row each, in the given order)."""
    if names is not None and len(names) != len(paths):
        raise ValueError('%d names for %d result files' % (len(names), len(paths)))
    rows = []
    for i, p in enumerate(paths):
        data = load_results(p)
        case = names[i] if names is not None else data.get('case') or os.path.splitext(os.path.basename(p))[0]
        rows.append((case, data['scores']))
    return markdown_table(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m issegm.engine.metrics',
                                     description='Result-file tools.')
    sub = parser.add_subparsers(dest='command', required=True)
    m = sub.add_parser('merge', help='print one Markdown table of several result JSON files')
    m.add_argument('files', nargs='+', help='result JSON files written by evaluate.py')
    m.add_argument('--names', default=None, help='comma-separated case names (default: each file\'s case)')
    m.add_argument('--out', default=None, help='also write the table to this file')
    args = parser.parse_args(argv)
    names = args.names.split(',') if args.names else None
    try:
        table = merge_results(args.files, names)
    except (OSError, ValueError) as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    sys.stdout.write(table)
    if args.out:
        with atomic_write(args.out) as f:
            f.write(table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
