"""Symbol-building helpers with the parameter names and attributes of the released networks.

Every learned parameter is created as an explicit ``Variable`` so that its name
is exactly the one stored in the released ``.params`` files (``conv1a_weight``,
``bn2a_branch2a_gamma``...), and carries the reference's "alex" learning-rate
scheme: weights and BN gammas lr_mult 1 / wd_mult 1, biases and BN betas
lr_mult 2 / wd_mult 0.
"""
import mxnet as mx

__all__ = ['cfg', 'conv', 'deconv', 'bn', 'relu', 'dropout', 'pool', 'fc', 'softmax_out',
           'same_pad']

# Build-time options. ``bn_use_global_stats`` is True in every CBST phase
# (source training, self-training, testing): BN statistics stay frozen.
cfg = {
    'workspace': 512,
    'bn_use_global_stats': True,
    'bn_eps': 1.001e-5,
}

_BIAS_ATTRS = {'lr_mult': 2., 'wd_mult': 0.}


def _weight(name, attrs=None, init=None):
    attrs = dict(attrs or {})
    if init is not None:  # a variable's own initialiser overrides the one given to Module.init_params
        attrs['init'] = init
    return mx.sym.Variable(name, **attrs)


def _bias(name, attrs=None):
    return mx.sym.Variable(name, **(_BIAS_ATTRS if attrs is None else attrs))


def same_pad(kernel, dilate):
    """Padding that keeps the spatial size of a stride-1 convolution.

    Parameters
    ----------
    kernel : int
        An odd kernel size (an even one needs an explicit pad).
    dilate : int
        The dilation.

    Returns
    -------
    int
        The padding on each side.
    """
    assert kernel % 2 == 1, 'an even kernel needs an explicit pad'
    return ((kernel - 1) * dilate + 1) // 2


def conv(data, name, filters, kernel=3, stride=1, dilate=1, pad=-1, no_bias=False, attrs=None, init=None):
    """Convolution with ``{name}_weight`` (and ``{name}_bias`` unless ``no_bias``).

    Parameters
    ----------
    data : mxnet.symbol.Symbol
        The input.
    name : str
        The layer's name.
    filters : int
        Output channels.
    kernel : int
        Kernel size (a 1x1 kernel is never dilated).
    stride : int
        The stride.
    dilate : int
        The dilation.
    pad : int
        The padding; negative: :func:`same_pad`.
    no_bias : bool
        No bias.
    attrs : dict, optional
        E.g. ``{'lr_mult': 10.}``: goes on the weight and the bias alike, in
        place of the "alex" scheme.
    init : mxnet.init.Initializer, optional
        The weight's own initialiser.

    Returns
    -------
    mxnet.symbol.Symbol
        The convolution.
    """
    if kernel == 1:
        dilate = 1  # a 1x1 kernel has nothing to dilate
    if pad < 0:
        pad = same_pad(kernel, dilate)
    inputs = {'data': data, 'weight': _weight(name + '_weight', attrs, init)}
    if not no_bias:
        inputs['bias'] = _bias(name + '_bias', attrs)
    return mx.sym.Convolution(name=name, kernel=(kernel, kernel), stride=(stride, stride),
                              dilate=(dilate, dilate), pad=(pad, pad), num_filter=filters,
                              no_bias=no_bias, workspace=cfg['workspace'], **inputs)


def deconv(data, name, filters, kernel, stride, lr_mult=1., init=None):
    """Transposed convolution, no bias nor padding.

    Parameters
    ----------
    data : mxnet.symbol.Symbol
        The input.
    name : str
        The layer's name; ``{name}_weight`` is (in, ``filters``, k, k).
    filters : int
        Output channels.
    kernel : int
        Kernel size k.
    stride : int
        The stride.
    lr_mult : float
        The weight's learning-rate multiplier; 0 keeps it fixed.
    init : mxnet.init.Initializer, optional
        The weight's own initialiser.

    Returns
    -------
    mxnet.symbol.Symbol
        The transposed convolution.
    """
    attrs = {'lr_mult': lr_mult} if lr_mult != 1. else None
    return mx.sym.Deconvolution(data=data, weight=_weight(name + '_weight', attrs, init), name=name,
                                kernel=(kernel, kernel), stride=(stride, stride),
                                num_filter=filters, no_bias=True, workspace=cfg['workspace'])


def bn(data, name, eps=None):
    """BatchNorm ``{name}`` with learned gamma/beta and (by default) frozen statistics.

    Parameters
    ----------
    data : mxnet.symbol.Symbol
        The input.
    name : str
        The layer's name.
    eps : float, optional
        Defaults to ``cfg['bn_eps']`` (the released ResNet-38's).

    Returns
    -------
    mxnet.symbol.Symbol
        The normalised output.
    """
    return mx.sym.BatchNorm(data=data, gamma=_weight(name + '_gamma'), beta=_bias(name + '_beta'),
                            name=name, eps=cfg['bn_eps'] if eps is None else eps, fix_gamma=False,
                            use_global_stats=cfg['bn_use_global_stats'])


def relu(data, name):
    return mx.sym.Activation(data, name=name, act_type='relu')


def dropout(data, name, p):
    return mx.sym.Dropout(data, name=name, p=p)


def pool(data, name, pool_type='avg', global_pool=True, kernel=1, stride=None, convention=None):
    """Global pooling (the classifier top of the ImageNet network), or a ``kernel`` window.

    Parameters
    ----------
    data : mxnet.symbol.Symbol
        The input.
    name : str
        The layer's name.
    pool_type : str
        MXNet's ``pool_type``.
    global_pool : bool
        Pool over the whole map.
    kernel : int
        The window's size.
    stride : int, optional
        Passed only when given.
    convention : {'valid', 'full'}, optional
        MXNet's ``pooling_convention`` (``'valid'`` rounds the output size down,
        ``'full'`` up as Caffe); passed only when given.

    Returns
    -------
    mxnet.symbol.Symbol
        The pooled output.
    """
    options = {}
    if stride is not None:
        options['stride'] = (stride, stride)
    if convention is not None:
        options['pooling_convention'] = convention
    return mx.sym.Pooling(data, name=name, kernel=(kernel, kernel), pool_type=pool_type,
                          global_pool=global_pool, **options)


def fc(data, name, hiddens):
    return mx.sym.FullyConnected(data=data, weight=_weight(name + '_weight'),
                                 bias=_bias(name + '_bias'), name=name, num_hidden=hiddens)


def softmax_out(data, multi_output=True):
    """The training/inference head.

    Parameters
    ----------
    data : mxnet.symbol.Symbol
        The scores.
    multi_output : bool
        Per-pixel softmax, 255 ignored, normalised by valid pixels; otherwise
        a plain SoftmaxOutput.

    Returns
    -------
    mxnet.symbol.Symbol
        The ``softmax`` output.
    """
    if multi_output:
        return mx.sym.SoftmaxOutput(data, name='softmax', use_ignore=True, ignore_label=255,
                                    multi_output=True, normalization='valid')
    return mx.sym.SoftmaxOutput(data, name='softmax')
