"""The official Cityscapes pixel-level evaluation (cityscapesscripts), to check our scores against."""
import copy
import glob
import os

import numpy as np


def official_label_maps():
    from cityscapesscripts.helpers.labels import labels
    label2train = np.full(256, 255, np.uint8)
    train2label = np.zeros(19, np.uint8)
    for lab in labels:
        if 0 <= lab.id and lab.trainId not in (-1, 255):
            label2train[lab.id] = lab.trainId
            train2label[lab.trainId] = lab.id
    return label2train, train2label, [l.id for l in labels if l.id >= 0]


def official_evaluation(cityscapes_root, results_dir, monkeypatch):
    """Run cityscapesscripts' pixel-level evaluation on ``{root}/gtFine/val`` and a results folder.

    It finds predictions through CITYSCAPES_RESULTS (``getPrediction``) and the
    ground truth through its module-level ``args``, which we copy and point here.
    """
    import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as ev
    monkeypatch.setenv('CITYSCAPES_DATASET', cityscapes_root)
    monkeypatch.setenv('CITYSCAPES_RESULTS', results_dir)
    args = copy.copy(ev.args)
    args.cityscapesPath = cityscapes_root
    args.groundTruthSearch = os.path.join(cityscapes_root, 'gtFine', 'val', '*', '*_gtFine_labelIds.png')
    args.predictionPath = None
    args.predictionWalk = None
    args.evalInstLevelScore = False
    args.JSONOutput = False
    args.quiet = True
    gts = sorted(glob.glob(args.groundTruthSearch))
    preds = [ev.getPrediction(args, g) for g in gts]
    return ev.evaluateImgLists(preds, gts, args)


def official_class_iou(res):
    """Per-class IoU of an official result dict, in train-id order."""
    from cityscapesscripts.helpers.labels import trainId2label
    return np.array([res['classScores'][trainId2label[t].name] for t in range(19)])
