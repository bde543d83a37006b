"""The method of the papers, free of the network engine and the command line.

CBST's class-balanced and ST's global confidence thresholds, the
pseudo-labels they give and the statistics of small-class patch mining
(:mod:`~issegm.method.thresholds`); CRST's soft LRENT labels and its
regularised loss (:mod:`~issegm.method.crst`); CRST's pooled thresholds as its
``crst_seg.py`` computes them (:mod:`~issegm.method.crst_selection`); the spatial prior of CBST-SP
(:mod:`~issegm.method.prior`). These modules take plain values (arrays,
thresholds, weights), never the parsed command line.
"""
__all__ = ['thresholds', 'crst', 'crst_selection', 'prior']
