"""The network engine: everything that runs the segmentation network.

The model registry and checkpoints (:mod:`~issegm.engine.model`), the
training iterator (:mod:`~issegm.engine.iterator`), the training loop
(:mod:`~issegm.engine.training`), the test-time forward
(:mod:`~issegm.engine.inference`), the post-processing after it on the host or
the device (:mod:`~issegm.engine.postprocess`), the crop-wise soft targets of
CRST's training (:mod:`~issegm.engine.soft_targets`), the metrics
(:mod:`~issegm.engine.metrics`), and ``crst_seg.py``'s forward and training
samples as CRST's code makes them (:mod:`~issegm.engine.crst_forward`,
:mod:`~issegm.engine.crst_data`). The method's rules come in as values or
injected objects (e.g. the training objective).
"""
__all__ = ['model', 'iterator', 'training', 'inference', 'postprocess', 'soft_targets', 'metrics',
           'crst_forward', 'crst_data']
