"""Model labels, the network families, weights, and ready-to-run models.

A model label is ``{dataset}_{network}_cls{classes}[_s{stride}]`` (docs/behaviour.md
section 2), where the network names one of three families:

* ``rn{type}-{name}``: ResNet-38 and its thin members (:mod:`util.symbol.resnet_v2`),
  e.g. ``cityscapes_rna-a1_cls19_s8`` or the ImageNet classifier
  ``ilsvrc-cls_rna-a1_cls1000``; the stride defaults to 32;
* ``deeplabv2-r{depth}``: CRST's DeepLab-v2 (:mod:`util.symbol.deeplab_v2`), e.g.
  ``gta_deeplabv2-r101_cls19_s8``; stride 8 only (the default);
* ``fcn8s-vgg16``: CBST's FCN-8s on VGG16 (:mod:`util.symbol.fcn8s`), e.g.
  ``gta_fcn8s-vgg16_cls19_s8``; stride 8 only (the default).

The label decides the network through one registry, :data:`FAMILIES`: each
family gives its logits symbol, its head (the parameters an ImageNet
initialisation leaves out), the parameters that stay fixed in training, the
conversion of foreign weight files and its input preprocessing
(:func:`preprocessing`). :func:`get_symbol` builds the training network,
:func:`load_weights` fills it from a checkpoint with every name and shape
checked, :func:`get_model` returns a Gluon block for inference and
:func:`get_module` a Module for training.

The engine's stride. The engine expects the network's output at its stride
on the grid of the stride centres: cell j at input pixel 8 j + 3.5, H/8 cells
for an input of H (it upsamples the maps itself, and labels training crops
at those centres). ResNet-38 gives that grid. DeepLab-v2 gives a cell more
(ceil-mode pooling) centred at 8 j; the engine runs
:func:`util.symbol.deeplab_v2.deeplab_v2_centred`, its logits interpolated
bilinearly to the centres (CRST also upsamples the logits bilinearly). FCN-8s ends in a fixed bilinear 8x deconvolution
(``upscore8``) to the input size; the engine runs instead
:func:`util.symbol.fcn8s.fcn8s_stride8`: the fused stride-8 scores
(``fuse_pool3``) resampled by two fixed taps per axis to exactly what
``upscore8`` gives at the stride centres. So ``fcn8s-vgg16`` is a stride-8
network whose low-resolution map is the original's full-resolution output
sampled at the centres; ``upscore8_weight`` is not one of its parameters.

Weights: a Module checkpoint (``arg:``/``aux:`` keys, the released form)
for every family; for DeepLab-v2 also CRST's PyTorch ``.pth`` (read without
PyTorch by :mod:`util.torch_checkpoint`); for source training, GluonCV's
ImageNet ``resnet101_v1`` (DeepLab-v2) and ``vgg16`` (FCN-8s) files, whose
keys carry no prefix.
"""
import collections
import logging
import os
import re

import mxnet as mx

from util import image
from util.mxutil import (CheckpointError, check_params, has_module_keys, load_ndarray_dict,
                         load_params_from_file)
from util.symbol import layers
from util.symbol.resnet_v2 import ARCHS, fcrna_model, rna_model

__all__ = ['ModelLabel', 'Family', 'FAMILIES', 'family_of', 'parse_label', 'label_from_weights',
           'epoch_from_weights', 'start_epoch', 'is_foreign_weights', 'preprocessing',
           'get_symbol', 'get_scores', 'get_scores_symbol', 'param_shapes', 'read_weights',
           'load_weights', 'get_model', 'get_module', 'fixed_param_names',
           'subgraph_backend', 'CLASSIFIER_DATASET', 'TRAIN_WORKSPACE_MB', 'TEST_WORKSPACE_MB', 'head_param_names']

logger = logging.getLogger(__name__)

#: Dataset part of the ImageNet classifier's label; its head is not a segmentation head.
CLASSIFIER_DATASET = 'ilsvrc-cls'

#: Convolution workspace (MB) of training and of testing symbols, the reference's
#: ``mx_workspace``: it bounds the cuDNN algorithms MXNet may choose on a GPU.
TRAIN_WORKSPACE_MB = 1650
TEST_WORKSPACE_MB = 8192


class ModelLabel(collections.namedtuple('ModelLabel', ['dataset', 'net_type', 'net_name', 'classes',
                                                       'stride'])):
    """The parts of a model label; ``net_type`` is ``rna``/``rnb``... or a family name."""

    __slots__ = ()

    @property
    def family(self):
        """The :class:`Family` of the network."""
        return family_of(self)


_LABEL_RE = re.compile(r'^(?P<dataset>.+?)_(?P<net>rn[a-z]-[a-z0-9]+|deeplabv2-r\d+|fcn8s-vgg16)'
                       r'_cls(?P<classes>\d+)(?:_s(?P<stride>\d+))?$')

_FORM = ('{dataset}_{network}_cls{classes}[_s{stride}] with network rn{type}-{name}, '
         'deeplabv2-r101 or fcn8s-vgg16, e.g. cityscapes_rna-a1_cls19_s8 or gta_deeplabv2-r101_cls19_s8')


def parse_label(label):
    """Split a model label into its parts.

    Parameters
    ----------
    label : str
        A model label, ``{dataset}_{network}_cls{classes}[_s{stride}]``.

    Returns
    -------
    ModelLabel
        Its parts; the stride defaults to 32 for ResNet-38, 8 otherwise.

    Raises
    ------
    ValueError
        A clear error for a label that is not one.
    """
    m = _LABEL_RE.match(label)
    if m is None:
        raise ValueError('%r is not a model label of the form %s' % (label, _FORM))
    net_type, _, name = m.group('net').partition('-')
    if net_type.startswith('rn'):
        spec = ModelLabel(m.group('dataset'), net_type, name, int(m.group('classes')),
                          int(m.group('stride') or 32))
    else:
        spec = ModelLabel(m.group('dataset'), net_type, name, int(m.group('classes')),
                          int(m.group('stride') or 8))
    spec.family.check(spec, label)
    return spec


def label_from_weights(path):
    """The model label of a checkpoint path: its file name before ``_ep-``.

    Parameters
    ----------
    path : str
        A checkpoint path, ``{label}_ep-0000.params``.

    Returns
    -------
    str
        The model label.

    Raises
    ------
    ValueError
        When the file name has no ``_ep-`` (pass ``--model``).
    """
    base = os.path.basename(path)
    if '_ep-' not in base:
        raise ValueError('cannot tell the model from %s: checkpoint names look like '
                         '{label}_ep-0000.params; pass --model' % path)
    return base.rsplit('_ep-', 1)[0]


def epoch_from_weights(path):
    """The epoch number of a ``{label}_ep-{epoch:04d}.params`` path.

    Parameters
    ----------
    path : str
        A checkpoint path.

    Returns
    -------
    int
        The epoch number.

    Raises
    ------
    ValueError
        When no epoch number can be read from the name.
    """
    stem = os.path.splitext(os.path.basename(path))[0]
    try:
        return int(stem.rsplit('-', 1)[1])
    except (IndexError, ValueError):
        raise ValueError('cannot read an epoch number from %s' % path)


def start_epoch(weights, model):
    """Epoch a training run starts from (docs/behaviour.md section 2).

    Parameters
    ----------
    weights : str or None
        The weight file the run starts from.
    model : str
        The model label of the run.

    Returns
    -------
    int
        The number in the weights' name when their label is ``model`` (the run
        continues), else 0 (a new model starts from them, e.g. source -> target);
        0 without weights or for a foreign (PyTorch or GluonCV) file.

    Raises
    ------
    ValueError
        When the name of a Module checkpoint has no ``_ep-`` (pass ``--from-epoch``).
    """
    if weights is None:
        return 0
    if '_ep-' not in os.path.basename(weights) and is_foreign_weights(weights):
        return 0  # a PyTorch or GluonCV file: a new model starts from it
    if '_ep-' not in os.path.basename(weights):
        raise ValueError('cannot tell the starting epoch from %s: checkpoint names look like '
                         '{label}_ep-0000.params; pass --from-epoch' % weights)
    if label_from_weights(weights) != model:
        return 0
    return epoch_from_weights(weights)


def is_foreign_weights(path):
    """Whether ``path`` is a weight file of another framework's naming.

    Parameters
    ----------
    path : str
        A weight file.

    Returns
    -------
    bool
        True for a PyTorch ``.pth`` (or ``.pt``), or an MXNet file whose keys
        carry no ``arg:``/``aux:`` prefix (GluonCV's ``save_parameters``).
    """
    if path.endswith(('.pth', '.pt')):
        return True
    try:
        return not has_module_keys(load_ndarray_dict(path))
    except CheckpointError:
        return False


def _as_label(label):
    return parse_label(label) if isinstance(label, str) else label


# ---------------------------------------------------------------------------- the families
class Family(object):
    """What the engine needs to know of one network family; the base has the common defaults.

    ``name`` is the family's ``net_type`` in labels; ``normalizer`` its
    input preprocessing (:class:`util.image.Normalizer`).
    """

    name = None
    normalizer = image.IMAGENET_FLOAT32

    def check(self, spec, label):
        """Raise ValueError when ``spec`` is not a network of this family.

        Parameters
        ----------
        spec : ModelLabel
            The parsed label.
        label : str
            The label ``spec`` was parsed from, for the message.
        """
        if spec.stride != 8:
            raise ValueError('model label %r: %s runs at stride 8 only (write _s8)' % (label, self.name))
        if spec.dataset == CLASSIFIER_DATASET:
            raise ValueError('model label %r: only ResNet-38 (rna-a1) has an ImageNet classifier label; '
                             'its ImageNet weights are GluonCV files passed with --weights' % label)

    def scores(self, spec, native=False):
        """The logits symbol (N, classes, H/stride, W/stride) of ``spec``.

        Parameters
        ----------
        spec : ModelLabel
            The parsed model label.
        native : bool
            Asks for the network's own output grid where it differs from the
            engine's stride centres (DeepLab-v2: CRST's raw logits, which
            ``crst_seg.py`` upsamples itself); the other families have one grid.

        Returns
        -------
        mx.sym.Symbol
            The logits.
        """
        raise NotImplementedError

    def training_symbol(self, spec):
        """The training network: :meth:`scores` under the reference's ``softmax`` head."""
        return layers.softmax_out(self.scores(spec), multi_output=True)

    def head_param_names(self, spec):
        """Parameters an ImageNet initialisation does not provide."""
        return []

    def fixed_param_names(self, spec, symbol):
        """Parameters of ``symbol`` that training leaves as they are.

        Parameters
        ----------
        spec : ModelLabel
            The parsed model label.
        symbol : mx.sym.Symbol
            The network.

        Returns
        -------
        list of str or None
            The names; None: none.
        """
        return None

    def from_pth(self, state_dict, spec, path):
        """Parameters from a PyTorch state dict.

        Parameters
        ----------
        state_dict : dict
            The ``.pth`` file's state dict.
        spec : ModelLabel
            The parsed model label.
        path : str
            The file, for messages.

        Returns
        -------
        tuple
            ``(arg_params, aux_params)``.

        Raises
        ------
        CheckpointError
            When the family knows no PyTorch layout (the base's behaviour).
        """
        raise CheckpointError('%s: no PyTorch layout is known for %s networks; pass an MXNet .params '
                              'file (python -m issegm.convert converts DeepLab-v2 .pth files)' % (path, self.name))

    def from_imagenet(self, params, spec, path):
        """Parameters from a GluonCV ImageNet file's dict.

        Parameters
        ----------
        params : dict
            The file's arrays, keys without prefix.
        spec : ModelLabel
            The parsed model label.
        path : str
            The file, for messages.

        Returns
        -------
        tuple
            ``(arg_params, aux_params, missing)``.

        Raises
        ------
        CheckpointError
            When the family reads no such file (the base's behaviour).
        """
        raise CheckpointError('%s: key %r is neither arg:NAME nor aux:NAME; this is not a Module checkpoint '
                              '(Gluon .params files are not supported for %s)' % (path, next(iter(params)), self.name))


class ResNet38(Family):
    """ResNet-38 (``rn{type}-{name}``): the released CBST network, the reference's preprocessing."""

    name = 'resnet38'
    normalizer = image.REFERENCE

    def check(self, spec, label):
        if spec.net_name not in ARCHS:
            raise ValueError('model label %r: unknown network %r (known: %s)'
                             % (label, spec.net_name, ', '.join(sorted(ARCHS))))

    def training_symbol(self, spec):
        if spec.dataset == CLASSIFIER_DATASET:
            return rna_model(spec.net_name, spec.classes)
        return fcrna_model(spec.net_name, spec.classes, spec.stride)

    def scores(self, spec, native=False):
        return self.training_symbol(spec).get_internals()['linear%d_output' % spec.classes]

    def head_param_names(self, spec):
        classes = spec.classes
        return ['conv6a_weight', 'conv6a_bias', 'linear%d_weight' % classes, 'linear%d_bias' % classes]


class DeepLabV2(Family):
    """CRST's DeepLab-v2 (``deeplabv2-r{depth}``): BN frozen, classifier at 10x the learning rate."""

    name = 'deeplabv2'

    def check(self, spec, label):
        from util.symbol.deeplab_v2 import DEPTHS
        Family.check(self, spec, label)
        if self.depth(spec) not in DEPTHS:
            raise ValueError('model label %r: DeepLab-v2 depth must be one of %s'
                             % (label, ', '.join('r%d' % d for d in sorted(DEPTHS))))

    @staticmethod
    def depth(spec):
        return int(spec.net_name[1:])

    def scores(self, spec, native=False):
        from util.symbol.deeplab_v2 import deeplab_v2, deeplab_v2_centred
        build = deeplab_v2 if native else deeplab_v2_centred
        return build(spec.classes, self.depth(spec))

    def head_param_names(self, spec):
        return ['layer5_conv2d_list_%d_%s' % (k, leaf) for k in range(4) for leaf in ('weight', 'bias')]

    def fixed_param_names(self, spec, symbol):
        from util.symbol.deeplab_v2 import frozen_param_names
        return frozen_param_names(symbol)  # CRST never trains the BN gammas and betas

    def from_pth(self, state_dict, spec, path):
        from util.symbol.deeplab_v2 import params_from_state_dict
        return params_from_state_dict(state_dict, spec.classes, self.depth(spec), source=path)

    def from_imagenet(self, params, spec, path):
        from util.symbol.deeplab_v2 import params_from_gluoncv_resnet101_v1
        return params_from_gluoncv_resnet101_v1(params, spec.classes, self.depth(spec), source=path)


class FCN8s(Family):
    """FCN-8s on VGG16 (``fcn8s-vgg16``), run at stride 8 (see the module's docstring)."""

    name = 'fcn8s'

    def scores(self, spec, native=False):
        from util.symbol.fcn8s import fcn8s_stride8
        return fcn8s_stride8(spec.classes, spec.net_name)

    def from_imagenet(self, params, spec, path):
        from util.symbol.fcn8s import params_from_gluoncv_vgg16
        arg_params = params_from_gluoncv_vgg16(params, spec.classes, spec.net_name, source=path)
        arg_params.pop('upscore8_weight')  # the engine's network stops before upscore8
        return arg_params, {}, []


#: The network families by ``net_type``; ResNet-38's ``rna``, ``rnb``... all map to one.
FAMILIES = {'resnet38': ResNet38(), 'deeplabv2': DeepLabV2(), 'fcn8s': FCN8s()}


def family_of(label):
    """The :class:`Family` of a model label.

    Parameters
    ----------
    label : str or ModelLabel
        The model label.

    Returns
    -------
    Family
        Its entry of :data:`FAMILIES`.
    """
    net_type = label.net_type if isinstance(label, ModelLabel) else _as_label(label).net_type
    return FAMILIES['resnet38' if net_type.startswith('rn') else net_type]


def preprocessing(label):
    """The input normalisation of the network of ``label``.

    ResNet-38 keeps the reference's (:data:`util.image.REFERENCE`); DeepLab-v2
    and FCN-8s read what CRST's and GluonCV's ImageNet networks read
    (:data:`util.image.IMAGENET_FLOAT32`).

    Parameters
    ----------
    label : str or ModelLabel
        The model label.

    Returns
    -------
    util.image.Normalizer
        The normalisation.
    """
    return family_of(_as_label(label)).normalizer


# ---------------------------------------------------------------------------- symbols
def get_symbol(label, workspace=TRAIN_WORKSPACE_MB):
    """The training symbol (ending in ``softmax``) for a model label.

    Parameters
    ----------
    label : str or ModelLabel
        The model label.
    workspace : int
        Convolution workspace (MB), given to every convolution; testing
        symbols use :data:`TEST_WORKSPACE_MB`, as the reference.

    Returns
    -------
    mx.sym.Symbol
        The training network.
    """
    spec = _as_label(label)
    saved = layers.cfg['workspace']
    layers.cfg['workspace'] = int(workspace)
    try:
        return spec.family.training_symbol(spec)
    finally:
        layers.cfg['workspace'] = saved


def get_scores(label, workspace=TRAIN_WORKSPACE_MB, native=False):
    """The network's class scores (logits, before the softmax) as a symbol without a label input.

    Parameters
    ----------
    label : str or ModelLabel
        The model label.
    workspace : int
        Convolution workspace (MB).
    native : bool
        The family's own output grid (:meth:`Family.scores`), for CRST's pipeline.

    Returns
    -------
    mx.sym.Symbol
        The logits.
    """
    spec = _as_label(label)
    saved = layers.cfg['workspace']
    layers.cfg['workspace'] = int(workspace)
    try:
        return spec.family.scores(spec, native)
    finally:
        layers.cfg['workspace'] = saved


def get_scores_symbol(label, softmax_dtype='float32', native=False):
    """Probabilities without a label input: softmax over classes of the last layer's scores.

    The testing symbol: convolutions get the reference's test workspace.

    Parameters
    ----------
    label : str or ModelLabel
        The model label.
    softmax_dtype : str
        ``'float64'`` computes the softmax in float64 and rounds it to float32,
        as the reference's ``evaluate.py`` does (its network ends in the
        bootstrapping softmax, a float64 numpy operator); ``'float32'`` equals
        ``SoftmaxOutput``'s forward, which its pseudo-label phase uses.
    native : bool
        The family's own output grid (:func:`get_scores`).

    Returns
    -------
    mx.sym.Symbol
        The probabilities, float32, named ``prob``.

    Raises
    ------
    ValueError
        For a ``softmax_dtype`` other than float32 or float64.
    """
    scores = get_scores(label, workspace=TEST_WORKSPACE_MB, native=native)
    if softmax_dtype == 'float32':
        return mx.sym.softmax(scores, axis=1, name='prob')
    if softmax_dtype != 'float64':
        raise ValueError('softmax_dtype is float32 or float64, not %r' % (softmax_dtype,))
    prob = mx.sym.softmax(mx.sym.cast(scores, dtype='float64'), axis=1, name='prob64')
    return mx.sym.cast(prob, dtype='float32', name='prob')


def head_param_names(label):
    """Parameters that a segmentation network does not take from its ImageNet initialisation."""
    spec = _as_label(label)
    return spec.family.head_param_names(spec)


def fixed_param_names(label, symbol):
    """Parameters of ``symbol`` that training does not change.

    Parameters
    ----------
    label : str or ModelLabel
        The model label.
    symbol : mx.sym.Symbol
        A network of ``label``.

    Returns
    -------
    list of str or None
        The names, or None.
    """
    spec = _as_label(label)
    return spec.family.fixed_param_names(spec, symbol)


def param_shapes(symbol, data_shape=(1, 3, 64, 64)):
    """The shapes of a symbol's parameters (no data or label).

    Parameters
    ----------
    symbol : mx.sym.Symbol
        The network.
    data_shape : tuple
        The shape of ``data`` the shapes are inferred at.

    Returns
    -------
    tuple of dict
        ``({arg: shape}, {aux: shape})``.
    """
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=data_shape)
    args = {n: s for n, s in zip(symbol.list_arguments(), arg_shapes)
            if n != 'data' and not n.endswith('_label')}
    return args, dict(zip(symbol.list_auxiliary_states(), aux_shapes))


# ---------------------------------------------------------------------------- weights
def read_weights(label, path):
    """Read any weight file the family of ``label`` reads.

    A Module checkpoint (``arg:``/``aux:``) as it is; a PyTorch ``.pth``
    converted by the family (DeepLab-v2: CRST's state dict); an MXNet file
    without prefixes as a GluonCV ImageNet network. Names and shapes are not
    yet checked against the network (:func:`load_weights` does).

    Parameters
    ----------
    label : str or ModelLabel
        The model label.
    path : str
        The weight file.

    Returns
    -------
    tuple
        ``(arg_params, aux_params, missing)``; ``missing``: the head left to
        the initialiser.

    Raises
    ------
    CheckpointError
        For a ``.pth`` path that does not exist, or a file the family cannot read.
    """
    spec = _as_label(label)
    family = spec.family
    if path.endswith(('.pth', '.pt')):
        if not os.path.isfile(path):
            raise CheckpointError('checkpoint not found: %s (pass the right path with --weights)' % path)
        from util.torch_checkpoint import load_state_dict
        arg_params, aux_params = family.from_pth(load_state_dict(path), spec, path)
        return arg_params, aux_params, []
    if isinstance(family, ResNet38):
        return load_params_from_file(path) + ([],)  # its own messages, unchanged
    save_dict = load_ndarray_dict(path)
    if not has_module_keys(save_dict):
        return family.from_imagenet(save_dict, spec, path)
    return load_params_from_file(path) + ([],)


def load_weights(label, path, symbol=None, init_missing_head=None):
    """Load ``path`` for the network of ``label``, checking every name and shape.

    When the checkpoint is ResNet-38's ImageNet classifier (``ilsvrc-cls_*``)
    and the network a segmentation one, the classifier's own top is dropped
    and the FCN head (``conv6a``, ``linear{N}``) is left for the caller to
    initialise (Xavier, gaussian, in, 2), as is the head a GluonCV ImageNet
    file lacks (DeepLab-v2's ``layer5``): it is returned in the third
    element, and logged.

    Parameters
    ----------
    label : str or ModelLabel
        The model label.
    path : str
        Any file :func:`read_weights` reads.
    symbol : mx.sym.Symbol, optional
        The network to check against (default: :func:`get_symbol` of ``label``).
    init_missing_head : bool, optional
        Whether the segmentation head may be missing; None (default) tells it
        from the checkpoint's name, as above.

    Returns
    -------
    tuple
        ``(arg_params, aux_params, missing_head_names)``.
    """
    spec = _as_label(label)
    symbol = symbol if symbol is not None else get_symbol(spec)
    arg_params, aux_params, may_be_missing = read_weights(spec, path)
    if init_missing_head is None:
        try:
            init_missing_head = (parse_label(label_from_weights(path)).dataset == CLASSIFIER_DATASET
                                 and spec.dataset != CLASSIFIER_DATASET)
        except ValueError:
            init_missing_head = False
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


def _init_param(param, ctx, own=None):
    # A SymbolBlock parameter has no layer telling its kind: pick by name, as
    # Module.init_params does for the same Xavier initialiser; a variable's own
    # initialiser (FCN-8s's zero scores, bilinear deconvolutions) comes first.
    name = param.name
    if own is not None:
        init = mx.init.create(own)
    elif name.endswith(('_gamma', '_moving_var')):
        init = mx.init.One()
    elif name.endswith(('_bias', '_beta', '_moving_mean')):
        init = mx.init.Zero()
    else:
        init = head_initializer()
    param.initialize(init, ctx=ctx)


def get_model(label, weights=None, ctx=None, softmax_dtype='float32', native=False):
    """A Gluon block computing softmax probabilities (N, classes, H/s, W/s) from normalised NCHW data.

    Parameters
    ----------
    label : str or ModelLabel
        The model label; any of the three families.
    weights : str, optional
        A weight file (:func:`read_weights`: ``.params``, CRST ``.pth``,
        GluonCV ImageNet), checked against the network; without it the
        parameters are initialised as for training from scratch.
    ctx : mx.Context or list of them
        Where the parameters live (default: CPU).
    softmax_dtype : str
        See :func:`get_scores_symbol`; both scripts use float32 (no
        prediction changed with float64, ``bench/softmax_precision.py``).
    native : bool
        The family's own output grid instead of the engine's stride centres
        (only DeepLab-v2 differs: CRST's raw logits, for ``crst_seg.py``).

    Returns
    -------
    mx.gluon.SymbolBlock
        Hybridised with static memory, so repeated calls at one input size
        run as a bare executor; on the CPU with the same MKL-DNN subgraph
        fusion (conv + BN + ReLU) that a bare executor applies, see
        :func:`subgraph_backend`. Its input is normalised by :func:`preprocessing`.
    """
    spec = _as_label(label)
    ctx = ctx if ctx is not None else mx.cpu()
    sym = get_scores_symbol(spec, softmax_dtype, native)
    net = mx.gluon.SymbolBlock(sym, mx.sym.var('data', dtype='float32'))
    params = net.collect_params()
    full = get_symbol(spec)
    shapes = dict(param_shapes(full)[0], **param_shapes(full)[1])
    for name, param in params.items():
        param.shape = shapes[name]  # known shapes: no deferred initialisation
    own = {name: attrs.get('__init__') for name, attrs in full.attr_dict().items()}
    if weights is not None:
        arg_params, aux_params, missing = load_weights(spec, weights, symbol=full)
        loaded = dict(arg_params)
        loaded.update(aux_params)
        for name, param in params.items():
            if name in loaded:
                param._load_init(loaded[name], ctx)
        for name in missing:
            _init_param(params[name], ctx, own.get(name))
    else:
        for name, param in params.items():
            _init_param(param, ctx, own.get(name))
    ctxs = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    net.hybridize(static_alloc=True, static_shape=True, backend=subgraph_backend(ctxs))
    return net


def subgraph_backend(contexts):
    """The graph partitioner a bare executor would apply on ``contexts``, for Gluon to apply too.

    ``Symbol.bind`` on the CPU fuses with the MKL-DNN subgraph backend
    (``MXNET_SUBGRAPH_BACKEND``, default MKLDNN in MKL-DNN builds; ``NONE``
    turns it off); a hybridised block does not unless told. Unfused, the block
    ran another graph than the executor (outputs apart by ~1e-4 with random
    weights), with BN and ReLU as extra passes over memory.

    Parameters
    ----------
    contexts : list of mx.Context
        The devices the block runs on.

    Returns
    -------
    str or None
        The backend's name; None on GPUs, where MXNet partitions nothing by
        default, in builds without MKL-DNN, or when turned off.
    """
    if any(c.device_type != 'cpu' for c in contexts) or not mx.runtime.Features().is_enabled('MKLDNN'):
        return None
    backend = os.environ.get('MXNET_SUBGRAPH_BACKEND', 'MKLDNN')
    return None if backend.upper() == 'NONE' else backend


def get_module(label, contexts, fixed_param_names=None, symbol=None, label_names=('softmax_label',)):
    """An ``mx.mod.Module`` over the training symbol of ``label`` (data ``data``, label ``softmax_label``).

    Parameters
    ----------
    label : str or ModelLabel
        The model label.
    contexts : mx.Context or list of them
        The devices.
    fixed_param_names : list of str, optional
        Parameters training leaves unchanged; defaults to the family's
        (DeepLab-v2: the BN gammas and betas, never trained in CRST).
    symbol : mx.sym.Symbol, optional
        Replaces the network's SoftmaxOutput head (the CRST loss,
        :func:`issegm.engine.objective.training_symbol`).
    label_names : tuple of str
        The label inputs of ``symbol``.

    Returns
    -------
    mx.mod.Module
        The module, not yet bound.
    """
    contexts = contexts if isinstance(contexts, (list, tuple)) else [contexts]
    symbol = get_symbol(label) if symbol is None else symbol
    if fixed_param_names is None:
        spec = _as_label(label)
        fixed_param_names = spec.family.fixed_param_names(spec, symbol)
    return mx.mod.Module(symbol, data_names=('data',), label_names=tuple(label_names), context=list(contexts),
                         fixed_param_names=fixed_param_names)
