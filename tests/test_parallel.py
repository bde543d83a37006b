"""Banded argmax/max equal NumPy's, ties included."""
import numpy as np

from util.parallel import class_argmax


def test_class_argmax_equals_numpy():
    rng = np.random.RandomState(0)
    probs = rng.rand(19, 300, 70).astype(np.float32)
    probs[3, :40] = probs[7, :40] = 2.0  # ties: the lowest class wins
    pred, conf = class_argmax(probs, with_max=True)
    assert pred.dtype == np.uint8
    assert np.array_equal(pred, probs.argmax(0))
    assert np.array_equal(conf, probs.max(0))
    assert np.all(pred[:40] == 3)
    assert np.array_equal(class_argmax(probs[:, :5]), probs[:, :5].argmax(0))
