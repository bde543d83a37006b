"""Model labels, network symbols, weights, and ready-to-run models.

A model label is ``{dataset}_rn{type}-{name}_cls{classes}[_s{stride}]`` (spec
section 2), e.g. ``cityscapes_rna-a1_cls19_s8`` or the ImageNet classifier
``ilsvrc-cls_rna-a1_cls1000``; the stride defaults to 32. The label decides
the network: :func:`get_symbol` builds it, :func:`load_weights` fills it from
a checkpoint with every name and shape checked, :func:`get_model` returns a
Gluon block for inference and :func:`get_module` a Module for training.
"""
import collections
import logging
import os
import re

import mxnet as mx

from util.mxutil import check_params, load_params_from_file
from util.symbol import layers
from util.symbol.resnet_v2 import ARCHS, fcrna_model, rna_model

__all__ = ['ModelLabel', 'parse_label', 'label_from_weights', 'epoch_from_weights', 'start_epoch',
           'get_symbol',
           'get_scores', 'get_scores_symbol', 'param_shapes', 'load_weights', 'get_model', 'get_module',
           'subgraph_backend', 'CLASSIFIER_DATASET', 'TRAIN_WORKSPACE_MB', 'TEST_WORKSPACE_MB', 'head_param_names']

logger = logging.getLogger(__name__)

#: Dataset part of the ImageNet classifier's label; its head is not a segmentation head.
CLASSIFIER_DATASET = 'ilsvrc-cls'

#: Convolution workspace (MB) of training and of testing symbols, the reference's
#: ``mx_workspace``: it bounds the cuDNN algorithms MXNet may choose on a GPU.
TRAIN_WORKSPACE_MB = 1650
TEST_WORKSPACE_MB = 8192

ModelLabel = collections.namedtuple('ModelLabel', ['dataset', 'net_type', 'net_name', 'classes',
                                                   'stride'])

_LABEL_RE = re.compile(r'^(?P<dataset>.+?)_rn(?P<type>[a-z])-(?P<name>[a-z0-9]+)'
                       r'_cls(?P<classes>\d+)(?:_s(?P<stride>\d+))?$')


def parse_label(label):
    """Split a model label into its parts; a clear error for a label that is not one."""
    m = _LABEL_RE.match(label)
    if m is None:
        raise ValueError('%r is not a model label of the form {dataset}_rn{type}-{name}_cls{classes}'
                         '[_s{stride}], e.g. cityscapes_rna-a1_cls19_s8' % label)
    name = m.group('name')
    if name not in ARCHS:
        raise ValueError('model label %r: unknown network %r (known: %s)'
                         % (label, name, ', '.join(sorted(ARCHS))))
    return ModelLabel(m.group('dataset'), 'rn' + m.group('type'), name, int(m.group('classes')),
                      int(m.group('stride') or 32))


def label_from_weights(path):
    """The model label of a checkpoint path: its file name before ``_ep-``."""
    base = os.path.basename(path)
    if '_ep-' not in base:
        raise ValueError('cannot tell the model from %s: checkpoint names look like '
                         '{label}_ep-0000.params; pass --model' % path)
    return base.rsplit('_ep-', 1)[0]


def epoch_from_weights(path):
    """The epoch number of a ``{label}_ep-{epoch:04d}.params`` path."""
    stem = os.path.splitext(os.path.basename(path))[0]
    try:
        return int(stem.rsplit('-', 1)[1])
    except (IndexError, ValueError):
        raise ValueError('cannot read an epoch number from %s' % path)


def start_epoch(weights, model):
    """Epoch a training run starts from (docs/behaviour.md section 2).

    The number in the weights' name when their label is ``model`` (the run
    continues), else 0 (a new model starts from them, e.g. source -> target).
    """
    if weights is None:
        return 0
    if '_ep-' not in os.path.basename(weights):
        raise ValueError('cannot tell the starting epoch from %s: checkpoint names look like '
                         '{label}_ep-0000.params; pass --from-epoch' % weights)
    if label_from_weights(weights) != model:
        return 0
    return epoch_from_weights(weights)


def _as_label(label):
    return parse_label(label) if isinstance(label, str) else label


def get_symbol(label, workspace=TRAIN_WORKSPACE_MB):
    """The training symbol (ending in ``softmax``) for a model label.

    ``workspace`` (MB) goes to every convolution; testing symbols use
    :data:`TEST_WORKSPACE_MB`, as the reference.
    """
    spec = _as_label(label)
    saved = layers.cfg['workspace']
    layers.cfg['workspace'] = int(workspace)
    try:
        if spec.dataset == CLASSIFIER_DATASET:
            return rna_model(spec.net_name, spec.classes)
        return fcrna_model(spec.net_name, spec.classes, spec.stride)
    finally:
        layers.cfg['workspace'] = saved


def get_scores(label, workspace=TRAIN_WORKSPACE_MB):
    """The network's class scores (logits, before the softmax) as a symbol without a label input."""
    sym = get_symbol(label, workspace=workspace)
    return sym.get_internals()['linear%d_output' % _as_label(label).classes]


def get_scores_symbol(label, softmax_dtype='float32'):
    """Probabilities without a label input: softmax over classes of the last layer's scores.

    The testing symbol: convolutions get the reference's test workspace.
    ``softmax_dtype='float64'`` computes the softmax in float64 and rounds it
    to float32, as the reference's ``evaluate.py`` does (its network ends in
    the bootstrapping softmax, a float64 numpy operator); ``'float32'`` equals
    ``SoftmaxOutput``'s forward, which its pseudo-label phase uses.
    """
    scores = get_scores(label, workspace=TEST_WORKSPACE_MB)
    if softmax_dtype == 'float32':
        return mx.sym.softmax(scores, axis=1, name='prob')
    if softmax_dtype != 'float64':
        raise ValueError('softmax_dtype is float32 or float64, not %r' % (softmax_dtype,))
    prob = mx.sym.softmax(mx.sym.cast(scores, dtype='float64'), axis=1, name='prob64')
    return mx.sym.cast(prob, dtype='float32', name='prob')


def head_param_names(label):
    """Parameters that a segmentation network does not take from the ImageNet classifier."""
    classes = _as_label(label).classes
    return ['conv6a_weight', 'conv6a_bias', 'linear%d_weight' % classes, 'linear%d_bias' % classes]


def param_shapes(symbol, data_shape=(1, 3, 64, 64)):
    """``({arg: shape}, {aux: shape})`` of a symbol's parameters (no data or label)."""
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=data_shape)
    args = {n: s for n, s in zip(symbol.list_arguments(), arg_shapes)
            if n != 'data' and not n.endswith('_label')}
    return args, dict(zip(symbol.list_auxiliary_states(), aux_shapes))


def load_weights(label, path, symbol=None, init_missing_head=None):
    """Load ``path`` for the network of ``label``, checking every name and shape.

    When the checkpoint is the ImageNet classifier (``ilsvrc-cls_*``) and the
    network a segmentation one, the classifier's own top is dropped and the
    FCN head (``conv6a``, ``linear{N}``) is left for the caller to initialise
    (Xavier, gaussian, in, 2): it is returned in the third element, and logged.
    Returns ``(arg_params, aux_params, missing_head_names)``.
    """
    spec = _as_label(label)
    symbol = symbol if symbol is not None else get_symbol(spec)
    arg_params, aux_params = load_params_from_file(path)
    if init_missing_head is None:
        try:
            init_missing_head = (parse_label(label_from_weights(path)).dataset == CLASSIFIER_DATASET
                                 and spec.dataset != CLASSIFIER_DATASET)
        except ValueError:
            init_missing_head = False
    may_be_missing = ()
    if init_missing_head:
        classifier_top = [n for n in arg_params if n.startswith('linear')]
        arg_params = {k: v for k, v in arg_params.items() if k not in classifier_top}
        may_be_missing = head_param_names(spec)
    expected_args, expected_aux = param_shapes(symbol)
    missing = check_params(expected_args, arg_params, path, 'arg', may_be_missing)
    check_params(expected_aux, aux_params, path, 'aux')
    if missing:
        logger.info('%s: body loaded; head %s initialised with Xavier(gaussian, in, 2)',
                    path, ', '.join(missing))
    return arg_params, aux_params, missing


def head_initializer():
    """Initialiser of parameters a checkpoint does not provide (reference: Xavier gaussian/in/2)."""
    return mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2)


def _init_param(param, ctx):
    # A SymbolBlock parameter has no layer telling its kind: pick by name, as
    # Module.init_params does for the same Xavier initialiser.
    name = param.name
    if name.endswith(('_gamma', '_moving_var')):
        init = mx.init.One()
    elif name.endswith(('_bias', '_beta', '_moving_mean')):
        init = mx.init.Zero()
    else:
        init = head_initializer()
    param.initialize(init, ctx=ctx)


def get_model(label, weights=None, ctx=None, softmax_dtype='float32'):
    """A Gluon block computing softmax probabilities (N, classes, H/s, W/s) from normalised NCHW data.

    ``weights`` is a ``.params`` path (checked against the network); without
    it the parameters are initialised as for training from scratch. ``ctx`` is
    a context or a list of them (default: CPU). ``softmax_dtype``: see
    :func:`get_scores_symbol`; both scripts use float32 (no prediction
    changed with float64, ``bench/softmax_precision.py``). The block is
    hybridised with static memory, so repeated calls at one input size run
    as a bare executor; on the CPU with the same MKL-DNN subgraph fusion
    (conv + BN + ReLU) that a bare executor applies, see :func:`subgraph_backend`.
    """
    spec = _as_label(label)
    ctx = ctx if ctx is not None else mx.cpu()
    sym = get_scores_symbol(spec, softmax_dtype)
    net = mx.gluon.SymbolBlock(sym, mx.sym.var('data', dtype='float32'))
    params = net.collect_params()
    full = get_symbol(spec)
    shapes = dict(param_shapes(full)[0], **param_shapes(full)[1])
    for name, param in params.items():
        param.shape = shapes[name]  # known shapes: no deferred initialisation
    if weights is not None:
        arg_params, aux_params, missing = load_weights(spec, weights, symbol=full)
        loaded = dict(arg_params)
        loaded.update(aux_params)
        for name, param in params.items():
            if name in loaded:
                param._load_init(loaded[name], ctx)
        for name in missing:
            _init_param(params[name], ctx)
    else:
        for param in params.values():
            _init_param(param, ctx)
    ctxs = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    net.hybridize(static_alloc=True, static_shape=True, backend=subgraph_backend(ctxs))
    return net


def subgraph_backend(contexts):
    """The graph partitioner a bare executor would apply on ``contexts``, for Gluon to apply too.

    ``Symbol.bind`` on the CPU fuses with the MKL-DNN subgraph backend
    (``MXNET_SUBGRAPH_BACKEND``, default MKLDNN in MKL-DNN builds; ``NONE``
    turns it off); a hybridised block does not unless told. Unfused, the block
    ran another graph than the executor (outputs apart by ~1e-4 with random
    weights), with BN and ReLU as extra passes over memory. None on GPUs,
    where MXNet partitions nothing by default.
    """
    if any(c.device_type != 'cpu' for c in contexts) or not mx.runtime.Features().is_enabled('MKLDNN'):
        return None
    backend = os.environ.get('MXNET_SUBGRAPH_BACKEND', 'MKLDNN')
    return None if backend.upper() == 'NONE' else backend


def get_module(label, contexts, fixed_param_names=None, symbol=None, label_names=('softmax_label',)):
    """An ``mx.mod.Module`` over the training symbol of ``label`` (data ``data``, label ``softmax_label``).

    ``symbol`` / ``label_names`` replace the network's SoftmaxOutput head and its
    label (the CRST loss, :func:`issegm.engine.objective.training_symbol`).
    """
    contexts = contexts if isinstance(contexts, (list, tuple)) else [contexts]
    return mx.mod.Module(get_symbol(label) if symbol is None else symbol, data_names=('data',),
                         label_names=tuple(label_names), context=list(contexts),
                         fixed_param_names=fixed_param_names)
