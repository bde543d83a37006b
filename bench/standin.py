"""A stand-in for a GPU forward pass: an MXNet operator that takes a set wall time without using the CPU.

No GPU can run MXNet on our machines, yet the evaluation benchmark must say
how much of an image's time the CPU work would take next to a GPU-class
forward. :class:`DeviceStandIn` is a network-shaped callable whose forward is
a custom operator that sleeps ``seconds`` on MXNet's operator thread, then
writes probabilities of the network's output shape. Like a GPU forward it is
asynchronous (the call returns at once; ``asnumpy`` waits) and leaves the
CPU cores free, so whatever CPU work overlaps it shows in the wall time.

Every forward records its ``(start, end)`` times in :attr:`DeviceStandIn.spans`.
"""
import itertools
import threading
import time

import mxnet as mx
import numpy as np

__all__ = ['DeviceStandIn', 'with_host_delay']

_REGISTRY = {}
_IDS = itertools.count()
_LOCK = threading.Lock()


class _SleepOp(mx.operator.CustomOp):
    def __init__(self, owner):
        super(_SleepOp, self).__init__()
        self.owner = owner

    def forward(self, is_train, req, in_data, out_data, aux):
        with self.owner.device:  # one device: forwards run one after another
            start = time.perf_counter()
            data = in_data[0].asnumpy()
            s = self.owner.stride
            # Probabilities that depend on the input (so flipping matters), cheaply.
            pooled = data[:, 0, ::s, ::s][:, None]
            logits = pooled * np.arange(self.owner.num_classes, dtype=np.float32)[None, :, None, None] * 0.1
            e = np.exp(logits - logits.max(1, keepdims=True))
            self.assign(out_data[0], req[0], mx.nd.array(e / e.sum(1, keepdims=True)))
            # The rest of the set time is idle, as the host is while a GPU computes.
            time.sleep(max(0.0, self.owner.seconds - (time.perf_counter() - start)))
            end = time.perf_counter()
        with _LOCK:
            self.owner.spans.append((start, end))

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        raise NotImplementedError('the device stand-in only runs forward')


@mx.operator.register('cbst_device_standin')
class _SleepProp(mx.operator.CustomOpProp):
    def __init__(self, owner_id, num_classes, stride):
        super(_SleepProp, self).__init__(need_top_grad=False)
        self.owner = _REGISTRY[int(owner_id)]

    def list_arguments(self):
        return ['data']

    def infer_shape(self, in_shape):
        n, _, h, w = in_shape[0]
        s = self.owner.stride
        return in_shape, [(n, self.owner.num_classes, -(-h // s), -(-w // s))], []

    def create_operator(self, ctx, shapes, dtypes):
        return _SleepOp(self.owner)


class DeviceStandIn(object):
    """Callable like :func:`issegm.model.get_model`'s network: NCHW data -> (N, C, H/stride, W/stride).

    Each call takes ``seconds`` of wall time on MXNet's custom-operator
    thread (a sleep: no CPU), asynchronously to the caller.
    """

    def __init__(self, seconds, num_classes=19, stride=8):
        self.seconds = float(seconds)
        self.num_classes = int(num_classes)
        self.stride = int(stride)
        self.spans = []
        self.device = threading.Lock()
        self._id = next(_IDS)
        _REGISTRY[self._id] = self

    def __call__(self, data):
        return mx.nd.Custom(data, op_type='cbst_device_standin', owner_id=self._id,
                            num_classes=self.num_classes, stride=self.stride)


def with_host_delay(fn, seconds, spans):
    """``fn`` followed by ``seconds`` of host time; each call's ``(start, end)`` is appended to ``spans``.

    Makes a step of the host loop (e.g. upsampling) long enough that whether
    the device worked meanwhile shows in the spans.
    """
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        time.sleep(seconds)
        spans.append((start, time.perf_counter()))
        return out
    return wrapper
