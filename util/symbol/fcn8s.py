"""FCN-8s on VGG16 (Long, Shelhamer, Darrell, "Fully Convolutional Networks"), CBST's FCN8s-VGG16.

The network is the released Caffe ``voc-fcn8s`` of the FCN authors, layer for
layer and with its layer names: VGG16's five blocks of 3x3 convolutions
(``conv1_1`` padded by 100) and 2x2/2 max pools, ``fc6`` as a 7x7
convolution and ``fc7`` as a 1x1 one (ReLU and dropout 0.5 after both),
``score_fr``; then twice a 4x4/2 deconvolution (``upscore2``,
``upscore_pool4``) summed with the 1x1 scores of ``pool4`` and ``pool3``
cropped to it, and a 16x16/8 deconvolution (``upscore8``) cropped to the
input. :func:`fcn8s_vgg16` returns that score map (logits, before any softmax)
at the input size.

CBST's paper only names "FCN8s-VGG16"; what it leaves open is decided here:

* Pooling rounds output sizes up (``pooling_convention='full'``), as Caffe's
  pooling in the original; with the input padding of 100 every crop then fits
  for any input size of at least one pixel (rounding down fails below ~26).
* The crop offsets are the original's, :data:`CROPS` (5, 9, 31): those of
  the prototxt that ``voc-fcn8s/net.py`` generates through Caffe's
  ``coord_map``; the tests derive them again from the layers' geometry.
* The net is the one-stage ("at-once") variant, ``voc-fcn8s-atonce``: CBST
  trains the FCN in one go from ImageNet weights, not through FCN-32s and
  FCN-16s, and for that the authors scale ``pool4`` by 0.01 and ``pool3`` by
  0.0001 before their score layers, so that the skips start on the scale of
  ``fc7``'s scores (:data:`SKIP_SCALES`; fixed factors, no parameters).
  ``skip_scale=False`` gives the staged net's unscaled skips.
* Score layers start at zero (Caffe's default filler, as in the released
  nets). The three deconvolutions are full (classes, classes, k, k) kernels,
  bilinear on the diagonal and fixed (lr_mult 0), as released, so that the
  released Caffe weights keep their shapes. Both initialisations are the
  variables' own (``init`` attribute), so any initialiser given to
  ``Module.init_params`` leaves them as they should be.
* Weights 1 / biases 2 (and no weight decay) for the learning-rate
  multipliers, as the FCN prototxt and :mod:`util.symbol.layers`.
* ImageNet weights are GluonCV's ``vgg16`` (:func:`params_from_gluoncv_vgg16`),
  which reads RGB scaled to [0, 1] and normalised by the ImageNet mean and
  standard deviation, the input of :data:`util.image.IMAGENET_FLOAT32`; Caffe's
  VGG16 reads mean-subtracted BGR in [0, 255], which this project's data
  pipeline does not produce.
"""
import collections
import os
import re

import mxnet as mx
import numpy as np

from util.mxutil import CheckpointError
from util.symbol.layers import conv, deconv, dropout, pool, relu

__all__ = ['Arch', 'ARCHS', 'CROPS', 'SKIP_SCALES', 'DiagonalBilinear', 'bilinear_kernels',
           'vgg16_features', 'fcn8s_fused', 'fcn8s_vgg16', 'fcn8s_stride8', 'STRIDE8_TAPS',
           'fcn8s_param_shapes', 'params_from_gluoncv_vgg16',
           'load_gluoncv_vgg16']

#: A VGG body: 3x3 convolutions in each block, their filters, width of fc6 and fc7.
Arch = collections.namedtuple('Arch', ['blocks', 'filters', 'fc'])

ARCHS = {
    'vgg16': Arch(blocks=(2, 2, 3, 3, 3), filters=(64, 128, 256, 512, 512), fc=4096),
}

INPUT_PAD = 100  # conv1_1's padding: fc6's 7x7 window fits any input
FC6_KERNEL = 7

#: Crop offsets (both spatial axes) of score_pool4 into upscore2, score_pool3
#: into upscore_pool4, and upscore8 into the input.
CROPS = {'score_pool4c': 5, 'score_pool3c': 9, 'score': 31}

#: Factors of the at-once net on the skips, before their score layers.
SKIP_SCALES = {'pool4': 0.01, 'pool3': 0.0001}

#: Deconvolutions: (name, kernel, stride).
UPSCORES = (('upscore2', 4, 2), ('upscore_pool4', 4, 2), ('upscore8', 16, 8))


def bilinear_kernels(channels, kernel):
    """Weight (channels, channels, kernel, kernel) upsampling each channel on its own, bilinearly.

    Parameters
    ----------
    channels : int
        Input and output channels of the deconvolution.
    kernel : int
        Kernel side; a stride-s deconvolution interpolates with kernel 2s.

    Returns
    -------
    numpy.ndarray
        float32 weight, zero off the channel diagonal.
    """
    factor = (kernel + 1) // 2
    center = factor - 1 if kernel % 2 == 1 else factor - 0.5
    ramp = 1 - np.abs(np.arange(kernel) - center) / factor
    weight = np.zeros((channels, channels, kernel, kernel), np.float32)
    weight[np.arange(channels), np.arange(channels)] = np.outer(ramp, ramp)
    return weight


@mx.init.register
class DiagonalBilinear(mx.init.Initializer):
    """Initialiser of the upsampling deconvolutions: :func:`bilinear_kernels` of their shape."""

    def _init_weight(self, _, arr):
        arr[:] = bilinear_kernels(arr.shape[0], arr.shape[2])


def _spec(arch):
    return ARCHS[arch] if isinstance(arch, str) else arch


def vgg16_features(data, arch='vgg16', input_pad=INPUT_PAD):
    """VGG16 body of the FCN: ``pool3``, ``pool4`` and ``drop7`` (fc7 after ReLU and dropout).

    Parameters
    ----------
    data : mx.sym.Symbol
        NCHW input.
    arch : str or Arch
        Key of :data:`ARCHS` or a table.
    input_pad : int
        Padding of ``conv1_1``; 1 gives the ImageNet classifier's geometry
        (for comparing with it), the FCN needs the default.

    Returns
    -------
    tuple of mx.sym.Symbol
        ``(pool3, pool4, drop7)``.
    """
    spec = _spec(arch)
    top, pools = data, []
    for block, (convs, filters) in enumerate(zip(spec.blocks, spec.filters), start=1):
        for i in range(1, convs + 1):
            name = '%d_%d' % (block, i)
            pad = input_pad if (block, i) == (1, 1) else 1
            top = relu(conv(top, 'conv' + name, filters, kernel=3, pad=pad), 'relu' + name)
        top = pool(top, 'pool%d' % block, 'max', global_pool=False, kernel=2, stride=2,
                   convention='full')
        pools.append(top)
    top = relu(conv(top, 'fc6', spec.fc, kernel=FC6_KERNEL, pad=0), 'relu6')
    top = dropout(top, 'drop6', p=0.5)
    top = relu(conv(top, 'fc7', spec.fc, kernel=1, pad=0), 'relu7')
    return pools[2], pools[3], dropout(top, 'drop7', p=0.5)


def _crop(data, like, name):
    """``data`` cut to the size of ``like`` from row and column ``CROPS[name]``, as Caffe's Crop."""
    offset = CROPS[name]
    shifted = mx.sym.slice(data, begin=(None, None, offset, offset), end=(None, None, None, None))
    return mx.sym.slice_like(shifted, like, axes=(2, 3), name=name)


def _score(data, name, classes):
    return conv(data, name, classes, kernel=1, pad=0, init=mx.init.Zero())


def _upscore(data, name, classes):
    kernel, stride = {n: (k, s) for n, k, s in UPSCORES}[name]
    return deconv(data, name, classes, kernel, stride, lr_mult=0., init=DiagonalBilinear())


def fcn8s_fused(data, classes, arch='vgg16', skip_scale=True):
    """FCN-8s's fused scores ``fuse_pool3`` at stride 8, before the final 8x deconvolution.

    Parameters
    ----------
    data : mx.sym.Symbol
        NCHW input.
    classes : int
        Number of classes.
    arch : str or Arch
        VGG body, :data:`ARCHS` key or table.
    skip_scale : bool
        Scale the pool4 / pool3 skips by :data:`SKIP_SCALES` (at-once net).

    Returns
    -------
    mx.sym.Symbol
        Cell ``i`` is centred on input pixel ``8 i - 23.5`` (see :func:`fcn8s_stride8`);
        the map reaches past the input on every side (conv1_1's padding).
    """
    pool3, pool4, drop7 = vgg16_features(data, arch)
    if skip_scale:  # what ``*`` builds, under the Caffe layers' names
        pool4 = mx.sym._internal._mul_scalar(pool4, scalar=SKIP_SCALES['pool4'], name='scale_pool4')
        pool3 = mx.sym._internal._mul_scalar(pool3, scalar=SKIP_SCALES['pool3'], name='scale_pool3')
    upscore2 = _upscore(_score(drop7, 'score_fr', classes), 'upscore2', classes)
    fuse_pool4 = upscore2 + _crop(_score(pool4, 'score_pool4', classes), upscore2, 'score_pool4c')
    upscore_pool4 = _upscore(fuse_pool4, 'upscore_pool4', classes)
    return mx.sym.elemwise_add(upscore_pool4, _crop(_score(pool3, 'score_pool3', classes), upscore_pool4,
                                                    'score_pool3c'), name='fuse_pool3')


def fcn8s_vgg16(classes, arch='vgg16', skip_scale=True):
    """FCN-8s score map (logits, N x ``classes`` x H x W) at the size of the input ``data``.

    Parameters
    ----------
    classes : int
        Number of classes.
    arch : str or Arch
        VGG body, :data:`ARCHS` key or table (narrow tables serve tests).
    skip_scale : bool
        Scale the pool4 / pool3 skips by :data:`SKIP_SCALES` (at-once net).

    Returns
    -------
    mx.sym.Symbol
        The ``score`` output; no loss head.
    """
    data = mx.sym.Variable('data')
    fuse_pool3 = fcn8s_fused(data, classes, arch, skip_scale)
    return _crop(_upscore(fuse_pool3, 'upscore8', classes), data, 'score')


#: (first cell, weight) pairs giving cell j of :func:`fcn8s_stride8` from ``fuse_pool3``.
#: ``upscore8`` (bilinear, kernel 16, stride 8) puts fuse cell i at output pixel
#: 8 i + 7.5, i.e. at input pixel 8 i + 7.5 - 31 (the final crop) = 8 i - 23.5;
#: the stride centre 8 j + 3.5 lies 3/8 of the way from cell j + 3 to cell j + 4.
STRIDE8_TAPS = ((3, 0.625), (4, 0.375))


def fcn8s_stride8(classes, arch='vgg16', skip_scale=True):
    """FCN-8s's scores at the stride centres of the input: (N, classes, ceil(H/8), ceil(W/8)).

    Cell ``j`` is what the full network's bilinear ``upscore8`` gives at
    input pixel ``8 j + 3.5`` (the centre of the pixels ``8 j .. 8 j + 7``),
    computed from ``fuse_pool3`` by the two taps of :data:`STRIDE8_TAPS` in
    each axis: the same numbers as :func:`fcn8s_vgg16` sampled between
    pixels, without running the 8x deconvolution, so a training or test
    engine that works at output stride 8 (and upsamples by itself) can run
    FCN-8s. ``upscore8_weight`` is not a parameter of this symbol.

    Parameters
    ----------
    classes : int
        Number of classes.
    arch : str or Arch
        VGG body, :data:`ARCHS` key or table.
    skip_scale : bool
        Scale the pool4 / pool3 skips by :data:`SKIP_SCALES` (at-once net).

    Returns
    -------
    mx.sym.Symbol
        The logits ``score8``.
    """
    data = mx.sym.Variable('data')
    fused = fcn8s_fused(data, classes, arch, skip_scale)
    # A map of ceil(H/8) x ceil(W/8) cells to cut to: the 3-channel input pooled (cheap).
    like = mx.sym.Pooling(data, kernel=(8, 8), stride=(8, 8), pool_type='max', pooling_convention='full',
                          name='stride8_grid')

    def cut(first_y, first_x):
        shifted = mx.sym.slice(fused, begin=(None, None, first_y, first_x), end=(None, None, None, None))
        return mx.sym.slice_like(shifted, like, axes=(2, 3))

    (a, wa), (b, wb) = STRIDE8_TAPS
    rows = [(a, wa), (b, wb)]
    terms = [cut(fy, fx) * (wy * wx) for fy, wy in rows for fx, wx in rows]
    return mx.sym.add_n(*terms, name='score8')


# ---------------------------------------------------------------- ImageNet weights

def fcn8s_param_shapes(classes, arch='vgg16'):
    """Every parameter of :func:`fcn8s_vgg16` and its shape, in the symbol's argument order."""
    sym = fcn8s_vgg16(classes, arch)
    shapes, _, _ = sym.infer_shape(data=(1, 3, 1, 1))
    return collections.OrderedDict((n, tuple(s)) for n, s in zip(sym.list_arguments(), shapes)
                                   if n != 'data')


_LEGACY_PREFIX = re.compile(r'^(vgg\d+_)(?:conv|dense)\d+_(?:weight|bias)$')


def _gluoncv_layout(spec):
    """``(our name, structural index, legacy name)`` of GluonCV VGG's convolutions and fc6/fc7.

    GluonCV's ``features`` holds conv, relu per convolution and a pool per
    block, then fc6, dropout, fc7, dropout; ``save_parameters`` names them by
    position (``features.31.weight``), the older ``collect_params().save`` by
    layer counters (``vgg0_conv12_weight``, ``vgg0_dense0_weight``).
    """
    rows, index, count = [], 0, 0
    for block, convs in enumerate(spec.blocks, start=1):
        for i in range(1, convs + 1):
            rows.append(('conv%d_%d' % (block, i), index, 'conv%d' % count))
            index, count = index + 2, count + 1
        index += 1
    return rows + [('fc6', index, 'dense0'), ('fc7', index + 2, 'dense1')]


def _gluoncv_keys(params, spec):
    """``{our parameter name: key in params}`` in the naming of ``params``; its classifier keys."""
    if any('.' in k for k in params):
        rows = [(ours, 'features.%d' % index) for ours, index, _ in _gluoncv_layout(spec)]
        top, sep = 'output', '.'
    else:  # legacy: the block's prefix (vgg0_, vgg1_...) before the layer counters
        prefix = next((m.group(1) for m in map(_LEGACY_PREFIX.match, params) if m), '')
        rows = [(ours, prefix + legacy) for ours, _, legacy in _gluoncv_layout(spec)]
        top, sep = prefix + 'dense2', '_'
    keys = {'%s_%s' % (ours, kind): theirs + sep + kind
            for ours, theirs in rows for kind in ('weight', 'bias')}
    return keys, (top + sep + 'weight', top + sep + 'bias')


def _gluoncv_shape(ours, shape):
    """Shape GluonCV stores for our parameter: fc6 and fc7 are dense, (out, in x k x k)."""
    if ours.startswith(('fc6', 'fc7')) and ours.endswith('_weight'):
        return (shape[0], int(np.prod(shape[1:])))
    return shape


def _listed(items, shown=4):
    more = len(items) - shown
    return ', '.join(items[:shown]) + (' and %d more' % more if more > 0 else '')


def params_from_gluoncv_vgg16(params, classes, arch='vgg16', source='the parameters'):
    """All parameters of :func:`fcn8s_vgg16` from GluonCV's ImageNet ``vgg16``.

    Convolutions are copied; the dense fc6 (fc, C*7*7) becomes a (fc, C, 7, 7)
    convolution (Gluon flattens NCHW channel-major, then rows, then columns:
    the order of a convolution kernel) and fc7 a (fc, fc, 1, 1) one; the
    ImageNet classifier (``output``) is dropped. The FCN's own layers are
    initialised as the original: score layers zero, deconvolutions
    :func:`bilinear_kernels`. Nothing is left for an initialiser.

    Parameters
    ----------
    params : dict
        Name to array (NDArray or numpy): what ``mx.nd.load`` reads from a file
        of ``net.save_parameters`` (``features.0.weight``...) or of the older
        ``net.collect_params().save`` (``vgg0_conv0_weight``...).
    classes : int
        Number of classes of the FCN.
    arch : str or Arch
        VGG body the parameters are of.
    source : str
        What ``params`` came from, for the error message.

    Returns
    -------
    dict
        Parameter name to float32 ``mx.nd.NDArray``, the ``arg_params`` of the FCN.

    Raises
    ------
    CheckpointError
        One line naming the missing, unexpected and mis-shaped keys.
    """
    spec = _spec(arch)
    shapes = fcn8s_param_shapes(classes, spec)
    keys, classifier = _gluoncv_keys(params, spec)
    arrays = {k: v.asnumpy() if hasattr(v, 'asnumpy') else np.asarray(v) for k, v in params.items()}
    missing = [key for key in keys.values() if key not in arrays]
    unexpected = sorted(set(arrays) - set(keys.values()) - set(classifier))
    misshaped = ['%s %s, expected %s' % (key, arrays[key].shape, _gluoncv_shape(ours, shapes[ours]))
                 for ours, key in keys.items()
                 if key in arrays and arrays[key].shape != _gluoncv_shape(ours, shapes[ours])]
    if missing or unexpected or misshaped:
        problems = [label + ' ' + _listed(items) for label, items in
                    (('missing', missing), ('unexpected', unexpected), ('mis-shaped', misshaped))
                    if items]
        raise CheckpointError("%s do not fit GluonCV's ImageNet VGG16 (FCN8s body): %s; save "
                              "gluoncv.model_zoo.get_model('vgg16', pretrained=True) with "
                              "save_parameters" % (source, '; '.join(problems)))
    out = {}
    for ours, shape in shapes.items():
        if ours in keys:
            value = arrays[keys[ours]].reshape(shape)
        elif ours.startswith('upscore'):
            value = bilinear_kernels(shape[0], shape[2])
        else:  # score layers
            value = np.zeros(shape, np.float32)
        out[ours] = mx.nd.array(value, dtype='float32')
    return out


def load_gluoncv_vgg16(path, classes, arch='vgg16'):
    """:func:`params_from_gluoncv_vgg16` of the file ``path`` (what ``save_parameters`` wrote)."""
    if not os.path.isfile(path):
        raise CheckpointError('ImageNet VGG16 weights not found: %s; save '
                              "gluoncv.model_zoo.get_model('vgg16', pretrained=True) there with "
                              'save_parameters' % path)
    try:
        params = mx.nd.load(path)
    except mx.base.MXNetError:
        raise CheckpointError('%s is not a readable MXNet parameter file; save '
                              "gluoncv.model_zoo.get_model('vgg16', pretrained=True) with "
                              'save_parameters' % path) from None
    if not isinstance(params, dict):
        raise CheckpointError('%s holds unnamed arrays, not the parameters of a Gluon network'
                              % path)
    return params_from_gluoncv_vgg16(params, classes, arch, source=path)
