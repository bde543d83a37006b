"""scripts/mutation_kinds.py: survivors of a mutation_check.sh report sorted by kind."""
import os
import sys

from scripts import mutation_kinds

REPORT = """== metrics: mutmut run issegm.engine.metrics.*
   3 s
   5 mutants: killed 1, survived 3, suspicious 1
   issegm.engine.metrics.x_a__mutmut_1 [survived]
      -    logger.info('done %d', n)
      +    logger.info('XXdone %dXX', n)
   issegm.engine.metrics.x_b__mutmut_2 [survived]
      -    cm = np.zeros((c, c), np.int64)
      +    cm = np.zeros((c, c), None)
   issegm.engine.metrics.x_c__mutmut_3 [suspicious]
      -    if a < b:
      +    if a <= b:
   issegm.engine.metrics.x_d__mutmut_4 [killed]
      -    return x
      +    return None
== image: mutmut run util.image.*
   1 mutants: killed 1
"""


def test_survivors_are_sorted_by_their_changed_lines(capsys):
    groups = mutation_kinds.read_report(REPORT.splitlines())
    assert list(groups) == ['metrics', 'image']
    assert [name for name, _, _ in groups['metrics']] == ['issegm.engine.metrics.x_a__mutmut_1', 'issegm.engine.metrics.x_b__mutmut_2',
                                                          'issegm.engine.metrics.x_c__mutmut_3']
    kinds = [mutation_kinds.kind_of(changed) for _, _, changed in groups['metrics']]
    assert kinds == ['messages and logs', 'dtypes and copies', 'other']
    assert groups['image'] == []


def test_table_and_other_listing(tmp_path, capsys):
    path = tmp_path / 'report.txt'
    path.write_text(REPORT)
    mutation_kinds.main([str(path), '--other'])
    out = capsys.readouterr().out.splitlines()
    assert out[2] == '| metrics | 3 | 1 | 0 | 1 | 0 | 0 | 0 | 0 | 1 |'
    assert out[3] == '| image | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 |'
    assert out[4] == 'issegm.engine.metrics.x_c__mutmut_3 [suspicious]'
