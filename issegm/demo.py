"""The bundled default (README command 1): CBST end to end on a miniature benchmark.

Generates the miniature GTA-5 -> Cityscapes benchmark of :mod:`issegm.toy`,
then runs the project's own commands on it, with the published flags scaled
down (rounds, epochs, crop size, portions) and the thin network ``rna-t1``:

1. ``train_src.py``: the source model on the GTA-5-layout images;
2. ``spatial_prior.py``: the spatial prior from the source labels;
3. ``evaluate.py``: the source model on the target val split;
4. ``solve_AO.py`` three times: ST (``--kc-policy global``), CBST
   (``--kc-policy cb``), CBST-SP (``--kc-policy cb --with-prior True``),
   each round's model evaluated with ``evaluate.py``;
5. the paper-style table (``Case|mIoU|Road|...``), a picture (image | ground
   truth | source-only | CBST for a few target val images) and a plot of mIoU
   per round per method.

Each command runs as a subprocess in the work folder, which has its own
``issegm/data_list/`` and ``spatial_prior/`` (the scripts read them relative to
the working directory, as the reference does). Their output goes to
``{output}/logs/``. Rerunning continues where a previous run stopped: every
script resumes, and finished steps are skipped.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_LABEL = 'gta_rna-t1_cls19_s8'
TARGET_LABEL = 'cityscapes_rna-t1_cls19_s8'
METHODS = (  # case, --kc-policy, --with-prior
    ('ST', 'global', 'False'),
    ('CBST', 'cb', 'False'),
    ('CBST-SP', 'cb', 'True'),
)
#: CRST variants (``--methods``), CBST plus their flag: CRST's mrkld.sh / lrent.sh weights, 0.1 for MRENT/MRL2.
CRST_FLAGS = {
    'CRST-MRKLD': ['--mr-weight-kld', '0.1'],
    'CRST-LRENT': ['--lr-weight-ent', '0.25'],
    'CRST-MRENT': ['--mr-weight-ent', '0.1'],
    'CRST-MRL2': ['--mr-weight-l2', '0.1'],
}


def select_methods(names):
    """``--methods`` (comma-separated case names) -> the ``(case, --kc-policy, --with-prior)`` list."""
    known = dict((m[0], m) for m in METHODS)
    known.update((case, (case, 'cb', 'False')) for case in CRST_FLAGS)
    cases = [n.strip() for n in names.split(',') if n.strip()]
    unknown = [c for c in cases if c not in known]
    if unknown or not cases:
        raise ValueError('unknown --methods %s; choose from %s' % (', '.join(unknown) or '(none)', ', '.join(known)))
    return tuple(known[c] for c in cases)

#: Scaled-down settings: the full demo, and the quick one the tests run.
#: Full: the source model trains 150 epochs (``src_lr_type`` is its
#: ``--lr-type``); self-training runs two rounds of 16 epochs at half the
#: source learning rate, with every source image mixed in (--init-src-port
#: 1.0: the clean source labels keep the classes that the pseudo-labels rarely
#: cover in place) and 20% then 30% of the target pixels. The target val split
#: has 90 images: with 30, one image's rare objects moved a class's IoU by
#: several points.
PRESETS = {
    'full': dict(n_source=150, n_target_train=60, n_target_val=90, gap=0.2, src_epochs=150,
                 src_lr_type='fixed', rounds=2, epoch_per_round=16, batch=8, crop=96, src_lr=0.02,
                 st_lr=0.01, init_tgt_port=0.2, step_tgt_port=0.1, max_tgt_port=0.5, init_src_port=1.0,
                 step_src_port=0.0, max_src_port=1.0),
    'quick': dict(n_source=16, n_target_train=8, n_target_val=6, gap=0.2, src_epochs=2,
                  src_lr_type='fixed', rounds=1, epoch_per_round=1, batch=4, crop=64, src_lr=0.02,
                  st_lr=0.005, init_tgt_port=0.2, step_tgt_port=0.1, max_tgt_port=0.5, init_src_port=0.5,
                  step_src_port=0.0, max_src_port=0.5),
}


def _python():
    return sys.executable


def _script(name):
    return os.path.join(REPO, 'issegm', name)


class Runner(object):
    """Runs the project's commands in ``workdir``, logging each to ``logs/{step}.log``."""

    def __init__(self, workdir, progress, gpus):
        self.workdir = workdir
        self.progress = progress
        self.gpus = gpus
        self.env = dict(os.environ)
        self.env['PYTHONPATH'] = REPO + os.pathsep + self.env.get('PYTHONPATH', '')
        self.times = []

    def run(self, step, argv):
        log = os.path.join(self.workdir, 'logs', step + '.log')
        os.makedirs(os.path.dirname(log), exist_ok=True)
        self.progress.set_description(step)
        start = time.time()
        with open(log, 'w') as f:
            f.write('$ %s\n' % ' '.join(argv))
            f.flush()
            proc = subprocess.run(argv, cwd=self.workdir, env=self.env, stdout=f,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        took = time.time() - start
        self.times.append((step, took))
        self.progress.update(1)
        if proc.returncode != 0:
            with open(log) as f:
                tail = f.read().splitlines()[-15:]
            raise SystemExit('demo step %s failed (exit %d); last lines of %s:\n%s\nRerun the demo '
                             'to continue where it stopped.' % (step, proc.returncode, log,
                                                                '\n'.join(tail)))
        return took


def prepare_benchmark(workdir, preset, seed):
    """Generate the miniature datasets and lay out their lists as the scripts read them."""
    from issegm import toy
    data = os.path.join(workdir, 'data')
    done = os.path.join(data, '.complete')
    if not os.path.exists(done):
        toy.generate(data, seed=seed, n_source=preset['n_source'],
                     n_target_train=preset['n_target_train'], n_target_val=preset['n_target_val'],
                     gap=preset['gap'])
        open(done, 'w').close()
    for dataset in ('gta', 'cityscapes'):
        src = os.path.join(data, 'lists', dataset)
        dst = os.path.join(workdir, 'issegm', 'data_list', dataset)
        os.makedirs(dst, exist_ok=True)
        for name in os.listdir(src):
            shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
    from PIL import Image
    with open(os.path.join(data, 'lists', 'cityscapes', 'val.lst')) as f:
        first = f.readline().split('\t')[0]
    with Image.open(os.path.join(data, 'cityscapes', first)) as im:
        return im.size[1], im.size[0]


def _checkpoint(folder, label, epoch):
    return os.path.join(folder, '%s_ep-%04d.params' % (label, epoch))


def _evaluate(runner, step, weights, output, scale):
    result = os.path.join(runner.workdir, output, os.path.splitext(os.path.basename(weights))[0]
                          + '_results.json')
    if not os.path.exists(result):
        runner.run(step, [_python(), _script('evaluate.py'), '--data-root', 'data/cityscapes',
                          '--output', output, '--dataset', 'cityscapes', '--phase', 'val',
                          '--weights', weights, '--split', 'val', '--test-scales', str(scale),
                          '--test-flipping', '--gpus', runner.gpus])
    else:
        runner.progress.update(1)
    return result


def run_demo(workdir, preset_name='full', seed=0, gpus='0', methods=METHODS, overrides=None):
    """Run the whole benchmark in ``workdir``; returns the summary dict written to ``summary.json``.

    ``overrides`` replaces preset values (``{'rounds': 4}``).
    """
    from tqdm import tqdm
    p = dict(PRESETS[preset_name], **(overrides or {}))
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    steps = 4 + len(methods) * (1 + p['rounds'])
    start = time.time()
    with tqdm(total=steps, unit='step', dynamic_ncols=True) as bar:
        runner = Runner(workdir, bar, gpus)
        bar.set_description('generate benchmark')
        h, w = prepare_benchmark(workdir, p, seed)
        bar.update(1)
        scale = max(h, w)
        crop = str(p['crop'])

        src_ckpt = _checkpoint('source', SOURCE_LABEL, p['src_epochs'])
        # --origin-size is the source images' longer side: train_src.py draws each
        # image's scale from its own size (the published 1914 is GTA-5's resized width).
        runner.run('train_src', [
            _python(), _script('train_src.py'), '--gpus', gpus, '--split', 'train',
            '--data-root', 'data/gta', '--output', 'source', '--model', SOURCE_LABEL,
            '--batch-images', str(p['batch']), '--crop-size', crop, '--scale-rate-range', '0.7,1.3',
            '--lr-type', p['src_lr_type'], '--base-lr', str(p['src_lr']), '--to-epoch', str(p['src_epochs']),
            '--kvstore', 'local', '--prefetch-threads', '2', '--prefetcher', 'thread',
            '--cache-images', '1', '--origin-size', str(scale)])
        # The paper smooths with a 70 px window at 1024 x 2048: the same share of our width.
        kernel = max(3, int(round(70. * w / 2048)) | 1)
        runner.run('spatial_prior', [
            _python(), _script('spatial_prior.py'), '--dataset', 'gta', '--split', 'train',
            '--data-root', 'data/gta', '--shape', '%d,%d' % (h, w), '--kernel-size', str(kernel)])
        results = {'Source': [_evaluate(runner, 'evaluate_source', src_ckpt, 'eval/source', scale)]}

        for case, policy, prior in methods:
            out = os.path.join('adapt', case)
            runner.run('solve_AO_' + case, [
                _python(), _script('solve_AO.py'), '--num-round', str(p['rounds']),
                '--test-scales', str(scale), '--scale-rate-range', '0.7,1.3', '--dataset', 'gta',
                '--dataset-tgt', 'cityscapes', '--split', 'train', '--split-tgt', 'train',
                '--data-root', 'data/gta', '--data-root-tgt', 'data/cityscapes', '--output', out,
                '--model', TARGET_LABEL, '--weights', src_ckpt, '--batch-images', str(p['batch']),
                '--crop-size', crop, '--origin-size-tgt', '2048',
                '--init-tgt-port', str(p['init_tgt_port']), '--step-tgt-port', str(p['step_tgt_port']),
                '--max-tgt-port', str(p['max_tgt_port']), '--init-src-port', str(p['init_src_port']),
                '--step-src-port', str(p['step_src_port']), '--max-src-port', str(p['max_src_port']),
                '--seed-int', '0', '--mine-port', '0.8', '--mine-id-number', '3',
                '--mine-thresh', '0.001', '--base-lr', str(p['st_lr']),
                '--epoch-per-round', str(p['epoch_per_round']), '--to-epoch', str(p['epoch_per_round']),
                '--source-sample-policy', 'cumulative', '--self-training-script', _script('solve_ST.py'),
                '--kc-policy', policy, '--prefetch-threads', '2', '--gpus', gpus, '--with-prior', prior]
                + CRST_FLAGS.get(case, []))
            results[case] = []
            for r in range(p['rounds']):
                ckpt = _checkpoint(os.path.join(out, str(r)), TARGET_LABEL, (r + 1) * p['epoch_per_round'])
                results[case].append(_evaluate(runner, 'evaluate_%s_round%d' % (case, r), ckpt,
                                               os.path.join('eval', case, str(r)), scale))
    summary = summarise(workdir, results, p, time.time() - start, runner.times)
    return summary


def rare_train_ids():
    """Train ids of the toy's rare classes (:data:`issegm.toy.RARE_CLASSES`)."""
    from issegm.datasets import get_dataset
    from issegm.toy import RARE_CLASSES
    lut = get_dataset('cityscapes').label2train
    return sorted(int(lut[lid]) for lid in RARE_CLASSES)


def gains(scores):
    """Per case, against Source: the table's (last-round) mIoU and its gain, the best
    round, and the mean IoU gain over the rare classes (all in points).

    ``scores`` maps each case to its rounds' score dicts (``results.json``'s ``scores``).
    """
    rare = rare_train_ids()
    source = np.asarray(scores['Source'][0]['class_iou'], np.float64) * 100
    out = {}
    for case, per_round in scores.items():
        miou = [s['mean_iou'] * 100 for s in per_round]
        best = int(np.argmax(miou))
        last = np.asarray(per_round[-1]['class_iou'], np.float64) * 100
        out[case] = {'mIoU': miou[-1], 'mIoU_gain': miou[-1] - scores['Source'][0]['mean_iou'] * 100,
                     'best_round': best + 1, 'best_round_mIoU': miou[best],
                     'rare_class_gain': float((last[rare] - source[rare]).mean())}
    return out


def verdict(gain):
    """One line: CBST against Source, and the rare-class gains of CBST and ST."""
    if 'CBST' not in gain:
        return ''
    line = 'CBST vs Source: %+.1f mIoU; rare-class gain CBST %+.1f' % (
        gain['CBST']['mIoU_gain'], gain['CBST']['rare_class_gain'])
    if 'ST' in gain:
        line += ' vs ST %+.1f' % gain['ST']['rare_class_gain']
    return line


def summarise(workdir, results, preset, seconds, times):
    """Write ``table.md``, ``summary.json``, ``mIoU_per_round.png`` and ``predictions.png``."""
    from issegm.metrics import load_results, markdown_table
    scores = {case: [load_results(p)['scores'] for p in paths] for case, paths in results.items()}
    table = markdown_table([(case, rounds[-1]) for case, rounds in scores.items()])
    with open(os.path.join(workdir, 'table.md'), 'w') as f:
        f.write(table)
    per_round = {case: [s['mean_iou'] * 100 for s in rounds] for case, rounds in scores.items()}
    gain = gains(scores)
    summary = {'table': table, 'mIoU_per_round': per_round, 'gains': gain, 'verdict': verdict(gain),
               'rare_classes': rare_train_ids(), 'seconds': seconds,
               'step_seconds': dict(times), 'preset': preset,
               'results': {c: [os.path.relpath(p, workdir) for p in ps] for c, ps in results.items()}}
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    plot_rounds(per_round, os.path.join(workdir, 'mIoU_per_round.png'))
    if 'CBST' in results:
        picture(workdir, os.path.dirname(results['Source'][0]), os.path.dirname(results['CBST'][-1]),
                os.path.join(workdir, 'predictions.png'))
    return summary


def plot_rounds(per_round, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    for case, values in per_round.items():
        if case == 'Source':
            ax.axhline(values[0], color='grey', linestyle='--', label='Source')
        else:
            ax.plot(range(1, len(values) + 1), values, marker='o', label=case)
    ax.set_xlabel('round')
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel('mIoU on target val (%)')
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def picture(workdir, source_eval, cbst_eval, path, count=4):
    """image | ground truth | source-only | CBST, one row per target val image, Cityscapes colours."""
    from PIL import Image
    from issegm.datasets import get_dataset, read_list, sample_name
    info = get_dataset('cityscapes')
    items = read_list(os.path.join(workdir, 'issegm', 'data_list', 'cityscapes', 'val.lst'),
                      os.path.join(workdir, 'data', 'cityscapes'))[:count]
    rows = []
    for image_rel, label_rel in items:
        root = os.path.join(workdir, 'data', 'cityscapes')
        image = Image.open(os.path.join(root, image_rel)).convert('RGB')
        gt = Image.fromarray(np.asarray(Image.open(os.path.join(root, label_rel)), np.uint8))
        gt.putpalette(info.palette.tolist())
        name = sample_name(image_rel) + '.png'
        preds = [Image.open(os.path.join(folder, 'color', name)).convert('RGB')
                 for folder in (source_eval, cbst_eval)]
        rows.append([image, gt.convert('RGB')] + preds)
    w, h = rows[0][0].size
    sheet = Image.new('RGB', (4 * w + 3 * 4, len(rows) * h + (len(rows) - 1) * 4), 'white')
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            sheet.paste(tile, (j * (w + 4), i * (h + 4)))
    sheet.save(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--output', default='demo_out', help='work folder (default demo_out)')
    parser.add_argument('--preset', default='full', choices=sorted(PRESETS))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--gpus', default='0', help='as in the scripts; the CPU is used without a GPU')
    parser.add_argument('--methods', default=','.join(m[0] for m in METHODS),
                        help='comma-separated cases (default %(default)s; also ' + ', '.join(CRST_FLAGS) + ')')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='change a preset value, e.g. --set rounds=4 (keys: %s)'
                        % ', '.join(sorted(PRESETS['full'])))
    args = parser.parse_args(argv)
    try:
        methods = select_methods(args.methods)
    except ValueError as exc:
        parser.error(str(exc))
    overrides = {}
    for item in args.set:
        key, _, value = item.partition('=')
        if key not in PRESETS['full']:
            parser.error('unknown setting %r; known: %s' % (key, ', '.join(sorted(PRESETS['full']))))
        overrides[key] = type(PRESETS['full'][key])(value)
    summary = run_demo(args.output, args.preset, args.seed, args.gpus, methods=methods, overrides=overrides)
    print()
    print(summary['table'])
    for case, values in summary['mIoU_per_round'].items():
        print('%-8s mIoU per round: %s' % (case, ', '.join('%.1f' % v for v in values)))
    if summary['verdict']:
        print(summary['verdict'])
    print('\nwritten in %s: table.md, summary.json, mIoU_per_round.png, predictions.png, logs/'
          % os.path.abspath(args.output))
    print('total time %.0f s' % summary['seconds'])


if __name__ == '__main__':
    main()
