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


def test_pool_works_in_a_forked_child_after_use_in_the_parent():
    # The training iterator's process workers fork after pseudo-labelling used the pool.
    import multiprocessing
    probs = np.random.RandomState(1).rand(3, 200, 10).astype(np.float32)
    class_argmax(probs)  # the parent's pool now has threads
    ctx = multiprocessing.get_context('fork')
    with ctx.Pool(1) as pool:
        result = pool.apply_async(class_argmax, (probs,))
        assert np.array_equal(result.get(timeout=20), probs.argmax(0))
