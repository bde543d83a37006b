"""CRST's ``crst_seg.py`` as a drop-in: its flags and defaults, its pipeline, on our engine.

CRST's scripts run unchanged, from the repository root::

    python crst_seg.py --random-mirror --random-scale --rm-prob --test-flipping --save results/cbst \\
        --data-src-dir DATA_SRC_DIR --data-tgt-dir DATA_TGT_DIR                        # cbst.sh
    ... --save results/mrkld ... --mr-weight-kld 0.1                                  # mrkld.sh
    ... --save results/lrent ... --lr-weight-ent 0.25                                  # lrent.sh

Every flag of CRST's parser is declared with its name and default; the work
is in :mod:`issegm.phases.crst_pipeline` (docs/crst.md, "CRST's commands").
"""
import argparse
import os
import sys

if __package__ in (None, ''):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from issegm.phases.cli import script_main  # noqa: E402

#: CRST's defaults (crst_seg.py), by flag.
DEFAULTS = {
    'data_src': 'gta', 'data_src_dir': './dataset/gta5', 'data_src_list': './dataset/list/gta5/train.lst',
    'data_tgt_dir': './dataset/cityscapes',
    'data_tgt_train_list': './dataset/list/cityscapes/train_ClsConfSet.lst',
    'data_tgt_test_list': './dataset/list/cityscapes/val.lst', 'num_classes': 19, 'ignore_label': 255,
    'model': 'DeeplabRes', 'restore_from': './src_model/gta5/src_model.pth', 'gpu': 0, 'pin_memory': False,
    'log_file': 'self_training_log', 'batch_size': 2, 'input_size': '512,1024',
    'train_scale_src': '0.5,1.5', 'train_scale_tgt': '0.5,1.5', 'learning_rate': 5e-5, 'power': 0.0,
    'momentum': 0.9, 'weight_decay': 0.0005, 'test_image_size': '1024,2048', 'eval_scale': 0.9,
    'test_scale': '0.9,1.0,1.2', 'save': 'debug', 'num_rounds': 4, 'epr': 2, 'kc_policy': 'cb',
    'kc_value': 'conf', 'ds_rate': 4, 'init_tgt_port': 0.2, 'max_tgt_port': 0.5, 'tgt_port_step': 0.05,
    'init_src_port': 0.03, 'max_src_port': 0.06, 'src_port_step': 0.0025, 'randseed': 3,
    'src_sampling_policy': 'r', 'mine_port': 1e-3, 'rare_cls_num': 3, 'mine_chance': 0.8,
    'mr_weight_kld': 0.0, 'lr_weight_ent': 0.0, 'mr_weight_src': 0.0,
}

#: Flags with a value: (flag, type, help).
_VALUED = [
    ('--data-src', str, 'Name of source dataset (gta).'),
    ('--data-src-dir', str, 'Directory of the source dataset.'),
    ('--data-src-list', str, 'List of the source images and labels.'),
    ('--data-tgt-dir', str, 'Directory of the target dataset.'),
    ('--data-tgt-train-list', str, 'List of the target training images and labels.'),
    ('--data-tgt-test-list', str, 'List of the target test images and labels.'),
    ('--num-classes', int, 'Number of classes.'),
    ('--ignore-label', int, 'The label to ignore in training.'),
    ('--model', str, "CRST's DeeplabRes (DeepLab-v2 ResNet-101), or one of our model labels."),
    ('--restore-from', str, 'Weights to start from (.pth or .params).'),
    ('--gpu', int, 'GPU id (the CPU when there is no GPU).'),
    ('--pin-memory', bool, 'Accepted for CRST; no effect here.'),
    ('--log-file', str, 'Name of the log file in --save.'),
    ('--batch-size', int, 'Images per training step.'),
    ('--input-size', str, 'Training crop, h,w.'),
    ('--train-scale-src', str, 'Scale range of source training images, lo,hi.'),
    ('--train-scale-tgt', str, 'Scale range of target training images, lo,hi.'),
    ('--learning-rate', float, 'Base learning rate (the classifier gets 10x through the network).'),
    ('--power', float, 'Polynomial decay power (0 only).'),
    ('--momentum', float, 'SGD momentum.'),
    ('--weight-decay', float, 'SGD weight decay.'),
    ('--test-image-size', str, 'Size the maps are upsampled to, h,w.'),
    ('--eval-scale', float, 'Image scale of the pseudo-label pass.'),
    ('--test-scale', str, 'Image scales of the test pass.'),
    ('--save', str, 'Output folder.'),
    ('--num-rounds', int, 'Rounds; the last one only tests.'),
    ('--epr', int, 'Epochs per round.'),
    ('--kc-policy', str, 'Threshold policy (cb).'),
    ('--kc-value', str, 'Threshold value (conf).'),
    ('--ds-rate', int, 'Keep every ds-rate-th confidence of a class in each image.'),
    ('--init-tgt-port', float, 'Initial target portion.'),
    ('--max-tgt-port', float, 'Largest target portion.'),
    ('--tgt-port-step', float, 'Target portion step per round.'),
    ('--init-src-port', float, 'Initial source portion.'),
    ('--max-src-port', float, 'Largest source portion.'),
    ('--src-port-step', float, 'Source portion step per round.'),
    ('--randseed', int, 'Seed of the source draws.'),
    ('--src-sampling-policy', str, "'c' the same source sample every round, 'r' a new one."),
    ('--mine-port', float, 'Classes below this share of predicted pixels are mined.'),
    ('--rare-cls-num', int, 'Number of rare classes logged.'),
    ('--mine-chance', float, 'Chance of a mining crop on target samples.'),
    ('--mr-weight-kld', float, 'CRST-MRKLD weight.'),
    ('--lr-weight-ent', float, 'CRST-LRENT alpha.'),
    ('--mr-weight-src', float, 'Model regularisation weight on source samples.'),
]

#: Switches: (flag, help).
_SWITCHES = [
    ('--debug', 'Log debug messages (and tracebacks).'),
    ('--is-training', "Update BatchNorm statistics in training (not supported)."),
    ('--eval-training', "Predict with training-mode BatchNorm (not supported)."),
    ('--random-mirror', 'Mirror training crops at random.'),
    ('--random-scale', 'Scale training images at random.'),
    ('--test-flipping', 'Average the predictions of the image and its mirror.'),
    ('--rm-prob', 'Remove the stored maps of a round once it no longer needs them.'),
]


def build_parser():
    """CRST's parser: its 51 flags with their defaults."""
    parser = argparse.ArgumentParser(description="CRST's self-training (crst_seg.py) on CBST-MX's engine.")
    for flag, kind, text in _VALUED:
        dest = flag[2:].replace('-', '_')
        parser.add_argument(flag, type=kind, default=DEFAULTS[dest], help=text)
    for flag, text in _SWITCHES:
        parser.add_argument(flag, action='store_true', default=False, help=text)
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None):
    from issegm.phases.crst_pipeline import run
    return script_main('crst_seg.py', run, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
