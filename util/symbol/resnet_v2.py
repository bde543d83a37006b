"""ResNet-38 family (Wu, Shen, van den Hengel, "Wider or Deeper"), pre-activation.

The network reads like its table: :data:`ARCHS` lists, for each level, the
number of blocks, the filters and kernels of a block, and its dropout. One
builder turns a table into a symbol whose parameter names are those of the
released checkpoints. ``a1`` is the published model A1 (124 M parameters for
19 classes); ``t1`` is a thin, shallow member of the same family for CPU work
(the bundled miniature benchmark and tests), built by the same code.

Output stride 8/16/32 is reached as in the reference: the first block of a
level either downsamples (stride 2) or, past the wanted resolution, keeps the
stride at 1 and doubles the dilation of the convolutions after its first.
"""
import collections

import mxnet as mx

from util.symbol.layers import bn, conv, dropout, fc, pool, relu, softmax_out

__all__ = ['ARCHS', 'Level', 'Arch', 'rna_feat', 'fcrna_model', 'rna_model',
           'fcrna_model_a1', 'rna_model_a1']

#: One level of residual blocks: how many, each block's filters and kernels,
#: and the dropout before a block's last convolution (fully convolutional
#: network only).
Level = collections.namedtuple('Level', ['blocks', 'filters', 'kernels', 'dropout'])

#: A network: level-1 filters, levels 2..7, channels of the FCN head's ``conv6a``.
Arch = collections.namedtuple('Arch', ['conv1', 'levels', 'head'])

ARCHS = {
    # Model A1, as published.
    'a1': Arch(conv1=64, head=512, levels=(
        Level(3, (128, 128), (3, 3), 0.),              # level 2
        Level(3, (256, 256), (3, 3), 0.),              # level 3
        Level(6, (512, 512), (3, 3), 0.),              # level 4
        Level(3, (512, 1024), (3, 3), 0.),             # level 5
        Level(1, (512, 1024, 2048), (1, 3, 1), 0.3),   # level 6
        Level(1, (1024, 2048, 4096), (1, 3, 1), 0.5),  # level 7
    )),
    # Thin variant for CPUs: one block a level, 1/16 of the widths.
    't1': Arch(conv1=16, head=64, levels=(
        Level(1, (16, 16), (3, 3), 0.),
        Level(1, (32, 32), (3, 3), 0.),
        Level(1, (48, 48), (3, 3), 0.),
        Level(1, (48, 64), (3, 3), 0.),
        Level(1, (32, 64, 128), (1, 3, 1), 0.3),
        Level(1, (64, 128, 256), (1, 3, 1), 0.5),
    )),
}

# How the first block of levels 2..6 reaches each output stride: 's' strides
# by 2, 'd' keeps stride 1 and doubles the dilation. Level 7 never downsamples.
_FIRST_BLOCK_MODES = {
    8: ('s', 's', 's', 'd', 'd'),
    16: ('s', 's', 's', 's', 'd'),
    32: ('s', 's', 's', 's', 's'),
}


def _conv_stage(data, name, filters, kernel, stride=1, dilate=1, dropout_rate=0.):
    """BN -> ReLU -> (dropout) -> conv; returns the ReLU output too (projection input)."""
    act = relu(bn(data, 'bn' + name), 'res%s_relu' % name)
    top = dropout(act, 'res%s_do' % name, p=dropout_rate) if dropout_rate > 0 else act
    return act, conv(top, 'res' + name, filters, kernel=kernel, stride=stride, dilate=dilate,
                     no_bias=True)


def _res_block(data, name, level, dilate, mode=None, dropout_rate=0.):
    """One pre-activation residual block.

    ``mode`` is set on a level's first block, which has a projection shortcut
    (1x1 conv on the block input after its first BN -> ReLU): ``'s'`` strides
    by 2, ``'d'`` dilates the convolutions after the first by 2x, ``'k'`` keeps
    both. Other blocks have an identity shortcut on the raw input.
    """
    stride = 2 if mode == 's' else 1
    later_dilate = dilate * 2 if mode == 'd' else dilate
    last = len(level.filters) - 1
    act, top = _conv_stage(data, '%s_branch2a' % name, level.filters[0], level.kernels[0],
                           stride=stride, dilate=dilate)
    for i in range(1, last + 1):
        _, top = _conv_stage(top, '%s_branch2b%d' % (name, i), level.filters[i], level.kernels[i],
                             dilate=later_dilate, dropout_rate=dropout_rate if i == last else 0.)
    if mode is None:
        return data + top
    # Shortcut first in the sum: argument order of the released files.
    shortcut = conv(act, 'res%s_branch1' % name, level.filters[-1], kernel=1, stride=stride,
                    no_bias=True)
    return shortcut + top


def rna_feat(arch='a1', inv_resolution=32, dropout=False):
    """Features of the network (``relu7``).

    Parameters
    ----------
    arch : str or Arch
        A key of :data:`ARCHS`, or a table.
    inv_resolution : int
        Output stride: 8, 16 or 32.
    dropout : bool
        Use the levels' dropout.

    Returns
    -------
    mxnet.symbol.Symbol
        ``relu7``.

    Raises
    ------
    ValueError
        For another output stride.
    """
    if inv_resolution not in _FIRST_BLOCK_MODES:
        raise ValueError('output stride must be 8, 16 or 32, not %r' % (inv_resolution,))
    spec = ARCHS[arch] if isinstance(arch, str) else arch
    modes = _FIRST_BLOCK_MODES[inv_resolution] + ('k',)
    top = conv(mx.sym.Variable('data'), 'conv1a', spec.conv1, kernel=3, no_bias=True)
    dilate = 1
    for number, (level, mode) in enumerate(zip(spec.levels, modes), start=2):
        rate = level.dropout if dropout else 0.
        top = _res_block(top, '%da' % number, level, dilate, mode=mode, dropout_rate=rate)
        if mode == 'd':
            dilate *= 2
        for b in range(1, level.blocks):
            top = _res_block(top, '%db%d' % (number, b), level, dilate, dropout_rate=rate)
    return relu(bn(top, 'bn7'), 'relu7')


def fcrna_model(arch, classes, inv_resolution=8):
    """Fully convolutional segmentation network: features, ``conv6a`` and ``linear{classes}``.

    The head is two 3x3 convolutions with dilation 12.

    Parameters
    ----------
    arch : str or Arch
        A key of :data:`ARCHS`, or a table.
    classes : int
        Number of classes.
    inv_resolution : int
        Output stride: 8, 16 or 32.

    Returns
    -------
    mxnet.symbol.Symbol
        The ``softmax`` SoftmaxOutput over classes at 1/``inv_resolution`` of the input.
    """
    spec = ARCHS[arch] if isinstance(arch, str) else arch
    feat = rna_feat(spec, inv_resolution, dropout=True)
    top = relu(conv(feat, 'conv6a', spec.head, kernel=3, dilate=12), 'conv6a_relu')
    scores = conv(top, 'linear%d' % classes, classes, kernel=3, dilate=12)
    return softmax_out(scores, multi_output=True)


def rna_model(arch, classes):
    """Image classifier (the ImageNet network ``ilsvrc-cls_rn*-*_cls1000``): stride 32, global pool.

    Parameters
    ----------
    arch : str or Arch
        A key of :data:`ARCHS`, or a table.
    classes : int
        Number of classes.

    Returns
    -------
    mxnet.symbol.Symbol
        The ``softmax`` SoftmaxOutput.
    """
    feat = rna_feat(arch, 32, dropout=False)
    scores = fc(pool(feat, 'pool7'), 'linear%d' % classes, classes)
    return softmax_out(scores, multi_output=False)


def fcrna_model_a1(classes, inv_resolution=8, bootstrapping=False):
    """FCRNA model A1, the reference's public entry.

    Parameters
    ----------
    classes : int
        Number of classes.
    inv_resolution : int
        Output stride: 8, 16 or 32.
    bootstrapping : bool
        Not supported.

    Returns
    -------
    mxnet.symbol.Symbol
        As :func:`fcrna_model`.

    Raises
    ------
    NotImplementedError
        With ``bootstrapping`` (the OHEM head is not part of CBST).
    """
    if bootstrapping:
        raise NotImplementedError('the OHEM (bootstrapping) head is not part of CBST')
    return fcrna_model('a1', classes, inv_resolution)


def rna_model_a1(classes):
    """RNA model A1 classifier, the reference's public entry."""
    return rna_model('a1', classes)
