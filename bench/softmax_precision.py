"""Does the test-time softmax's precision change predictions? Pixels that differ on a miniature val.

The reference's ``evaluate.py`` ends its network in the bootstrapping
softmax, which computes in float64 and rounds to float32; its pseudo-label
phase uses ``SoftmaxOutput`` (float32). This runs the shared ``Predictor``
twice over a miniature Cityscapes val (the toy benchmark's target val, or a
``--data-root``/``--split`` in the Cityscapes layout): once with the float32
softmax, once with the float64 one (``get_model(..., softmax_dtype=...)``),
same weights, and counts the predicted pixels (argmax after upsampling) that
differ, and the probability values that differ before upsampling.

    python bench/softmax_precision.py [--weights demo_out/source/gta_rna-t1_cls19_s8_ep-0150.params]
                                      [--images 90] [--test-scales 256] [--no-flip]

Without ``--weights`` the network keeps its random initialisation (seeded).
"""
import argparse
import os
import sys
import tempfile

import mxnet as mx
import numpy as np

from issegm.storage.datasets import list_path, read_list
from issegm.engine.inference import Predictor
from issegm.engine.model import get_model, parse_label
from issegm.engine.postprocess import upsample_probs
from util.image import read_image


def twin_models(label, weights, seed=0):
    """The float32- and float64-softmax networks of ``label`` with identical parameters."""
    mx.random.seed(seed)
    n32 = get_model(label, weights)
    n64 = get_model(label, weights, softmax_dtype='float64')
    for p32, p64 in zip(n32.collect_params().values(), n64.collect_params().values()):
        p64.set_data(p32.data())
    return n32, n64


def toy_val(root, n, seed):
    from issegm.benchmark import toy
    toy.generate(root, seed=seed, n_source=0, n_source_val=0, n_target_train=0, n_target_val=n)
    cs = os.path.join(root, 'cityscapes')
    return [os.path.join(cs, image) for image, _ in read_list(os.path.join(root, 'lists', 'cityscapes', 'val.lst'),
                                                                 cs)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='cityscapes_rna-t1_cls19_s8')
    parser.add_argument('--weights', default=None)
    parser.add_argument('--images', type=int, default=90, help='toy val images (without --data-root)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--data-root', default=None, help='a Cityscapes-layout root instead of the toy val')
    parser.add_argument('--split', default='val')
    parser.add_argument('--test-scales', type=int, default=None, help='default: each image\'s longer side')
    parser.add_argument('--no-flip', action='store_true')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.data_root:
            paths = [os.path.join(args.data_root, im)
                     for im, _ in read_list(list_path('cityscapes', args.split), args.data_root)]
        else:
            paths = toy_val(tmp, args.images, args.seed)
        n32, n64 = twin_models(args.model, args.weights, args.seed)
        spec = parse_label(args.model)
        p32 = Predictor(n32, spec.classes, spec.stride, flip=not args.no_flip)
        p64 = Predictor(n64, spec.classes, spec.stride, flip=not args.no_flip)
        pixels = differ = values = values_differ = images_differ = 0
        for path in paths:
            image = read_image(path)
            scale = args.test_scales or max(image.shape[:2])
            low32, low64 = p32.predict_lowres(image, scale), p64.predict_lowres(image, scale)
            values += low32.probs.size
            values_differ += int((low32.probs != low64.probs).sum())
            a = upsample_probs(low32.probs, low32.stride, low32.im_hw, image.shape[:2]).argmax(0)
            b = upsample_probs(low64.probs, low64.stride, low64.im_hw, image.shape[:2]).argmax(0)
            d = int((a != b).sum())
            pixels += a.size
            differ += d
            images_differ += d > 0
    print('model %s, weights %s, %d images, flipping %s' % (args.model, args.weights or 'random (seeded)',
                                                           len(paths), not args.no_flip))
    print('probabilities before upsampling that differ: %d of %d (%.1f%%)'
          % (values_differ, values, 100. * values_differ / max(values, 1)))
    print('predicted pixels that differ (float32 vs float64 softmax): %d of %d (%.2e) in %d images'
          % (differ, pixels, differ / max(pixels, 1), images_differ))


if __name__ == '__main__':
    main()
