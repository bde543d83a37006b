"""The collapse guard: a round's pseudo-labels compared with round 0's, without target labels.

Three signs of a self-training run feeding on its own mistakes, each one
finding (and one warning line naming the round, classes and figures):

* ``vanished``: classes present in round 0's pseudo-labels (at least
  ``present`` of the labelled pixels) that no pixel is labelled with now;
* ``grew``: a class that now holds at least ``dominant`` of the labelled
  pixels and whose odds against the other classes (share / (1 - share))
  grew ``grow`` times or more over round 0's (odds, not shares: a class at
  50% that takes every pixel grew only twice in share, infinitely in odds);
* ``kept``: the share of target pixels kept as pseudo-labels fell below
  ``kept_drop`` times round 0's.

The thresholds (:data:`THRESHOLDS`) come from the miniature benchmark
(docs/benchmark.md, "Collapse guard").
"""
import numpy as np

__all__ = ['THRESHOLDS', 'odds_ratio', 'check', 'warning_lines']

THRESHOLDS = {'present': 0.01, 'grow': 3.0, 'dominant': 0.25, 'kept_drop': 0.5}


def odds_ratio(now, then):
    """Per class, the odds ``share / (1 - share)`` now over round 0's (inf where round 0's is 0 or now's is 1)."""
    now, then = np.asarray(now, np.float64), np.asarray(then, np.float64)
    with np.errstate(divide='ignore', invalid='ignore'):
        odds_now = np.where(now < 1, now / np.maximum(1 - now, 1e-300), np.inf)
        odds_then = then / np.maximum(1 - then, 1e-300)
        return np.where(odds_then > 0, odds_now / np.maximum(odds_then, 1e-300), np.inf)


def _names(record, indices):
    names = record.get('classes') or []
    return [names[i] if i < len(names) else str(i) for i in indices]


def check(record, first, thresholds=None):
    """The findings of round ``record`` against round 0's ``first``.

    Parameters
    ----------
    record : dict
        The round's health record.
    first : dict
        Round 0's health record.
    thresholds : dict, optional
        Replaces entries of :data:`THRESHOLDS`.

    Returns
    -------
    list of dict
        Each finding has ``kind``, ``round``, ``classes`` (names), ``figures``
        and ``line`` (the warning). Without a pseudo-label section in either
        record, or for round 0 itself, there is nothing to compare: ``[]``.
    """
    t = dict(THRESHOLDS, **(thresholds or {}))
    now, then = record.get('pseudo_labels'), first.get('pseudo_labels')
    r = record.get('round')
    if not now or not then or r in (None, 0, first.get('round')):
        return []
    found = []
    d_now = np.asarray(now['label_distribution'], np.float64)
    d_then = np.asarray(then['label_distribution'], np.float64)
    gone = [int(c) for c in np.nonzero((d_then >= t['present']) & (d_now == 0))[0]]
    if gone:
        names = _names(record, gone)
        found.append({'kind': 'vanished', 'round': r, 'classes': names,
                      'figures': {n: d_then[c] for n, c in zip(names, gone)},
                      'line': 'round %d: class%s %s vanished from the pseudo-labels (round 0: %s of the '
                              'labelled pixels)' % (r, 'es' if len(gone) > 1 else '', ', '.join(names),
                                                    ', '.join('%.1f%%' % (100 * d_then[c]) for c in gone))})
    ratio = odds_ratio(d_now, d_then)
    grew = [int(c) for c in np.nonzero((ratio >= t['grow']) & (d_now >= t['dominant']))[0]]
    for c in grew:
        name = _names(record, [c])[0]
        found.append({'kind': 'grew', 'round': r, 'classes': [name],
                      'figures': {'round0': d_then[c], 'now': d_now[c], 'odds_ratio': float(ratio[c])},
                      'line': 'round %d: class %s holds %.1f%% of the pseudo-labels (round 0: %.1f%%), its odds '
                              'against the other classes %s' % (
                                  r, name, 100 * d_now[c], 100 * d_then[c],
                                  'grew %.1f times' % ratio[c] if np.isfinite(ratio[c]) else 'without bound')})
    k_now, k_then = float(now['kept_share']), float(then['kept_share'])
    if k_then > 0 and k_now < t['kept_drop'] * k_then:
        found.append({'kind': 'kept', 'round': r, 'classes': [],
                      'figures': {'round0': k_then, 'now': k_now, 'ratio': k_now / k_then},
                      'line': 'round %d: only %.1f%% of the target pixels are pseudo-labelled, %.2f times '
                              'round 0\'s %.1f%%' % (r, 100 * k_now, k_now / k_then, 100 * k_then)})
    return found


def warning_lines(findings):
    """One collapse-guard warning line per finding."""
    return ['collapse guard: %s' % f['line'] for f in findings]
