"""The training data iterator (docs/behaviour.md section 5): scale jitter, crops, small-class mining.

:class:`FileIter` yields ``data`` (B, 3, T, T) and ``softmax_label``
(B, (T/stride)^2) batches from source samples (labelled images) and target
samples (images with pseudo-labels), as the reference's ``FileIter`` does:

1. ``T`` = crop size rounded up to a multiple of the stride;
2. a per-domain scale: ``target_size`` drawn uniformly from
   ``[int(lo * origin), int(hi * origin)]``, ``rate = target_size / max(max_shape)``
   in self-training (the reference's ``data.py``) but ``target_size / max(h, w)``
   of each image in source training (its ``data_src.py``), and the crop taken
   from the image is ``int(T / rate)`` pixels;
3. the image sits on a square canvas at offset ``d0 = max(1, int(ls // 2))``
   (``ls = stride / rate``); labels on a 255 canvas. The canvas holds the
   mean colour truncated to integers, (123, 116, 103), as the reference's
   ``astype(np.uint8)`` of its float canvas leaves it, so padded pixels
   normalise to about (-0.0116, -0.0049, -0.0092), not 0;
4. with probability ``mine_port``, the crop is centred on a pixel of a rare
   class (``mine_id_priority`` first, else ``mine_id``) found where a centred
   crop stays inside the image; otherwise the top-left corner is uniform;
5. the crop is resized to T x T (the reference's filter rule), the label with
   nearest neighbour and kept at the stride centres;
6. a horizontal flip with probability 1/2, then normalisation.

Deliberate differences, none changing what is sampled:

* each sample draws from its own random stream, seeded from the epoch's
  permutation draw, so batches are the same for any number of workers (the
  reference's threads share numpy's global generator, so its batches depend
  on thread timing); ``seed`` makes runs repeatable;
* a corrupt image, a 16-bit or multi-channel label, or a label whose size
  differs from its image stop the run with one line naming the file. We
  chose that over skipping: a skip silently changes the sampled
  distribution, and a stopped run resumes from its last whole epoch. Label
  values outside the dataset's encoding are ignored, as the reference ignores
  them, with one summary warning per run (:class:`issegm.storage.datasets.LabelAudit`).
"""
import collections
import concurrent.futures
import io
import logging
import multiprocessing
import os

import mxnet as mx
import numpy as np
from PIL import Image

from issegm.storage.datasets import LabelAudit, get_dataset, list_path, read_list
from issegm.errors import DataError
from util.image import MEAN_RGB, normalize, resize

__all__ = ['FileIter', 'Sample', 'SampleReader', 'make_divisible', 'parse_split_file',
           'select_source_indices',
           'SOURCE', 'TARGET']

SOURCE, TARGET = 0, 1

_logger = logging.getLogger(__name__)

#: One training sample: image path, label path, domain (SOURCE or TARGET).
Sample = collections.namedtuple('Sample', ['image', 'label', 'domain'])

Geometry = collections.namedtuple('Geometry', ['rate', 'crop', 'd0', 'y0', 'x0', 'flip', 'mined'])

_IGNORE = 255


def make_divisible(v, divider):
    return int(np.ceil(float(v) / divider) * divider)


def select_source_indices(num_source, num_sel, seed):
    """Indices of the ``num_sel`` source samples of a round (docs/behaviour.md section 7).

    ``np.random.seed(seed); np.random.choice(num_source, num_sel, replace=False)``:
    numpy's legacy global generator, so the reference's images are chosen and,
    for one seed, a larger selection extends a smaller one's draw order.

    Parameters
    ----------
    num_source : int
        Number of source samples to choose from.
    num_sel : int
        Number chosen.
    seed : int
        Seed of numpy's global generator.

    Returns
    -------
    numpy.ndarray
        The chosen indices, in draw order.
    """
    np.random.seed(int(seed))
    return np.random.choice(num_source, int(num_sel), replace=False)


def parse_split_file(dataset, split, num_sel_source=None, num_source=None, seed_int=0, dataset_tgt='',
                     split_tgt='', data_root='', data_root_tgt='', gpus='0'):
    """The reference's sample list: selected source lines plus the target pseudo-label list.

    Parameters
    ----------
    dataset, split : str
        Source lines come from ``issegm/data_list/{dataset}/{split}.lst``,
        their paths joined to ``data_root``.
    num_sel_source : int, optional
        When given, ``np.random.seed(seed_int)`` then
        ``np.random.choice(num_source, num_sel_source, replace=False)`` picks
        the source lines (numpy's legacy global generator, so the reference's
        choice is reproduced).
    num_source : int, optional
        Default: the number of source lines.
    seed_int : int
        The seed of that choice.
    dataset_tgt, split_tgt, gpus : str
        Target lines come from ``{split_tgt}_training_gpu{gpus}.lst`` of
        ``dataset_tgt``; their label paths are used as written.
    data_root, data_root_tgt : str
        Roots of the source paths and of the target images.

    Returns
    -------
    list of Sample
        The source samples, then the target ones.
    """
    items = read_list(list_path(dataset, split), data_root, check_exists=True)
    samples = [Sample(os.path.join(data_root, i), os.path.join(data_root, l), SOURCE) for i, l in items]
    if num_sel_source is not None:
        chosen = select_source_indices(num_source or len(samples), num_sel_source, seed_int)
        samples = [samples[k] for k in chosen]
    if dataset_tgt:
        path = os.path.join('issegm', 'data_list', dataset_tgt, '%s_training_gpu%s.lst' % (split_tgt, gpus))
        for image, label in read_list(path, None, check_exists=False):
            samples.append(Sample(os.path.join(data_root_tgt, image), label, TARGET))
    return samples


class SampleReader(object):
    """Makes training samples; holds no MXNet state, so it can live in worker processes.

    Parameters
    ----------
    samples : list of Sample
        The samples.
    label2train : tuple
        Per domain, the np.uint8[256] map of label ids to train ids.
    max_shapes : tuple
        Per domain, the max shape (h, w).
    origin_sizes : tuple
        Per domain, the origin size the scale range multiplies.
    crop_size : int
        T, a multiple of ``stride``.
    stride : int
        The label stride.
    scale_rate_range : tuple of float
        ``(lo, hi)`` of the scale jitter.
    mine_port, mine_id, mine_id_priority
        Small-class mining (the module's step 4).
    audits : tuple of LabelAudit, optional
        Per domain; None: no label checks.
    cache_images : bool
        Keep the files' bytes in memory.
    rate_from_image : bool
        Chooses the scale rule: ``target_size / max(h, w)`` of each image
        (source training) instead of ``target_size / max(max_shape)``
        (self-training).
    targets : issegm.engine.objective.TrainingTargets, optional
        CRST: labels for its loss, plus each sample's domain.
    normalizer : callable, optional
        The network's input normalisation (:func:`issegm.engine.model.preprocessing`);
        default the reference's; the canvas holds its mean colour, truncated.
    """

    def __init__(self, samples, label2train, max_shapes, origin_sizes, crop_size, stride,
                 scale_rate_range, mine_port=0., mine_id=(), mine_id_priority=(), audits=None,
                 cache_images=False, rate_from_image=False, targets=None, normalizer=None):
        self.samples = list(samples)
        # The network's input normalisation (issegm.engine.model.preprocessing); default the reference's.
        self.normalize = normalize if normalizer is None else normalizer
        # CRST (issegm.engine.objective.TrainingTargets): labels for its loss, plus each sample's domain.
        self.targets = targets
        self.label2train = label2train      # per domain, np.uint8[256]
        self.max_shapes = max_shapes        # per domain, (h, w)
        self.origin_sizes = origin_sizes    # per domain
        self.crop_size = crop_size
        self.stride = stride
        self.scale_rate_range = scale_rate_range
        self.mine_port = float(mine_port)
        self.mine_id = [int(c) for c in np.asarray(mine_id).ravel()]
        self.mine_id_priority = [int(c) for c in np.asarray(mine_id_priority).ravel()]
        self.audits = audits                # per domain: LabelAudit, or None (no label checks)
        self.cache = {} if cache_images else None
        self.rate_from_image = bool(rate_from_image)
        mean_rgb = MEAN_RGB if normalizer is None else normalizer.mean_rgb
        self.mean = np.asarray(mean_rgb * 255).astype(np.uint8)  # as the reference: truncated

    # -- files -------------------------------------------------------------------------
    def _open(self, path):
        if self.cache is not None:
            if path not in self.cache:
                with open(path, 'rb') as f:
                    self.cache[path] = f.read()
            return Image.open(io.BytesIO(self.cache[path]))
        return Image.open(path)

    def load(self, sample):
        """Image, label and label finding of ``sample``.

        Parameters
        ----------
        sample : Sample
            The sample.

        Returns
        -------
        tuple
            Image (uint8 RGB), label (train ids) and label finding (see
            ``LabelAudit.inspect``; None without audits).

        Raises
        ------
        DataError
            For structural damage, naming the file.
        """
        try:
            image = np.asarray(self._open(sample.image).convert('RGB'), np.uint8)
        except FileNotFoundError:
            raise DataError('image not found: %s (check --data-root and the list file)' % sample.image)
        except Exception as exc:
            raise DataError('cannot read image %s: %s (the file is damaged; copy it again)'
                            % (sample.image, exc))
        try:
            raw = np.asarray(self._open(sample.label))
        except FileNotFoundError:
            raise DataError('label not found: %s (check the list file)' % sample.label)
        except Exception as exc:
            raise DataError('cannot read label %s: %s (the file is damaged; copy it again)'
                            % (sample.label, exc))
        if raw.ndim != 2 or raw.dtype != np.uint8:
            raise DataError('label %s has shape %s, dtype %s: expected one 8-bit channel of label ids'
                            ' (for SYNTHIA run issegm/prepare_data.py synthia)'
                            % (sample.label, raw.shape, raw.dtype))
        if raw.shape != image.shape[:2]:
            raise DataError('label %s is %dx%d but its image %s is %dx%d' % (
                sample.label, raw.shape[0], raw.shape[1], sample.image, image.shape[0], image.shape[1]))
        finding = self.audits[sample.domain].inspect(sample.label, raw) if self.audits else None
        return image, self.label2train[sample.domain][raw], finding

    # -- geometry ----------------------------------------------------------------------
    def _scale(self, domain, hw, rng):
        lo, hi = [int(r * self.origin_sizes[domain]) for r in self.scale_rate_range]
        longest = float(max(self.max_shapes[domain]))
        max_crop = int(self.crop_size / (lo / longest))  # sizes the canvas only
        target_size = rng.randint(lo, hi + 1)
        return target_size / float(max(hw) if self.rate_from_image else longest), max_crop

    def _mine_centre(self, canvas_label, d0, h, w, crop, ls, rng):
        """Centre on a pixel of a rare class present where a centred crop fits, or None."""
        half = crop // 2
        y_end = int(max(1, ls, d0 + h - half - 1))
        x_end = int(max(1, ls, d0 + w - half - 1))
        region = canvas_label[d0 + half:y_end, d0 + half:x_end]
        if region.size == 0:
            return None
        present = set(np.unique(region).tolist())
        candidates = [c for c in self.mine_id_priority if c in present] or \
                     [c for c in self.mine_id if c in present]
        if not candidates:
            return None
        cls = candidates[int(np.floor(rng.uniform(0, len(candidates))))]
        ys, xs = np.nonzero(region == cls)
        k = rng.randint(0, len(ys))
        return ys[k] + d0 + half, xs[k] + d0 + half

    def make(self, index, seed):
        """One sample.

        Parameters
        ----------
        index : int
            The sample's index.
        seed : int
            Seed of its random stream.

        Returns
        -------
        tuple
            (data float32 3xTxT, label float32 (T/s)^2, :class:`Geometry`).
        """
        return self._make(index, seed)[:3]

    def _make(self, index, seed):
        # make() and the label finding of the sample's file (LabelAudit.inspect).
        sample = self.samples[index]
        rng = np.random.RandomState(seed)
        image, label, finding = self.load(sample)
        h, w = label.shape
        T, s = self.crop_size, self.stride
        rate, max_crop = self._scale(sample.domain, (h, w), rng)
        crop = int(T / rate)
        ls = s / rate
        d0 = max(1, int(ls // 2))
        d1 = max(0, int(ls - d0))
        side = max(max_crop, h, w) + d1 + d0
        canvas = np.empty((side, side, 3), np.uint8)
        canvas[:] = self.mean
        canvas[d0:d0 + h, d0:d0 + w] = image
        canvas_label = np.full((side, side), _IGNORE, np.uint8)
        canvas_label[d0:d0 + h, d0:d0 + w] = label

        centre = None
        if rng.rand() < self.mine_port:
            centre = self._mine_centre(canvas_label, d0, h, w, crop, ls, rng)
        if centre is not None:
            y0, x0 = centre[0] - crop // 2, centre[1] - crop // 2
        else:
            y0 = rng.randint(0, int(max(1, ls, d0 + h - crop + 1)))
            x0 = rng.randint(0, int(max(1, ls, d0 + w - crop + 1)))
        flip = rng.randint(2) == 0
        # Rare rounding cases can reach past the canvas: extend it in kind.
        extra = max(0, y0 + crop - side, x0 + crop - side)
        if extra:
            canvas = np.pad(canvas, ((0, extra), (0, extra), (0, 0)), mode='edge')
            canvas[side:], canvas[:, side:] = self.mean, self.mean
            canvas_label = np.pad(canvas_label, ((0, extra), (0, extra)), constant_values=_IGNORE)
        window = (slice(y0, y0 + crop), slice(x0, x0 + crop))
        data_crop = resize(canvas[window], (T, T))
        label_crop = resize(canvas_label[window], (T, T), nearest=True)[s // 2::s, s // 2::s]
        if flip:
            data_crop, label_crop = data_crop[:, ::-1], label_crop[:, ::-1]
        data = self.normalize(data_crop)
        geometry = Geometry(rate, crop, d0, y0, x0, flip, centre is not None)
        return data, label_crop.astype(np.float32).ravel(), geometry, finding

    def batch(self, indices, seeds):
        """Stacked data and labels of the samples ``indices``.

        Parameters
        ----------
        indices : list of int
            The samples.
        seeds : list of int
            Their seeds.

        Returns
        -------
        tuple
            Data and labels (and, with ``targets``, 1 for source samples).
        """
        return self.batch_and_findings(indices, seeds)[1:]

    def batch_and_findings(self, indices, seeds):
        """The label findings ``(domain, finding)`` of the samples, then what :meth:`batch` gives.

        Parameters
        ----------
        indices : list of int
            The samples.
        seeds : list of int
            Their seeds.

        Returns
        -------
        tuple
            ``(findings, data, labels)``, and with ``targets`` the source flags last.
        """
        made = [self._make(i, s) for i, s in zip(indices, seeds)]
        findings = [(self.samples[i].domain, m[3]) for i, m in zip(indices, made) if m[3] is not None]
        data = np.stack([m[0] for m in made])
        if self.targets is None:
            return findings, data, np.stack([m[1] for m in made])
        samples = [self.samples[i] for i in indices]
        labels = [self.targets(sample, label, geometry, self.crop_size, self.stride, sample.domain == TARGET)
                  for sample, (_, label, geometry, _) in zip(samples, made)]
        return findings, data, np.stack(labels), np.array([s.domain == SOURCE for s in samples], np.float32)


_WORKER_READER = None


def _init_worker(reader):
    global _WORKER_READER
    _WORKER_READER = reader


def _worker_batch(indices, seeds):
    return _WORKER_READER.batch_and_findings(indices, seeds)


class FileIter(mx.io.DataIter):
    """Training iterator over source samples and pseudo-labelled target samples.

    Keeps the reference constructor's parameters. Without ``dataset_tgt`` it
    is the reference's source-training iterator (``data_src.py``): each
    image's scale rate comes from its own size, and the max shape is the
    dataset's own. With it, the self-training one (``data.py``): rates come
    from the max shapes, GTA-5's pinned to 1024 x 2048.

    Parameters
    ----------
    meta : dict, optional
        May carry the reference's keys (``mine_port``, ``mine_id``,
        ``mine_id_priority``, ``max_shape_src``, ``max_shape_tgt``,
        ``cache_images``, ``gpus``); whatever it lacks comes from the dataset
        registry.
    samples : list of Sample, optional
        Replaces the list files.
    seed : int, optional
        Makes every epoch repeatable (default: numpy's global generator, as
        the reference).
    targets : issegm.engine.objective.TrainingTargets, optional
        Makes the labels of the CRST loss and adds the label ``is_source``;
        None is CBST.
    normalizer : callable, optional
        The network's input normalisation (:func:`issegm.engine.model.preprocessing`;
        default the reference's); the crops' canvas is its mean colour.
    batch_images : int
        The global batch.
    num_parts, part_index : int
        Distributed training: every part draws the epoch's order and sample
        seeds as one process would and yields its own ``batch_images / num_parts``
        consecutive samples of each global batch, so the parts together see
        exactly one process's batches.

    Raises
    ------
    ValueError
        For a global batch that ``num_parts`` does not divide, or settings the
        reference pipeline does not support.
    DataError
        When there are no samples, or fewer than one batch.
    """

    def __init__(self, dataset, split=None, data_root='', num_sel_source=None, num_source=None,
                 seed_int=0, dataset_tgt='', split_tgt='', data_root_tgt='', data_name='data',
                 label_name='softmax_label', sampler='random', has_gt=True, batch_images=1, meta=None,
                 rgb_mean=None, feat_stride=8, label_stride=None, label_steps=1, origin_size=None,
                 origin_size_tgt=None, crop_size=0, scale_rate_range=None, crops_per_image=1,
                 transformer=None, transformer_image=None, prefetch_threads=1, prefetcher_type='thread',
                 samples=None, seed=None, prefetcher=None, cache_images=None, targets=None, num_parts=1,
                 part_index=0, normalizer=None):
        if batch_images % num_parts or not 0 <= part_index < num_parts:
            raise ValueError('--batch-images %d (the global batch) cannot be split evenly over %d workers'
                             % (batch_images, num_parts))
        super(FileIter, self).__init__(batch_images // num_parts)
        if crop_size <= 0:
            raise ValueError('--crop-size must be positive')
        if label_steps != 1 or crops_per_image != 1 or not has_gt:
            raise ValueError('only label_steps=1, crops_per_image=1 and labelled samples are '
                             'supported (as in every CBST command)')
        if transformer is not None:
            raise ValueError('custom transformers are not supported; the reference pipeline is built in')
        meta = dict(meta or {})
        label_stride = label_stride or feat_stride
        if label_stride != feat_stride:
            raise ValueError('label_stride must equal feat_stride')
        src = get_dataset(dataset)
        tgt = get_dataset(dataset_tgt) if dataset_tgt else src
        gpus = meta.get('gpus', '0')
        if samples is None:
            samples = parse_split_file(dataset, split, num_sel_source, num_source, seed_int, dataset_tgt,
                                       split_tgt, data_root, data_root_tgt, gpus)
        if not samples:
            raise DataError('no training samples (empty source selection and target list)')
        if len(samples) < batch_images:
            # An epoch would hold no batch: training would run no step yet save its epochs.
            raise DataError('%d training samples, fewer than one batch of %d (lower --batch-images or '
                            'raise the source/target portions)' % (len(samples), batch_images))
        self.samples = [Sample(*s) for s in samples]
        crop = make_divisible(crop_size, feat_stride)
        st = bool(dataset_tgt)  # self-training: GTA-5 source pinned to 1024 x 2048 as the reference
        max_src = tuple(meta.get('max_shape_src', src.max_shape_st_source if st else src.max_shape))
        max_tgt = tuple(meta.get('max_shape_tgt', tgt.max_shape))
        origin_src = origin_size or max(max_src)
        origin_tgt = origin_size_tgt or max(max_tgt)
        if cache_images is None:
            cache_images = meta.get('cache_images', False)
        self.audits = (LabelAudit(src), LabelAudit(tgt))
        self.reader = SampleReader(
            self.samples, (src.label2train, tgt.label2train), (max_src, max_tgt), (origin_src, origin_tgt),
            crop, feat_stride, tuple(scale_rate_range or (1., 1.)),
            mine_port=meta.get('mine_port', 0.), mine_id=meta.get('mine_id', ()),
            mine_id_priority=meta.get('mine_id_priority', ()),
            audits=self.audits, cache_images=bool(cache_images), rate_from_image=not st, targets=targets,
            normalizer=normalizer)
        self.targets = targets
        self.global_batch = batch_images
        self.batch_size = batch_images // num_parts
        self._part = part_index * self.batch_size
        self.crop_size = crop
        self.stride = feat_stride
        self._sampler = sampler
        self._data_name, self._label_name = data_name, label_name
        self._threads = max(1, int(prefetch_threads))
        self._kind = prefetcher or prefetcher_type
        if self._kind not in ('thread', 'process'):
            raise ValueError('--prefetcher is thread or process, not %r' % self._kind)
        self._rng = np.random.RandomState(seed) if seed is not None else np.random
        self._executor = None
        self._batches = []
        self._pending = collections.deque()
        self._cursor = 0

    # -- shapes ------------------------------------------------------------------------
    @property
    def batches_per_epoch(self):
        return len(self.samples) // self.global_batch

    @property
    def num_data(self):
        return len(self.samples)

    @property
    def provide_data(self):
        return [mx.io.DataDesc(self._data_name, (self.batch_size, 3, self.crop_size, self.crop_size))]

    @property
    def provide_label(self):
        n = (self.crop_size // self.stride) ** 2
        if self.targets is None:
            return [mx.io.DataDesc(self._label_name, (self.batch_size, n))]
        from issegm.method.crst import DOMAIN_NAME
        return [mx.io.DataDesc(self._label_name, self.targets.label_shape(self.batch_size, n)),
                mx.io.DataDesc(DOMAIN_NAME, (self.batch_size,))]

    # -- epochs ------------------------------------------------------------------------
    def _pool(self):
        if self._executor is None:
            if self._kind == 'thread':
                self._executor = concurrent.futures.ThreadPoolExecutor(self._threads)
            else:
                # fork: workers start at once and inherit the reader (no MXNet use in them).
                ctx = multiprocessing.get_context('fork' if 'fork' in multiprocessing.get_all_start_methods()
                                                  else 'spawn')
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    self._threads, mp_context=ctx, initializer=_init_worker, initargs=(self.reader,))
        return self._executor

    def _submit(self, indices, seeds):
        if self._kind == 'thread':
            return self._pool().submit(self.reader.batch_and_findings, indices, seeds)
        return self._pool().submit(_worker_batch, indices, seeds)

    def reset(self):
        """Start an epoch: a new permutation (``sampler='random'``) and per-sample seeds."""
        for fut in self._pending:
            fut.cancel()
        self._pending.clear()
        n = len(self.samples)
        order = self._rng.permutation(n) if self._sampler == 'random' else np.arange(n)
        seeds = self._rng.randint(0, 2 ** 31 - 1, size=n)
        usable = self.batches_per_epoch * self.global_batch
        self._batches = []
        for k in range(self._part, usable, self.global_batch):
            mine = slice(k, k + self.batch_size)  # this part's share of the global batch at k
            self._batches.append((order[mine].tolist(), seeds[mine].tolist()))
        self._cursor = 0
        self._fill()

    def _fill(self):
        depth = 2 * self._threads
        while len(self._pending) < depth and self._cursor + len(self._pending) < len(self._batches):
            self._pending.append(self._submit(*self._batches[self._cursor + len(self._pending)]))

    def next(self):
        if not self._batches:
            self.reset()
        if self._cursor >= len(self._batches):
            for audit in self.audits:  # one warning per run: only files not reported before
                audit.report(_logger)
            raise StopIteration
        findings, data, *labels = self._pending.popleft().result()
        for domain, finding in findings:
            self.audits[domain].add(finding)
        self._cursor += 1
        self._fill()
        return mx.io.DataBatch(data=[mx.nd.array(data)], label=[mx.nd.array(l) for l in labels], pad=0,
                               provide_data=self.provide_data, provide_label=self.provide_label)

    def epoch_indices(self):
        """Sample indices of the current epoch's batches, in order (for checks)."""
        return [i for b, _ in self._batches for i in b]

    def close(self):
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
