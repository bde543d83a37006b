"""The pseudo-label phase writes the round's health record; --stop-on-collapse stops before retraining."""
import json
import os

import numpy as np

from issegm.phases import self_training as st
from issegm.storage.probmaps import LowRes
from issegm.testing.fakes import FakePredictor, val_args


class CollapsedPredictor(FakePredictor):
    """The fake network, with class 2 (building) taking over almost every pixel."""

    def predict_lowres(self, image, scale):
        low = super(CollapsedPredictor, self).predict_lowres(image, scale)
        probs = low.probs * 0.01
        probs[2] += 0.99
        return LowRes(probs, low.im_hw, low.stride)


def phase_args(r, *flags):
    args = val_args('out')
    args.idx_round = r
    args.stop_on_collapse = '--stop-on-collapse' in flags
    return args


def read(r):
    with open(os.path.join('out', str(r), 'health.json')) as f:
        return json.load(f)


def test_rounds_record_their_health_and_the_guard_stops_a_collapsed_round(layout):
    assert st.run(phase_args(0), predictor=FakePredictor()) == 0
    first = read(0)
    pl = first['pseudo_labels']
    assert first['round'] == 0 and len(first['classes']) == 19
    assert 0 < first['confidence']['mean_top_prob'] < 1 and first['confidence']['mean_entropy'] > 0
    assert abs(sum(pl['label_distribution']) - 1) < 1e-9 and 0 < pl['kept_share'] < 1
    assert pl['agreement_with_previous'] is None and pl['scores']['mean_iou'] >= 0
    assert pl['source_share'] is None  # no source labels in this layout: recorded, not fatal
    assert first['guard']['findings'] == []

    # Round 1 with the same network: agrees with round 0 everywhere, no finding.
    assert st.run(phase_args(1, '--stop-on-collapse'), predictor=FakePredictor()) == 0
    assert read(1)['pseudo_labels']['agreement_with_previous'] == 1.0

    # Round 2 collapsed onto one class: the guard stops with exit 1 and names it.
    assert st.run(phase_args(2, '--stop-on-collapse'), predictor=CollapsedPredictor()) == 1
    findings = read(2)['guard']['findings']
    assert {f['kind'] for f in findings} >= {'vanished', 'grew'}
    assert any(f['classes'] == ['building'] for f in findings if f['kind'] == 'grew')
    log = open(os.path.join('out', 'gta_rna-a1_cls19_s8_ep-0000_train.log')).read()
    assert 'collapse guard: round 2: class building holds' in log
    assert read(2)['pseudo_labels']['agreement_with_previous'] < 0.5
    # Without the flag the same round goes on (the labels are complete: restored, not redone).
    assert st.run(phase_args(2), predictor=CollapsedPredictor()) == 0
    assert np.isfinite(read(2)['pseudo_labels']['kept_share'])
