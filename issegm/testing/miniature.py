"""A miniature GTA-5 -> Cityscapes layout for end-to-end runs of the scripts, and its helpers.

The thin ResNet-38 member ``rna-t1`` stands in for A1 so that two rounds with
the published flags (scaled down) run in well under a minute on a CPU. Child
processes of the tests import this module (never a test module) for the
slowed-down iterators that let a kill land inside an epoch.
"""
import os
import time

import mxnet as mx
import numpy as np
from PIL import Image

from issegm.testing.checkpoints import recipe_params
from util.child_env import child_env


MODEL = 'cityscapes_rna-t1_cls19_s8'


SRC_MODEL = 'gta_rna-t1_cls19_s8'


SHAPE = (64, 128)


IDS = [7, 8, 11, 17, 21, 23, 24, 26]  # road, sidewalk, building, pole, vegetation, sky, person, car


def scene(rng):
    """A crude street: sky, buildings, vegetation, road, sidewalk, a car and a pole; RGB by class."""
    h, w = SHAPE
    label = np.full(SHAPE, 23, np.uint8)
    label[h // 4:h // 2] = 11
    label[h // 4:h // 2, rng.randint(0, w // 2):][:, :w // 4] = 21
    label[h // 2:] = 7
    label[h // 2:, :w // 6] = 8
    x = rng.randint(10, w - 30)
    label[h // 2 + 4:h // 2 + 16, x:x + 20] = 26
    label[h // 4:h // 2 + 8, x + 24:x + 26] = 17
    label[h // 2 - 6:h // 2 + 6, rng.randint(0, w - 4):][:, :3] = 24
    colors = rng.randint(0, 256, (256, 3)).astype(np.uint8)
    image = colors[label] // 2 + rng.randint(0, 128, SHAPE + (3,)).astype(np.uint8)
    return image, label


def write_layout(root, n_src=6, n_tgt=4):
    """GTA-5 (images/labels %05d.png) and Cityscapes (leftImg8bit/gtFine) trees with their lists."""
    rng = np.random.RandomState(0)
    src_lines, tgt_lines = [], []
    for i in range(1, n_src + 1):
        image, label = scene(rng)
        for rel, arr in (('images/%05d.png' % i, image), ('labels/%05d.png' % i, label)):
            os.makedirs(os.path.join(root, 'gta', os.path.dirname(rel)), exist_ok=True)
            Image.fromarray(arr).save(os.path.join(root, 'gta', rel))
        src_lines.append('images/%05d.png\tlabels/%05d.png\n' % (i, i))
    for i in range(n_tgt):
        image, label = scene(rng)
        name = 'aachen_%06d_000019' % i
        img = 'leftImg8bit/train/aachen/%s_leftImg8bit.png' % name
        lab = 'gtFine/train/aachen/%s_gtFine_labelIds.png' % name
        for rel, arr in ((img, 255 - image), (lab, label)):
            os.makedirs(os.path.join(root, 'cityscapes', os.path.dirname(rel)), exist_ok=True)
            Image.fromarray(arr).save(os.path.join(root, 'cityscapes', rel))
        tgt_lines.append('%s\t%s\n' % (img, lab))
    for ds, lines in (('gta', src_lines), ('cityscapes', tgt_lines)):
        os.makedirs(os.path.join(root, 'issegm', 'data_list', ds), exist_ok=True)
        with open(os.path.join(root, 'issegm', 'data_list', ds, 'train.lst'), 'w') as f:
            f.writelines(lines)


def write_weights(path, label, seed=0, head_scale=1.0):
    """Recipe weights for ``label``; ``head_scale`` multiplies the classifier's weights."""
    from issegm.engine.model import get_symbol, param_shapes, parse_label
    args, auxs = param_shapes(get_symbol(label))
    rows = [('arg:' + n, s) for n, s in sorted(args.items())] + [('aux:' + n, s) for n, s in sorted(auxs.items())]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    params = recipe_params(rows, seed=seed)
    params['arg:linear%d_weight' % parse_label(label).classes] *= head_scale
    mx.nd.save(path, params)


def script_env(*paths):
    """A child script's environment: the repository (then ``paths``) importable, one thread."""
    return child_env(*paths, threads=1)


def ndarray_factory(args, spec, source, target, mine_id, mine_id_priority):
    """Stand-in for FileIter: fixed random crops, so the training phase runs without the data layer."""
    n, crop = len(source) + len(target), 32
    rng = np.random.RandomState(0)
    data = rng.randn(n, 3, crop, crop).astype(np.float32)
    label = rng.randint(0, 19, (n, (crop // 8) ** 2)).astype(np.float32)
    return mx.io.NDArrayIter(data, label, batch_size=args.batch_images, shuffle=False,
                             last_batch_handle='discard', label_name='softmax_label')


class SlowIter(mx.io.NDArrayIter):
    """NDArrayIter whose batches take a while, so that a kill lands inside an epoch."""

    def next(self):
        time.sleep(0.15)
        return super(SlowIter, self).next()


def slow_factory(args, spec, source, target, mine_id, mine_id_priority):
    n, crop = 8, 32
    rng = np.random.RandomState(0)
    return SlowIter(rng.randn(n, 3, crop, crop).astype(np.float32),
                    rng.randint(0, 19, (n, (crop // 8) ** 2)).astype(np.float32),
                    batch_size=2, last_batch_handle='discard', label_name='softmax_label')


def slow_sample_batches(seconds=0.15):
    """The real iterator, slowed down (also in its forked workers) so that a kill lands inside an epoch."""
    from issegm.engine.iterator import SampleReader
    batch = SampleReader.batch_and_findings

    def slow(self, indices, seeds):
        time.sleep(seconds)
        return batch(self, indices, seeds)
    SampleReader.batch_and_findings = slow
