"""The fixture checkpoints of ``shared/fixtures/checkpoints``: names, shapes, and the golden recipe."""
import os

import mxnet as mx
import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A copy of shared/fixtures/checkpoints, so that the suite needs nothing outside
# the repository; tests/test_fixtures.py checks it against shared/ when that is beside us.
FIXTURES = os.path.join(_ROOT, 'tests', 'fixtures', 'checkpoints')
SHARED_FIXTURES = os.path.normpath(os.path.join(_ROOT, '..',
                                                'shared', 'fixtures', 'checkpoints'))
GOLDEN = os.path.join(FIXTURES, 'golden_rna-a1_cls19_s8_seed20181011_input7_96x128.npy')


def read_tsv(name):
    """``[(key, shape), ...]`` of a fixture table, in file order."""
    rows = []
    with open(os.path.join(FIXTURES, name)) as f:
        for line in f:
            if line.strip():
                key, shape = line.rstrip('\n').split('\t')
                rows.append((key, tuple(int(d) for d in shape.split(','))))
    return rows


def recipe_params(rows, seed=20181011):
    """The golden weights: one RandomState walked over ``rows``, drawn by name ending."""
    rng = np.random.RandomState(seed)
    out = {}
    for key, shape in rows:
        name = key.split(':', 1)[1]
        if name.endswith('_weight'):
            value = rng.standard_normal(shape) * np.sqrt(1. / np.prod(shape[1:]))
            if name.startswith('linear'):
                value = value * 0.5
        elif name.endswith('_bias'):
            value = rng.standard_normal(shape) * 0.01
        elif name.endswith('_gamma'):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith('_beta'):
            value = rng.standard_normal(shape) * 0.1
        elif name.endswith('_moving_mean'):
            value = rng.standard_normal(shape) * 0.1
        elif name.endswith('_moving_var'):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            raise AssertionError('no recipe for %s' % key)
        out[key] = mx.nd.array(value.astype(np.float32))
    return out


def golden_input():
    return np.random.RandomState(7).standard_normal((1, 3, 96, 128)).astype(np.float32)
