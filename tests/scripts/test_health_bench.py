"""scripts/health_bench.py: the guard's figures and the selection table from demo folders."""
import json
import os

from issegm.report import health
from scripts import health_bench


def _round(folder, r, distribution, predicted, entropy, agreement):
    health.update(folder, kind='round', round=r, classes=['a', 'b', 'c'],
                  confidence={'mean_entropy': entropy},
                  pseudo_labels={'label_distribution': distribution, 'kept_share': 0.2 + 0.1 * r,
                                 'predicted_share': predicted, 'source_share': [0.5, 0.3, 0.2],
                                 'agreement_with_previous': agreement})


def _result(folder, miou):
    os.makedirs(folder)
    with open(os.path.join(folder, 'm_ep-0001_results.json'), 'w') as f:
        json.dump({'scores': {'mean_iou': miou}}, f)


def test_figures_and_table_of_a_demo_folder(tmp_path, capsys):
    run = str(tmp_path / 'seed0')
    case = os.path.join(run, 'adapt', 'CBST')
    _round(os.path.join(case, '0'), 0, [0.5, 0.3, 0.2], [0.5, 0.3, 0.2], 1.0, None)
    _round(os.path.join(case, '1'), 1, [0.5, 0.3, 0.2], [0.5, 0.3, 0.2], 0.9, 0.9)
    _round(os.path.join(case, '2'), 2, [0.9, 0.1, 0.0], [0.95, 0.05, 0.0], 0.1, 0.5)
    for folder, miou in (('source', 0.30), ('CBST/0', 0.35), ('CBST/1', 0.20), ('CBST/2', 0.10)):
        _result(os.path.join(run, 'eval', folder), miou)
    rows = health_bench.guard_rows(run)
    assert [(r[1], r[5]) for r in rows] == [(1, []), (2, ['grew', 'vanished'])]
    assert rows[1][3] == 0.2 and abs(rows[1][2][0] - 9.0) < 1e-9  # odds of 'a': 1 -> 9
    picked = health_bench.selection_rows(run)['CBST']
    assert picked['agreement'][:3] == (35.0, 35.0, 10.0) and picked['entropy'][:3] == (20.0, 35.0, 10.0)
    assert picked['always-last'] == (10.0, 35.0, 10.0, '')
    assert health_bench.selection_rows(run, cases=['ST']) == {}
    assert health_bench.main([run]) == 0
    out = capsys.readouterr().out
    assert '| agreement | 1 / 1 | 0.00 | 0.00 | +25.00 |' in out
