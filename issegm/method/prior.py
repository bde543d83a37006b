"""Spatial prior builder: where each class tends to appear, learned from source labels.

CBST-SP multiplies the target predictions by a per-pixel class prior
``q_n(c)`` (``spatial_prior/{dataset}/prior_array.mat``, variable
``prior_array``, float32, classes x H x W; docs/behaviour.md section 6.5). The paper
(Zou et al., ECCV 2018, "self-training with spatial priors") builds it by
counting, on the source domain (GTA-5), how often each class occurs at each
pixel location, smoothed with a 70 x 70 Gaussian kernel. The released file is
not reproducible from the paper alone; the choices below are ours:

* Counting: each source label map is mapped to train ids (the dataset's
  ``label2train``) and resized with nearest neighbour to the prior's shape
  (default 1024 x 2048, the Cityscapes size the prior is multiplied with), then
  per-class hit counts are accumulated at that resolution. Memory is one
  int32 array classes x H x W whatever the number of images (streaming).
* Smoothing: a Gaussian of ``--kernel-size`` (70) pixels at the prior's
  resolution, with sigma = kernel / 6 so that the kernel spans +-3 sigma
  (the paper gives the window, not sigma), borders replicated (mode
  ``nearest``), applied to every class's count map. Smoothing counts
  (not ratios) keeps the estimate a weighted frequency.
* Normalisation (``--normalize``):
  ``class`` (default) -- each class map sums to 1 over the image
  (``q_n(c) = p(n | c)``): where class c tends to be, relative to its own
  spread. ``pixel`` -- divide by the smoothed count of labelled pixels, so at
  every location the prior is a class distribution (``p(c | n)``; locations
  with no labelled pixel within reach get 1/C). ``none`` -- smoothed hits per
  image.
  The default is ``class`` because ``pixel`` breaks class-balanced
  thresholds: a rare class's prior is then tiny everywhere, so the only
  pixels where it wins the prior-weighted argmax are those where every
  class's product is tiny; its threshold (the k-th largest of those maxima)
  comes out near 0, and in pass 2 (probability / threshold) the class floods
  the image. On the bundled miniature benchmark that labelled 69% of the
  target pixels at 19% accuracy in round 0 and CBST-SP fell to 5.6 mIoU;
  with ``class``, 20% at 85% and no collapse. Per-class scaling cancels in
  the thresholds' ratios and only reweights the argmax by location.

The command that builds it is ``issegm/spatial_prior.py``.
"""
import os

import numpy as np
import scipy.io
import scipy.ndimage

from util.image import read_label, resize
from util.io import atomic_path

__all__ = ['PriorAccumulator', 'build_prior', 'save_prior', 'load_prior', 'prior_path']

DEFAULT_SHAPE = (1024, 2048)
DEFAULT_KERNEL = 70
NORMALIZATIONS = ('pixel', 'class', 'none')


def prior_path(dataset, root='spatial_prior'):
    """``spatial_prior/{dataset}/prior_array.mat`` (the path solve_ST.py reads).

    Parameters
    ----------
    dataset : str
        The source dataset the prior was counted on.
    root : str
        The folder holding one subfolder per dataset.

    Returns
    -------
    str
        The path.
    """
    return os.path.join(root, dataset, 'prior_array.mat')


class PriorAccumulator(object):
    """Streaming per-pixel class counts at the prior's resolution.

    Parameters
    ----------
    num_classes : int
        Number of classes (train ids ``0..num_classes - 1``).
    shape : tuple of int
        The prior's (H, W).
    """

    def __init__(self, num_classes, shape=DEFAULT_SHAPE):
        self.num_classes = int(num_classes)
        self.shape = (int(shape[0]), int(shape[1]))
        self.counts = np.zeros((self.num_classes,) + self.shape, np.int32)
        self.num_images = 0

    def add(self, train_ids):
        """Add one train-id map.

        Parameters
        ----------
        train_ids : array_like
            The 2-D train-id map, any size (resized nearest to the prior shape; 255 ignored).

        Raises
        ------
        ValueError
            When the map is not 2-D.
        """
        lab = np.asarray(train_ids, dtype=np.uint8)
        if lab.ndim != 2:
            raise ValueError('label map must be 2-D, got shape %s' % (lab.shape,))
        lab = resize(lab, self.shape, nearest=True)
        present = np.nonzero(np.bincount(lab.ravel(), minlength=256)[:self.num_classes])[0]
        for c in present:  # only the classes in this image: ~5-15 of 19 passes
            self.counts[c] += lab == c
        self.num_images += 1

    def finish(self, kernel_size=DEFAULT_KERNEL, sigma=None, normalize='class'):
        """Smooth and normalise the counts.

        Parameters
        ----------
        kernel_size : int
            Gaussian window in pixels (:func:`smooth_map`).
        sigma : float, optional
            Gaussian sigma; ``kernel_size / 6`` by default.
        normalize : {'class', 'pixel', 'none'}
            The normalisation (see the module's docstring).

        Returns
        -------
        numpy.ndarray
            The prior, float32 (classes, H, W).

        Raises
        ------
        ValueError
            For an unknown ``normalize`` or when no label map was added.
        """
        if normalize not in NORMALIZATIONS:
            raise ValueError('normalize must be one of %s, got %r' % (NORMALIZATIONS, normalize))
        if self.num_images == 0:
            raise ValueError('no label maps were added; the prior would be empty')
        smooth = np.empty(self.counts.shape, np.float32)
        for c in range(self.num_classes):
            smooth[c] = smooth_map(self.counts[c], kernel_size, sigma)
        if normalize == 'pixel':
            total = smooth.sum(0)
            ok = total > 0
            smooth[:, ok] /= total[ok]
            smooth[:, ~ok] = 1.0 / self.num_classes
        elif normalize == 'class':
            for c in range(self.num_classes):
                s = smooth[c].sum(dtype=np.float64)
                smooth[c] = smooth[c] / s if s > 0 else 1.0 / smooth[c].size
        else:
            smooth /= self.num_images
        return smooth


def smooth_map(counts, kernel_size=DEFAULT_KERNEL, sigma=None):
    """Gaussian smoothing of one map.

    Parameters
    ----------
    counts : array_like
        The 2-D map.
    kernel_size : int
        The window in pixels (the kernel radius is half of it); ``None`` or <= 1 means none.
    sigma : float, optional
        Gaussian sigma; ``kernel_size / 6`` by default.

    Returns
    -------
    numpy.ndarray
        The smoothed map (float32, no negative value).
    """
    counts = np.asarray(counts, np.float32)
    if kernel_size is None or kernel_size <= 1:
        return counts.copy()
    sigma = float(sigma) if sigma else kernel_size / 6.0
    # truncate so that the kernel radius is half the window, as a k x k filter.
    truncate = (kernel_size / 2.0) / sigma
    out = scipy.ndimage.gaussian_filter(counts, sigma, mode='nearest', truncate=truncate)
    return np.maximum(out, 0, out=out)


def build_prior(labels, label2train, num_classes, shape=DEFAULT_SHAPE, kernel_size=DEFAULT_KERNEL,
                sigma=None, normalize='class', progress=None, audit=None):
    """Prior from an iterable of label-id maps or label file paths.

    Parameters
    ----------
    labels : iterable
        Label-id maps or label file paths.
    label2train : array_like
        uint8[256] map from the files' label ids to train ids (unknown ids to 255: not counted).
    num_classes : int
        Number of classes.
    shape : tuple of int
        The prior's (H, W).
    kernel_size : int
        Gaussian window in pixels.
    sigma : float, optional
        Gaussian sigma; ``kernel_size / 6`` by default.
    normalize : {'class', 'pixel', 'none'}
        The normalisation.
    progress : callable, optional
        ``progress(i)`` is called after each image.
    audit : issegm.storage.datasets.LabelAudit, optional
        Notes each file's unknown ids.

    Returns
    -------
    numpy.ndarray
        The prior, float32 (classes, H, W).
    """
    acc = PriorAccumulator(num_classes, shape)
    l2t = np.asarray(label2train, np.uint8)
    for i, lab in enumerate(labels):
        if isinstance(lab, str):
            path, lab = lab, read_label(lab)
            if audit is not None:
                audit.check(path, lab)
        acc.add(l2t[lab])
        if progress is not None:
            progress(i)
    return acc.finish(kernel_size, sigma, normalize)


#: The .mat header's free text (116 bytes). scipy writes the time of writing there, which made
#: every rebuild of the same prior a different file, and so "other settings" to a resumed run.
MAT_HEADER = b'MATLAB 5.0 MAT-file, written by CBST-MX issegm/spatial_prior.py'.ljust(116)


def save_prior(path, prior):
    """Write ``prior_array`` (float32) to a .mat file atomically; the same prior gives the same bytes.

    Parameters
    ----------
    path : str
        The .mat file.
    prior : array_like
        The (classes, H, W) prior.

    Returns
    -------
    str
        ``path``.
    """
    prior = np.ascontiguousarray(prior, dtype=np.float32)
    with atomic_path(path) as tmp:
        # do_compression: the smooth maps compress well; loadmat reads either.
        scipy.io.savemat(tmp, {'prior_array': prior}, do_compression=True)
        with open(tmp, 'r+b') as f:
            f.write(MAT_HEADER)
    return path


def load_prior(dataset, num_classes, root='spatial_prior'):
    """``spatial_prior/{dataset}/prior_array.mat`` (``prior_array``) as float32 (classes, H, W).

    Parameters
    ----------
    dataset : str
        The SOURCE dataset the prior was counted on.
    num_classes : int
        The class count the prior must have.
    root : str
        The folder holding one subfolder per dataset.

    Returns
    -------
    numpy.ndarray
        The prior.

    Raises
    ------
    FileNotFoundError
        When the file is missing (one line).
    ValueError
        When the file is unreadable, lacks ``prior_array`` or is for another class count (one line).
    """
    path = prior_path(dataset, root)
    if not os.path.isfile(path):
        raise FileNotFoundError('--with-prior True needs %s (build it with issegm/spatial_prior.py or '
                                'download it; the folder is named after the SOURCE dataset)' % path)
    try:
        prior = scipy.io.loadmat(path)['prior_array'].astype(np.float32)
    except KeyError:
        raise ValueError('%s holds no variable prior_array (the name solve_ST reads); rebuild it with '
                         'issegm/spatial_prior.py' % path) from None
    except Exception as exc:
        raise ValueError('%s is not a readable .mat file (%s); rebuild it with issegm/spatial_prior.py or '
                         'download it again' % (path, exc)) from None
    if prior.ndim != 3 or prior.shape[0] != num_classes:
        raise ValueError('%s: prior_array has shape %s, expected %d x H x W' % (path, prior.shape, num_classes))
    return prior
