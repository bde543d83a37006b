"""The bundled demo on variants of the toy benchmark (the experiments of issue 12).

    python scripts/toy_variants.py --list
    python scripts/toy_variants.py --variants hue30 --seed 0 --output variants/hue30_s0 --source-from demo_out/seed0
    python scripts/toy_variants.py --variants no-unlearnable,hue30 --seed 1 --output variants/nu_hue30_s1

Each variant changes how :mod:`issegm.benchmark.toy` draws the benchmark, in this process
only (the demo generates the data in-process; its steps only read it). The
method's code and the evaluation are untouched. Variants marked "target" leave
the source domain as it is, so ``--source-from`` (a demo folder of the same
seed) can lend its trained source model and save the source training. The
script prints the gains against Source; the demo's own reports land in
``--output`` as usual.
"""
import argparse
import os
import shutil
import sys

import cv2
import numpy as np

from issegm.benchmark import demo
from issegm.benchmark import toy

#: Object kinds (``counts`` keys) of classes the thin network does not learn even on the source
#: domain (README, "What it shows"); lights and signs come with poles and are swapped for lamps.
UNLEARNABLE_KINDS = ('rider_bike', 'rider_moto', 'bicycle')


def _after_camera(change):
    """Wrap :func:`toy.render_target` so that ``change(float image) -> image`` follows the camera."""
    render = toy.render_target

    def render_target(cv, g, dom):
        img = change(render(cv, g, dom).astype(np.float32))
        return np.clip(img, 0, 255).astype(np.uint8)
    toy.render_target = render_target


def _rotate_hue(img_uint8, shift):
    """Rotate the hue by ``shift`` OpenCV units (2 degrees each): an int or an array per pixel."""
    hsv = cv2.cvtColor(img_uint8, cv2.COLOR_RGB2HSV).astype(np.int32)
    hsv[..., 0] = (hsv[..., 0] + shift) % 180
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)


def sensor_noise(sigma):
    """More sensor noise: the domain's own noise term, drawn from each image's generator."""
    toy.TARGET['camera'] = dict(toy.TARGET['camera'], noise=float(sigma))


def blur(sigma):
    _after_camera(lambda img: cv2.GaussianBlur(img, (0, 0), sigma))


def pixelate(factor):
    def change(img):
        h, w = img.shape[:2]
        small = cv2.resize(img, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    _after_camera(change)


def fog(amount):
    _after_camera(lambda img: img * (1 - amount) + amount * 190.0)


def hue(degrees):
    _after_camera(lambda img: _rotate_hue(np.clip(img, 0, 255).astype(np.uint8), int(degrees // 2)))


def class_hue(degrees, seed=0):
    """Rotate each class's albedo hue by +-``degrees`` (sign drawn per label id), before the camera."""
    signs = np.random.default_rng(seed).choice([-1, 1], 256) * int(degrees // 2)
    render = toy.render_target

    def render_target(cv, g, dom):
        albedo = np.clip(cv.albedo, 0, 255).astype(np.uint8)
        cv.albedo = _rotate_hue(albedo, signs[cv.label]) + (cv.albedo - albedo)
        return render(cv, g, dom)
    toy.render_target = render_target


def big_objects(small_scale=2.0, pole_scale=1.5, max_depth=3.5):
    """Persons, riders and two-wheelers larger; poles (with signs and lights) larger; all of them nearer."""
    toy.SMALL_SCALE = small_scale
    toy.SMALL_MAX_DEPTH = max_depth
    draw_pole = toy.draw_pole
    toy.draw_pole = lambda cv, pal, cx, by, unit, towards, kind: draw_pole(cv, pal, cx, by, unit * pole_scale,
                                                                           towards, kind)


def solid_bicycles():
    """Bicycles with motorcycle-thick tyres and a solid frame (the thin ones are not learnable)."""
    draw = toy.draw_two_wheeler

    def draw_two_wheeler(cv, pal, cx, by, unit, lid):
        if lid != toy.BICYCLE:
            return draw(cv, pal, cx, by, unit, lid)
        colour, r = toy._pick(cv.rng, pal, lid, 10), 0.2
        for ex in (-0.32, 0.32):
            cv.paint(toy._ring(cv, cx, by, unit, ex, r, r, 0.07), lid, toy._pick(cv.rng, pal, 'tyre', 5))
        cv.paint(toy._rect(cv, cx, by, unit, -0.32, 0.32, r - 0.04, r + 0.06)
                 | toy._rect(cv, cx, by, unit, -0.04, 0.04, r, 0.5), lid, colour)
    toy.draw_two_wheeler = draw_two_wheeler


def no_unlearnable():
    """No traffic lights, signs, riders, motorcycles or bicycles in either domain (poles carry lamps instead)."""
    for dom in (toy.SOURCE, toy.TARGET):
        dom['counts'] = dict(dom['counts'], **{k: 0.0 for k in UNLEARNABLE_KINDS})
    draw_pole = toy.draw_pole
    toy.draw_pole = lambda cv, pal, cx, by, unit, towards, kind: draw_pole(
        cv, pal, cx, by, unit, towards, 'lamp' if kind in ('sign', 'light') else kind)


#: name -> (what it changes: 'target' or 'both', how to apply it, description)
VARIANTS = {
    'noise30': ('target', lambda: sensor_noise(30.0), 'target sensor noise sigma 30 (default 4)'),
    'blur2.5': ('target', lambda: blur(2.5), 'an extra Gaussian blur, sigma 2.5 px, after the camera'),
    'pixelate4': ('target', lambda: pixelate(4), 'target images at a quarter of the resolution, blown up'),
    'fog0.2': ('target', lambda: fog(0.2), 'a 20% veil of light grey'),
    'hue30': ('target', lambda: hue(30), 'the target hue rotated by 30 degrees after the camera'),
    'hue16': ('target', lambda: hue(16), 'the target hue rotated by 16 degrees after the camera'),
    'class-hue30': ('target', lambda: class_hue(30), "each class's colours rotated by +-30 degrees"),
    'big-objects': ('both', big_objects, 'persons/riders/two-wheelers x2.0, poles x1.5, all within depth 3.5'),
    'solid-bicycles': ('both', solid_bicycles, 'bicycles with thick tyres and a solid frame'),
    'no-unlearnable': ('both', no_unlearnable, 'no lights, signs, riders, motorcycles or bicycles'),
}


def lend_source(source_from, output, preset):
    """Copy the final source checkpoint of the demo folder ``source_from`` into ``output/source``."""
    os.makedirs(os.path.join(output, 'source'), exist_ok=True)
    for name in ('%s_ep-%04d.params' % (demo.SOURCE_LABEL, preset['src_epochs']), '%s_ep-symbol.json' % demo.SOURCE_LABEL):
        src, dst = os.path.join(source_from, 'source', name), os.path.join(output, 'source', name)
        if not os.path.exists(dst):
            if not os.path.exists(src):
                raise SystemExit('toy_variants: %s is missing; run the demo for this seed first, or drop '
                                 '--source-from' % src)
            shutil.copyfile(src, dst)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--variants', default='', help='comma-separated names (see --list), applied in order')
    ap.add_argument('--list', action='store_true', help='list the variants and stop')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--output', help='the demo folder of this run')
    ap.add_argument('--source-from', help='a demo folder of the same seed whose source model to reuse '
                                          '(only when every variant is a target variant)')
    ap.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                    help="a value of the demo's full preset, e.g. gap=0.1 or init_tgt_port=0.1")
    ap.add_argument('--no-plus', action='store_true', help='skip the Source+ control')
    ap.add_argument('--methods', default='ST,CBST', help='demo cases to run (default ST,CBST)')
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.list:
        for name, (kind, _, text) in VARIANTS.items():
            print('%-15s %-6s %s' % (name, kind, text))
        return 0
    if not args.output:
        raise SystemExit('toy_variants: give --output')
    names = [n for n in args.variants.split(',') if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit('toy_variants: unknown variant %s; see --list' % ', '.join(unknown))
    try:
        overrides = demo.parse_overrides(args.set)
    except ValueError as exc:
        raise SystemExit('toy_variants: %s' % exc)
    if args.source_from:
        if any(VARIANTS[n][0] != 'target' for n in names):
            raise SystemExit('toy_variants: --source-from needs target variants only: %s change the source too'
                             % ', '.join(n for n in names if VARIANTS[n][0] != 'target'))
        lend_source(args.source_from, args.output, dict(demo.PRESETS['full'], **overrides))
    for name in names:
        VARIANTS[name][1]()
    summary = demo.run_demo(args.output, 'full', args.seed, methods=demo.select_methods(args.methods),
                            overrides=overrides, source_plus=not args.no_plus)
    print('variants %s, seed %d, %s' % (','.join(names) or '(none)', args.seed, overrides or 'full preset'))
    for case, g in summary['gains'].items():
        print('  %-8s mIoU %.1f  gain %+.1f  rare-class gain %+.1f  per round %s' % (
            case, g['mIoU'], g['mIoU_gain'], g['rare_class_gain'],
            ' '.join('%.1f' % x for x in summary['mIoU_per_round'][case])))
    return 0


if __name__ == '__main__':
    sys.exit(main())
