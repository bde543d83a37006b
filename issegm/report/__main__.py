"""``python -m issegm.report OUTPUT [--select]``: the run report of an output folder, or the round to keep.

Without ``--select`` writes ``OUTPUT/report.html`` (self-contained) and
``OUTPUT/report.md`` with ``OUTPUT/report/*.png``; with ``--select`` prints
which round's weights to keep by a label-free criterion and how sure.
"""
import argparse
import sys

from issegm.report import render, selection

__all__ = ['main']


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m issegm.report', description=__doc__.split('\n')[0])
    parser.add_argument('output', help='the --output of solve_AO.py, train_src.py or evaluate.py')
    parser.add_argument('--select', action='store_true', help='name the round to keep (no target labels used)')
    parser.add_argument('--criterion', default=selection.DEFAULT, choices=selection.CRITERIA,
                        help='with --select: the criterion (default %(default)s)')
    args = parser.parse_args(argv)
    try:
        run = render.load_run(args.output)
    except ValueError as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    if args.select:
        if not run['rounds']:
            print('error: %s is not a self-training output (no {round}/health.json): nothing to select'
                  % args.output, file=sys.stderr)
            return 2
        choice = selection.select(run['rounds'], args.criterion)
        for line in selection.describe(choice):
            print(line)
        if choice is not None:
            print('round  weights       %s' % '  '.join('%-12s' % c for c in selection.CRITERIA[:3] + ('mIoU*',)))
            for c in choice['candidates']:
                print('%5d  %-12s  %-12s  %-12s  %-12s  %-12s' % (
                    c['round'], c['weights'], _f(c['agreement']), _f(c['entropy']), _f(c['js_source']),
                    _f(None if c['mean_iou'] is None else 100 * c['mean_iou'], '%.1f')))
            print('(agreement: higher is better; entropy and source_prior (JS divergence to the source\'s class '
                  'shares): lower is better; *mIoU against target labels, shown when they exist, never used)')
        return 0
    html_path, md_path = render.write_report(args.output)
    print('written %s and %s' % (html_path, md_path))
    return 0


def _f(v, fmt='%.4f'):
    return '-' if v is None else fmt % v


if __name__ == '__main__':
    sys.exit(main())
