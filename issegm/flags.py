"""The scripts' flags, declared once, and the rule each value must follow.

The scripts accept every flag of the reference with its name, meaning and
default. A script lists the ones it takes, in its reference order
(:func:`issegm.phases.cli.add_flags`), changing a default where the reference
script had another. This module imports nothing from the project, so every
layer may read the table.
"""
import math

__all__ = ['FLAGS', 'CRST_FLAGS', 'RULES', 'PAIR_RULES', 'MAX_TEST_SCALE', 'POSTPROCESS_MODES', 'PATH_FLAGS',
           'flag_name']

#: The longest --test-scales side accepted: 19 float32 maps at 8192 x 16384 are 10 GB already.
MAX_TEST_SCALE = 8192

#: Where the post-processing after the forward runs (:mod:`issegm.engine.postprocess`).
POSTPROCESS_MODES = ('auto', 'pil', 'device')

FLAGS = {
    '--dataset': dict(default=None, help='The (source) dataset, e.g. gta, synthia, cityscapes, cityscapes16.'),
    '--dataset-tgt': dict(default=None, help='The target dataset, e.g. cityscapes.'),
    '--split': dict(default='train', help='The (source) split, e.g. train, val.'),
    '--split-tgt': dict(default='val', help='The target split, e.g. train.'),
    '--data-root': dict(default=None, help='The root data dir of the (source) dataset (default data/{dataset}).'),
    '--data-root-tgt': dict(default=None, help='The root data dir of the target dataset.'),
    '--output': dict(default=None, help='The output dir (default: the folder of --weights in val, '
                                        '"output" in train).'),
    '--model': dict(default=None, help='The unique label of this model, e.g. gta_rna-a1_cls19_s8, '
                                       'gta_deeplabv2-r101_cls19_s8, gta_fcn8s-vgg16_cls19_s8 (default: the '
                                       'weights name before _ep-).'),
    '--weights': dict(default=None, help='The path of a pretrained model (.params; for DeepLab-v2 also CRST '
                                         '.pth; for train_src.py also GluonCV ImageNet files).'),
    '--gpus': dict(default='0', help='The devices to use, e.g. 0,1,2,3 (the CPU, after a warning, if none).'),
    '--batch-images': dict(default=None, type=int, help='The number of images per batch.'),
    '--crop-size': dict(default=None, type=int, help='The size of network input during training.'),
    '--origin-size': dict(default=2048, type=int, help='The size of (source) images to crop from.'),
    '--origin-size-tgt': dict(default=2048, type=int, help='The size of target images to crop from.'),
    '--scale-rate-range': dict(default='0.7,1.3', help='The range of rescaling, e.g. 0.7,1.3.'),
    '--lr-type': dict(default=None, help='The learning rate policy: fixed (default), step, linear or poly.'),
    '--base-lr': dict(default=None, type=float, help='The learning rate to start from.'),
    '--lr-steps': dict(default=None, help='With --lr-type step: update counts at which the rate drops 10x.'),
    '--weight-decay': dict(default=0.0005, type=float, help='The weight decay in SGD.'),
    '--from-epoch': dict(default=None, type=int, help='The epoch to start from.'),
    '--stop-epoch': dict(default=None, type=int, help='The epoch to stop after (default --to-epoch).'),
    '--to-epoch': dict(default=None, type=int, help='The epoch the learning-rate schedule ends at.'),
    '--init-tgt-port': dict(default=0.3, type=float, help='The portion of target pixels selected as '
                                                          'pseudo-labels (per class with cb).'),
    '--init-src-port': dict(default=0.3, type=float, help='The portion of source images selected.'),
    '--seed-int': dict(default=0, type=int, help='The random seed of the source selection.'),
    '--mine-port': dict(default=0.5, type=float, help='The probability of a small-class crop.'),
    '--mine-id-number': dict(default=3, type=int, help='The number of rarest classes to mine.'),
    '--mine-thresh': dict(default=0.001, type=float, help='Classes with a smaller pixel share are mined first.'),
    '--phase': dict(default='train', help='Phase of this call, e.g. train, val.'),
    '--with-prior': dict(default='False', help='Multiply by the spatial prior: True or False.'),
    '--kc-policy': dict(default='cb', help='Thresholds: cb (class-balanced, CBST) or global (ST).'),
    '--test-scales': dict(default=None, help='Lengths of the longer side to resize an image into, e.g. 2048; '
                                             'several (1536,2048,2560) average the probabilities.'),
    '--test-flipping': dict(action='store_true', help='Average the predictions of the image and its mirror.'),
    '--test-steps': dict(default=1, type=int, help='Sub-stride prediction: steps x steps shifted forwards '
                                                    'interleaved per image (a divisor of the stride).'),
    '--postprocess': dict(default='auto', choices=POSTPROCESS_MODES,
                          help='Where upsampling, argmax, confidences and scores run: device (MXNet on the '
                               "network's context), pil (PIL and NumPy on the host, as the reference), or auto "
                               '(device on a GPU, the faster of the two on a CPU).'),
    '--save-predictions': dict(action='store_true', help='Accepted for compatibility; no effect.'),
    '--no-save-results': dict(dest='save_results', action='store_false', default=True,
                              help='Do not save the predicted label maps.'),
    '--kvstore': dict(default='local', help='The type of kvstore: local, device; dist_sync or dist_device_sync '
                                            'under python -m issegm.launch (where local/device become them).'),
    '--prefetch-threads': dict(default=1, type=int, help='The number of workers reading data.'),
    '--prefetcher': dict(default='thread', help='The type of the data workers: thread or process.'),
    '--cache-images': dict(default=None, type=int, help='Keep encoded images in memory: 0 or 1.'),
    '--log-file': dict(default=None, help='The log file name in --output.'),
    '--check-start': dict(default=1, type=int, help='Accepted for compatibility; every epoch is saved.'),
    '--check-step': dict(default=4, type=int, help='Accepted for compatibility; every epoch is saved.'),
    '--debug': dict(action='store_true', help='Log debug info; run MXNet with its naive engine.'),
    '--backward-do-mirror': dict(action='store_true', help='Recompute in backward: less GPU memory.'),
    '--no-cudnn': dict(dest='no_mxnet_cudnn_autotune_default', action='store_true',
                       help='Turn off cuDNN autotuning.'),
    '--restart': dict(action='store_true', help='Discard what an earlier run with other settings left in '
                                                '--output and start again (ours; without it such a rerun '
                                                'stops with the differences).'),
    '--stop-on-collapse': dict(action='store_true', help='Stop before retraining on a round whose pseudo-labels '
                                                         'the collapse guard flags (exit 1; rerun without the '
                                                         'flag to continue); without it the guard only warns.'),
    # CRST (issegm/method/crst.py); 0 everywhere is CBST.
    '--mr-weight-kld': dict(default=0., type=float, help='CRST-MRKLD: weight of the KL(uniform||p) model '
                                                         'regulariser (applied twice on target pixels, as '
                                                         'CRST does; 0: off).'),
    '--mr-weight-ent': dict(default=0., type=float, help='CRST-MRENT: weight of the negative-entropy model '
                                                         'regulariser (as --mr-weight-kld; 0: off).'),
    '--mr-weight-l2': dict(default=0., type=float, help='CRST-MRL2: weight of the squared-L2 model '
                                                        'regulariser (as --mr-weight-kld; 0: off).'),
    '--lr-weight-ent': dict(default=0., type=float, help='CRST-LRENT: alpha of the entropy label regulariser; '
                                                         '> 0 trains on soft pseudo-labels (needs --kc-policy '
                                                         'cb; 0: off).'),
    '--mr-weight-src': dict(default=0., type=float, help='CRST: model-regulariser weight on source samples '
                                                         '(0: target samples only).'),
}

#: The CRST flags, taken by solve_AO.py and solve_ST.py.
CRST_FLAGS = ['--mr-weight-kld', '--mr-weight-ent', '--mr-weight-l2', '--lr-weight-ent', '--mr-weight-src']


def _number(kind, low=None, high=None, low_open=False):
    def check(value):
        if kind is float and not math.isfinite(value):
            return False
        if low is not None and (value <= low if low_open else value < low):
            return False
        return high is None or value <= high
    return check


def _scale_range(text):
    try:
        lo, hi = (float(v) for v in str(text).split(','))
    except ValueError:
        return False
    return math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi


def _test_scales(text):
    try:
        return all(32 <= int(v) <= MAX_TEST_SCALE for v in str(text).split(','))
    except ValueError:
        return False


def _increasing(text):
    try:
        steps = [int(v) for v in str(text).split(',') if v.strip()]
    except ValueError:
        return False
    return bool(steps) and steps[0] > 0 and all(a < b for a, b in zip(steps, steps[1:]))


def _gpus(text):
    t = str(text).strip().lower()
    return t in ('', 'cpu', '-1') or all(v.strip().isdigit() for v in t.split(','))


#: dest -> (check, what a good value is). None values (flag not given) are not checked.
RULES = {
    'batch_images': (_number(int, 1), 'a positive number of images'),
    'crop_size': (_number(int, 1), 'a positive size in pixels'),
    'origin_size': (_number(int, 1), 'a positive size in pixels'),
    'origin_size_tgt': (_number(int, 1), 'a positive size in pixels'),
    'scale_rate_range': (_scale_range, 'lo,hi with 0 < lo <= hi, e.g. 0.7,1.3'),
    'base_lr': (_number(float, 0), 'a finite rate >= 0'),
    'weight_decay': (_number(float, 0), 'a finite value >= 0'),
    'from_epoch': (_number(int, 0), 'an epoch >= 0'),
    'stop_epoch': (_number(int, 1), 'an epoch >= 1'),
    'to_epoch': (_number(int, 1), 'an epoch >= 1'),
    'init_tgt_port': (_number(float, 0, 1, low_open=True), 'a portion in (0, 1]'),
    'init_src_port': (_number(float, 0, 1), 'a portion in [0, 1]'),
    'max_tgt_port': (_number(float, 0, 1, low_open=True), 'a portion in (0, 1]'),
    'max_src_port': (_number(float, 0, 1), 'a portion in [0, 1]'),
    'step_tgt_port': (_number(float, 0, 1), 'a step in [0, 1]'),
    'step_src_port': (_number(float, 0, 1), 'a step in [0, 1]'),
    'epr': (_number(int, 1), 'at least 1 epoch'),
    'num_round': (_number(int, 1), 'at least 1 round'),
    'idx_round': (_number(int, 0), 'a round number >= 0'),
    'seed_int': (_number(int, 0, 2 ** 32 - 1), 'a seed in 0 .. 2^32-1'),
    'mine_port': (_number(float, 0, 1), 'a probability in [0, 1]'),
    'mine_id_number': (_number(int, 0), 'a number of classes >= 0'),
    'mine_thresh': (_number(float, 0, 1), 'a pixel share in [0, 1]'),
    'test_scales': (_test_scales, 'comma-separated longer sides of 32 to %d pixels, e.g. 2048' % MAX_TEST_SCALE),
    'lr_steps': (_increasing, 'increasing update counts, e.g. 20000,40000'),
    'cache_images': (lambda v: v in (0, 1), '0 or 1'),
    'prefetch_threads': (_number(int, 1), 'at least 1 worker'),
    'gpus': (_gpus, 'device ids such as 0 or 0,1 (empty for the CPU)'),
    'with_prior': (lambda v: v in ('True', 'False'), 'True or False'),
    'kc_policy': (lambda v: v in ('cb', 'global'), 'cb (CBST) or global (ST)'),
    'prefetcher': (lambda v: v in ('thread', 'process'), 'thread or process'),
    'lr_type': (lambda v: v in ('fixed', 'step', 'linear', 'poly'), 'fixed, step, linear or poly'),
    'source_sample_policy': (lambda v: v in ('cumulative', 'random'), 'cumulative or random'),
}

#: (low dest, high dest, why, exempt): values that contradict each other when low > high, except the
#: pair ``exempt``: the reference's solve_AO defaults (--init-src-port 0.3 above --max-src-port 0.06,
#: a portion that stays at 0.3) are accepted as they are.
PAIR_RULES = [
    ('init_tgt_port', 'max_tgt_port', 'the target portion starts above its maximum', None),
    ('init_src_port', 'max_src_port', 'the source portion starts above its maximum', (0.3, 0.06)),
]

#: Flags whose dest is not their name.
_FLAG_OF = {'epr': '--epoch-per-round'}


def flag_name(dest):
    return _FLAG_OF.get(dest, '--' + dest.replace('_', '-'))


#: Paths that go into UTF-8 list files and logs.
PATH_FLAGS = ('output', 'data_root', 'data_root_tgt', 'weights')
