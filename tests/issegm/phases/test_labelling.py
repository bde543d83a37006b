"""Pseudo-label phase (docs/behaviour.md section 6): the lean path equals a plain full-resolution path; resume.

A cheap deterministic stand-in for the network gives low-resolution
probabilities, so these tests exercise everything after the forward pass
(upsampling, prior, confidences, thresholds, statistics, PNGs, list file)
without MXNet. The end-to-end runs with the real network are in test_solve.py.
"""
import os
import types

import numpy as np
import pytest
import scipy.io
from PIL import Image

from issegm.phases import labelling as pseudo_labelling
from issegm.phases import self_training as st
from issegm.errors import PhaseError
from issegm.storage.datasets import get_dataset
from issegm.engine.inference import padded_shape, upsample_probs
from issegm.storage.probmaps import LowRes
from issegm.storage.datasets import IGNORE_LABEL
from issegm.phases.rounds import round_schedule, val_argv
from issegm.solve_ST import build_parser
from issegm.testing.fakes import C, NAMES, SCALE, SHAPE, FakePredictor, make_layout, val_args
from issegm.testing.reference_cbst import reference_labels, reference_stats
from util.image import longer_side_shape


def full_resolution_path(prior=None, policy='cb', portion=0.2, steps=1):
    """The reference's way: keep full-resolution maps, sort-based thresholds."""
    pred = FakePredictor(steps=steps)
    ups, maps = [], []
    for name in NAMES:
        img = np.asarray(Image.open('cs/leftImg8bit/train/aachen/%s.png' % name).convert('RGB'))
        low, im_hw, stride = pred.predict_lowres(img, SCALE)
        up = upsample_probs(low, stride, im_hw, img.shape[:2])
        ups.append(up)
        maps.append(up if prior is None else np.multiply(prior, up).astype(np.float32))
    size, thresh = reference_stats(maps, portion, policy)
    return ups, maps, size, thresh


def read_png(path):
    return np.asarray(Image.open(path))


class Agreement(object):
    """Pixel agreement of label maps: exact for the PIL path, >= 99.99 % over the run for the device path."""

    def __init__(self, exact):
        self.exact, self.same, self.total = exact, 0, 0

    def __call__(self, got, want):
        assert got.shape == want.shape
        if self.exact:
            np.testing.assert_array_equal(got, want)
        self.same += int((got == want).sum())
        self.total += got.size

    def check(self):
        assert self.same >= 0.9999 * self.total, (self.same, self.total)


@pytest.mark.parametrize('mode', ['pil', 'device'])
@pytest.mark.parametrize('policy,prior', [('cb', 'False'), ('global', 'False'), ('cb', 'True')])
def test_lean_path_equals_full_resolution_path(layout, policy, prior, mode):
    info = get_dataset('cityscapes')
    prior_array = None
    if prior == 'True':
        rng = np.random.RandomState(1)
        prior_array = rng.uniform(0.2, 1.0, (C,) + SHAPE).astype(np.float32)
        os.makedirs('spatial_prior/gta')
        scipy.io.savemat('spatial_prior/gta/prior_array.mat', {'prior_array': prior_array})
    args = val_args('out', policy, prior)
    args.postprocess = mode
    assert st.run(args, predictor=FakePredictor()) == 0
    stats = pseudo_labelling._load_json('out/0/pseudo_label.done.json')['stats']
    ups, maps, ref_size, ref_thresh = full_resolution_path(prior_array, policy)

    thresh = np.load('out/stats/cls_thresh.npy')
    if mode == 'pil':
        np.testing.assert_array_equal(thresh, ref_thresh)
        assert stats['cls_thresh'] == ref_thresh.tolist()
    else:
        # float32 matrix products instead of PIL's float64 sums: the same values to rounding
        np.testing.assert_allclose(thresh, ref_thresh, rtol=1e-5, atol=0)
        assert (thresh != ref_thresh).any()  # really the other path
    np.testing.assert_array_equal(np.load('out/stats/cls_size.npy'), ref_size)
    share = ref_size / ref_size.sum()
    np.testing.assert_array_equal(np.load('out/stats/mine_id.npy'), np.argsort(share)[:3])
    np.testing.assert_array_equal(np.load('out/stats/mine_id_priority.npy'), np.nonzero(share < 0.001)[0])
    if policy == 'cb':
        assert ref_size[3] == 0 and ref_thresh[3] == 0  # never predicted: no threshold
    agree = Agreement(mode == 'pil')
    ignored = 0
    for name, up, probmap in zip(NAMES, ups, maps):
        label, argmax = reference_labels(probmap, ref_thresh)
        ids = info.train2label[label]
        ignored += (label == IGNORE_LABEL).sum()
        agree(read_png('out/0/self_train/pseudo_labelIds/%s.png' % name), ids)
        col = Image.open('out/0/self_train/pseudo_color/%s.png' % name)
        assert col.mode == 'P'
        agree(np.asarray(col), ids)
        if policy == 'cb':
            agree(read_png('out/0/self_train/rwlabelIds/%s.png' % name), info.train2label[argmax])
        else:
            assert not os.path.exists('out/0/self_train/rwlabelIds')
        agree(read_png('out/0/results/nplabelIds/%s.png' % name), info.train2label[up.argmax(0)])
        if prior == 'True':
            agree(read_png('out/0/self_train/splabelIds/%s.png' % name), info.train2label[probmap.argmax(0)])
    agree.check()
    assert 0 < ignored < len(NAMES) * SHAPE[0] * SHAPE[1]  # the portion really selects
    # The round's scores against the ground truth: the plain argmax, and with the prior its product's.
    right = {'scores_np': 0, 'scores_sp': 0}
    valid = 0
    for name, up, probmap in zip(NAMES, ups, maps):
        gt = info.label2train[read_png('cs/gtFine/train/aachen/%s.png' % name.replace('leftImg8bit', 'gtFine_labelIds'))]
        keep = gt != IGNORE_LABEL
        valid += keep.sum()
        right['scores_np'] += (up.argmax(0) == gt)[keep].sum()
        right['scores_sp'] += (probmap.argmax(0) == gt)[keep].sum()
    expected = ['scores_np', 'scores_sp'] if prior == 'True' else ['scores_np']
    assert sorted(k for k in stats if k.startswith('scores')) == expected
    for key in expected:
        assert stats[key]['pixel_acc'] == pytest.approx(right[key] / valid, abs=2e-4 if mode == 'device' else 1e-12)
    with open('issegm/data_list/cityscapes/train_training_gpu0.lst') as f:
        lines = f.read().splitlines()
    assert lines[0] == 'leftImg8bit/train/aachen/%s.png\tout/0/self_train/pseudo_labelIds/%s.png' % (
        NAMES[0], NAMES[0])
    assert len(lines) == len(NAMES)
    assert not os.path.exists('out/0/probmap')  # dropped once the round is complete
    assert os.path.exists('out/gta_rna-a1_cls19_s8_ep-0000_train.log')


@pytest.mark.parametrize('mode', ['pil', 'device'])
def test_kill_in_pass_one_resumes_without_forwarding_finished_images(layout, mode):
    def args_of(output, **kw):
        args = val_args(output, **kw)
        args.postprocess = mode
        return args

    pseudo_labelling.generate_pseudo_labels(args_of('ref'), predictor=FakePredictor())  # uninterrupted
    ref_size, ref_thresh = np.load('ref/stats/cls_size.npy'), np.load('ref/stats/cls_thresh.npy')
    ref_labels = [read_png('ref/0/self_train/pseudo_labelIds/%s.png' % name) for name in NAMES]
    with pytest.raises(PhaseError) as err:
        pseudo_labelling.generate_pseudo_labels(args_of('out'), predictor=FakePredictor(fail_at=2))
    msg = str(err.value)
    assert 'phase val' in msg and 'image 3/4' in msg and NAMES[2] in msg and 'rerun' in msg
    assert '\n' not in msg
    counting = FakePredictor()
    pseudo_labelling.generate_pseudo_labels(args_of('out'), predictor=counting)
    assert counting.calls == 2  # images 1 and 2 were reloaded, not forwarded
    np.testing.assert_array_equal(np.load('out/stats/cls_thresh.npy'), ref_thresh)
    np.testing.assert_array_equal(np.load('out/stats/cls_size.npy'), ref_size)
    for name, ref in zip(NAMES, ref_labels):
        np.testing.assert_array_equal(read_png('out/0/self_train/pseudo_labelIds/%s.png' % name), ref)

    # A complete round is not regenerated: no forward at all, stats restored.
    os.remove('out/stats/cls_thresh.npy')
    again = FakePredictor()
    pseudo_labelling.generate_pseudo_labels(args_of('out'), predictor=again)
    assert again.calls == 0
    np.testing.assert_array_equal(np.load('out/stats/cls_thresh.npy'), ref_thresh)
    # Other settings for the same round: regenerated.
    other = FakePredictor()
    pseudo_labelling.generate_pseudo_labels(args_of('out', portion='0.5'), predictor=other)
    assert other.calls == len(NAMES)
    assert not np.array_equal(np.load('out/stats/cls_thresh.npy'), ref_thresh)
    # ... and so are the labels: none of the 0.2 run's PNGs is kept (a fresh 0.5 run is the oracle).
    pseudo_labelling.generate_pseudo_labels(args_of('ref5', portion='0.5'), predictor=FakePredictor())
    changed = 0
    for name in NAMES:
        got = read_png('out/0/self_train/pseudo_labelIds/%s.png' % name)
        np.testing.assert_array_equal(got, read_png('ref5/0/self_train/pseudo_labelIds/%s.png' % name))
        changed += not np.array_equal(got, read_png('ref/0/self_train/pseudo_labelIds/%s.png' % name))
    assert changed == len(NAMES)


@pytest.mark.parametrize('mode', ['pil', 'device'])
def test_sub_stride_maps_are_stored_and_upsampled_at_their_own_stride(layout, mode):
    # --test-steps 2: maps at stride 4 between the passes; both passes upsample by 4.
    args = val_args('out', steps=2)
    args.postprocess = mode
    assert st.run(args, predictor=FakePredictor(steps=2)) == 0
    ups, maps, ref_size, ref_thresh = full_resolution_path(steps=2)
    assert ups[0].shape[1:] == SHAPE
    np.testing.assert_allclose(np.load('out/stats/cls_thresh.npy'), ref_thresh, rtol=0 if mode == 'pil' else 1e-5)
    info = get_dataset('cityscapes')
    agree = Agreement(mode == 'pil')
    for name, up in zip(NAMES, ups):
        agree(read_png('out/0/results/nplabelIds/%s.png' % name), info.train2label[up.argmax(0)])
        label, _ = reference_labels(up, ref_thresh)
        agree(read_png('out/0/self_train/pseudo_labelIds/%s.png' % name), info.train2label[label])
    agree.check()


def test_mine_thresh_reaches_the_pseudo_label_phase(layout):
    # Ours on purpose (README): the reference's solve_AO.py never passes --mine-thresh to the
    # pseudo-label phase, which then always uses 0.001.
    from issegm.solve_AO import build_parser as solve_ao_parser
    ao = solve_ao_parser().parse_args([
        '--num-round', '1', '--test-scales', str(SCALE), '--dataset', 'gta', '--dataset-tgt', 'cityscapes',
        '--split-tgt', 'train', '--data-root-tgt', 'cs', '--output', 'out', '--model', 'cityscapes_rna-a1_cls19_s8',
        '--weights', 'models/gta_rna-a1_cls19_s8_ep-0000.params', '--init-tgt-port', '0.2',
        '--mine-id-number', '3', '--mine-thresh', '0.05', '--kc-policy', 'cb', '--gpus', '0', '--base-lr', '1e-4'])
    argv = val_argv(ao, round_schedule(ao)[0])
    assert argv[argv.index('--mine-thresh') + 1] == '0.05'
    assert st.run(build_parser().parse_args(argv), predictor=FakePredictor()) == 0
    share = np.load('out/stats/cls_size.npy') / np.load('out/stats/cls_size.npy').sum()
    priority = np.load('out/stats/mine_id_priority.npy')
    np.testing.assert_array_equal(priority, np.nonzero(share < 0.05)[0])
    assert set(priority) > set(np.nonzero(share < 0.001)[0])   # not the reference's fixed 0.001


@pytest.mark.threaded
def test_pass_one_forwards_the_next_image_while_this_one_is_upsampled(layout, monkeypatch):
    from issegm.engine.inference import Predictor
    from issegm.testing.standin import DeviceStandIn, with_host_delay
    HOST_DELAY = 0.3   # host time a step; the overlap shows with this much slack
    device = DeviceStandIn(0.2)
    spans = []
    from issegm.engine.postprocess import HostOps
    monkeypatch.setattr(HostOps, 'upsample', with_host_delay(HostOps.upsample, HOST_DELAY, spans))
    args = val_args('out')
    args.postprocess = 'pil'
    pseudo_labelling.generate_pseudo_labels(args, predictor=Predictor(device, C, 8))
    fwd = sorted(device.spans)
    assert len(fwd) == len(NAMES) and len(spans) == 2 * len(NAMES)  # pass 1 and pass 2
    for i in range(len(NAMES) - 1):
        # Sequential code starts forward i+1 only after upsampling i ended; the overlap starts it
        # as forward i ends, HOST_DELAY before that (slack for a busy machine).
        assert fwd[i + 1][0] < spans[i][1]


def test_a_round_made_on_the_device_path_refuses_a_rerun_on_the_other(layout, caplog):
    # The two paths differ in the last bits: a round never mixes them (issegm.phases.preflight).
    args = val_args('out')
    args.postprocess = 'device'
    assert st.run(args, predictor=FakePredictor()) == 0
    again = val_args('out')
    again.postprocess = 'pil'
    assert st.run(again, predictor=FakePredictor()) == 2
    assert any('--postprocess' in r.getMessage() for r in caplog.records)
    same = val_args('out')
    same.postprocess = 'device'
    assert st.run(same, predictor=FakePredictor()) == 0


def test_target_list_without_labels_gives_the_same_pseudo_labels_unscored(layout):
    """Pseudo-labels need no ground truth: an image-only target list gives the same labels
    and statistics, and no scores."""
    assert st.run(val_args('with'), predictor=FakePredictor()) == 0
    with open('issegm/data_list/cityscapes/train.lst') as f:
        images = [line.split('\t')[0] for line in f.read().splitlines()]
    with open('issegm/data_list/cityscapes/train.lst', 'w') as f:
        f.write('\n'.join(images) + '\n')
    assert st.run(val_args('without'), predictor=FakePredictor()) == 0
    for stat in ('cls_size', 'cls_thresh', 'mine_id', 'mine_id_priority'):
        np.testing.assert_array_equal(np.load('without/stats/%s.npy' % stat), np.load('with/stats/%s.npy' % stat))
    for name in NAMES:
        np.testing.assert_array_equal(read_png('without/0/self_train/pseudo_labelIds/%s.png' % name),
                                      read_png('with/0/self_train/pseudo_labelIds/%s.png' % name))
    assert 'scores_np' in pseudo_labelling._load_json('with/0/pseudo_label.done.json')['stats']
    assert 'scores_np' not in pseudo_labelling._load_json('without/0/pseudo_label.done.json')['stats']
    with open('issegm/data_list/cityscapes/train_training_gpu0.lst') as f:
        assert [line.split('\t')[0] for line in f.read().splitlines()] == images
