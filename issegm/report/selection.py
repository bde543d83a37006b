"""Which round's weights to keep, without target labels, from the rounds' health records.

Round ``k``'s pseudo-label phase looks at the weights that enter it: the
source model for ``k = 0``, round ``k-1``'s final checkpoint after. So the
records of rounds ``0 .. R-1`` describe ``R`` candidates; the last round's
checkpoint is seen only once a later pseudo-label phase has run on it
(``solve_ST --phase val --idx-round R``, or one more round).

Label-free criteria, each a score per candidate (higher is better):

* ``agreement``: the share of target pixels whose argmax agrees with the
  previous candidate's (a settled model; none for the source model);
* ``entropy``: minus the mean entropy of the predictions (a confident model);
* ``source_prior``: minus the Jensen-Shannon divergence between the
  candidate's predicted class distribution and the source's class shares
  (a model that has not drifted towards a few classes);
* ``combined``: the mean of the three criteria's ranks.

:data:`DEFAULT` is the criterion docs/benchmark.md measured best on the
miniature benchmark ("Which round to keep"): ``source_prior``. Agreement and
entropy reward a model that has settled or grown sure of itself, which a
collapsed model is too.
"""
import numpy as np

__all__ = ['CRITERIA', 'DEFAULT', 'candidates', 'criterion_scores', 'select', 'describe']

CRITERIA = ('agreement', 'entropy', 'source_prior', 'combined')
DEFAULT = 'source_prior'


def _js(p, q):
    """Jensen-Shannon divergence (nats) of two distributions (normalised here)."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    p, q = p / max(p.sum(), 1e-300), q / max(q.sum(), 1e-300)
    m = 0.5 * (p + q)

    def kl(a, b):
        keep = a > 0
        return float(np.sum(a[keep] * np.log(a[keep] / b[keep])))
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def candidates(records):
    """One candidate per round record, in round order, as dicts.

    Parameters
    ----------
    records : dict
        ``{round: record}``.

    Returns
    -------
    list of dict
        ``weights`` names the weights the round looked at; ``entropy``,
        ``agreement``, ``js_source`` the label-free figures (None when missing);
        ``mean_iou`` the score against the target labels when the split has them
        (shown, never used to select).
    """
    out = []
    for r in sorted(records):
        rec = records[r]
        pl = rec.get('pseudo_labels') or {}
        conf = rec.get('confidence') or {}
        source, predicted = pl.get('source_share'), pl.get('predicted_share')
        out.append({'round': r, 'weights': 'source model' if r == 0 else 'round %d' % (r - 1),
                    'entropy': conf.get('mean_entropy'), 'top_prob': conf.get('mean_top_prob'),
                    'agreement': pl.get('agreement_with_previous'),
                    'js_source': _js(predicted, source) if source and predicted else None,
                    'mean_iou': (pl.get('scores') or {}).get('mean_iou')})
    return out


def _ranks(values):
    """Ranks (0 best) of scores, higher better; None values get the worst rank."""
    order = sorted(range(len(values)), key=lambda i: (values[i] is None, -(values[i] or 0.)))
    ranks = [0.] * len(values)
    for rank, i in enumerate(order):
        ranks[i] = float(rank)
    return ranks


def criterion_scores(cands, criterion):
    """The criterion's score of each candidate.

    Parameters
    ----------
    cands : list of dict
        From :func:`candidates`.
    criterion : str
        One of :data:`CRITERIA`.

    Returns
    -------
    list
        Higher is better; None where it cannot be judged.

    Raises
    ------
    ValueError
        For an unknown criterion.
    """
    if criterion == 'agreement':
        return [c['agreement'] for c in cands]
    if criterion == 'entropy':
        return [None if c['entropy'] is None else -c['entropy'] for c in cands]
    if criterion == 'source_prior':
        return [None if c['js_source'] is None else -c['js_source'] for c in cands]
    if criterion == 'combined':
        ranks = [_ranks(criterion_scores(cands, name)) for name in CRITERIA[:3]]
        return [-float(np.mean(r)) for r in zip(*ranks)]
    raise ValueError('unknown criterion %r (choose from %s)' % (criterion, ', '.join(CRITERIA)))


def select(records, criterion=DEFAULT):
    """The candidate to keep by ``criterion``, and how sure.

    Parameters
    ----------
    records : dict
        ``{round: record}``.
    criterion : str
        One of :data:`CRITERIA`.

    Returns
    -------
    dict or None
        None without candidates. ``pick`` is the chosen candidate; ``votes``
        how many of the single criteria pick the same round (of those that can
        judge); ``margin`` the gap between the best and the second-best score
        over the spread of the scores (0: a tie, 1: the best stands alone);
        ``confidence`` a word for the margin: high (>= 0.5), medium (>= 0.2), low.
    """
    cands = candidates(records)
    scores = criterion_scores(cands, criterion)
    judged = [i for i, s in enumerate(scores) if s is not None]
    if not judged:
        return None
    best = max(judged, key=lambda i: scores[i])
    others = sorted((scores[i] for i in judged if i != best), reverse=True)
    spread = max(scores[i] for i in judged) - min(scores[i] for i in judged)
    margin = (scores[best] - others[0]) / spread if others and spread > 0 else (1.0 if not others else 0.0)
    picks = {}
    for name in CRITERIA[:3]:
        single = criterion_scores(cands, name)
        ok = [i for i, s in enumerate(single) if s is not None]
        if ok:
            picks[name] = cands[max(ok, key=lambda i: single[i])]['round']
    votes = sum(1 for p in picks.values() if p == cands[best]['round'])
    word = 'high' if margin >= 0.5 else 'medium' if margin >= 0.2 else 'low'
    return {'criterion': criterion, 'pick': cands[best], 'scores': scores, 'candidates': cands,
            'picks': picks, 'votes': votes, 'of': len(picks), 'margin': margin, 'confidence': word}


def describe(choice):
    """Lines saying which weights to keep and how sure, for the terminal and the report."""
    if choice is None:
        return ['no round has a health record with pseudo-label statistics yet: nothing to select']
    pick = choice['pick']
    lines = ['keep the weights that entered round %d (%s), by the %s criterion; confidence %s (margin %.2f '
             'over the next round); %d of %d single criteria agree (%s)'
             % (pick['round'], pick['weights'], choice['criterion'], choice['confidence'], choice['margin'],
                choice['votes'], choice['of'],
                ', '.join('%s -> round %d' % kv for kv in sorted(choice['picks'].items())))]
    last = choice['candidates'][-1]['round']
    lines.append('the last round\'s checkpoint (round %d) is not yet observed: a pseudo-label phase of round %d '
                 '(solve_ST.py --phase val --idx-round %d) would add it' % (last, last + 1, last + 1))
    return lines
