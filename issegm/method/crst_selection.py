"""CRST's class-balanced selection as its released ``crst_seg.py`` computes it.

CRST (ICCV 2019) selects pseudo-labels like CBST but its code differs from
CBST's in the numbers (docs/crst.md, "CRST's commands"):

* confidences are pooled per class over all images without CBST's leading
  0.0: per image, the confidences of the pixels predicted as class c, every
  ``ds_rate``-th one in row-major order starting at the first
  (:func:`sampled_confidences`), appended in list order;
* the threshold of class c is the entry ``floor(n * portion) - 1`` of its pool
  sorted in descending order, and stays 1.0 (float32) when
  ``floor(n * portion)`` is 0, so a class with few sampled pixels is never
  selected (:func:`crst_thresholds`);
* rare and mining ids come from the full pixel counts of the argmax
  (:func:`crst_mining_ids`);
* a pixel is labelled with the argmax of ``prob / threshold`` where its
  maximum reaches 1 (:func:`select_labels`). LRENT uses
  :func:`issegm.method.crst.soft_pseudo_labels`.

Pure numpy; the functions take values, never flags.
"""
import math

import numpy as np

from issegm.storage.datasets import IGNORE_LABEL

__all__ = ['sampled_confidences', 'ConfidencePool', 'crst_thresholds', 'crst_mining_ids', 'select_labels']


def sampled_confidences(pred, conf, num_classes, ds_rate):
    """Per class, every ``ds_rate``-th confidence of its predicted pixels, and its pixel count.

    Parameters
    ----------
    pred : numpy.ndarray
        (H, W) train ids of the argmax.
    conf : numpy.ndarray
        (H, W) the maximum probability.
    num_classes : int
        C.
    ds_rate : int
        ``--ds-rate``: keep entries 0, ds_rate, 2 ds_rate, ... of each class's
        confidences in row-major order.

    Returns
    -------
    tuple
        ``(values, counts)``: a list of C float32 arrays and int64 (C,) counts
        of all predicted pixels.
    """
    pred = np.asarray(pred).ravel()
    conf = np.asarray(conf, np.float32).ravel()
    order = np.argsort(pred, kind='stable')  # stable: row-major order inside each class
    counts = np.bincount(pred, minlength=num_classes)[:num_classes].astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)])
    values = [conf[order[starts[c]:starts[c + 1]]][::ds_rate].copy() for c in range(num_classes)]
    return values, counts


class ConfidencePool(object):
    """CRST's ``conf_dict`` and ``pred_cls_num``: confidences pooled over images, in list order.

    Parameters
    ----------
    num_classes : int
        C.
    ds_rate : int
        ``--ds-rate`` (:func:`sampled_confidences`).
    """

    def __init__(self, num_classes, ds_rate):
        self.num_classes = int(num_classes)
        self.ds_rate = int(ds_rate)
        self.chunks = [[] for _ in range(self.num_classes)]
        self.counts = np.zeros(self.num_classes, np.int64)

    def add(self, pred, conf):
        """Add one image.

        Parameters
        ----------
        pred : numpy.ndarray
            (H, W) argmax.
        conf : numpy.ndarray
            (H, W) maximum probability.
        """
        values, counts = sampled_confidences(pred, conf, self.num_classes, self.ds_rate)
        for c, v in enumerate(values):
            if v.size:
                self.chunks[c].append(v)
        self.counts += counts

    def pooled(self):
        """Each class's kept confidences, images in list order.

        Returns
        -------
        list of numpy.ndarray
            C float32 arrays.
        """
        return [np.concatenate(ch) if ch else np.zeros(0, np.float32) for ch in self.chunks]


def crst_thresholds(conf_by_class_pooled, portion):
    """CRST's class thresholds from pooled confidences (``kc_parameters``, policy cb, value conf).

    Parameters
    ----------
    conf_by_class_pooled : list of numpy.ndarray
        Per class, its kept confidences over all images (:meth:`ConfidencePool.pooled`).
    portion : float
        The round's target portion p.

    Returns
    -------
    tuple
        ``(cls_thresh, cls_sel_size)``, both float32 (C,): the entry
        ``floor(n p) - 1`` of the descending pool (1.0 when ``floor(n p)`` is
        0), and ``floor(n p)``, as CRST saves them.
    """
    num = len(conf_by_class_pooled)
    cls_thresh = np.ones(num, np.float32)
    cls_sel_size = np.zeros(num, np.float32)
    for c, values in enumerate(conf_by_class_pooled):
        values = np.asarray(values, np.float32).ravel()
        k = int(math.floor(values.size * portion))
        cls_sel_size[c] = k
        if k:
            # The k-th largest is the entry k - 1 of the descending sort.
            cls_thresh[c] = np.partition(values, values.size - k)[values.size - k]
    return cls_thresh, cls_sel_size


def crst_mining_ids(pred_cls_num, mine_port, rare_cls_num):
    """The classes in ascending order of their share of predicted pixels, cut twice.

    The order is numpy's default ``argsort`` of the shares, as CRST sorts them.

    Parameters
    ----------
    pred_cls_num : array_like
        Predicted pixels per class.
    mine_port : float
        Share below which a class counts for ``mine_id``.
    rare_cls_num : int
        How many classes ``rare_id`` lists.

    Returns
    -------
    rare_id : numpy.ndarray
        The first ``rare_cls_num``.
    mine_id : numpy.ndarray
        The first as many as there are classes whose share is below ``mine_port``.
    """
    size = np.asarray(pred_cls_num, np.float32)
    with np.errstate(invalid='ignore', divide='ignore'):
        share = size / np.sum(size)
    num_mine = len(np.nonzero(share < mine_port)[0])
    order = np.argsort(share)
    return order[:rare_cls_num], order[:num_mine]


def select_labels(probs, cls_thresh):
    """CRST's hard pseudo-labels.

    Parameters
    ----------
    probs : numpy.ndarray
        (C, H, W) float32 probabilities.
    cls_thresh : array_like
        (C,) class thresholds.

    Returns
    -------
    label : numpy.ndarray
        uint8 (H, W) train ids: the argmax of ``probs / cls_thresh`` (float32
        division), 255 where that maximum is below 1.
    argmax : numpy.ndarray
        uint8 (H, W) weighted argmax, nothing ignored.
    """
    weighted = np.asarray(probs, np.float32) / np.asarray(cls_thresh, np.float32).reshape(-1, 1, 1)
    argmax = np.argmax(weighted, axis=0).astype(np.uint8)
    label = argmax.copy()
    label[np.max(weighted, axis=0) < 1] = IGNORE_LABEL
    return label, argmax
