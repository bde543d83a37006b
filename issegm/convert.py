"""Convert a weight file to the released ``.params`` form (``arg:``/``aux:`` keys) for a model label.

Usage::

    python -m issegm.convert gta_src.pth models/gta_deeplabv2-r101_cls19_s8_ep-0000.params \\
        --model gta_deeplabv2-r101_cls19_s8

The input is anything ``--weights`` takes for that network
(:func:`issegm.engine.model.read_weights`): CRST's PyTorch ``.pth`` for
DeepLab-v2, or a ``.params`` file; every name and shape is checked against
the network, and a file that does not fit is one error line. ImageNet files
(whose head is missing) are refused: train_src.py initialises the head.
"""
import argparse
import sys

__all__ = ['convert', 'main']


def convert(src, dst, model):
    """Write the weights of ``src`` for the network of ``model`` to ``dst`` in the released form.

    Parameters
    ----------
    src : str
        A ``.pth`` or ``.params`` file.
    dst : str
        The ``.params`` file to write (atomically).
    model : str
        The model label, e.g. ``gta_deeplabv2-r101_cls19_s8``.

    Returns
    -------
    int
        The number of arrays written.

    Raises
    ------
    util.mxutil.CheckpointError
        ``src`` does not fit the network, or lacks its head.
    """
    from issegm.engine.model import load_weights
    from util.mxutil import CheckpointError, save_params
    arg_params, aux_params, missing = load_weights(model, src, init_missing_head=False)
    if missing:
        raise CheckpointError('%s lacks the head %s (an ImageNet network); train from it with '
                              'train_src.py --weights %s instead of converting it' % (src, ', '.join(missing), src))
    save_params(dst, arg_params, aux_params)
    return len(arg_params) + len(aux_params)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m issegm.convert', description=__doc__.split('\n')[0])
    parser.add_argument('src', help='the weight file to convert (.pth or .params)')
    parser.add_argument('dst', help='the .params file to write')
    parser.add_argument('--model', required=True, help='model label, e.g. gta_deeplabv2-r101_cls19_s8')
    args = parser.parse_args(argv)
    from util.mxutil import CheckpointError
    try:
        count = convert(args.src, args.dst, args.model)
    except (CheckpointError, ValueError) as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    print('%s: %d arrays for %s' % (args.dst, count, args.model))
    return 0


if __name__ == '__main__':
    sys.exit(main())
