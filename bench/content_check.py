"""What does the content check of :mod:`util.file_check` cost for a GTA-5 list?

Writes image/label pairs to a temporary folder and times
:func:`util.file_check.check_pairs` over them:

1. **Real-sized pairs**: ``--real`` pairs of GTA-5 size (1914 x 1052 RGB PNG
   images of about 3 MB, 8-bit palette label PNGs). A few distinct images
   are encoded and each written many times: the check reads a file's header
   and its last bytes, not its pixels, so only the file sizes matter.
   *Cold*: the files are flushed (``os.sync``) and their pages dropped from
   the page cache one file at a time (``posix_fadvise(DONTNEED)``, which
   needs no privilege and touches no other file); the share of their pages
   still cached is measured with ``mincore`` and printed. The disk is a
   virtual one: its host may still cache what the guest dropped. *Warm*:
   the same files again, their pages cached by the cold run.
2. **25,000 small pairs** (``--small``; 8 x 12 PNGs): the per-file cost of
   the check at GTA-5's count, cold and warm as above.

The extrapolation to GTA-5 is linear in the number of pairs:
``T(25,000 pairs) = 25,000 x T(real, cold) / real``.

    python -m bench.content_check [--real 500] [--small 25000] [--threads 2,8] [--dir /tmp]

About two minutes on 2 cores (most of it writing and flushing 1.5 GB).
"""
import argparse
import ctypes
import ctypes.util
import io
import mmap
import os
import shutil
import tempfile
import time

import numpy as np
from PIL import Image

from util.file_check import check_pairs

GTA_W, GTA_H = 1914, 1052
GTA_PAIRS = 25000
VARIANTS = 4          # distinct encoded images and labels, written in turn


def _gta_like(seed):
    """PNG bytes of a 1914 x 1052 RGB image (~3 MB, as GTA-5's) and of an 8-bit palette label."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:GTA_H, 0:GTA_W]
    base = np.stack([x * 255 // GTA_W, y * 255 // GTA_H, (x + y) * 255 // (GTA_W + GTA_H)], -1)
    # Gradients plus noise of 10 levels compress like GTA-5's frames (~3 MB).
    image = (base + rng.randint(0, 10, base.shape)).clip(0, 255).astype(np.uint8)
    label = np.zeros((GTA_H, GTA_W), np.uint8)
    for _ in range(80):
        y0, x0 = rng.randint(0, GTA_H), rng.randint(0, GTA_W)
        label[y0:y0 + rng.randint(20, 300), x0:x0 + rng.randint(20, 400)] = rng.randint(0, 34)
    return _png(Image.fromarray(image)), _png(Image.fromarray(label, 'L').convert('P'))


def _png(im):
    buf = io.BytesIO()
    im.save(buf, format='PNG')
    return buf.getvalue()


def _write_pairs(folder, count, image_bytes, label_bytes):
    """Write ``count`` pairs cycling through the given encodings; returns the pairs."""
    for sub in ('images', 'labels'):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    pairs = []
    for i in range(count):
        pair = tuple(os.path.join(folder, sub, '%05d.png' % i) for sub in ('images', 'labels'))
        for path, data in zip(pair, (image_bytes[i % len(image_bytes)], label_bytes[i % len(label_bytes)])):
            with open(path, 'wb') as f:
                f.write(data)
        pairs.append(pair)
    return pairs


def _drop(paths):
    """Drop the files' pages from the page cache (written back first by ``os.sync``)."""
    os.sync()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


_LIBC = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)


def _cached_fraction(paths):
    """Share of the files' pages in the page cache (``mincore`` of a read-only mapping)."""
    page = mmap.PAGESIZE
    cached = total = 0
    for path in paths:
        with open(path, 'rb') as f:
            size = os.fstat(f.fileno()).st_size
            mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
            view = np.frombuffer(mm, np.uint8)
            vec = np.zeros((size + page - 1) // page, np.uint8)
            if _LIBC.mincore(ctypes.c_void_p(view.ctypes.data), ctypes.c_size_t(size),
                             vec.ctypes.data_as(ctypes.c_void_p)) != 0:
                raise OSError(ctypes.get_errno(), 'mincore failed')
            del view
            mm.close()
        cached += int((vec & 1).sum())
        total += len(vec)
    return cached / max(1, total)


def _timed(pairs, threads):
    """Wall and CPU seconds of one check of ``pairs``; the files must all pass."""
    wall, cpu = time.perf_counter(), time.process_time()
    findings = check_pairs(pairs, threads=threads)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if findings:
        raise SystemExit('the generated files fail the check: %s' % findings[:3])
    return wall, cpu


def _runs(name, pairs, threads_list):
    """Print cold and warm timings of ``pairs``; returns {threads: cold wall seconds}."""
    files = [p for pair in pairs for p in pair]
    sample = files[::max(1, len(files) // 200)]
    cold = {}
    for threads in threads_list:
        _drop(files)
        before = _cached_fraction(sample)
        wall, cpu = _timed(pairs, threads)
        cold[threads] = wall
        print('%-22s cold  %d threads: %7.2f s  %6.3f ms/pair  (CPU %5.2f s; pages cached before: %.1f%%)'
              % (name, threads, wall, 1e3 * wall / len(pairs), cpu, 100 * before))
    for threads in threads_list:
        wall, cpu = _timed(pairs, threads)
        print('%-22s warm  %d threads: %7.2f s  %6.3f ms/pair  (CPU %5.2f s)'
              % (name, threads, wall, 1e3 * wall / len(pairs), cpu))
    return cold


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--real', type=int, default=500, help='GTA-5-sized pairs written')
    parser.add_argument('--small', type=int, default=GTA_PAIRS, help='small pairs written')
    parser.add_argument('--threads', default='2,8', help='thread counts compared (the default pool: one a core)')
    parser.add_argument('--dir', default=None, help='where the temporary folder goes (default: the system\'s)')
    args = parser.parse_args(argv)
    threads_list = [int(t) for t in args.threads.split(',')]
    print('cores: %d; Pillow %s' % (os.cpu_count() or 1, Image.__version__))
    root = tempfile.mkdtemp(prefix='content_check_', dir=args.dir)
    try:
        start = time.perf_counter()
        encoded = [_gta_like(seed) for seed in range(VARIANTS)]
        real = _write_pairs(os.path.join(root, 'real'), args.real, *zip(*encoded))
        sizes = [os.path.getsize(p) for p in real[0]]
        print('wrote %d GTA-5-sized pairs in %.0f s: image %.2f MB, label %.0f kB, %.2f GB in all'
              % (args.real, time.perf_counter() - start, sizes[0] / 1e6, sizes[1] / 1e3,
                 args.real * sum(sizes) / 1e9))
        check_pairs(real[:1], threads=0)   # Pillow loads its format plugins on the first open
        cold = _runs('GTA-5-sized pairs', real, threads_list)
        shutil.rmtree(os.path.join(root, 'real'))

        tiny = np.arange(8 * 12 * 3, dtype=np.uint8).reshape(8, 12, 3)
        start = time.perf_counter()
        small = _write_pairs(os.path.join(root, 'small'), args.small, [_png(Image.fromarray(tiny))],
                             [_png(Image.fromarray(tiny[:, :, 0]))])
        print('wrote %d small pairs in %.0f s' % (args.small, time.perf_counter() - start))
        small_cold = _runs('small pairs', small, threads_list)

        print('\nGTA-5 (%d pairs = %d files), cold: T = %d x T(real, cold) / %d' % (
            GTA_PAIRS, 2 * GTA_PAIRS, GTA_PAIRS, args.real))
        for threads in threads_list:
            print('  %d threads: %d x %.3f s / %d = %.1f s   (%d small pairs measured: %.1f s)' % (
                threads, GTA_PAIRS, cold[threads], args.real, GTA_PAIRS * cold[threads] / args.real,
                args.small, small_cold[threads]))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    main()
