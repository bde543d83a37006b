"""The demo's reports: gains, the seed aggregate (means, sample std), the README band."""
import json

import pytest

from issegm.benchmark import report as demo_report
from util.child_env import REPO

# Three seeds' (mIoU, gain, rare-class gain); the means and sample standard
# deviations below are worked out by hand.
PER_SEED = {
    '0': {'Source': (20.0, 0.0, 0.0), 'Source+': (21.0, 1.0, 0.5), 'ST': (24.0, 4.0, 1.0), 'CBST': (26.0, 6.0, 8.0)},
    '1': {'Source': (30.0, 0.0, 0.0), 'Source+': (29.0, -1.0, 0.5), 'ST': (32.0, 2.0, 2.0), 'CBST': (33.0, 3.0, 5.0)},
    '2': {'Source': (25.0, 0.0, 0.0), 'Source+': (25.0, 0.0, 2.0), 'ST': (30.0, 5.0, 3.0), 'CBST': (34.0, 9.0, 11.0)},
}


def per_seed():
    return {s: {c: dict(zip(demo_report.FIELDS, v)) for c, v in cases.items()} for s, cases in PER_SEED.items()}


def test_aggregate_means_and_sample_std():
    agg = demo_report.aggregate(per_seed())
    assert list(agg) == ['Source', 'Source+', 'ST', 'CBST']
    cbst = agg['CBST']
    assert cbst['mIoU'] == pytest.approx(31.0)
    assert cbst['mIoU_std'] == pytest.approx(((25 + 4 + 9) / 2.) ** 0.5)
    assert cbst['mIoU_gain'] == pytest.approx(6.0)
    assert cbst['mIoU_gain_std'] == pytest.approx(3.0)           # deviations -3, 0, 3: sqrt(18 / 2)
    assert cbst['rare_class_gain'] == pytest.approx(8.0)
    assert cbst['rare_class_gain_std'] == pytest.approx(3.0)
    assert agg['Source']['mIoU_gain'] == 0 and agg['Source']['mIoU_gain_std'] == 0
    assert agg['ST']['mIoU_gain'] == pytest.approx(11 / 3.)   # 4, 2, 5: deviations 1/3, -5/3, 4/3
    assert agg['ST']['mIoU_gain_std'] == pytest.approx(((1 + 25 + 16) / 9. / 2.) ** 0.5)
    one = demo_report.aggregate({'0': per_seed()['0']})
    assert one['CBST']['mIoU_gain'] == 6.0 and one['CBST']['mIoU_gain_std'] == 0.0


def test_band_is_mean_plus_minus_two_std():
    ref = dict(mean=6.0, std=3.0, seeds=(0, 1, 2), command='python -m issegm.benchmark --seeds 0,1,2')
    assert demo_report.band(6.0, 3.0) == (0.0, 12.0)
    for gain, inside in ((12.0, True), (0.0, True), (5.1, True), (12.1, False), (-0.1, False)):
        got = demo_report.band_check(gain, ref)
        assert got['inside'] is inside and (got['low'], got['high']) == (0.0, 12.0)
        assert ('inside' if inside else 'OUTSIDE') in got['line'] and '[+0.0, +12.0]' in got['line']
    assert 'differ across CPUs' in demo_report.band_check(13.0, ref)['line']


def summary_of(seed):
    gains = {c: dict(zip(demo_report.FIELDS, v), best_round=1, best_round_mIoU=v[0]) for c, v in PER_SEED[seed].items()}
    audit = {'coverage': [0.5] + [None] * 18, 'recall': [0.25] * 19, 'precision': [float(seed)] * 19,
             'share': [1. / 19] * 19, 'labelled': 0.2, 'pixel_recall': 0.1, 'pixel_precision': 0.9}
    return {'gains': gains, 'pseudo_labels': {'ST': audit, 'CBST': audit}, 'seconds': 100.0 + int(seed)}


def test_summarise_seeds_writes_table_json_and_mean_audit(tmp_path):
    summaries = {int(s): summary_of(s) for s in PER_SEED}
    summary = demo_report.summarise_seeds(str(tmp_path), summaries, 400.0)
    saved = json.loads((tmp_path / 'summary.json').read_text())
    assert saved['per_seed'] == per_seed()
    assert saved['gains']['CBST']['mIoU_gain'] == pytest.approx(6.0)
    assert saved['gains']['CBST']['mIoU_gain_std'] == pytest.approx(3.0)
    assert saved['seed_seconds'] == {'0': 100.0, '1': 101.0, '2': 102.0}
    assert summary['verdict'].startswith('over seeds 0,1,2: CBST vs Source +6.0 +- 3.0 mIoU (smallest +3.0)')
    table = (tmp_path / 'table.md').read_text().splitlines()
    assert table[0] == 'Case|seed 0|seed 1|seed 2|mIoU|gain|rare-class gain'
    cbst = [r for r in table if r.startswith('CBST|')][0].split('|')
    assert cbst[1:4] == ['26.0 (+6.0)', '33.0 (+3.0)', '34.0 (+9.0)']
    assert cbst[5:] == ['+6.0 +- 3.0', '+8.0 +- 3.0']
    # the pseudo-label audit is averaged class by class; a class no seed has stays empty
    audit = saved['pseudo_labels']['CBST']
    assert audit['precision'][0] == pytest.approx(1.0) and audit['coverage'][1] is None
    rows = (tmp_path / 'pseudo_labels.md').read_text().splitlines()
    assert rows[2].split('|')[:5] == ['road', '5.3', '50.0', '25.0', '100.0']


def test_readme_status_table_and_band_agree():
    """The band a single run checks itself against is the CBST row of the README's seeds table."""
    import os
    import re
    from issegm.benchmark.demo import README_BAND
    readme = open(os.path.join(REPO, 'README.md'), encoding='utf-8').read()
    assert README_BAND['command'] in readme
    row = re.search(r'^\| CBST \|(.*)$', readme, re.M).group(1).split('|')
    assert len(row) - 1 == 3 + len(README_BAND['seeds'])  # per seed, mIoU, gain, rare-class gain
    gain = row[-3].strip()
    assert gain == '%+.1f +- %.1f' % (README_BAND['mean'], README_BAND['std'])
    lo, hi = demo_report.band(README_BAND['mean'], README_BAND['std'])
    assert '[%+.1f, %+.1f]' % (lo, hi) in ' '.join(readme.split())


def test_the_verdict_leads_with_the_rare_class_coverage_of_cbst_against_st():
    rare = demo_report.rare_train_ids()
    cover = {'CBST': (0.20, 0.50), 'ST': (0.05, 0.75)}
    audits = {}
    for case, (coverage, precision) in cover.items():
        audits[case] = {'coverage': [0.9] * 19, 'precision': [0.9] * 19}
        for c in rare:
            audits[case]['coverage'][c], audits[case]['precision'][c] = coverage, precision
    audits['CBST']['precision'][rare[0]] = None  # never pseudo-labelled: left out of the mean
    gain = {'CBST': {'mIoU_gain': 1.0, 'rare_class_gain': 2.0}, 'ST': {'mIoU_gain': 0.5, 'rare_class_gain': -1.0}}
    line = demo_report.verdict(gain, audits)
    assert line == ('rare classes pseudo-labelled in round 0: CBST 20.0% of their pixels at 50.0% precision, '
                    'ST 5.0% at 75.0%; then CBST vs Source: +1.0 mIoU; rare-class gain CBST +2.0 vs ST -1.0')
    assert demo_report.verdict(gain) == 'CBST vs Source: +1.0 mIoU; rare-class gain CBST +2.0 vs ST -1.0'
