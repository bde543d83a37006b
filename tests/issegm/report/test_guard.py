"""The collapse guard (issegm/report/guard.py) on hand-made records."""
from issegm.report import guard


def record(r, distribution, kept=0.2):
    return {'round': r, 'classes': ['road', 'building', 'pole', 'car'],
            'pseudo_labels': {'label_distribution': distribution, 'kept_share': kept}}


FIRST = record(0, [0.5, 0.3, 0.1, 0.1])


def test_a_healthy_round_has_no_finding():
    assert guard.check(record(1, [0.45, 0.3, 0.12, 0.13], kept=0.3), FIRST) == []
    assert guard.check(FIRST, FIRST) == []            # round 0 against itself
    assert guard.check({'round': 2}, FIRST) == []     # no pseudo-labels yet


def test_vanished_classes_are_one_finding_naming_them():
    found = guard.check(record(3, [0.6, 0.4, 0.0, 0.0]), FIRST)
    assert [f['kind'] for f in found] == ['vanished']
    assert found[0]['classes'] == ['pole', 'car']
    assert 'round 3' in found[0]['line'] and 'pole, car' in found[0]['line'] and '10.0%' in found[0]['line']


def test_a_class_that_grew_several_times_and_dominates():
    found = guard.check(record(2, [0.1, 0.2, 0.0, 0.7]), FIRST, {'present': 0.5})
    assert [f['kind'] for f in found] == ['grew']
    assert found[0]['classes'] == ['car'] and abs(found[0]['figures']['odds_ratio'] - 21.0) < 1e-9
    assert 'holds 70.0% of the pseudo-labels (round 0: 10.0%)' in found[0]['line']
    # grown as much but still small: no finding
    assert guard.check(record(2, [0.5, 0.3, 0.0, 0.2]), record(0, [0.5, 0.3, 0.19, 0.01]),
                       {'present': 0.5, 'dominant': 0.25}) == []


def test_growth_is_in_odds_so_a_class_taking_every_pixel_is_found():
    found = guard.check(record(4, [1.0, 0.0, 0.0, 0.0]), FIRST, {'present': 0.5})
    assert [f['kind'] for f in found] == ['grew'] and 'without bound' in found[0]['line']
    assert guard.odds_ratio([0.5], [0.25]).tolist() == [3.0]


def test_a_drop_of_the_kept_share():
    found = guard.check(record(1, [0.5, 0.3, 0.1, 0.1], kept=0.05), FIRST)
    assert [f['kind'] for f in found] == ['kept']
    assert '5.0%' in found[0]['line'] and '0.25 times' in found[0]['line']
    assert guard.warning_lines(found) == ['collapse guard: ' + found[0]['line']]
