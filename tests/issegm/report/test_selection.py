"""The label-free round selection (issegm/report/selection.py) on hand-made records."""
import pytest

from issegm.report import selection

SOURCE = [0.5, 0.3, 0.2]


def rec(entropy, agreement, predicted, miou=None):
    pl = {'source_share': SOURCE, 'predicted_share': predicted, 'agreement_with_previous': agreement}
    if miou is not None:
        pl['scores'] = {'mean_iou': miou}
    return {'confidence': {'mean_entropy': entropy}, 'pseudo_labels': pl}


RECORDS = {0: rec(1.0, None, [0.4, 0.3, 0.3], 0.3),
           1: rec(0.8, 0.80, [0.5, 0.3, 0.2], 0.4),
           2: rec(0.5, 0.90, [0.5, 0.29, 0.21], 0.2),
           3: rec(0.2, 0.85, [0.9, 0.1, 0.0], 0.1)}


def test_each_criterion_picks_its_round():
    picks = {c: selection.select(RECORDS, c)['pick']['round'] for c in selection.CRITERIA}
    assert picks == {'agreement': 2, 'entropy': 3, 'source_prior': 1, 'combined': 2}


def test_the_answer_says_how_sure_and_never_reads_the_labels():
    choice = selection.select(RECORDS, 'combined')
    assert choice['votes'] == 1 and choice['of'] == 3
    assert choice['margin'] == pytest.approx(1 / 3.) and choice['confidence'] == 'medium'
    blind = {r: dict(v, pseudo_labels=dict(v['pseudo_labels'], scores={'mean_iou': 1 - r}))
             for r, v in RECORDS.items()}
    assert selection.select(blind, 'combined')['pick']['round'] == 2  # other mIoU, same answer
    lines = selection.describe(choice)
    assert 'round 2' in lines[0] and '(round 1)' in lines[0] and 'confidence medium' in lines[0]
    assert 'round 3' in lines[1]  # the last checkpoint is not observed yet


def test_one_round_and_no_round():
    only = selection.select({0: RECORDS[0]})
    assert only['pick']['round'] == 0 and only['margin'] == 1.0
    assert selection.select({}) is None
    assert 'nothing to select' in selection.describe(None)[0]
    with pytest.raises(ValueError):
        selection.criterion_scores([], 'oracle')
