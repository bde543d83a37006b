"""The bundled benchmark, apart from the method: a miniature GTA-5 -> Cityscapes.

The generator of its images in the datasets' exact layouts
(:mod:`~issegm.benchmark.toy`, :mod:`~issegm.benchmark.layouts`), the demo that
runs the real scripts on it (:mod:`~issegm.benchmark.demo`, ``python -m
issegm.benchmark``), its reports (:mod:`~issegm.benchmark.report`) and the
pseudo-label audit against the ground truth, which the method never sees
(:mod:`~issegm.benchmark.audit`).
"""
__all__ = ['toy', 'layouts', 'demo', 'report', 'audit']
