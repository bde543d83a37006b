"""The bundled default's results: tables, gains, the pseudo-label audit, pictures, and the seed aggregate.

:mod:`issegm.benchmark.demo` runs the scripts; this module turns their result files
into what the demo prints and writes:

* one seed: ``table.md`` (the paper-style table), ``pseudo_labels.md`` (the
  round-0 audit of ST's and CBST's pseudo-labels, :mod:`issegm.benchmark.audit`),
  ``summary.json``, ``mIoU_per_round.png`` and ``predictions.png``;
* several seeds: the mean and sample standard deviation over the seeds of
  every case's mIoU, gain over Source and rare-class gain (``table.md``,
  ``pseudo_labels.md`` averaged over the seeds, ``summary.json``).

Gains are in mIoU points against the ``Source`` row, on the last round.
"""
import json
import os

import numpy as np

__all__ = ['rare_train_ids', 'gains', 'rare_coverage', 'verdict', 'audit_pseudo_labels', 'summarise', 'aggregate',
           'seeds_table', 'seeds_verdict', 'band', 'band_check', 'summarise_seeds', 'plot_rounds', 'picture']

#: The cases whose round-0 pseudo-labels the audit compares.
AUDITED = ('ST', 'CBST')


def rare_train_ids():
    """Train ids of the toy's rare classes (:data:`issegm.benchmark.toy.RARE_CLASSES`)."""
    from issegm.storage.datasets import get_dataset
    from issegm.benchmark.toy import RARE_CLASSES
    lut = get_dataset('cityscapes').label2train
    return sorted(int(lut[lid]) for lid in RARE_CLASSES)


def gains(scores):
    """Per case, against Source: the table's (last-round) mIoU and its gain, the best
    round, and the mean IoU gain over the rare classes (all in points).

    ``scores`` maps each case to its rounds' score dicts (``results.json``'s ``scores``).
    """
    rare = rare_train_ids()
    source = np.asarray(scores['Source'][0]['class_iou'], np.float64) * 100
    out = {}
    for case, per_round in scores.items():
        miou = [s['mean_iou'] * 100 for s in per_round]
        best = int(np.argmax(miou))
        last = np.asarray(per_round[-1]['class_iou'], np.float64) * 100
        out[case] = {'mIoU': miou[-1], 'mIoU_gain': miou[-1] - scores['Source'][0]['mean_iou'] * 100,
                     'best_round': best + 1, 'best_round_mIoU': miou[best],
                     'rare_class_gain': float((last[rare] - source[rare]).mean())}
    return out


def rare_coverage(audits):
    """What the toy can show: round-0 pseudo-labels of the rare classes, class-balanced (CBST) against ST.

    Parameters
    ----------
    audits : dict
        ``{case: audit}`` (:func:`audit_pseudo_labels`, or their mean over seeds).

    Returns
    -------
    str
        ``''`` without both cases or without a rare class in the ground truth, else e.g. ``rare classes pseudo-labelled in
        round 0: CBST 12.0% of their pixels at 35.0% precision, ST 2.0% at
        40.0%``: the mean over the rare classes of the share of each class's
        pixels that got a pseudo-label, and of the share of its pseudo-labels
        that are right (classes without a value are left out of a mean).
    """
    if not audits or 'CBST' not in audits or 'ST' not in audits:
        return ''
    rare = rare_train_ids()

    def mean(case, key):
        values = [audits[case][key][c] for c in rare]
        values = [v for v in values if v is not None and v == v]
        return 100. * float(np.mean(values)) if values else float('nan')
    figures = (mean('CBST', 'coverage'), mean('CBST', 'precision'), mean('ST', 'coverage'), mean('ST', 'precision'))
    if figures[0] != figures[0] or figures[2] != figures[2]:  # no rare class in the ground truth
        return ''
    return 'rare classes pseudo-labelled in round 0: CBST %.1f%% of their pixels at %.1f%% precision, ' \
           'ST %.1f%% at %.1f%%' % figures


def _lead(line, audits):
    """``line`` after what the toy demonstrates (:func:`rare_coverage`), when the audit has it."""
    shown = rare_coverage(audits)
    return '%s; then %s' % (shown, line) if shown and line else line


def verdict(gain, audits=None):
    """One line: the rare-class coverage of CBST's and ST's pseudo-labels (with ``audits``), then CBST
    against Source (and Source+), and the rare-class gains of CBST and ST."""
    if 'CBST' not in gain:
        return ''
    return _lead(_gain_line(gain), audits)


def _gain_line(gain):
    line = 'CBST vs Source: %+.1f mIoU' % gain['CBST']['mIoU_gain']
    if 'Source+' in gain:
        line += ' (Source+ %+.1f)' % gain['Source+']['mIoU_gain']
    line += '; rare-class gain CBST %+.1f' % gain['CBST']['rare_class_gain']
    if 'ST' in gain:
        line += ' vs ST %+.1f' % gain['ST']['rare_class_gain']
    return line


def audit_pseudo_labels(workdir, cases=AUDITED):
    """Round-0 pseudo-label audit of ``cases`` in a demo folder: ``{case: audit}`` (cases that ran)."""
    from issegm.benchmark.audit import audit_folder
    gt_list = os.path.join(workdir, 'issegm', 'data_list', 'cityscapes', 'train.lst')
    out = {}
    for case in cases:
        folder = os.path.join(workdir, 'adapt', case, '0', 'self_train', 'pseudo_labelIds')
        if os.path.isdir(folder):
            out[case] = audit_folder(folder, gt_list, os.path.join(workdir, 'data', 'cityscapes'))
    return out


def _write(path, text):
    with open(path, 'w') as f:
        f.write(text)


def _class_names():
    from issegm.storage.datasets import get_dataset
    return get_dataset('cityscapes').class_names


def summarise(workdir, results, preset, seconds, times, reference=None):
    """Write ``table.md``, ``pseudo_labels.md``, ``summary.json``, ``mIoU_per_round.png`` and
    ``predictions.png`` of one seed's run; returns the summary dict.

    With ``reference`` (the README's band, see :func:`band_check`) the summary
    says under ``band`` whether CBST's gain lies in it.
    """
    from issegm.engine.metrics import load_results, markdown_table
    from issegm.benchmark.audit import markdown_table as audit_table
    scores = {case: [load_results(p)['scores'] for p in paths] for case, paths in results.items()}
    table = markdown_table([(case, rounds[-1]) for case, rounds in scores.items()])
    _write(os.path.join(workdir, 'table.md'), table)
    audits = audit_pseudo_labels(workdir)
    if audits:
        _write(os.path.join(workdir, 'pseudo_labels.md'), audit_table(audits, _class_names()))
    per_round = {case: [s['mean_iou'] * 100 for s in rounds] for case, rounds in scores.items()}
    gain = gains(scores)
    summary = {'table': table, 'mIoU_per_round': per_round, 'gains': gain, 'verdict': verdict(gain, audits),
               'rare_classes': rare_train_ids(), 'pseudo_labels': audits, 'seconds': seconds,
               'step_seconds': dict(times), 'preset': preset,
               'results': {c: [os.path.relpath(p, workdir) for p in ps] for c, ps in results.items()}}
    if reference is not None and 'CBST' in gain:
        summary['band'] = dict(reference, **band_check(gain['CBST']['mIoU_gain'], reference))
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    plot_rounds(per_round, os.path.join(workdir, 'mIoU_per_round.png'))
    if 'CBST' in results:
        picture(workdir, os.path.dirname(results['Source'][0]), os.path.dirname(results['CBST'][-1]),
                os.path.join(workdir, 'predictions.png'))
    return summary


# -- several seeds ----------------------------------------------------------------
FIELDS = ('mIoU', 'mIoU_gain', 'rare_class_gain')


def aggregate(per_seed):
    """Mean and sample standard deviation (ddof 1; 0 for one seed) over the seeds.

    ``per_seed`` is ``{seed: {case: {'mIoU', 'mIoU_gain', 'rare_class_gain'}}}``;
    returns ``{case: {'mIoU', 'mIoU_std', 'mIoU_gain', 'mIoU_gain_std',
    'rare_class_gain', 'rare_class_gain_std'}}`` for the cases every seed has,
    in the first seed's order.
    """
    seeds = list(per_seed)
    if not seeds:
        raise ValueError('no seeds to aggregate')
    cases = [c for c in per_seed[seeds[0]] if all(c in per_seed[s] for s in seeds)]
    out = {}
    for case in cases:
        out[case] = {}
        for field in FIELDS:
            values = np.array([per_seed[s][case][field] for s in seeds], np.float64)
            out[case][field] = float(values.mean())
            out[case][field + '_std'] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out


def band(mean, std, width=2.0):
    """The interval ``mean +- width * std``."""
    return mean - width * std, mean + width * std


def band_check(gain, reference):
    """Whether a single run's CBST gain lies in the README's band of ``reference``.

    ``reference`` has ``mean``, ``std``, ``seeds`` and ``command`` (the run
    that measured them). Returns ``{'low', 'high', 'inside', 'line'}``.
    """
    lo, hi = band(reference['mean'], reference['std'])
    inside = lo <= gain <= hi
    line = ('CBST gain %+.1f is %s the README band %+.1f +- 2 x %.1f = [%+.1f, %+.1f] (seeds %s, `%s`)'
            % (gain, 'inside' if inside else 'OUTSIDE', reference['mean'], reference['std'], lo, hi,
               ','.join(str(s) for s in reference['seeds']), reference['command']))
    if not inside:
        line += '; results differ across CPUs, see the README'
    return dict(low=lo, high=hi, inside=inside, line=line)


def seeds_table(per_seed, agg):
    """Markdown: each case's mIoU, gain and rare-class gain per seed, then mean +- std."""
    seeds = list(per_seed)
    head = ['Case'] + ['seed %s' % s for s in seeds] + ['mIoU', 'gain', 'rare-class gain']
    lines = ['|'.join(head), '|'.join(['---'] * len(head))]
    for case, a in agg.items():
        cells = [case] + ['%.1f (%+.1f)' % (per_seed[s][case]['mIoU'], per_seed[s][case]['mIoU_gain'])
                          for s in seeds]
        cells.append('%.1f +- %.1f' % (a['mIoU'], a['mIoU_std']))
        if case == 'Source':
            cells += ['', '']
        else:
            cells += ['%+.1f +- %.1f' % (a['mIoU_gain'], a['mIoU_gain_std']),
                      '%+.1f +- %.1f' % (a['rare_class_gain'], a['rare_class_gain_std'])]
        lines.append('|'.join(cells))
    return '\n'.join(lines) + '\n'


def seeds_verdict(per_seed, agg):
    """One line over the seeds: CBST's gain (mean, smallest), against Source+ and ST."""
    if 'CBST' not in agg:
        return ''
    worst = min(per_seed[s]['CBST']['mIoU_gain'] for s in per_seed)
    line = 'over seeds %s: CBST vs Source %+.1f +- %.1f mIoU (smallest %+.1f)' % (
        ','.join(str(s) for s in per_seed), agg['CBST']['mIoU_gain'], agg['CBST']['mIoU_gain_std'], worst)
    for other in ('Source+', 'ST'):
        if other in agg:
            line += '; %s %+.1f' % (other, agg[other]['mIoU_gain'])
    if 'ST' in agg:
        line += '; rare-class gain CBST %+.1f vs ST %+.1f' % (agg['CBST']['rare_class_gain'],
                                                             agg['ST']['rare_class_gain'])
    return line


def _mean_audits(audits):
    """Class-wise mean over seeds of ``{case: audit}`` dicts (NaN where no seed has a value)."""
    import warnings
    from issegm.benchmark.audit import as_list
    out = {}
    for case in audits[0]:
        runs = [a[case] for a in audits if case in a]
        out[case] = {}
        for key in runs[0]:
            values = np.array([r[key] for r in runs], np.float64)
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', RuntimeWarning)  # all-NaN classes stay NaN
                mean = np.nanmean(values, axis=0)
            out[case][key] = as_list(mean) if np.ndim(mean) else as_list(mean)[0]
    return out


def summarise_seeds(workdir, summaries, seconds):
    """Write ``table.md``, ``pseudo_labels.md`` and ``summary.json`` over seeds; returns the summary.

    ``summaries`` maps each seed to its run's summary dict (:func:`summarise`).
    """
    from issegm.benchmark.audit import markdown_table as audit_table
    summaries = {str(s): summ for s, summ in summaries.items()}  # as JSON keys them
    per_seed = {s: {case: {f: g[f] for f in FIELDS} for case, g in summ['gains'].items()}
                for s, summ in summaries.items()}
    agg = aggregate(per_seed)
    table = seeds_table(per_seed, agg)
    _write(os.path.join(workdir, 'table.md'), table)
    audits = [summ['pseudo_labels'] for summ in summaries.values() if summ.get('pseudo_labels')]
    mean_audit = _mean_audits(audits) if audits else {}
    if mean_audit:
        _write(os.path.join(workdir, 'pseudo_labels.md'), audit_table(mean_audit, _class_names()))
    summary = {'seeds': list(summaries), 'table': table, 'per_seed': per_seed, 'gains': agg,
               'verdict': _lead(seeds_verdict(per_seed, agg), mean_audit), 'pseudo_labels': mean_audit,
               'seconds': seconds, 'seed_seconds': {s: summ['seconds'] for s, summ in summaries.items()},
               'folders': {s: 'seed%s' % s for s in summaries}}
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    return summary


# -- pictures ------------------------------------------------------------------------

def plot_rounds(per_round, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    for case, values in per_round.items():
        if case == 'Source':
            ax.axhline(values[0], color='grey', linestyle='--', label='Source')
        else:
            ax.plot(range(1, len(values) + 1), values, marker='o', label=case)
    ax.set_xlabel('round')
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel('mIoU on target val (%)')
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def picture(workdir, source_eval, cbst_eval, path, count=4):
    """image | ground truth | source-only | CBST, one row per target val image, Cityscapes colours."""
    from PIL import Image
    from issegm.storage.datasets import get_dataset, read_list, sample_name
    info = get_dataset('cityscapes')
    items = read_list(os.path.join(workdir, 'issegm', 'data_list', 'cityscapes', 'val.lst'),
                      os.path.join(workdir, 'data', 'cityscapes'))[:count]
    rows = []
    for image_rel, label_rel in items:
        root = os.path.join(workdir, 'data', 'cityscapes')
        image = Image.open(os.path.join(root, image_rel)).convert('RGB')
        gt = Image.fromarray(np.asarray(Image.open(os.path.join(root, label_rel)), np.uint8))
        gt.putpalette(info.palette.tolist())
        name = sample_name(image_rel) + '.png'
        preds = [Image.open(os.path.join(folder, 'color', name)).convert('RGB')
                 for folder in (source_eval, cbst_eval)]
        rows.append([image, gt.convert('RGB')] + preds)
    w, h = rows[0][0].size
    sheet = Image.new('RGB', (4 * w + 3 * 4, len(rows) * h + (len(rows) - 1) * 4), 'white')
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            sheet.paste(tile, (j * (w + 4), i * (h + 4)))
    sheet.save(path)
