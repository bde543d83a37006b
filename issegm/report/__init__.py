"""The run's health record, the collapse guard, the label-free round selection and the run report.

``health`` (statistics from arrays, ``health.json``), ``guard`` (collapse
checks), ``selection`` (which round to keep), ``render`` (report.html and
report.md); ``python -m issegm.report OUTPUT [--select]``.
"""
