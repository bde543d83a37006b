"""The health record measured on demo runs: the collapse guard's figures and the round selection's table.

    python scripts/health_bench.py demo_out/seed0 demo_out/seed1 ...   # folders of python -m issegm.benchmark

For every case ``adapt/{case}`` of every folder it prints, per round, the
figures the collapse guard compares with round 0 (the largest growth of a
class holding at least the ``dominant`` share, the classes that vanished,
the kept share over round 0's) and whether the guard trips; then, per
label-free criterion of :mod:`issegm.report.selection`, how often it picks
the best candidate by target val mIoU (the demo's ``eval/`` results: the
source model for the weights entering round 0, round k-1's checkpoint for
round k), and the mean mIoU lost against that oracle and against always
keeping the last checkpoint (which the records do not observe yet).
"""
import argparse
import glob
import json
import os
import sys

import numpy as np

from issegm.report import guard, render, selection

__all__ = ['val_miou', 'guard_rows', 'selection_rows', 'main']


def val_miou(folder):
    """mIoU (%) of the one ``*_results.json`` in ``folder``, or None."""
    found = sorted(glob.glob(os.path.join(folder, '*_results.json')))
    if not found:
        return None
    with open(found[-1]) as f:
        return 100 * json.load(f)['scores']['mean_iou']


#: Classes holding at least this share of the labelled pixels count for the growth figure.
SHOWN = 0.1


def _growth(now, then):
    """``(odds ratio, share now)`` of the class holding >= SHOWN of the labels now whose odds grew most."""
    big = np.nonzero(now >= SHOWN)[0]
    if not big.size:
        return 0.0, 0.0
    ratios = guard.odds_ratio(now, then)[big]
    k = int(np.argmax(ratios))
    return float(ratios[k]), float(now[big[k]])


def guard_rows(run_dir, cases=None):
    """``[(case, round, (growth, its share), largest round-0 share vanished, kept ratio, tripped kinds)]``."""
    rows = []
    for case_dir in _cases(run_dir, cases):
        rounds = render.load_run(case_dir)['rounds']
        first = rounds.get(0)
        for r in sorted(rounds):
            if r == 0 or not first or 'pseudo_labels' not in rounds[r]:
                continue
            now, then = rounds[r]['pseudo_labels'], first['pseudo_labels']
            d_now, d_then = np.asarray(now['label_distribution']), np.asarray(then['label_distribution'])
            gone = d_then[d_now == 0]
            kinds = sorted({f['kind'] for f in guard.check(rounds[r], first)})
            rows.append((os.path.basename(case_dir), r, _growth(d_now, d_then), float(gone.max()) if gone.size else 0.,
                         now['kept_share'] / max(then['kept_share'], 1e-300), kinds))
    return rows


def _cases(run_dir, cases):
    """The case folders of a demo folder, those named in ``cases`` when given."""
    found = sorted(glob.glob(os.path.join(run_dir, 'adapt', '*')))
    return [d for d in found if not cases or os.path.basename(d) in cases]


def selection_rows(run_dir, cases=None):
    """Per case ``{criterion: (picked mIoU, best observed mIoU, last mIoU, confidence word)}`` of a demo folder."""
    out = {}
    for case_dir in _cases(run_dir, cases):
        case = os.path.basename(case_dir)
        rounds = render.load_run(case_dir)['rounds']
        rounds = {r: rec for r, rec in rounds.items() if rec.get('pseudo_labels')}
        if not rounds:
            continue
        truth = {r: val_miou(os.path.join(run_dir, 'eval', 'source') if r == 0
                             else os.path.join(run_dir, 'eval', case, str(r - 1))) for r in rounds}
        last = val_miou(os.path.join(run_dir, 'eval', case, str(max(rounds))))
        if any(v is None for v in truth.values()) or last is None:
            continue
        oracle = max(truth.values())
        out[case] = {}
        for c in selection.CRITERIA:
            choice = selection.select(rounds, c)
            out[case][c] = (truth[choice['pick']['round']], oracle, last, choice['confidence'])
        out[case]['always-last'] = (last, oracle, last, '')
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('runs', nargs='+', help='demo folders (each with adapt/ and eval/)')
    parser.add_argument('--cases', default=None, help='comma-separated cases (default: every adapt/ folder)')
    args = parser.parse_args(argv)
    cases = args.cases.split(',') if args.cases else None
    print('## Collapse guard figures (thresholds %s)\n' % guard.THRESHOLDS)
    print('| run | case | round | largest odds growth of a class holding >= %d%% (its share) | largest round-0 share '
          'of a vanished class | kept / round 0 | trips |' % (100 * SHOWN))
    print('|---|---|---|---|---|---|---|')
    for run in args.runs:
        for case, r, (growth, share), vanished, kept, kinds in guard_rows(run, cases):
            print('| %s | %s | %d | %.2f (%.1f%%) | %.2f%% | %.2f | %s |' % (
                os.path.relpath(run), case, r, growth, 100 * share, 100 * vanished, kept, ', '.join(kinds) or '-'))
    picks = {}
    for run in args.runs:
        for case, per in selection_rows(run, cases).items():
            for criterion, values in per.items():
                picks.setdefault(criterion, []).append(values)
    if not picks:
        return 0
    n = len(picks['always-last'])
    print('\n## Which round to keep: %d runs (cases x seeds)\n' % n)
    print('| criterion | picks the best observed round | mIoU lost vs the best observed | mIoU lost vs the best '
          'of all (last included) | mIoU vs always-last |')
    print('|---|---|---|---|---|')
    for criterion in selection.CRITERIA + ('always-last',):
        v = np.array([p[:3] for p in picks[criterion]], np.float64)
        best_all = np.maximum(v[:, 1], v[:, 2])
        print('| %s | %d / %d | %.2f | %.2f | %+.2f |' % (
            criterion, int(np.sum(v[:, 0] >= v[:, 1])), len(v), float(np.mean(v[:, 1] - v[:, 0])),
            float(np.mean(best_all - v[:, 0])), float(np.mean(v[:, 0] - v[:, 2]))))
    print('\n| criterion | confidence | runs | picks the best observed round | mIoU lost vs the best observed |')
    print('|---|---|---|---|---|')
    for criterion in selection.CRITERIA:
        for word in ('high', 'medium', 'low'):
            v = np.array([p[:3] for p in picks[criterion] if p[3] == word], np.float64).reshape(-1, 3)
            if len(v):
                print('| %s | %s | %d | %d | %.2f |' % (criterion, word, len(v), int(np.sum(v[:, 0] >= v[:, 1])),
                                                     float(np.mean(v[:, 1] - v[:, 0]))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
