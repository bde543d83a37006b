"""CRST's DeepLab-v2 (ResNet-101, output stride 8) and its weights from PyTorch or GluonCV.

The symbol reproduces CRST's ``deeplab/model.py`` ``Res_Deeplab`` in eval
mode: a Caffe-style ResNet (stride on a bottleneck's first 1x1 convolution,
max-pool in ceil mode), layer3 and layer4 dilated by 2 and 4 instead of
strided, and the ASPP-like classifier ``layer5``: four 3x3 convolutions with
dilation 6, 12, 18, 24 whose outputs are summed. The output is the raw logits
at 1/8 of the input (no softmax, no upsampling); the input ``data`` is an RGB
NCHW float32 image normalised with the ImageNet mean and std.

Parameter names follow CRST's ``state_dict`` keys one to one (see
:func:`key_table`): the dots become underscores, and a BatchNorm's
``weight``/``bias``/``running_mean``/``running_var`` become MXNet's
``gamma``/``beta`` (arguments) and ``moving_mean``/``moving_var`` (auxiliary
states)::

    conv1.weight                          conv1_weight
    bn1.running_var                       bn1_moving_var
    layer3.5.conv2.weight                 layer3_5_conv2_weight
    layer3.5.bn2.weight                   layer3_5_bn2_gamma
    layer2.0.downsample.1.bias            layer2_0_downsample_1_beta
    layer5.conv2d_list.3.bias             layer5_conv2d_list_3_bias

``num_batches_tracked`` has no counterpart. CRST's training scheme is carried
as in :mod:`util.symbol.layers`: BN statistics frozen (``use_global_stats``),
``layer5`` weights and biases at 10x the learning rate (``lr_mult`` 10, weight
decay on both); BN gamma/beta are not trained in CRST (``requires_grad =
False``): pass :func:`frozen_param_names` to the trainer as fixed parameters.
"""
import collections
import json
import re

import mxnet as mx
import numpy as np

from util.mxutil import CheckpointError
from util.symbol.layers import bn, conv, relu

__all__ = ['Layer', 'LAYERS', 'DEPTHS', 'RATES', 'BN_EPS', 'Key', 'resnet_features', 'deeplab_v2',
           'deeplab_v2_centred', 'CENTRE_TAPS', 'frozen_param_names', 'key_table', 'params_from_state_dict',
           'params_from_gluoncv_resnet101_v1']

#: One residual layer: bottleneck width, stride of its first block, dilation of its 3x3 convs.
Layer = collections.namedtuple('Layer', ['planes', 'stride', 'dilation'])

#: CRST's layers 1-4 (model.py ``_make_layer`` calls): output stride 8.
LAYERS = (
    Layer(64, 1, 1),
    Layer(128, 2, 1),
    Layer(256, 1, 2),
    Layer(512, 1, 4),
)

#: Bottlenecks per layer for each depth (CRST uses 101).
DEPTHS = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}

#: Dilation (= padding) of the classifier's four 3x3 convolutions.
RATES = (6, 12, 18, 24)

#: PyTorch's BatchNorm2d default, with which CRST's weights were trained.
BN_EPS = 1e-5

_EXPANSION = 4  # a bottleneck's output has 4x its width
_CLASSIFIER_ATTRS = {'lr_mult': 10.}  # crst_seg.py get_10x_lr_params


def _bottleneck(data, name, planes, stride, dilation, downsample):
    """CRST's Bottleneck: 1x1 (stride) -> 3x3 (dilation) -> 1x1 to 4x ``planes``, plus shortcut."""
    top = relu(bn(conv(data, name + '_conv1', planes, kernel=1, stride=stride, no_bias=True),
                  name + '_bn1', eps=BN_EPS), name + '_relu1')
    top = relu(bn(conv(top, name + '_conv2', planes, kernel=3, dilate=dilation, no_bias=True),
                  name + '_bn2', eps=BN_EPS), name + '_relu2')
    top = bn(conv(top, name + '_conv3', planes * _EXPANSION, kernel=1, no_bias=True),
             name + '_bn3', eps=BN_EPS)
    shortcut = data
    if downsample:
        shortcut = bn(conv(data, name + '_downsample_0', planes * _EXPANSION, kernel=1,
                           stride=stride, no_bias=True), name + '_downsample_1', eps=BN_EPS)
    return relu(top + shortcut, name + '_relu')


def resnet_features(data, depth=101, layers=LAYERS):
    """The backbone up to ``layer4`` (2048 channels) for the ``layers`` table.

    Parameters
    ----------
    data : mx.sym.Symbol
        The NCHW input.
    depth : int
        A key of :data:`DEPTHS`.
    layers : sequence of Layer
        Width, stride and dilation of layers 1-4; :data:`LAYERS` is CRST's.

    Returns
    -------
    mx.sym.Symbol
        The output of the last block, ``layer4_{n}_relu``.
    """
    if depth not in DEPTHS:
        raise ValueError('depth must be one of %s, not %r' % (sorted(DEPTHS), depth))
    top = relu(bn(conv(data, 'conv1', 64, kernel=7, stride=2, pad=3, no_bias=True), 'bn1',
                  eps=BN_EPS), 'relu1')
    # 'full' is PyTorch's ceil_mode=True (model.py:216).
    top = mx.sym.Pooling(top, name='pool1', kernel=(3, 3), stride=(2, 2), pad=(1, 1),
                         pool_type='max', pooling_convention='full')
    for number, (layer, blocks) in enumerate(zip(layers, DEPTHS[depth]), start=1):
        for i in range(blocks):
            # Every first block has a downsample shortcut (model.py:235).
            top = _bottleneck(top, 'layer%d_%d' % (number, i), layer.planes,
                              layer.stride if i == 0 else 1, layer.dilation, downsample=i == 0)
    return top


def deeplab_v2(classes, depth=101):
    """CRST's DeepLab-v2: the raw logits ``layer5`` (``classes`` channels) at stride 8.

    Parameters
    ----------
    classes : int
        Output channels (19 for GTA5/Cityscapes, 16 for SYNTHIA).
    depth : int
        ResNet depth, a key of :data:`DEPTHS`.

    Returns
    -------
    mx.sym.Symbol
        Logits of shape (N, classes, H8, W8) for ``data`` of shape (N, 3, H, W).
    """
    feat = resnet_features(mx.sym.Variable('data'), depth)
    scores = [conv(feat, 'layer5_conv2d_list_%d' % k, classes, kernel=3, dilate=rate, pad=rate,
                   attrs=_CLASSIFIER_ATTRS) for k, rate in enumerate(RATES)]
    return mx.sym.add_n(*scores, name='layer5')


#: (offset, weight) pairs giving cell j of :func:`deeplab_v2_centred` from the logits: cell i
#: of :func:`deeplab_v2` is centred on input pixel 8 i (conv1, the pool and layer2's
#: stride-2 1x1 convolution are centred), so pixel 8 j + 3.5 lies 3.5/8 of the way to i = j + 1.
CENTRE_TAPS = ((0, 0.5625), (1, 0.4375))


def deeplab_v2_centred(classes, depth=101):
    """:func:`deeplab_v2`'s logits at the stride centres: (N, classes, ceil(H/8), ceil(W/8)).

    Cell ``j`` is the bilinear interpolation of the logits at input pixel
    ``8 j + 3.5`` (the centre of pixels ``8 j .. 8 j + 7``), by the taps
    :data:`CENTRE_TAPS` in each axis; the last row and column are repeated
    for the taps past the edge. CRST upsamples the logits bilinearly too
    (``align_corners=True``, which puts cell i at about 8 i as well). This
    is the grid of an engine that labels crops at the stride centres and
    upsamples the maps by itself; the plain network gives one cell more than
    H/8 for H a multiple of 8 (ceil-mode pooling).

    Parameters
    ----------
    classes : int
        Output channels.
    depth : int
        ResNet depth, a key of :data:`DEPTHS`.

    Returns
    -------
    mx.sym.Symbol
        The logits ``score8``; the parameters are those of :func:`deeplab_v2`.
    """
    logits = deeplab_v2(classes, depth)
    data = logits.get_internals()['data']
    padded = mx.sym.pad(logits, mode='edge', pad_width=(0, 0, 0, 0, 0, 1, 0, 1))
    grid = mx.sym.Pooling(data, kernel=(8, 8), stride=(8, 8), pool_type='max', pooling_convention='full',
                          name='stride8_grid')

    def cut(first_y, first_x):
        shifted = mx.sym.slice(padded, begin=(None, None, first_y, first_x), end=(None, None, None, None))
        return mx.sym.slice_like(shifted, grid, axes=(2, 3))

    terms = [cut(fy, fx) * (wy * wx) for fy, wy in CENTRE_TAPS for fx, wx in CENTRE_TAPS]
    return mx.sym.add_n(*terms, name='score8')


def frozen_param_names(symbol):
    """Names of the BN gammas and betas of ``symbol``: CRST never trains them.

    Parameters
    ----------
    symbol : mx.sym.Symbol
        A network built with :mod:`util.symbol.layers` BatchNorms.

    Returns
    -------
    list of str
        For ``Module(fixed_param_names=...)``, in argument order.
    """
    nodes = json.loads(symbol.tojson())['nodes']
    frozen = {nodes[i]['name'] for n in nodes if n['op'] == 'BatchNorm'
              for i, _, _ in n['inputs'][1:3]}  # inputs: data, gamma, beta
    return [name for name in symbol.list_arguments() if name in frozen]


#: One parameter under its three names: CRST's key, GluonCV's resnet_v1 name
#: (None for the classifier), MXNet's name; ``kind`` is 'arg' or 'aux'.
Key = collections.namedtuple('Key', ['crst', 'gluoncv', 'mxnet', 'kind'])

# Per kind of module: (CRST leaf, GluonCV leaf, MXNet suffix, arg/aux).
_LEAVES = {
    'conv': (('weight', 'weight', 'weight', 'arg'),),
    'bn': (('weight', 'gamma', 'gamma', 'arg'),
           ('bias', 'beta', 'beta', 'arg'),
           ('running_mean', 'running_mean', 'moving_mean', 'aux'),
           ('running_var', 'running_var', 'moving_var', 'aux')),
    'cls': (('weight', None, 'weight', 'arg'),
            ('bias', None, 'bias', 'arg')),
}

# A bottleneck's modules: CRST name, GluonCV BottleneckV1 name, kind.
_BOTTLENECK = (
    ('conv1', 'body.0', 'conv'),
    ('bn1', 'body.1', 'bn'),
    ('conv2', 'body.3', 'conv'),
    ('bn2', 'body.4', 'bn'),
    ('conv3', 'body.6', 'conv'),
    ('bn3', 'body.7', 'bn'),
)
_DOWNSAMPLE = (
    ('downsample.0', 'downsample.0', 'conv'),
    ('downsample.1', 'downsample.1', 'bn'),
)


def _modules(depth):
    """(CRST module, GluonCV module, kind) in ``state_dict`` order."""
    yield 'conv1', 'features.0', 'conv'
    yield 'bn1', 'features.1', 'bn'
    for number, blocks in enumerate(DEPTHS[depth], start=1):
        for i in range(blocks):
            # GluonCV: features.0-3 are the stem, features.4-7 layers 1-4.
            crst, gluon = 'layer%d.%d' % (number, i), 'features.%d.%d' % (number + 3, i)
            for sub_crst, sub_gluon, kind in _BOTTLENECK + (_DOWNSAMPLE if i == 0 else ()):
                yield crst + '.' + sub_crst, gluon + '.' + sub_gluon, kind
    for k in range(len(RATES)):
        yield 'layer5.conv2d_list.%d' % k, None, 'cls'


def key_table(depth=101):
    """Every parameter of :func:`deeplab_v2` under CRST's, GluonCV's and MXNet's names.

    Parameters
    ----------
    depth : int
        ResNet depth, a key of :data:`DEPTHS`.

    Returns
    -------
    list of Key
        In CRST's ``state_dict`` order (``num_batches_tracked`` left out).
    """
    rows = []
    for crst, gluon, kind in _modules(depth):
        for crst_leaf, gluon_leaf, mx_leaf, arg_or_aux in _LEAVES[kind]:
            rows.append(Key(crst + '.' + crst_leaf, gluon_leaf and gluon + '.' + gluon_leaf,
                            crst.replace('.', '_') + '_' + mx_leaf, arg_or_aux))
    return rows


def _shapes(classes, depth):
    """{MXNet name: shape} of every parameter of :func:`deeplab_v2`."""
    sym = deeplab_v2(classes, depth)
    args, _, aux = sym.infer_shape(data=(1, 3, 64, 64))
    shapes = dict(zip(sym.list_arguments(), args))
    shapes.update(zip(sym.list_auxiliary_states(), aux))
    del shapes['data']
    return {name: tuple(shape) for name, shape in shapes.items()}


def _as_numpy(value):
    return value.asnumpy() if hasattr(value, 'asnumpy') else np.asarray(value)


def _listed(what, items):
    more = ' and %d more' % (len(items) - 4) if len(items) > 4 else ''
    return '%d %s: %s%s' % (len(items), what, ', '.join(items[:4]), more)


def _convert(values, names, shapes, source, network, fix):
    """``(arg_params, aux_params)`` from ``values`` keyed as ``names``, or one CheckpointError.

    ``names`` maps a source key to ``(MXNet name, 'arg' or 'aux')``.
    """
    arrays = {key: _as_numpy(value) for key, value in values.items()}
    missing = [key for key in names if key not in arrays]
    unexpected = [key for key in arrays if key not in names]
    wrong = ['%s (file %s, network %s)' % (key, 'x'.join(map(str, arrays[key].shape)) or 'scalar',
                                            'x'.join(map(str, shapes[names[key][0]])))
             for key in names if key in arrays and arrays[key].shape != shapes[names[key][0]]]
    problems = [_listed(what, items) for what, items in (
        ('missing key(s)', missing), ('unexpected key(s)', unexpected),
        ('mis-shaped key(s)', wrong)) if items]
    if problems:
        raise CheckpointError('%s does not fit %s: %s. %s'
                              % (source, network, '; '.join(problems), fix))
    params = {'arg': {}, 'aux': {}}
    for key, (name, kind) in names.items():
        params[kind][name] = mx.nd.array(arrays[key], dtype=np.float32)
    return params['arg'], params['aux']


def _strip(key):
    """CRST's key without a DataParallel ``module.`` or MS_Deeplab ``Scale.`` prefix."""
    for prefix in ('module.', 'Scale.'):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def _classes_of(state_dict):
    for k in range(len(RATES)):
        for leaf in ('weight', 'bias'):
            key = 'layer5.conv2d_list.%d.%s' % (k, leaf)
            if key in state_dict:
                return int(_as_numpy(state_dict[key]).shape[0])
    return None


def params_from_state_dict(state_dict, classes=None, depth=101, source='the state dict'):
    """MXNet parameters of :func:`deeplab_v2` from a CRST ``Res_Deeplab`` state dict.

    Parameters
    ----------
    state_dict : dict
        CRST key -> array (numpy, NDArray or anything ``np.asarray`` takes);
        ``num_batches_tracked`` entries are ignored, a ``module.``/``Scale.``
        prefix is stripped.
    classes : int, optional
        Expected class count; by default that of the classifier weights.
    depth : int
        ResNet depth, a key of :data:`DEPTHS`.
    source : str
        What the state dict came from (a path), for the error message.

    Returns
    -------
    arg_params, aux_params : dict of str to mx.nd.NDArray
        float32, on the CPU, named as in :func:`key_table`.

    Raises
    ------
    CheckpointError
        One line naming the first few missing, unexpected and mis-shaped keys.
    """
    values = {_strip(key): value for key, value in state_dict.items()
              if not key.endswith('.num_batches_tracked')}
    classes = classes or _classes_of(values) or 19
    shapes = _shapes(classes, depth)  # first: it rejects an unknown depth
    names = {row.crst: (row.mxnet, row.kind) for row in key_table(depth)}
    return _convert(values, names, shapes, source,
                    'DeepLab-v2 ResNet-%d with %d classes' % (depth, classes),
                    'Expected a state dict of CRST\'s Res_Deeplab (deeplab/model.py) of that '
                    'depth and class count')


_BODY_BIAS = re.compile(r'^(.*\.body\.)(\d+)\.bias$')


def _fold_conv_biases(params):
    """GluonCV's V1 1x1 convs have biases; fold each into the next BN's running mean.

    With frozen statistics BN(x + b) with mean m is exactly BN(x) with mean
    m - b (and batch statistics would cancel b anyway). A bias without a
    matching BN is left in place, to be reported as unexpected.
    """
    params = dict(params)
    for key in [k for k in params if _BODY_BIAS.match(k)]:
        head, index = _BODY_BIAS.match(key).groups()
        mean_key = '%s%d.running_mean' % (head, int(index) + 1)
        bias, mean = _as_numpy(params[key]), params.get(mean_key)
        if mean is not None and _as_numpy(mean).shape == bias.shape:
            params[mean_key] = _as_numpy(mean) - bias
            del params[key]
    return params


def params_from_gluoncv_resnet101_v1(params, classes, depth=101, source='the GluonCV parameters'):
    """The backbone's MXNet parameters from GluonCV's ImageNet ``resnet101_v1``.

    GluonCV's ``BottleneckV1`` is CRST's Bottleneck (stride on the first 1x1
    conv, BN eps 1e-5); its two 1x1 convs have biases, folded into the BN that
    follows (see :func:`_fold_conv_biases`). Its ImageNet input is CRST's (RGB,
    ImageNet mean/std). The classifier ``output.*`` is dropped; ``layer5`` is
    left to the caller's initialiser.

    Parameters
    ----------
    params : dict
        What ``mx.nd.load`` returns for a file of ``net.save_parameters``
        (``features.0.weight``, ``features.5.0.body.1.gamma``, ...).
    classes : int
        Class count of the DeepLab-v2 network to initialise.
    depth : int
        ResNet depth (GluonCV's ``resnet{50,152}_v1`` map the same way).
    source : str
        What the parameters came from (a path), for the error message.

    Returns
    -------
    arg_params, aux_params : dict of str to mx.nd.NDArray
        The backbone, named as in :func:`key_table`.
    missing : list of str
        The ``layer5`` parameter names, to be initialised.

    Raises
    ------
    CheckpointError
        One line naming the first few missing, unexpected and mis-shaped names.
    """
    values = {key: value for key, value in _fold_conv_biases(params).items()
              if not key.startswith('output.')}
    shapes = _shapes(classes, depth)  # first: it rejects an unknown depth
    rows = key_table(depth)
    names = {row.gluoncv: (row.mxnet, row.kind) for row in rows if row.gluoncv}
    arg_params, aux_params = _convert(
        values, names, shapes, source, 'ResNet-%d (GluonCV resnet_v1)' % depth,
        'Expected the save_parameters file of gluoncv.model_zoo resnet%d_v1' % depth)
    return arg_params, aux_params, [row.mxnet for row in rows if not row.gluoncv]
