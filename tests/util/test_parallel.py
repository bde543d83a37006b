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


def test_prefetch_keeps_order_reads_ahead_and_reports_errors_at_their_item():
    import threading
    from util.parallel import prefetch
    started = []
    gate = threading.Event()

    def read(i):
        started.append(i)
        if i == 0:
            gate.wait(5)   # item 0 is slow: the others are read meanwhile
        if i == 3:
            raise IOError('cannot read 3')
        return i * 10

    got = []
    it = prefetch(read, range(5), workers=2, depth=3)
    item, fut = next(it)
    assert item == 0 and sorted(started)[:2] == [0, 1]
    gate.set()
    got.append(fut.result())
    for item, fut in it:
        if item == 3:
            try:
                fut.result()
            except IOError as exc:
                got.append(str(exc))
        else:
            got.append(fut.result())
    assert got == [0, 10, 20, 'cannot read 3', 40]
    assert [(i, f.result()) for i, f in prefetch(lambda i: -i, range(3), workers=0)] == [(0, 0), (1, -1), (2, -2)]


def test_writer_runs_jobs_behind_and_raises_the_first_error():
    import pytest
    from util.parallel import Writer
    done = []
    with Writer(workers=2) as writer:
        for i in range(5):
            writer.submit(done.append, i)
    assert sorted(done) == list(range(5))

    def bad():
        raise OSError('disk full')
    writer = Writer(workers=1)
    with pytest.raises(OSError, match='disk full'):   # from submit once it is done, or from close
        writer.submit(bad)
        writer.close()
    # a failing loop still lets the finished jobs land
    landed = []
    with pytest.raises(KeyError):
        with Writer(workers=1) as writer:
            writer.submit(landed.append, 'saved')
            raise KeyError('loop failed')
    assert landed == ['saved']


def test_pool_works_in_a_forked_child_after_use_in_the_parent():
    # The training iterator's process workers fork after pseudo-labelling used the pool.
    import multiprocessing
    probs = np.random.RandomState(1).rand(3, 200, 10).astype(np.float32)
    class_argmax(probs)  # the parent's pool now has threads
    ctx = multiprocessing.get_context('fork')
    with ctx.Pool(1) as pool:
        result = pool.apply_async(class_argmax, (probs,))
        assert np.array_equal(result.get(timeout=20), probs.argmax(0))
