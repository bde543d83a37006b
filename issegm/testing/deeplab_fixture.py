"""The weights of the DeepLab-v2 fixture (tests/fixtures/deeplabv2), rebuilt with numpy alone.

Its README ("Weights") says how: one ``RandomState(11)`` walks the keys of
``keys_shapes.tsv`` and draws each value by the key's role. The full state
dict is 176 MB, so tests make it once per module.
"""
import csv
import json
import os

import numpy as np

__all__ = ['read_tsv', 'fixture_weights', 'random_state_dict']

# README "Weights": uniform and normal draws by role (conv and counts below).
_UNIFORM = {'bn_weight': (0.5, 1.5), 'bn3_weight': (0.15, 0.35), 'ds_bn_weight': (0.25, 0.75),
            'bn_var': (0.5, 1.5)}
_NORMAL_STD = {'bn_bias': 0.1, 'bn_mean': 0.1, 'cls_weight': 0.01, 'cls_bias': 0.01}


def read_tsv(fixtures, name):
    """The rows after the header of the tab-separated file ``name`` in the folder ``fixtures``."""
    with open(os.path.join(fixtures, name)) as f:
        return list(csv.reader(f, delimiter='\t'))[1:]


def fixture_weights(fixtures, seed=11):
    """The 632 tensors of the fixture's state dict (CRST key -> numpy array), in state_dict order.

    Parameters
    ----------
    fixtures : str
        The ``tests/fixtures/deeplabv2`` folder.
    seed : int
        The fixture's seed.

    Returns
    -------
    dict
        Key -> array of the key's dtype and shape.
    """
    rng = np.random.RandomState(seed)
    values = {}
    for key, dtype, shape, role, _ in read_tsv(fixtures, 'keys_shapes.tsv'):
        shape = tuple(json.loads(shape))
        if role == 'conv':
            value = rng.normal(0, np.sqrt(2. / np.prod(shape[1:])), shape)
        elif role in _UNIFORM:
            value = rng.uniform(*_UNIFORM[role], shape)
        elif role in _NORMAL_STD:
            value = rng.normal(0, _NORMAL_STD[role], shape)
        else:
            assert role == 'bn_count', role
            value = rng.randint(1, 100000, dtype=np.int64)
        values[key] = np.asarray(value).astype(dtype)
    return values


def random_state_dict(depth=50, classes=19, seed=0):
    """A CRST-style state dict of DeepLab-v2 of any depth, drawn as the fixture's (README "Weights").

    Convolutions He-normal, BN gammas uniform (smaller on ``bn3`` and the
    shortcut, so eval-mode activations stay O(1)), BN statistics and biases
    small, the classifier normal(0, 0.01): a well-behaved network for runs
    of the scripts, e.g. ResNet-50 at a quarter of ResNet-101's cost.

    Parameters
    ----------
    depth : int
        A key of :data:`util.symbol.deeplab_v2.DEPTHS`.
    classes : int
        Classifier outputs.
    seed : int
        Seed of the draws.

    Returns
    -------
    collections.OrderedDict
        CRST key -> float32 array, in ``state_dict`` order.
    """
    import collections
    from util.symbol.deeplab_v2 import deeplab_v2, key_table
    sym = deeplab_v2(classes, depth)
    args, _, auxs = sym.infer_shape(data=(1, 3, 64, 64))
    shapes = dict(zip(sym.list_arguments(), args), **dict(zip(sym.list_auxiliary_states(), auxs)))
    rng = np.random.RandomState(seed)
    values = collections.OrderedDict()
    for row in key_table(depth):
        shape, key = shapes[row.mxnet], row.crst
        if key.startswith('layer5'):
            value = rng.normal(0, 0.01, shape)
        elif len(shape) == 4:
            value = rng.normal(0, np.sqrt(2. / np.prod(shape[1:])), shape)
        elif key.endswith('.weight'):
            value = rng.uniform(*(_UNIFORM['bn3_weight'] if '.bn3.' in key or 'downsample' in key
                                  else _UNIFORM['bn_weight']), shape)
        elif key.endswith('.running_var'):
            value = rng.uniform(*_UNIFORM['bn_var'], shape)
        else:  # BN bias, running mean
            value = rng.normal(0, 0.1, shape)
        values[key] = value.astype(np.float32)
    return values
