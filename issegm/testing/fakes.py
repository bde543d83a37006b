"""A cheap deterministic stand-in for the network, and the pseudo-label phase's miniature layout.

:class:`FakePredictor` gives low-resolution probabilities from the image's
content, so the phases' tests exercise everything after the forward pass
(upsampling, prior, confidences, thresholds, statistics, PNGs, lists) without
a network.
"""
import os
import types

import numpy as np
from PIL import Image

from issegm.engine.inference import padded_shape
from issegm.phases import self_training as st
from issegm.solve_ST import build_parser
from issegm.storage.probmaps import LowRes
from util.image import longer_side_shape


C = 19


SHAPE = (40, 80)


SCALE = 72  # network input 36 x 72, padded 40 x 72, output 5 x 9


NAMES = ['aachen_%06d_000019_leftImg8bit' % i for i in range(4)]


class FakePredictor(object):
    """Softmax of smooth pseudo-random logits seeded by the image content."""

    def __init__(self, fail_at=None, steps=1):
        self.calls = 0
        self.fail_at = fail_at
        self.steps = steps  # sub-stride maps: steps x the cells, at stride 8 / steps

    def prepare(self, image, scales):
        return image, list(scales)

    def launch(self, inputs):
        return self.start(*inputs)

    def start(self, image, scales):
        """Predictor.start's interface: the result is computed here, returned on lowres()."""
        outs = [self.predict_lowres(image, s) for s in scales]
        return types.SimpleNamespace(lowres=lambda: outs, orig_hw=image.shape[:2])

    def predict_lowres(self, image, scale):
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError('simulated crash')
        self.calls += 1
        im_hw = longer_side_shape(image.shape[:2], scale)
        h, w = (v // 8 * self.steps for v in padded_shape(im_hw, 8))
        rng = np.random.RandomState(int(image.sum()) % (2 ** 31))
        logits = rng.randn(C, h, w).astype(np.float32) * 2
        logits[3] -= 20  # a class that is never predicted
        logits[5] += rng.randn(h, w).astype(np.float32) > 1.5  # a rarer class
        p = np.exp(logits - logits.max(0))
        return LowRes((p / p.sum(0)).astype(np.float32), im_hw, 8 // self.steps)


def make_layout(root):
    """Four target images with Cityscapes-style names and labels, and the split list."""
    rng = np.random.RandomState(0)
    lines = []
    for name in NAMES:
        img = 'leftImg8bit/train/aachen/%s.png' % name
        lab = 'gtFine/train/aachen/%s.png' % name.replace('leftImg8bit', 'gtFine_labelIds')
        for rel, arr in ((img, rng.randint(0, 256, SHAPE + (3,), dtype=np.uint8)),
                         (lab, rng.choice([7, 8, 11, 21, 26, 0], size=SHAPE).astype(np.uint8))):
            os.makedirs(os.path.dirname(os.path.join(root, 'cs', rel)), exist_ok=True)
            Image.fromarray(arr).save(os.path.join(root, 'cs', rel))
        lines.append('%s\t%s\n' % (img, lab))
    os.makedirs(os.path.join(root, 'issegm', 'data_list', 'cityscapes'))
    with open(os.path.join(root, 'issegm', 'data_list', 'cityscapes', 'train.lst'), 'w') as f:
        f.writelines(lines)


def val_args(output, policy='cb', prior='False', portion='0.2', steps=1):
    args = build_parser().parse_args([
        '--phase', 'val', '--dataset', 'gta', '--dataset-tgt', 'cityscapes', '--split-tgt', 'train',
        '--data-root-tgt', 'cs', '--output', output, '--model', 'cityscapes_rna-a1_cls19_s8',
        '--weights', 'models/gta_rna-a1_cls19_s8_ep-0000.params', '--test-scales', str(SCALE),
        '--init-tgt-port', portion, '--idx-round', '0', '--kc-policy', policy, '--with-prior', prior,
        '--gpus', '0', '--mine-id-number', '3', '--test-steps', str(steps)])
    return st.complete_args(args)
