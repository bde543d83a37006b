"""CBST / CRST for MXNet: ``issegm.get_model(label, weights=None, ctx=None)`` is the public entry.

The import is lazy, so that importing a script of this package (``python
issegm/solve_AO.py --help``) does not load MXNet.
"""

__all__ = ['get_model']


def get_model(label, weights=None, ctx=None, **kwargs):
    """:func:`issegm.engine.model.get_model`: softmax probabilities at the network's stride.

    Parameters
    ----------
    label : str
        A model label, e.g. ``cityscapes_rna-a1_cls19_s8``,
        ``gta_deeplabv2-r101_cls19_s8`` or ``gta_fcn8s-vgg16_cls19_s8``.
    weights : str, optional
        ``.params`` (released form or GluonCV ImageNet) or CRST ``.pth`` file.
    ctx : mx.Context or list of them, optional
        Default: the CPU.
    **kwargs
        Passed on (``softmax_dtype``).

    Returns
    -------
    mx.gluon.SymbolBlock
        Normalised NCHW data -> (N, classes, H/stride, W/stride) probabilities.
    """
    from issegm.engine.model import get_model as build
    return build(label, weights=weights, ctx=ctx, **kwargs)
