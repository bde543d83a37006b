"""The phases of a run: where command-line flags become values.

The scripts' shared plumbing and one-line failures (:mod:`~issegm.phases.cli`),
the checks before round 0 (:mod:`~issegm.phases.preflight`), the
pseudo-label phase (:mod:`~issegm.phases.labelling`), the retraining phase
(:mod:`~issegm.phases.retraining`), ``solve_ST.py``'s dispatch
(:mod:`~issegm.phases.self_training`), ``solve_AO.py``'s round driver
(:mod:`~issegm.phases.rounds`), evaluation (:mod:`~issegm.phases.evaluation`) and
source training (:mod:`~issegm.phases.source_training`), and ``crst_seg.py``'s
CRST pipeline (:mod:`~issegm.phases.crst_pipeline`). Below this package no
function takes the parsed command line.
"""
__all__ = ['cli', 'preflight', 'labelling', 'retraining', 'self_training', 'rounds', 'evaluation',
           'source_training', 'crst_pipeline']
