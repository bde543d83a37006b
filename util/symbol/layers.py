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


def _weight(name, **attrs):
    return mx.sym.Variable(name, **attrs)


def _init_attrs(init):
    # A variable's own initialiser overrides the one given to Module.init_params.
    return {} if init is None else {'init': init}


def _bias(name):
    return mx.sym.Variable(name, **_BIAS_ATTRS)


def same_pad(kernel, dilate):
    """Padding that keeps the spatial size of a stride-1 convolution."""
    assert kernel % 2 == 1, 'an even kernel needs an explicit pad'
    return ((kernel - 1) * dilate + 1) // 2


def conv(data, name, filters, kernel=3, stride=1, dilate=1, pad=-1, no_bias=False, init=None):
    """Convolution with ``{name}_weight`` (and ``{name}_bias`` unless ``no_bias``).

    ``init`` (an ``mx.init.Initializer``) is the weight's own initialiser.
    """
    if kernel == 1:
        dilate = 1  # a 1x1 kernel has nothing to dilate
    if pad < 0:
        pad = same_pad(kernel, dilate)
    inputs = {'data': data, 'weight': _weight(name + '_weight', **_init_attrs(init))}
    if not no_bias:
        inputs['bias'] = _bias(name + '_bias')
    return mx.sym.Convolution(name=name, kernel=(kernel, kernel), stride=(stride, stride),
                              dilate=(dilate, dilate), pad=(pad, pad), num_filter=filters,
                              no_bias=no_bias, workspace=cfg['workspace'], **inputs)


def deconv(data, name, filters, kernel, stride, lr_mult=1., init=None):
    """Transposed convolution, no bias nor padding; ``{name}_weight`` is (in, ``filters``, k, k).

    ``lr_mult`` 0 keeps the weight fixed; ``init`` is its own initialiser.
    """
    attrs = _init_attrs(init)
    if lr_mult != 1.:
        attrs['lr_mult'] = lr_mult
    return mx.sym.Deconvolution(data=data, weight=_weight(name + '_weight', **attrs), name=name,
                                kernel=(kernel, kernel), stride=(stride, stride),
                                num_filter=filters, no_bias=True, workspace=cfg['workspace'])


def bn(data, name):
    """BatchNorm ``{name}`` with learned gamma/beta and (by default) frozen statistics."""
    return mx.sym.BatchNorm(data=data, gamma=_weight(name + '_gamma'), beta=_bias(name + '_beta'),
                            name=name, eps=cfg['bn_eps'], fix_gamma=False,
                            use_global_stats=cfg['bn_use_global_stats'])


def relu(data, name):
    return mx.sym.Activation(data, name=name, act_type='relu')


def dropout(data, name, p):
    return mx.sym.Dropout(data, name=name, p=p)


def pool(data, name, pool_type='avg', global_pool=True, kernel=1, stride=None, convention=None):
    """Global pooling (the classifier top of the ImageNet network), or a ``kernel`` window.

    ``stride`` and ``convention`` (MXNet's ``pooling_convention``: ``'valid'``
    rounds the output size down, ``'full'`` up as Caffe) are passed only when given.
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
    """The training/inference head: per-pixel softmax, 255 ignored, normalised by valid pixels."""
    if multi_output:
        return mx.sym.SoftmaxOutput(data, name='softmax', use_ignore=True, ignore_label=255,
                                    multi_output=True, normalization='valid')
    return mx.sym.SoftmaxOutput(data, name='softmax')
