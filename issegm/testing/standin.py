"""Stand-ins for GPU work: MXNet operators that take a set wall time without using the CPU.

No GPU can run MXNet on our machines, yet the evaluation benchmark must say
how much of an image's time the CPU work would take next to GPU-class device
work. :class:`DeviceStandIn` is a network-shaped callable whose forward is
a custom operator that sleeps ``seconds`` on MXNet's operator thread, then
writes probabilities of the network's output shape. Like a GPU forward it is
asynchronous (the call returns at once; ``asnumpy`` waits) and leaves the
CPU cores free, so whatever CPU work overlaps it shows in the wall time.
:class:`PostprocessStandIn` does the same for the device post-processing
(:class:`issegm.engine.postprocess.Postprocessor` in ``device`` mode), priced from
the FLOPs and bytes the real device operators count, on the same device.

Every operator records its ``(start, end)`` times in ``spans``.
"""
import itertools
import threading
import time

import mxnet as mx
import numpy as np

__all__ = ['DeviceStandIn', 'PostprocessStandIn', 'class_colours', 'with_host_delay']

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
            s = self.owner.stride
            # Probabilities that depend on the input (so flipping matters) and follow the
            # scene's regions as a trained network's do, cheaply, from the colours sampled
            # at the stride (only the samples are copied).
            pooled = mx.nd.slice(in_data[0], begin=(None,) * 4, end=(None,) * 4, step=(1, 1, s, s)).asnumpy()
            # Scores fall with the squared distance to each class's colour (the pixel's own
            # norm drops out of the softmax): painted scenes are recognised.
            n, _, h, w = pooled.shape
            colours = self.owner.colours
            logits = 8.0 * np.einsum('kc,nchw->nkhw', colours, pooled) \
                - 4.0 * (colours ** 2).sum(1)[None, :, None, None]
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


def class_colours(num_classes):
    """A fixed, well-spread RGB colour (0-255, float) per class: what the stand-in network recognises."""
    return np.random.RandomState(0).uniform(20, 235, (num_classes, 3))


class DeviceStandIn(object):
    """Callable like :func:`issegm.engine.model.get_model`'s network: NCHW data -> (N, C, H/stride, W/stride).

    Each call takes ``seconds`` of wall time on MXNet's custom-operator
    thread (a sleep: no CPU), asynchronously to the caller.
    """

    def __init__(self, seconds, num_classes=19, stride=8):
        from util.image import MEAN_RGB, STD_RGB
        self.seconds = float(seconds)
        self.num_classes = int(num_classes)
        self.stride = int(stride)
        self.spans = []
        self.device = threading.Lock()
        # Each class "looks like" one colour (normalised as the network's input is).
        self.colours = ((class_colours(self.num_classes) / 255.0 - MEAN_RGB) / STD_RGB).astype(np.float32)
        self._id = next(_IDS)
        _REGISTRY[self._id] = self

    def __call__(self, data):
        return mx.nd.Custom(data, op_type='cbst_device_standin', owner_id=self._id,
                            num_classes=self.num_classes, stride=self.stride)


class _PostOp(mx.operator.CustomOp):
    def __init__(self, owner, entry):
        super(_PostOp, self).__init__()
        self.owner, self.entry = owner, entry

    def forward(self, is_train, req, in_data, out_data, aux):
        with self.owner.device.device:  # the network's device: one thing at a time
            start = time.perf_counter()
            for i, value in enumerate(self.entry['outputs']):
                self.assign(out_data[i], req[i], value)
            time.sleep(max(0.0, self.entry['seconds'] - (time.perf_counter() - start)))
            end = time.perf_counter()
        with _LOCK:
            self.owner.spans.append((start, end))

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        raise NotImplementedError('the post-processing stand-in only runs forward')


@mx.operator.register('cbst_post_standin')
class _PostProp(mx.operator.CustomOpProp):
    def __init__(self, owner_id, entry):
        super(_PostProp, self).__init__(need_top_grad=False)
        self.owner = _REGISTRY[int(owner_id)]
        self.entry = self.owner.entries[int(entry)]

    def list_arguments(self):
        return ['lowres', 'gt']

    def list_outputs(self):
        return ['out%d' % i for i in range(len(self.entry['outputs']))]

    def infer_shape(self, in_shape):
        return in_shape, [v.shape for v in self.entry['outputs']], []

    def infer_type(self, in_type):
        return in_type, [v.dtype for v in self.entry['outputs']], []

    def create_operator(self, ctx, shapes, dtypes):
        return _PostOp(self.owner, self.entry)


class _Launched(object):
    def __init__(self, keys, outputs):
        self.keys, self.outputs = keys, outputs

    def result(self):
        return {k: v.asnumpy() for k, v in zip(self.keys, self.outputs)}


class PostprocessStandIn(object):
    """:class:`issegm.engine.postprocess.Postprocessor` (device mode, evaluation) at an assumed GPU speed.

    The first image of each size runs the real device operators (on the CPU
    context, once) to count their FLOPs and bytes and to get real outputs;
    afterwards each image is one operator on ``device``'s timeline, after its
    forwards, that takes ``flops / (tflops 1e12) + bytes / (gbps 1e9)``
    seconds of wall time without the CPU and returns those outputs. The
    host's part stays real: the ground truth's upload, the small results'
    copy back. :attr:`priced` lists ``(flops, bytes, seconds)`` per size.
    """

    mode = 'device'

    def __init__(self, device, num_classes, tflops, gbps):
        self.device, self.num_classes = device, int(num_classes)
        self.tflops, self.gbps = float(tflops), float(gbps)
        self.entries, self.priced, self.spans = [], [], []
        self._keys = {}
        self._id = next(_IDS)
        _REGISTRY[self._id] = self

    def _price(self, job, gt):
        from issegm.engine.postprocess import Postprocessor

        class Stored(object):
            orig_hw = job.orig_hw

            def lowres(self):
                return [low._replace(probs=low.probs.asnumpy()) for low in job.lowres_device()]

        post = Postprocessor(self.num_classes, 'device', ctx=mx.cpu())
        out = post.evaluate(Stored(), gt).result()
        flops, nbytes = post.ops.flops, post.ops.bytes
        seconds = flops / (self.tflops * 1e12) + nbytes / (self.gbps * 1e9)
        self.priced.append((flops, nbytes, seconds))
        keys = sorted(out)
        return {'keys': keys, 'outputs': [mx.nd.array(out[k], dtype=out[k].dtype) for k in keys],
                'seconds': seconds}

    def evaluate(self, job, gt=None):
        lowres = job.lowres_device()
        key = (tuple((low.probs.shape, low.im_hw, low.stride) for low in lowres), tuple(job.orig_hw), gt is None)
        if key not in self._keys:
            self._keys[key] = len(self.entries)
            self.entries.append(self._price(job, gt))
        index = self._keys[key]
        # The host's share stays real: the ground truth goes to the device.
        gt_nd = mx.nd.array(gt, dtype=np.uint8) if gt is not None else mx.nd.zeros((1,), dtype=np.uint8)
        outs = mx.nd.Custom(lowres[0].probs, gt_nd, op_type='cbst_post_standin', owner_id=self._id, entry=index)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return _Launched(self.entries[index]['keys'], outs)


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
