"""``crst_seg.py``'s work: CRST's self-training rounds, on our engine (docs/crst.md, "CRST's commands").

Round r < last: pseudo-labels (the target training list forwarded as CRST's
``val`` does it, :mod:`issegm.engine.crst_forward`; thresholds pooled over all
images, :mod:`issegm.method.crst_selection`), the round's source sample and
lists, ``--epr`` epochs of training (:func:`issegm.engine.training.train` with
the CRST loss on full-resolution crops, :mod:`issegm.engine.crst_data`), then
the target test list scored. The last round only scores the target training
and test lists. Outputs under ``--save`` follow CRST's layout; the one
difference is ``{r}/prob/``: CRST's full-resolution maps (159 MB per
Cityscapes image) are replaced by the network's low-resolution outputs
(``{r}/prob_lowres/{name}.npz``, a few MB), from which the same maps are
recomputed when needed.

Flags become values here (:func:`settings_of`, :class:`Schedule`); below
this module no function reads the parsed command line.
"""
import collections
import logging
import os
import shutil

import cv2
import numpy as np

from issegm.engine.crst_data import Augment, CrstIter, Sample
from issegm.engine.crst_forward import LowResOutput, forward_lowres, probabilities_from_lowres, test_scores
from issegm.method.crst import CrstWeights, describe, soft_pseudo_labels
from issegm.method.crst_selection import ConfidencePool, crst_mining_ids, crst_thresholds, select_labels
from issegm.storage.datasets import IGNORE_LABEL, get_dataset
from issegm.storage.run_guard import check_settings, file_digest, lock_output, remove_debris
from util.image import save_png
from util.io import atomic_write, save_npy_atomic

__all__ = ['portion_schedule', 'source_seeds', 'source_sample', 'parse_split_list', 'model_label',
           'settings_of', 'check_args', 'Schedule', 'run', 'CHECKPOINT_NAME', 'DEEPLAB_LABEL']

logger = logging.getLogger(__name__)

#: Our label of CRST's ``--model DeeplabRes`` (DeepLab-v2 ResNet-101, :mod:`util.symbol.deeplab_v2`).
DEEPLAB_LABEL = 'gta_deeplabv2-r101_cls%d_s8'
#: The checkpoints of round r: ``{save}/gta2city_round{r}-{epoch:04d}.params`` (CRST: ``..._epoch{e}.pth``).
CHECKPOINT_NAME = '%s2city_round%d'


# ---------------------------------------------------------------------------- schedule
def portion_schedule(init, step, maximum, rounds):
    """The portion used at each round: ``p_0 = init``, ``p_{r+1} = min(p_r + step, maximum)``.

    Summed in float64 round by round, as CRST does: round 4's target portion
    is 0.39999999999999997, not 0.4, and that is what ``floor(n p)`` sees.
    """
    out, p = [], init
    for _ in range(rounds):
        out.append(p)
        p = min(p + step, maximum)
    return out


def source_seeds(randseed, policy, rounds):
    """The seed of each round's source draw: ``c`` always ``randseed``, ``r`` ``randseed + r + 1``.

    Any other policy leaves CRST's seed where it was (``randseed``).
    """
    if policy == 'r':
        return [randseed + r + 1 for r in range(rounds)]
    return [randseed] * rounds


def source_sample(src_num, portion, seed):
    """Indices of the round's source images: ``floor(src_num * portion)`` drawn without replacement.

    numpy's legacy generator seeded with ``seed`` (CRST: ``np.random.seed``
    then ``np.random.choice``), so the same images as CRST's run.
    """
    count = int(np.floor(src_num * portion))
    return [int(i) for i in np.random.RandomState(seed).choice(src_num, count, replace=False)]


class Schedule(collections.namedtuple('Schedule', ['tgt_portions', 'src_portions', 'seeds'])):
    """Per round: target portion, source portion, source seed (rounds that train)."""

    @classmethod
    def of(cls, s):
        rounds = s['num_rounds']
        return cls(portion_schedule(s['init_tgt_port'], s['tgt_port_step'], s['max_tgt_port'], rounds),
                   portion_schedule(s['init_src_port'], s['src_port_step'], s['max_src_port'], rounds),
                   source_seeds(s['randseed'], s['src_sampling_policy'], rounds))


# ---------------------------------------------------------------------------- flags -> values
def parse_split_list(path, flag):
    """``(images, names, labels)`` of a CRST list (tab-separated image, label); one-line errors."""
    if not os.path.isfile(path):
        raise ValueError('%s: no such list file (%s); copy CRST\'s dataset/list/ from its checkout '
                         '(github.com/yzou2/CRST) into the working folder, or pass %s' % (path, flag, flag))
    images, names, labels = [], [], []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            fields = line.strip().split('\t')
            if not line.strip():
                continue
            if len(fields) < 2:
                raise ValueError('%s line %d: expected image<TAB>label, got %r; fix the list' % (path, number,
                                                                                                  line.strip()))
            images.append(fields[0])
            names.append(fields[0].split('/')[-1])
            labels.append(fields[1])
    if not images:
        raise ValueError('%s: the list is empty; pass %s with at least one image' % (path, flag))
    return images, names, labels


def model_label(model, num_classes):
    """Our model label for ``--model``: CRST's ``DeeplabRes`` or any of our labels."""
    from issegm.engine.model import parse_label
    label = DEEPLAB_LABEL % num_classes if model == 'DeeplabRes' else model
    classes = parse_label(label).classes
    if classes != num_classes:
        raise ValueError('--model %s has %d classes but --num-classes is %d; make them agree'
                         % (model, classes, num_classes))
    return label


_UNSUPPORTED = [
    ('is_training', 'CRST trains with model.eval() unless --is-training; our networks keep BatchNorm frozen'),
    ('eval_training', 'our networks predict with the stored BatchNorm statistics'),
]


def check_args(args):
    """One-line errors for flag values CRST's released code does not carry through, or we do not."""
    for name, why in _UNSUPPORTED:
        if getattr(args, name):
            raise ValueError('--%s is not supported: %s; drop it' % (name.replace('_', '-'), why))
    if args.kc_policy != 'cb' or args.kc_value != 'conf':
        raise ValueError('--kc-policy %s --kc-value %s: CRST\'s crst_seg.py computes thresholds only for '
                         '--kc-policy cb --kc-value conf; use those' % (args.kc_policy, args.kc_value))
    if args.power != 0:
        raise ValueError('--power %g: CRST restarts its polynomial decay every epoch, which our training loop '
                         'does not do; use --power 0 (CRST\'s default and its scripts\')' % args.power)
    if args.data_src != 'gta':
        raise ValueError('--data-src %s: CRST\'s crst_seg.py defines its palette for gta only (it fails on other '
                         'sources); use --data-src gta' % args.data_src)
    if args.lr_weight_ent < 0 or args.mr_weight_kld < 0 or args.mr_weight_src < 0:
        raise ValueError('--lr-weight-ent, --mr-weight-kld and --mr-weight-src must be >= 0')
    if args.num_rounds < 1 or args.epr < 1 or args.batch_size < 1 or args.ds_rate < 1:
        raise ValueError('--num-rounds, --epr, --batch-size and --ds-rate must be >= 1')


def _pair(text, flag, cast=int):
    try:
        a, b = (cast(v) for v in str(text).split(','))
    except ValueError:
        raise ValueError('%s %r: expected two comma-separated numbers, e.g. 512,1024' % (flag, text))
    return a, b


def settings_of(args):
    """The values a run's numbers depend on, from the flags (recorded in ``{save}/run.json``)."""
    s = {k: v for k, v in vars(args).items() if k not in ('gpu', 'pin_memory', 'log_file', 'debug', 'save')}
    s['input_size'] = list(_pair(args.input_size, '--input-size'))
    s['test_image_size'] = list(_pair(args.test_image_size, '--test-image-size'))
    s['train_scale_src'] = list(_pair(args.train_scale_src, '--train-scale-src', float))
    s['train_scale_tgt'] = list(_pair(args.train_scale_tgt, '--train-scale-tgt', float))
    s['test_scale'] = [float(v) for v in str(args.test_scale).split(',')]
    s['model_label'] = model_label(args.model, args.num_classes)
    return s


# ---------------------------------------------------------------------------- the run
class _Run(object):
    """One ``crst_seg.py`` run: its values, its folders, and the steps of a round."""

    def __init__(self, args, s, ctx):
        self.s, self.ctx, self.save = s, ctx, args.save
        self.info = get_dataset('gta')
        self.C = args.num_classes
        self.palette = self.info.palette.reshape(-1, 3)[self.info.train2label[:self.C]].ravel()
        self.src = parse_split_list(args.data_src_list, '--data-src-list')
        self.tgt = parse_split_list(args.data_tgt_train_list, '--data-tgt-train-list')
        self.test = parse_split_list(args.data_tgt_test_list, '--data-tgt-test-list')
        self.weights = CrstWeights(s['mr_weight_kld'], 0., 0., s['lr_weight_ent'], s['mr_weight_src'])
        self.pseudo = os.path.join(self.save, 'pseudo_label')
        self.stats = os.path.join(self.save, 'stats')
        self.lists = os.path.join(self.save, 'list')

    def _colour(self, path, train_ids):
        save_png(path, train_ids, self.palette)

    def _read(self, path):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError('cannot read %s as an image; check --data-tgt-dir and the list' % path)
        return np.ascontiguousarray(image[:, :, ::-1])

    def _gt(self, path):
        label = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if label is None:
            raise ValueError('cannot read %s as a label image; check --data-tgt-dir and the list' % path)
        if list(label.shape) != list(self.s['test_image_size']):
            # CRST compares its maps, made at --test-image-size, with the labels pixel by pixel.
            raise ValueError('%s is %dx%d but --test-image-size is %d,%d; pass --test-image-size %d,%d'
                             % ((path,) + label.shape + tuple(self.s['test_image_size']) + label.shape))
        return self.info.label2train[label]

    def _scores(self, confusion, what):
        with np.errstate(invalid='ignore', divide='ignore'):
            iou = np.diag(confusion) / (confusion.sum(1) + confusion.sum(0) - np.diag(confusion))
        iou = np.nan_to_num(iou)
        logger.info('%s: mean iou: %.2f%%', what, np.mean(iou) * 100)
        logger.info('%s', ' '.join('%5.2f' % v for v in iou * 100))
        return iou

    def _confusion(self, gt, pred):
        k = (gt >= 0) & (gt < self.C)
        return np.bincount(self.C * gt[k].astype(int) + pred[k], minlength=self.C ** 2).reshape(self.C, self.C)

    # -- pseudo-labels
    def val(self, net, round_dir):
        """Forward the target training list; keep maps, predictions; return the confidence pool."""
        images, names, labels = self.tgt
        low_dir, pred_dir, vis_dir = (os.path.join(round_dir, d) for d in ('prob_lowres', 'pred', 'pred_vis'))
        pool = ConfidencePool(self.C, self.s['ds_rate'])
        confusion = np.zeros((self.C, self.C), np.int64)
        for image, name, label in zip(images, names, labels):
            stem = name.split('.')[0]
            low = forward_lowres(net, self._read(os.path.join(self.s['data_tgt_dir'], image)), self.s['eval_scale'],
                                 self.s['test_flipping'], self.ctx)
            low.save(os.path.join(low_dir, stem + '.npz'))
            probs = probabilities_from_lowres(low, self.s['test_image_size'], self.ctx)
            pred = np.argmax(probs, axis=0).astype(np.uint8)
            pool.add(pred, probs.max(axis=0))
            confusion += self._confusion(self._gt(os.path.join(self.s['data_tgt_dir'], label)), pred)
            save_png(os.path.join(pred_dir, stem + '.png'), pred)
            self._colour(os.path.join(vis_dir, stem + '_color.png'), pred)
        self._scores(confusion, 'target train set (pseudo-label pass)')
        return pool

    def thresholds(self, pool, portion, r):
        """CRST's ``kc_parameters``: thresholds, selected sizes, rare and mining ids, saved to stats/."""
        cls_thresh, cls_sel_size = crst_thresholds(pool.pooled(), portion)
        rare_id, mine_id = crst_mining_ids(pool.counts, self.s['mine_port'], self.s['rare_cls_num'])
        for name, value in (('rare_id', rare_id), ('mine_id', mine_id), ('cls_thresh', cls_thresh),
                            ('cls_sel_size', cls_sel_size)):
            save_npy_atomic(os.path.join(self.stats, '%s_round%d.npy' % (name, r)), value)
        logger.info('Mining ids : %s! %d rarest ids: %s!', mine_id, self.s['rare_cls_num'], rare_id)
        logger.info('class thresholds (portion %r): %s', portion, cls_thresh)
        return cls_thresh, mine_id

    def label(self, cls_thresh, round_dir):
        """CRST's ``label_selection``: pseudo-label PNGs (label ids, 0 ignored) and colour maps."""
        images, names, _ = self.tgt
        alpha = self.s['lr_weight_ent']
        for name in names:
            stem = name.split('.')[0]
            probs = probabilities_from_lowres(LowResOutput.load(os.path.join(round_dir, 'prob_lowres', stem + '.npz')),
                                              self.s['test_image_size'], self.ctx)
            if alpha > 0:
                soft, label = soft_pseudo_labels(probs, cls_thresh, alpha)
                weighted = soft.argmax(axis=0).astype(np.uint8)
            else:
                label, weighted = select_labels(probs, cls_thresh)
            self._colour(os.path.join(round_dir, 'weighted_pred_vis', stem + '_color.png'), weighted)
            self._colour(os.path.join(round_dir, 'pseudo_label_color', stem + '_color.png'), label)
            ids = self.info.train2label[label]
            ids[label == IGNORE_LABEL] = 0  # '0' is Cityscapes' 'unlabeled'
            save_png(os.path.join(self.pseudo, name), ids)

    def write_lists(self, sel, round_dir):
        """``list/src_train.lst`` and ``list/tgt_train.lst`` (LRENT: a third column, the stored map)."""
        src_images, _, src_labels = self.src
        with atomic_write(os.path.join(self.lists, 'src_train.lst')) as f:
            for i in sel:
                f.write('%s\t%s\n' % (src_images[i], src_labels[i]))
        images, names, _ = self.tgt
        with atomic_write(os.path.join(self.lists, 'tgt_train.lst')) as f:
            for image, name in zip(images, names):
                row = [image, os.path.join(self.pseudo, name)]
                if self.weights.soft:
                    row.append(os.path.join(round_dir, 'prob_lowres', name.split('.')[0] + '.npz'))
                f.write('\t'.join(row) + '\n')

    # -- training
    def samples(self, sel, cls_thresh, round_dir):
        src_images, _, src_labels = self.src
        out = [Sample(os.path.join(self.s['data_src_dir'], src_images[i]),
                      os.path.join(self.s['data_src_dir'], src_labels[i]), True, None) for i in sel]
        images, names, _ = self.tgt
        for image, name in zip(images, names):
            soft = None
            if self.weights.soft:
                soft = _SoftLabels(os.path.join(round_dir, 'prob_lowres', name.split('.')[0] + '.npz'),
                                   tuple(self.s['test_image_size']), cls_thresh, self.s['lr_weight_ent'], self.ctx)
            out.append(Sample(os.path.join(self.s['data_tgt_dir'], image), os.path.join(self.pseudo, name),
                              False, soft))
        return out

    def retrain(self, weights, samples, mine_id, r):
        from issegm.engine.objective import Objective
        from issegm.engine.training import train
        s = self.s
        aug = Augment(tuple(s['input_size']), {True: tuple(s['train_scale_src']), False: tuple(s['train_scale_tgt'])},
                      s['random_scale'], s['random_mirror'], s['mine_chance'])
        dataiter = CrstIter(samples, self.info.label2train, aug, s['batch_size'], self.C, self.weights.soft, mine_id)
        for line in describe(self.weights):
            logger.info(line)
        logger.info('###### Start model retraining dataset in round %d! ######', r)
        done = train(s['model_label'], dataiter, os.path.join(self.save, CHECKPOINT_NAME % (s['data_src'], r)),
                     weights=weights, contexts=[self.ctx], from_epoch=0, to_epoch=s['epr'],
                     base_lr=s['learning_rate'], lr_policy='fixed', weight_decay=s['weight_decay'],
                     momentum=s['momentum'], seed=s['randseed'] * 1000 + r,
                     objective=Objective(self.weights, label_size=tuple(s['input_size'])))
        return done[-1]

    # -- scoring
    def score(self, net, which, round_dir):
        """CRST's ``test``: multi-scale, flip-averaged predictions of a target list, colour maps, mIoU."""
        images, names, labels = self.tgt if which == 'train' else self.test
        out_dir = os.path.join(round_dir, 'trainSet_vis' if which == 'train' else 'testSet_vis')
        confusion = np.zeros((self.C, self.C), np.int64)
        for image, name, label in zip(images, names, labels):
            scores = test_scores(net, self._read(os.path.join(self.s['data_tgt_dir'], image)), self.s['test_scale'],
                                 self.s['test_image_size'], self.s['test_flipping'], self.ctx)
            pred = np.argmax(scores, axis=0).astype(np.uint8)
            confusion += self._confusion(self._gt(os.path.join(self.s['data_tgt_dir'], label)), pred)
            self._colour(os.path.join(out_dir, name.split('.')[0] + '_color.png'), pred)
        return self._scores(confusion, 'target %s set' % which)


class _SoftLabels(object):
    """A target sample's LRENT soft labels (H, W, C), recomputed from its stored low-resolution map.

    The upsampling and softmax run on ``ctx`` (the training device); CRST
    read the same numbers from a 159 MB file per image.
    """

    def __init__(self, path, size, cls_thresh, alpha, ctx=None):
        self.path, self.size, self.cls_thresh, self.alpha, self.ctx = path, size, cls_thresh, alpha, ctx

    def __call__(self):
        probs = probabilities_from_lowres(LowResOutput.load(self.path), self.size, self.ctx)
        return soft_pseudo_labels(probs, self.cls_thresh, self.alpha)[0].transpose(1, 2, 0)


def _check_files(run):
    missing = []
    for root, (images, _, labels) in ((run.s['data_src_dir'], run.src), (run.s['data_tgt_dir'], run.tgt),
                                      (run.s['data_tgt_dir'], run.test)):
        for rel in images + labels:
            if not os.path.isfile(os.path.join(root, rel)):
                missing.append(os.path.join(root, rel))
    if missing:
        raise ValueError('%d listed files are missing, e.g. %s; check --data-src-dir / --data-tgt-dir and the lists'
                         % (len(missing), missing[0]))


def _rm(path):
    if os.path.isdir(path):
        shutil.rmtree(path)


def run(args):
    """``crst_seg.py``: CRST's rounds; returns the last round's per-class IoU on the target test list."""
    from issegm.engine.model import get_model
    from util.device import get_contexts
    from util.log import set_logger
    check_args(args)
    s = settings_of(args)
    if not os.path.isfile(args.restore_from):
        raise ValueError('--restore-from %s: no such file; download CRST\'s source model (README, "CRST\'s '
                         'commands") or pass --restore-from' % args.restore_from)
    ctx = get_contexts(str(args.gpu))[0]
    work = _Run(args, s, ctx)
    _check_files(work)
    lock_output(args.save, flag='--save')
    remove_debris(args.save)
    recorded = dict(s, restore_from_sha256=file_digest(args.restore_from),
                    lists_sha256=[file_digest(p) for p in (args.data_src_list, args.data_tgt_train_list,
                                                           args.data_tgt_test_list)])
    check_settings(args.save, 'crst_seg', recorded, what='a CRST run')
    set_logger(args.save, args.log_file, args.debug)
    logger.info('start with arguments %s', args)
    schedule = Schedule.of(s)
    weights = args.restore_from
    iou = None
    for r in range(s['num_rounds']):
        round_dir = os.path.join(args.save, str(r))
        os.makedirs(os.path.join(round_dir, 'pseudo_label_color'), exist_ok=True)
        net = get_model(s['model_label'], weights, ctx, native=True)
        if r == s['num_rounds'] - 1:
            _rm(work.pseudo)
            work.score(net, 'train', round_dir)
            iou = work.score(net, 'test', round_dir)
            break
        logger.info('###### Start evaluating target domain train set in round %d! ######', r)
        pool = work.val(net, round_dir)
        cls_thresh, mine_id = work.thresholds(pool, schedule.tgt_portions[r], r)
        work.label(cls_thresh, round_dir)
        if args.rm_prob and not work.weights.soft:
            _rm(os.path.join(round_dir, 'prob_lowres'))
        sel = source_sample(len(work.src[0]), schedule.src_portions[r], schedule.seeds[r])
        work.write_lists(sel, round_dir)
        weights = work.retrain(weights, work.samples(sel, cls_thresh, round_dir), mine_id, r)
        if args.rm_prob and work.weights.soft:
            _rm(os.path.join(round_dir, 'prob_lowres'))
        iou = work.score(get_model(s['model_label'], weights, ctx, native=True), 'test', round_dir)
    return iou
