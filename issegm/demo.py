"""The bundled default (README command 1).

Interim version: builds the thin network, runs the shared test-time forward
on a generated street-like image and saves the colour prediction. The full
miniature GTA-5 -> Cityscapes benchmark replaces it.
"""
import argparse
import os

import numpy as np

from issegm.datasets import get_dataset
from issegm.inference import Predictor
from issegm.model import get_model
from util.image import save_png


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--output', default='demo_out')
    args = parser.parse_args(argv)
    h, w = 128, 256
    img = np.zeros((h, w, 3), np.uint8)
    img[:h // 2] = (70, 130, 180)
    img[h // 2:] = (128, 64, 128)
    info = get_dataset('cityscapes')
    net = get_model('cityscapes_rna-t1_cls19_s8')
    probs = Predictor(net, info.num_classes, 8, flip=True).predict(img, w)
    label_ids = info.train2label[probs.argmax(0)]
    out = os.path.join(args.output, 'forward_color.png')
    save_png(out, label_ids, info.palette)
    print('saved %s' % out)


if __name__ == '__main__':
    main()
