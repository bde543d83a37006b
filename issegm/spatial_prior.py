"""Build the CBST spatial prior from source-domain labels (the library is :mod:`issegm.method.prior`).

From the repository root (``PYTHONPATH=./``)::

    python issegm/spatial_prior.py --dataset gta --split train --data-root DATA_ROOT_GTA
"""
import argparse
import os
import sys
import time

if __package__ in (None, ''):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from issegm.method.prior import (DEFAULT_KERNEL, DEFAULT_SHAPE, NORMALIZATIONS, build_prior,  # noqa: E402
                                 prior_path, save_prior)

__all__ = ['parse_args', 'main']


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Build the CBST spatial prior from source-domain labels.')
    p.add_argument('--dataset', default='gta', help='source dataset whose labels are counted (gta, synthia)')
    p.add_argument('--split', default='train', help='split list issegm/data_list/{dataset}/{split}.lst')
    p.add_argument('--data-root', dest='data_root', default=None,
                   help='root the list paths are relative to (default data/{dataset})')
    p.add_argument('--output', default=None,
                   help='output .mat (default spatial_prior/{dataset}/prior_array.mat)')
    p.add_argument('--shape', default='%d,%d' % DEFAULT_SHAPE,
                   help='prior height,width (the target image size; default 1024,2048)')
    p.add_argument('--kernel-size', dest='kernel_size', type=int, default=DEFAULT_KERNEL,
                   help='Gaussian window in prior pixels (paper: 70); <=1 disables smoothing')
    p.add_argument('--sigma', type=float, default=None, help='Gaussian sigma (default kernel/6)')
    p.add_argument('--normalize', default='class', choices=NORMALIZATIONS,
                   help='pixel: classes sum to 1 at each pixel; class: each map sums to 1; none')
    p.add_argument('--max-images', dest='max_images', type=int, default=None,
                   help='use only the first N list entries (quick look)')
    return p.parse_args(argv)


class _StderrLog(object):
    """The CLI prints its lines; warnings go to stderr the same way."""

    def warning(self, msg, *args):
        print('warning: ' + msg % args, file=sys.stderr)


#: The datasets a prior is counted on: the source domains (CBST-SP multiplies the target's predictions by it).
SOURCE_DATASETS = ('gta', 'synthia')


def _check_values(args, out):
    """``--dataset``, ``--max-images``, ``--sigma`` and ``--output`` before any label is read; ``ValueError`` names the flag."""
    if args.dataset not in SOURCE_DATASETS:
        raise ValueError('--dataset %s: the spatial prior is counted on the SOURCE domain\'s labels (%s); '
                         'the target\'s labels are what self-training may not see' % (args.dataset, ' or '.join(SOURCE_DATASETS)))
    if args.max_images is not None and args.max_images < 1:
        raise ValueError('--max-images %d: expected at least 1 image (omit it for the whole list)' % args.max_images)
    if args.sigma is not None and not args.sigma > 0:
        raise ValueError('--sigma %g: expected a positive sigma in prior pixels (omit it for kernel/6)' % args.sigma)
    if os.path.isdir(out):
        raise ValueError('--output %s is a folder; give the .mat file to write, e.g. %s'
                         % (out, os.path.join(out, 'prior_array.mat')))


def _check_memory(num_classes, shape):
    """Refuse a ``--shape`` whose maps cannot fit: int32 counts, the float32 prior and a smoothing copy."""
    from util.memory import require_memory
    h, w = shape
    require_memory(3 * 4 * num_classes * h * w, '--shape %d,%d: %d maps of %dx%d' % (h, w, num_classes, h, w),
                   'lower --shape (the target image size, e.g. 1024,2048)')


def main(argv=None):
    from issegm.storage.datasets import LabelAudit, get_dataset, list_path, read_list
    args = parse_args(argv)
    try:
        shape = tuple(int(v) for v in args.shape.split(','))
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError
    except ValueError:
        print('error: --shape must be "height,width", got %r' % args.shape, file=sys.stderr)
        return 2
    data_root = args.data_root if args.data_root is not None else os.path.join('data', args.dataset)
    out = args.output or prior_path(args.dataset)
    try:
        _check_values(args, out)
        info = get_dataset(args.dataset)
        _check_memory(info.num_classes, shape)
        items = read_list(list_path(args.dataset, args.split), data_root)
    except ValueError as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    items = items[:args.max_images] if args.max_images else items
    paths = [os.path.join(data_root, lab) for _, lab in items if lab is not None]
    if not paths:
        print('error: the list has no label column; a prior needs labelled source images', file=sys.stderr)
        return 2
    start = time.time()

    def progress(i):
        if (i + 1) % 100 == 0 or i + 1 == len(paths):
            print('counted %d/%d labels (%.1f/s)' % (i + 1, len(paths), (i + 1) / (time.time() - start)),
                  flush=True)

    audit = LabelAudit(info)
    try:
        prior = build_prior(paths, info.label2train, info.num_classes, shape, args.kernel_size,
                            args.sigma, args.normalize, progress, audit)
        save_prior(out, prior)
    except MemoryError:
        print('error: out of memory building the %s prior; lower --shape or free memory' % 'x'.join(map(str, shape)),
              file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        from issegm.phases.cli import describe_failure
        print('error: %s' % describe_failure(exc)[1], file=sys.stderr)
        return 2
    finally:
        audit.report(_StderrLog())
    print('wrote %s: prior_array %s float32 from %d labels' % (out, 'x'.join(map(str, prior.shape)), len(paths)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
