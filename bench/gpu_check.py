"""Golden forward pass and step timings on a device (run by scripts/gpu_check.sh).

1. Builds the golden recipe checkpoint of ``shared/fixtures/checkpoints``,
   loads it through the project's loader on the device and compares the
   output with the golden ``.npy`` (1e-5).
2. Times forward, and forward+backward+update, of the 19-class network on a
   ``batch x 3 x size x size`` batch through the training Module, printing
   seconds per iteration.
3. Times the evaluation loop's core (forward, upsampling, argmax) on
   ``--eval-images`` images of ``--eval-size`` for both post-processing
   paths (``pil`` on the host, ``device`` on the network's context), with
   the next image's forward launched first (as ``evaluate.py`` and
   pseudo-labelling do) and one image at a time, next to the forward alone.
   On a GPU the device path should bring the time an image close to the
   forward alone. Then checks that the two paths agree: upsampled
   probabilities to 1e-5 of the largest value, predictions wherever the
   best class leads by more than that (a failure here on an Ampere or newer
   GPU can mean TF32 matrix products: rerun with ``NVIDIA_TF32_OVERRIDE=0``).

    python bench/gpu_check.py --gpus 0                 # on a GPU machine
    python bench/gpu_check.py --gpus cpu --size 64      # the same code on the CPU
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import mxnet as mx
import numpy as np

from issegm.engine.model import get_model, get_module
from util.device import get_contexts


def golden_check(ctx, workdir):
    from issegm.testing.checkpoints import GOLDEN, golden_input, read_tsv, recipe_params
    path = os.path.join(workdir, 'gta_rna-a1_cls19_s8_ep-0000.params')
    mx.nd.save(path, recipe_params(read_tsv('rna-a1_cls19_s8.tsv')))
    net = get_model('gta_rna-a1_cls19_s8', weights=path, ctx=ctx)
    out = net(mx.nd.array(golden_input(), ctx=ctx)).asnumpy()
    err = float(np.abs(out - np.load(GOLDEN)).max())
    os.remove(path)
    return err


def time_steps(label, contexts, batch, size, repeat):
    stride = 8
    mod = get_module(label, contexts)
    mod.bind([('data', (batch, 3, size, size))],
             [('softmax_label', (batch, (size // stride) ** 2))])
    mod.init_params(mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2))
    mod.init_optimizer(optimizer='sgd', optimizer_params={
        'learning_rate': 1e-4, 'momentum': 0.9, 'wd': 5e-4, 'rescale_grad': 1. / len(contexts)})
    rng = np.random.RandomState(0)
    data = mx.io.DataBatch([mx.nd.array(rng.randn(batch, 3, size, size))],
                           [mx.nd.array(rng.randint(0, 19, (batch, (size // stride) ** 2)))])

    def run(train):
        for _ in range(repeat + 1):
            if _ == 1:
                mx.nd.waitall()
                start = time.perf_counter()
            if train:
                mod.forward_backward(data)
                mod.update()
            else:
                mod.forward(data, is_train=False)
            for out in mod.get_outputs():
                out.wait_to_read()
        mx.nd.waitall()
        return (time.perf_counter() - start) / repeat

    return run(False), run(True)


def overlap_check(label, ctx, images, hw, mode):
    """Seconds an image of forward + post-processing (``mode``), overlapped and one at a time, and the forward alone."""
    from issegm.engine.inference import Predictor, ahead
    from issegm.engine.postprocess import Postprocessor
    predictor = Predictor(get_model(label, ctx=ctx), 19, 8, ctx=ctx)
    post = Postprocessor(19, mode, ctx=ctx)
    rng = np.random.RandomState(0)
    ims = [(rng.rand(*(tuple(hw) + (3,))) * 255).astype(np.uint8) for _ in range(images)]
    scale = max(hw)
    launch = lambda im: post.evaluate(predictor.start(im, [scale]))  # noqa: E731
    preds = [launch(ims[0]).result()['pred']]   # warm-up: graph, memory plan, matrices

    def loop(depth):
        start = time.perf_counter()
        for launched in ahead(ims, launch, depth=depth):
            preds.append(launched.get().result()['pred'])
        return (time.perf_counter() - start) / images

    start = time.perf_counter()
    for im in ims:
        predictor.start(im, [scale]).lowres()
    forward = (time.perf_counter() - start) / images
    return loop(1), loop(0), forward


def agreement_check(label, ctx, hw):
    """The two paths on one image: (largest probability difference / largest value, pixel agreement,
    agreement where the best class leads the second by more than 1e-5 of the largest value).

    An untrained network's classes can be near ties, which float32 rounding decides either way;
    elsewhere the predictions must be the same.
    """
    from issegm.engine.inference import Predictor
    from issegm.engine.postprocess import Postprocessor
    predictor = Predictor(get_model(label, ctx=ctx), 19, 8, flip=True, ctx=ctx)
    image = (np.random.RandomState(1).rand(*(tuple(hw) + (3,))) * 255).astype(np.uint8)
    # a smaller test scale: the resize to the image size is part of the check
    job = predictor.start(image, [int(max(hw) * 0.9)])
    maps, preds = {}, {}
    for mode in ('pil', 'device'):
        post = Postprocessor(19, mode, ctx=ctx)
        maps[mode] = post.ops.fetch(post.probmap(post.source(job)))
        preds[mode] = post.evaluate(job).result()['pred']
    top = np.abs(maps['pil']).max()
    err = float(np.abs(maps['device'] - maps['pil']).max() / top)
    two = np.sort(maps['pil'], axis=0)[-2:]
    clear = two[1] - two[0] > 1e-5 * top
    same = preds['device'] == preds['pil']
    return err, float(same.mean()), float(same[clear].mean()) if clear.any() else 1.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--gpus', default='0')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, default=504)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--arch', default='a1')
    parser.add_argument('--skip-golden', action='store_true')
    parser.add_argument('--eval-images', type=int, default=4)
    parser.add_argument('--eval-size', type=int, nargs=2, default=(1024, 2048), metavar=('H', 'W'))
    args = parser.parse_args()
    contexts = get_contexts(args.gpus)
    print('contexts: %s' % contexts)
    if not args.skip_golden:
        err = golden_check(contexts[0], ROOT if os.access(ROOT, os.W_OK) else '/tmp')
        print('golden forward on %s: max |diff| %.2e -> %s' % (contexts[0], err,
                                                               'OK' if err < 1e-5 else 'FAIL'))
        if err >= 1e-5:
            sys.exit(1)
    label = 'gta_rna-%s_cls19_s8' % args.arch
    fwd, step = time_steps(label, contexts, args.batch, args.size, args.repeat)
    print('%s, batch %dx3x%dx%d: forward %.4f s/iter, forward+backward+update %.4f s/iter'
          % (label, args.batch, args.size, args.size, fwd, step))
    times = {}
    for mode in ('pil', 'device'):
        overlapped, sequential, forward = overlap_check(label, contexts[0], args.eval_images, args.eval_size, mode)
        times[mode] = overlapped
        print('evaluation core at %dx%d, %s post-processing (forward, upsampling, argmax): %.3f s an image with the '
              'next forward launched first, %.3f s one at a time, %.3f s forward alone; overlapped/sequential = %.2f'
              % (tuple(args.eval_size) + (mode, overlapped, sequential, forward, overlapped / sequential)))
    print('device/pil time an image (overlapped): %.2f' % (times['device'] / times['pil']))
    err, agree, agree_clear = agreement_check(label, contexts[0], args.eval_size)
    ok = err <= 1e-5 and agree_clear == 1.0
    print('device vs pil: largest probability difference %.2e of the largest value, predictions agree on %.4f%% '
          'of the pixels (%.4f%% where the best class leads by more than 1e-5) -> %s'
          % (err, 100 * agree, 100 * agree_clear,
             'OK' if ok else 'FAIL (on Ampere or newer GPUs try NVIDIA_TF32_OVERRIDE=0)'))
    if not ok:
        sys.exit(1)

if __name__ == '__main__':
    main()
