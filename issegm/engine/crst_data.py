"""CRST's training samples (``deeplab/datasets.py``) and an MXNet iterator over them.

One sample, as CRST's ``SrcSTDataSet`` / ``GTA5StMineDataSet`` (and their
``Soft`` variants for LRENT) make it:

1. the image (BGR as OpenCV reads it) and the label ids -> train ids;
2. with ``--random-scale``, a factor ``lo + randint(0, int((hi - lo) * 10)) / 10``
   (0.5, 0.6, ..., 1.5 by default): the image resized with ``cv2.resize``
   bilinear, the label nearest (LRENT soft labels bilinear in groups of
   three channels, then divided by their sum);
3. normalised in float32 ``(x / 255 - mean) / std``;
4. padded at the bottom and right to the crop size (image 0, label 255, soft 0);
5. a random crop, or on target samples with probability ``--mine-chance``
   a crop around a random pixel of a random mining class present in the
   label (integer halves of the crop, as CRST's Python 2 run computed them);
6. RGB, CHW; with ``--random-mirror`` a horizontal flip with probability 1/2.

Labels are the crop's full resolution: train ids (B, H*W) with 255, or
soft vectors (B, C, H*W), all-zero where unlabelled; ``is_source`` (B,).
The network's logits are upsampled to the crop before the loss
(:class:`issegm.engine.objective.Objective` with ``label_size``).

The random draws use numpy's global generator, which
:func:`issegm.engine.training.train` reseeds at every epoch, so a resumed
run draws what an uninterrupted one would.
"""
import collections

import cv2
import mxnet as mx
import numpy as np
from PIL import Image

from issegm.engine.crst_forward import IMG_MEAN_RGB, IMG_STD_RGB
from issegm.method.crst import DOMAIN_NAME
from issegm.storage.datasets import IGNORE_LABEL

__all__ = ['Augment', 'Sample', 'scale_factor', 'mining_offsets', 'make_sample', 'CrstIter']

#: What one training run does to every sample: ``crop`` (h, w) (``--input-size``), ``scale_ranges``
#: {is_source: (lo, hi)} (``--train-scale-src`` / ``--train-scale-tgt``), ``random_scale``, ``mirror``,
#: ``mine_chance``.
Augment = collections.namedtuple('Augment', ['crop', 'scale_ranges', 'random_scale', 'mirror', 'mine_chance'])

#: One entry of a training list: image path, label path, whether it is a source sample, and for
#: LRENT target samples a callable giving its (H, W, C) soft labels (None otherwise).
Sample = collections.namedtuple('Sample', ['image', 'label', 'is_source', 'soft'])

_MEAN_BGR = IMG_MEAN_RGB[::-1].copy()
_STD_BGR = IMG_STD_RGB[::-1].copy()


def scale_factor(lo, hi, rng=np.random):
    """CRST's scale draw: ``lo + randint(0, int((hi - lo) * 10)) / 10`` (both ends included)."""
    return lo + rng.randint(0, int((hi - lo) * 10) + 1) / 10.0


def _resize_soft(soft, f, size_hw):
    # Three channels at a time, as CRST does (cv2.resize takes at most 4 channels).
    h, w = size_hw
    out = np.zeros((h, w, soft.shape[2]), np.float32)
    for start in range(0, soft.shape[2], 3):
        part = cv2.resize(np.ascontiguousarray(soft[:, :, start:start + 3]), None, fx=f, fy=f,
                          interpolation=cv2.INTER_LINEAR)
        out[:, :, start:start + 3] = part.reshape(h, w, -1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return out / out.sum(axis=2, keepdims=True)


def mining_offsets(label, mine_id, crop, rng=np.random):
    """``(h_off, w_off)`` of CRST's patch-mining crop, or None when no mining class is in ``label``.

    A mining class present in the (padded) label is drawn, then one of its
    pixels, and the crop is centred there (``pixel - crop // 2``), moved back
    inside the image at the borders as CRST moves it.
    """
    present = np.unique(label)
    candidates = np.array([c for c in mine_id if c in present])
    if candidates.size == 0:
        return None
    chosen = candidates[rng.randint(0, candidates.size)]
    rows, cols = np.where(label == chosen)
    k = rng.randint(0, len(rows))
    return _mined_start(rows[k], label.shape[0], crop[0]), _mined_start(cols[k], label.shape[1], crop[1])


def _mined_start(seed, size, crop):
    half = crop // 2  # Python 2's integer division in CRST's run
    start = seed - half
    if start < 0:
        return 0
    if seed + half - 1 > size - 1:
        # CRST's shift lands on size - 2 half: size - crop for its even crops; an odd crop would come
        # out one short, so it stops at size - crop.
        return min(start - ((half - 1) - (size - 1 - seed)), size - crop)
    return start


def _pad(image, label, soft, crop):
    pad_h, pad_w = max(crop[0] - label.shape[0], 0), max(crop[1] - label.shape[1], 0)
    if not (pad_h or pad_w):
        return image, label, soft
    widths = ((0, pad_h), (0, pad_w))
    image = np.pad(image, widths + ((0, 0),), constant_values=0.)
    label = np.pad(label, widths, constant_values=IGNORE_LABEL)
    soft = None if soft is None else np.pad(soft, widths + ((0, 0),), constant_values=0.)
    return image, label, soft


def make_sample(sample, label2train, aug, num_classes, soft_labels, mine_id=(), rng=np.random):
    """One training sample as CRST's datasets make it: ``(data (3, h, w), label)``.

    ``label`` is float32 (h*w,) train ids, or with ``soft_labels`` (C, h*w)
    soft vectors (one-hot for source samples).
    """
    image = cv2.imread(sample.image, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError('cannot read %s as an image; check --data-src-dir / --data-tgt-dir and the list' %
                         sample.image)
    label = label2train[np.array(Image.open(sample.label))].astype(np.float64)
    soft = sample.soft() if sample.soft is not None else None
    if aug.random_scale:
        f = scale_factor(*aug.scale_ranges[sample.is_source], rng=rng)
        image = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)
        soft = None if soft is None else _resize_soft(soft, f, label.shape)
    image = (np.asarray(image, np.float32) / np.float32(255.0) - _MEAN_BGR) / _STD_BGR
    image, label, soft = _pad(image, label, soft, aug.crop)
    mined = None
    if not sample.is_source and rng.uniform(0, 1) < aug.mine_chance and len(mine_id) > 0:
        mined = mining_offsets(label, mine_id, aug.crop, rng)
    if mined is None:
        mined = (rng.randint(0, label.shape[0] - aug.crop[0] + 1), rng.randint(0, label.shape[1] - aug.crop[1] + 1))
    window = (slice(mined[0], mined[0] + aug.crop[0]), slice(mined[1], mined[1] + aug.crop[1]))
    data = image[window][:, :, ::-1].transpose(2, 0, 1)
    label = label[window].astype(np.float32)
    if soft_labels:
        label = _soft_target(label, None if soft is None else soft[window], num_classes)
    flip = aug.mirror and rng.choice(2) == 0
    if flip:
        data, label = data[:, :, ::-1], label[..., ::-1]
    return np.ascontiguousarray(data, np.float32), np.ascontiguousarray(label, np.float32)


def _soft_target(label, soft, num_classes):
    """(C, h, w): one-hot vectors (source) or the soft labels (target), zero where ``label`` is 255."""
    valid = label != IGNORE_LABEL
    if soft is None:
        out = np.zeros((num_classes,) + label.shape, np.float32)
        ids = np.where(valid, label, 0).astype(np.int64)
        np.put_along_axis(out, ids[None], valid[None].astype(np.float32), axis=0)
        return out
    return (np.nan_to_num(soft) * valid[:, :, None]).transpose(2, 0, 1).astype(np.float32)


class CrstIter(mx.io.DataIter):
    """Batches of CRST's training samples: source and target lists together, shuffled each epoch.

    Every epoch visits every sample once (CRST's ``DataLoader(shuffle=True)``
    over the concatenated sets); the last batch may be smaller
    (``batches_per_epoch`` = ceil(n / batch), CRST's ``tot_iter``). Labels:
    ``softmax_label`` (B, h*w) or (B, C, h*w) and ``is_source`` (B,).
    """

    def __init__(self, samples, label2train, aug, batch_size, num_classes, soft_labels=False, mine_id=()):
        super(CrstIter, self).__init__(batch_size)
        self.samples = list(samples)
        self.label2train = label2train
        self.aug, self.num_classes, self.soft_labels = aug, int(num_classes), bool(soft_labels)
        self.mine_id = list(mine_id)
        self.batches_per_epoch = -(-len(self.samples) // batch_size)
        self.num_data = len(self.samples)
        self._order, self._cursor = [], 0
        h, w = aug.crop
        label_shape = (batch_size, self.num_classes, h * w) if self.soft_labels else (batch_size, h * w)
        self.provide_data = [mx.io.DataDesc('data', (batch_size, 3, h, w))]
        self.provide_label = [mx.io.DataDesc('softmax_label', label_shape), mx.io.DataDesc(DOMAIN_NAME, (batch_size,))]

    def reset(self):
        self._order, self._cursor = list(np.random.permutation(len(self.samples))), 0

    def next(self):
        if self._cursor >= len(self._order):
            raise StopIteration
        chosen = self._order[self._cursor:self._cursor + self.batch_size]
        self._cursor += len(chosen)
        data, labels, domain = [], [], []
        for i in chosen:
            sample = self.samples[i]
            x, y = make_sample(sample, self.label2train, self.aug, self.num_classes, self.soft_labels,
                               () if sample.is_source else self.mine_id)
            data.append(x)
            labels.append(y.reshape(y.shape[0], -1) if self.soft_labels else y.ravel())
            domain.append(float(sample.is_source))
        arrays = [np.stack(data), np.stack(labels), np.array(domain, np.float32)]
        return mx.io.DataBatch(data=[mx.nd.array(arrays[0])], label=[mx.nd.array(a) for a in arrays[1:]], pad=0,
                               provide_data=[mx.io.DataDesc('data', arrays[0].shape)],
                               provide_label=[mx.io.DataDesc('softmax_label', arrays[1].shape),
                                              mx.io.DataDesc(DOMAIN_NAME, arrays[2].shape)])
