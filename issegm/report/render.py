"""The run report: ``report.html`` (one self-contained page) and ``report.md`` with its PNGs.

Reads the health records of an output folder, finished or still running:
a ``solve_AO`` output (``{output}/{r}/health.json`` per round), or a
``train_src.py`` / ``evaluate.py`` output (``{output}/health.json``). The
figures: loss and learning rate over every epoch of every round, class
thresholds by round (a heat map), pseudo-label class shares by round next to
the source's, confidence, entropy and agreement by round, IoU per round and
class when the target has labels; then the collapse guard's findings and the
label-free round selection (:mod:`issegm.report.selection`).
"""
import base64
import html
import io
import os

import numpy as np

from issegm.report import guard, health, selection
from util.io import atomic_path, atomic_write

__all__ = ['load_run', 'figures', 'write_report', 'REPORT_HTML', 'REPORT_MD', 'FIGURES']

REPORT_HTML = 'report.html'
REPORT_MD = 'report.md'
FIGURES = 'report'  # the PNGs of report.md: {output}/report/*.png


def load_run(output):
    """``{'kind', 'rounds': {r: record}, 'single': record}`` of an output folder (``ValueError`` when empty)."""
    rounds = {}
    if os.path.isdir(output):
        for name in os.listdir(output):
            if name.isdigit():
                rec = health.load(os.path.join(output, name))
                if rec:
                    rounds[int(name)] = rec
    single = health.load(output)
    if not rounds and not single:
        raise ValueError('%s holds no health record (health.json or {round}/health.json); point at the --output '
                         'of solve_AO.py, train_src.py or evaluate.py' % output)
    kind = 'rounds' if rounds else single.get('kind', 'training')
    return {'kind': kind, 'rounds': rounds, 'single': single, 'output': output}


def _epochs(run):
    """``[(label, entry)]`` of every epoch in order: rounds first by round, then the folder's own."""
    out = []
    for r in sorted(run['rounds']):
        for key, entry in sorted((run['rounds'][r].get('training') or {}).items()):
            out.append(('r%d e%d' % (r, entry.get('epoch', 0)), entry))
    for key, entry in sorted((run['single'].get('training') or {}).items()):
        out.append(('e%d' % entry.get('epoch', 0), entry))
    return out


def _classes(run):
    for rec in list(run['rounds'].values()) + [run['single']]:
        if rec.get('classes'):
            return list(rec['classes'])
    return []


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=80, bbox_inches='tight')
    _plt().close(fig)
    return buf.getvalue()


def _fig_training(epochs):
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
    x = np.arange(1, len(epochs) + 1)
    ax[0].plot(x, [e.get('loss', np.nan) for _, e in epochs], 'o-', ms=3)
    ax[0].set_title('training loss per epoch')
    ax[1].plot(x, [e.get('lr', np.nan) for _, e in epochs], 'o-', ms=3, color='C1')
    ax[1].set_title('learning rate per epoch')
    for a in ax:
        a.set_xlabel('epoch (all rounds)')
    starts = [i + 1 for i, (label, e) in enumerate(epochs) if i and label.split()[0] != epochs[i - 1][0].split()[0]]
    for a in ax:
        for s in starts:
            a.axvline(s - 0.5, color='grey', lw=0.5)
    return _png(fig)


def _heat(matrix, rows, cols, title, fmt='%.2f'):
    plt = _plt()
    matrix = np.asarray(matrix, np.float64)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(cols)), 0.5 * len(rows) + 1.6))
    im = ax.imshow(matrix, aspect='auto', cmap='viridis')
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=60, ha='right', fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=8)
    if matrix.size <= 400:
        for (i, j), v in np.ndenumerate(matrix):
            if np.isfinite(v):
                ax.text(j, i, fmt % v, ha='center', va='center', fontsize=6, color='w')
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    return _png(fig)


def _fig_shares(rounds, classes):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(classes)), 3.4))
    x = np.arange(len(classes))
    width = 0.8 / (len(rounds) + 1)
    source = None
    for k, r in enumerate(sorted(rounds)):
        pl = rounds[r]['pseudo_labels']
        ax.bar(x + k * width, pl['label_distribution'], width, label='round %d' % r)
        source = source or pl.get('source_share')
    if source:
        ax.bar(x + len(rounds) * width, source, width, label='source', color='k', alpha=0.6)
    ax.set_xticks(x + 0.4)
    ax.set_xticklabels(classes, rotation=60, ha='right', fontsize=8)
    ax.set_ylabel('share of labelled pixels')
    ax.set_title('pseudo-label class shares by round vs the source\'s class shares')
    ax.legend(fontsize=7)
    return _png(fig)


def _fig_confidence(rounds):
    plt = _plt()
    rs = sorted(rounds)
    conf = [rounds[r].get('confidence') or {} for r in rs]
    pls = [rounds[r].get('pseudo_labels') or {} for r in rs]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for values, name in (([c.get('mean_top_prob') for c in conf], 'mean top probability'),
                         ([c.get('mean_entropy_normalised') for c in conf], 'mean entropy / log C'),
                         ([p.get('agreement_with_previous') for p in pls], 'agreement with previous round'),
                         ([p.get('kept_share') for p in pls], 'pseudo-labelled share')):
        ax.plot(rs, [np.nan if v is None else v for v in values], 'o-', label=name)
    ax.set_xlabel('round (statistics of the weights entering it)')
    ax.set_xticks(rs)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax.set_title('confidence, entropy, agreement by round')
    return _png(fig)


def figures(run):
    """``[(name, title, png bytes)]`` of the run's figures (those its records allow)."""
    out = []
    classes = _classes(run)
    epochs = _epochs(run)
    if epochs:
        out.append(('training', 'Loss and learning rate', _fig_training(epochs)))
    rounds = {r: rec for r, rec in run['rounds'].items() if rec.get('pseudo_labels')}
    if rounds:
        rs = sorted(rounds)
        out.append(('thresholds', 'Class thresholds by round',
                    _heat([rounds[r]['pseudo_labels']['thresholds'] for r in rs], ['round %d' % r for r in rs],
                          classes, 'class thresholds')))
        out.append(('shares', 'Pseudo-label shares by round', _fig_shares(rounds, classes)))
    if run['rounds']:
        out.append(('confidence', 'Confidence, entropy, agreement', _fig_confidence(run['rounds'])))
    ious = [(r, rec['pseudo_labels']['scores']['class_iou']) for r, rec in sorted(rounds.items())
            if (rec['pseudo_labels'].get('scores') or {}).get('class_iou')]
    evals = sorted((run['single'].get('evaluations') or {}).items())
    ious += [(stem, e['scores']['class_iou']) for stem, e in evals if (e.get('scores') or {}).get('class_iou')]
    if ious:
        out.append(('iou', 'IoU per round and class (target labels)',
                    _heat(np.array([v for _, v in ious]) * 100,
                          ['round %d' % k if isinstance(k, int) else k for k, _ in ious], classes,
                          'IoU % (rounds: the weights entering the round, on the target split)', '%.0f')))
    return out


def findings(run):
    """The collapse guard's findings of every round (recomputed from the records)."""
    first = run['rounds'].get(0, {})
    out = []
    for r in sorted(run['rounds']):
        out += guard.check(run['rounds'][r], first)
    return out


def _tables(run):
    """Markdown lines: per-round figures, or the single record's summary."""
    lines = []
    if run['rounds']:
        lines += ['| round | weights | kept share | mean top prob | mean entropy | agreement | mIoU (labels) | epochs | '
                  'last loss |', '|---|---|---|---|---|---|---|---|---|']
        for r in sorted(run['rounds']):
            rec = run['rounds'][r]
            pl, conf = rec.get('pseudo_labels') or {}, rec.get('confidence') or {}
            train = sorted((rec.get('training') or {}).items())
            miou = (pl.get('scores') or {}).get('mean_iou')
            lines.append('| %d | %s | %s | %s | %s | %s | %s | %d | %s |' % (
                r, 'source model' if r == 0 else 'round %d' % (r - 1), _f(pl.get('kept_share')),
                _f(conf.get('mean_top_prob')), _f(conf.get('mean_entropy')), _f(pl.get('agreement_with_previous')),
                _f(None if miou is None else 100 * miou, '%.1f'), len(train),
                _f(train[-1][1].get('loss') if train else None)))
    evals = run['single'].get('evaluations') or {}
    if evals:
        lines += ['| evaluation | mIoU | mean top prob | mean entropy |', '|---|---|---|---|']
        for stem, e in sorted(evals.items()):
            conf = e.get('confidence') or {}
            miou = (e.get('scores') or {}).get('mean_iou')
            lines.append('| %s | %s | %s | %s |' % (stem, _f(None if miou is None else 100 * miou, '%.1f'),
                                                   _f(conf.get('mean_top_prob')), _f(conf.get('mean_entropy'))))
    epochs = _epochs(run)
    if epochs and not run['rounds']:
        lines += ['', '%d epochs; last: loss %s, lr %s' % (len(epochs), _f(epochs[-1][1].get('loss')),
                                                          _f(epochs[-1][1].get('lr'), '%.2e'))]
    return lines


def _f(v, fmt='%.3f'):
    return '-' if v is None else fmt % v


def _text(run):
    """The report's words (Markdown): tables, collapse findings, selection."""
    title = '# Run report: %s' % run['output']
    lines = [title, '', 'Kind: %s. Records are read as they are: a running output shows what is done.' % run['kind'],
             '']
    lines += _tables(run)
    if run['rounds']:
        found = findings(run)
        lines += ['', '## Collapse guard', '']
        lines += ['- %s' % f['line'] for f in found] or ['- no finding (thresholds %s)' % guard.THRESHOLDS]
        lines += ['', '## Which round to keep (no target labels)', '']
        lines += ['- %s' % line for line in selection.describe(selection.select(run['rounds']))]
    return lines


def write_report(output):
    """Write ``{output}/report.html``, ``{output}/report.md`` and ``{output}/report/*.png``; returns the paths."""
    run = load_run(output)
    figs = figures(run)
    text = _text(run)
    folder = os.path.join(output, FIGURES)
    os.makedirs(folder, exist_ok=True)
    md = list(text)
    for name, title, png in figs:
        with atomic_path(os.path.join(folder, name + '.png')) as tmp:
            with open(tmp, 'wb') as f:
                f.write(png)
        md += ['', '## %s' % title, '', '![%s](%s/%s.png)' % (title, FIGURES, name)]
    md_path, html_path = os.path.join(output, REPORT_MD), os.path.join(output, REPORT_HTML)
    with atomic_write(md_path) as f:
        f.write('\n'.join(md) + '\n')
    with atomic_write(html_path) as f:
        f.write(_html(text, figs))
    return html_path, md_path


def _html(text, figs):
    body = []
    table = []
    for line in text + ['']:
        if line.startswith('|'):
            if not set(line) <= set('|-'):
                cells = [c.strip() for c in line.strip('|').split('|')]
                tag = 'th' if not table else 'td'
                table.append('<tr>%s</tr>' % ''.join('<%s>%s</%s>' % (tag, html.escape(c), tag) for c in cells))
            continue
        if table:
            body.append('<table>%s</table>' % ''.join(table))
            table = []
        if line.startswith('# '):
            body.append('<h1>%s</h1>' % html.escape(line[2:]))
        elif line.startswith('## '):
            body.append('<h2>%s</h2>' % html.escape(line[3:]))
        elif line.startswith('- '):
            body.append('<p>&bull; %s</p>' % html.escape(line[2:]))
        elif line:
            body.append('<p>%s</p>' % html.escape(line))
    for name, title, png in figs:
        body.append('<h2>%s</h2><img alt="%s" src="data:image/png;base64,%s">'
                    % (html.escape(title), html.escape(name), base64.b64encode(png).decode('ascii')))
    style = ('body{font-family:sans-serif;max-width:1100px;margin:1em auto}table{border-collapse:collapse}'
             'td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}img{max-width:100%}')
    return ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>CBST-MX run report</title><style>%s</style>'
            '</head><body>%s</body></html>\n' % (style, '\n'.join(body)))
