"""Builders shared by the tests and the benches: never used by a run.

Deterministic checkpoints of the released names and shapes
(:mod:`~issegm.testing.checkpoints`), miniature datasets in the real layouts
(:mod:`~issegm.testing.minidata`, :mod:`~issegm.testing.miniature`), an
independent transcription of the reference's pseudo-labelling
(:mod:`~issegm.testing.reference_cbst`), stand-ins for the network in the
phases' tests (:mod:`~issegm.testing.fakes`), the official Cityscapes scores
(:mod:`~issegm.testing.official`) and device stand-ins that take a set wall
time like a GPU (:mod:`~issegm.testing.standin`); PyTorch checkpoint files written by hand, without
PyTorch (:mod:`~issegm.testing.torch_files`).
"""
__all__ = ['checkpoints', 'minidata', 'miniature', 'reference_cbst', 'fakes', 'official', 'standin', 'torch_files']
