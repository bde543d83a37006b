"""The bundled default (README command 1): CBST end to end on a miniature benchmark.

Generates the miniature GTA-5 -> Cityscapes benchmark of :mod:`issegm.benchmark.toy`,
then runs the project's own commands on it, with the published flags scaled
down (rounds, epochs, crop size, portions) and the thin network ``rna-t1``:

1. ``train_src.py``: the source model on the GTA-5-layout images;
2. ``spatial_prior.py``: the spatial prior from the source labels;
3. ``evaluate.py``: the source model on the target val split;
4. ``solve_AO.py`` three times: ST (``--kc-policy global``), CBST
   (``--kc-policy cb``), CBST-SP (``--kc-policy cb --with-prior True``),
   each round's model evaluated with ``evaluate.py``;
5. the run report of each case (:mod:`issegm.report`: ``report.html`` and
   ``report.md`` in ``source/`` and ``adapt/{case}/``);
6. the paper-style table (``Case|mIoU|Road|...``), a picture (image | ground
   truth | source-only | CBST for a few target val images) and a plot of mIoU
   per round per method.

Each command runs as a subprocess in the work folder, which has its own
``issegm/data_list/`` and ``spatial_prior/`` (the scripts read them relative to
the working directory, as the reference does). Their output goes to
``{output}/logs/``. Rerunning continues where a previous run stopped: every
script resumes, and finished steps are skipped.
"""
import argparse
import math
import os
import shutil
import subprocess
import sys
import time

from util.child_env import REPO, child_env


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
                 step_src_port=0.0, max_src_port=1.0, mine_port=0.8),
    'quick': dict(n_source=16, n_target_train=8, n_target_val=6, gap=0.2, src_epochs=2,
                  src_lr_type='fixed', rounds=1, epoch_per_round=1, batch=4, crop=64, src_lr=0.02,
                  st_lr=0.005, init_tgt_port=0.2, step_tgt_port=0.1, max_tgt_port=0.5, init_src_port=0.5,
                  step_src_port=0.0, max_src_port=0.5, mine_port=0.8),
}

#: CBST's gain over Source in the README's status table (mIoU points): the mean
#: and sample standard deviation over seeds of ``command``, which measured them.
#: A single full-preset run reports whether its own gain lies within mean +- 2 std.
README_BAND = dict(command='python -m issegm.benchmark --seeds 0,1,2', seeds=(0, 1, 2), mean=-1.0, std=1.9)


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
        self.env = child_env()
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

    def run_unless(self, output, step, argv):
        """:meth:`run` unless ``output`` (written atomically by the step) exists; returns ``output``."""
        if os.path.exists(output):
            self.progress.update(1)
        else:
            self.run(step, argv)
        return output


def prepare_benchmark(workdir, preset, seed):
    """Generate the miniature datasets and lay out their lists as the scripts read them."""
    from issegm.benchmark import toy
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


def train_src_argv(p, gpus, output, lr_type, lr, to_epoch, origin_size, weights=None):
    """``train_src.py`` on the source images with the preset's batch, crop and scales."""
    return [_python(), _script('train_src.py'), '--gpus', gpus, '--split', 'train', '--data-root', 'data/gta',
            '--output', output, '--model', SOURCE_LABEL] + (['--weights', weights] if weights else []) + [
            '--batch-images', str(p['batch']), '--crop-size', str(p['crop']), '--scale-rate-range', '0.7,1.3',
            '--lr-type', lr_type, '--base-lr', repr(lr), '--to-epoch', str(to_epoch), '--kvstore', 'local',
            '--prefetch-threads', '2', '--prefetcher', 'thread', '--cache-images', '1', '--origin-size', str(origin_size)]


def _evaluate(runner, step, weights, output, scale):
    result = os.path.join(runner.workdir, output, os.path.splitext(os.path.basename(weights))[0]
                          + '_results.json')
    return runner.run_unless(result, step, [
        _python(), _script('evaluate.py'), '--data-root', 'data/cityscapes', '--output', output,
        '--dataset', 'cityscapes', '--phase', 'val', '--weights', weights, '--split', 'val',
        '--test-scales', str(scale), '--test-flipping', '--gpus', runner.gpus])


def run_demo(workdir, preset_name='full', seed=0, gpus='0', methods=METHODS, overrides=None,
             source_plus=True):
    """Run the whole benchmark in ``workdir``; returns the summary dict written to ``summary.json``.

    ``overrides`` replaces preset values (``{'rounds': 4}``).
    """
    from tqdm import tqdm
    from issegm.method.prior import prior_path
    p = dict(PRESETS[preset_name], **(overrides or {}))
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    steps = 4 + (2 * p['rounds'] if source_plus else 0) + len(methods) * (1 + p['rounds'])
    start = time.time()
    with tqdm(total=steps, unit='step', dynamic_ncols=True) as bar:
        runner = Runner(workdir, bar, gpus)
        bar.set_description('generate benchmark')
        h, w = prepare_benchmark(workdir, p, seed)
        bar.update(1)
        scale = max(h, w)

        src_ckpt = _checkpoint('source', SOURCE_LABEL, p['src_epochs'])
        # --origin-size is the source images' longer side: train_src.py draws each
        # image's scale from its own size (the published 1914 is GTA-5's resized width).
        runner.run('train_src', train_src_argv(p, gpus, 'source', p['src_lr_type'], p['src_lr'],
                                               p['src_epochs'], scale))
        # The paper smooths with a 70 px window at 1024 x 2048: the same share of our width.
        kernel = max(3, int(round(70. * w / 2048)) | 1)
        runner.run_unless(prior_path('gta', os.path.join(workdir, 'spatial_prior')), 'spatial_prior', [
            _python(), _script('spatial_prior.py'), '--dataset', 'gta', '--split', 'train',
            '--data-root', 'data/gta', '--shape', '%d,%d' % (h, w), '--kernel-size', str(kernel)])
        results = {'Source': [_evaluate(runner, 'evaluate_source', src_ckpt, 'eval/source', scale)]}
        if source_plus:
            results['Source+'] = train_source_plus(runner, p, src_ckpt, scale)
        for case, policy, prior in methods:
            results[case] = self_train(runner, p, case, policy, prior, src_ckpt, scale)
    write_run_reports(workdir, ['source'] + [os.path.join('adapt', case) for case, _, _ in methods])
    from issegm.benchmark.report import summarise
    reference = README_BAND if preset_name == 'full' and not overrides and README_BAND['mean'] is not None else None
    summary = summarise(workdir, results, p, time.time() - start, runner.times, reference)
    return summary


def write_run_reports(workdir, outputs):
    """The run report (:func:`issegm.report.render.write_report`) of each output; a failure only warns."""
    from issegm.report.render import write_report
    for out in outputs:
        try:
            write_report(os.path.join(workdir, out))
        except Exception as exc:  # the report observes the demo; it never fails it
            print('run report of %s not written: %s' % (out, exc), file=sys.stderr)


def self_train(runner, p, case, policy, prior, src_ckpt, scale):
    """``solve_AO.py`` with ``--kc-policy policy --with-prior prior``; returns each round's result file."""
    out = os.path.join('adapt', case)
    runner.run('solve_AO_' + case, [
        _python(), _script('solve_AO.py'), '--num-round', str(p['rounds']),
        '--test-scales', str(scale), '--scale-rate-range', '0.7,1.3', '--dataset', 'gta',
        '--dataset-tgt', 'cityscapes', '--split', 'train', '--split-tgt', 'train',
        '--data-root', 'data/gta', '--data-root-tgt', 'data/cityscapes', '--output', out,
        '--model', TARGET_LABEL, '--weights', src_ckpt, '--batch-images', str(p['batch']),
        '--crop-size', str(p['crop']), '--origin-size-tgt', '2048',
        '--init-tgt-port', str(p['init_tgt_port']), '--step-tgt-port', str(p['step_tgt_port']),
        '--max-tgt-port', str(p['max_tgt_port']), '--init-src-port', str(p['init_src_port']),
        '--step-src-port', str(p['step_src_port']), '--max-src-port', str(p['max_src_port']),
        '--seed-int', '0', '--mine-port', str(p['mine_port']), '--mine-id-number', '3',
        '--mine-thresh', '0.001', '--base-lr', str(p['st_lr']),
        '--epoch-per-round', str(p['epoch_per_round']), '--to-epoch', str(p['epoch_per_round']),
        '--source-sample-policy', 'cumulative', '--self-training-script', _script('solve_ST.py'),
        '--kc-policy', policy, '--prefetch-threads', '2', '--gpus', runner.gpus, '--with-prior', prior]
        + CRST_FLAGS.get(case, []))
    return [_evaluate(runner, 'evaluate_%s_round%d' % (case, r),
                      _checkpoint(os.path.join(out, str(r)), TARGET_LABEL, (r + 1) * p['epoch_per_round']),
                      os.path.join('eval', case, str(r)), scale)
            for r in range(p['rounds'])]


def source_plus_rounds(p):
    """Per round of self-training, (learning rate, epochs) of the ``Source+`` control.

    The control continues the source model on source data alone with the
    rounds' learning rates (``solve_AO``'s schedule) and at least as many
    images per round as self-training trains on (its source selection plus
    every target image), so it gets as many SGD updates as self-training adds.
    """
    from types import SimpleNamespace
    from issegm.phases.rounds import round_schedule
    args = SimpleNamespace(source_sample_policy='cumulative', base_lr=p['st_lr'], weights='', epr=1,
                           num_round=p['rounds'], seed_int=0, output='', model='',
                           init_tgt_port=p['init_tgt_port'], step_tgt_port=p['step_tgt_port'],
                           max_tgt_port=p['max_tgt_port'], init_src_port=p['init_src_port'],
                           step_src_port=p['step_src_port'], max_src_port=p['max_src_port'])
    out = []
    for rnd in round_schedule(args):
        images = int(p['n_source'] * float(rnd['src_port'])) + p['n_target_train']
        out.append((float(rnd['lr']), int(math.ceil(p['epoch_per_round'] * images / float(p['n_source'])))))
    return out


def train_source_plus(runner, p, src_ckpt, scale):
    """The ``Source+`` control: ``train_src.py`` continued from the source model, round by round."""
    weights, epoch, results = src_ckpt, p['src_epochs'], []
    for r, (lr, epochs) in enumerate(source_plus_rounds(p)):
        out = os.path.join('source_plus', str(r))
        epoch += epochs
        runner.run('train_source_plus_round%d' % r,
                   train_src_argv(p, runner.gpus, out, 'fixed', lr, epoch, scale, weights=weights))
        weights = _checkpoint(out, SOURCE_LABEL, epoch)
        results.append(_evaluate(runner, 'evaluate_source_plus_round%d' % r, weights,
                                 os.path.join('eval', 'source_plus', str(r)), scale))
    return results


def run_seeds(workdir, seeds, preset_name='full', gpus='0', methods=METHODS, overrides=None):
    """:func:`run_demo` for each seed in ``{workdir}/seed{N}`` (one after the other), then the
    mean and spread over the seeds (:func:`issegm.benchmark.report.summarise_seeds`); returns its summary."""
    from issegm.benchmark.report import summarise_seeds
    start = time.time()
    summaries = {}
    for seed in seeds:
        summaries[seed] = run_demo(os.path.join(workdir, 'seed%d' % seed), preset_name, seed, gpus, methods,
                                   overrides)
    return summarise_seeds(os.path.abspath(workdir), summaries, time.time() - start)


def parse_seeds(text):
    """``'0,1,2'`` -> [0, 1, 2] (distinct integers)."""
    try:
        seeds = [int(s) for s in text.split(',') if s.strip()]
    except ValueError:
        raise ValueError('--seeds takes integers separated by commas, e.g. --seeds 0,1,2; got %r' % text)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError('--seeds takes distinct integers separated by commas, e.g. --seeds 0,1,2; got %r' % text)
    return seeds


def _print_single(summary, output):
    print()
    print(summary['table'])
    for case, values in summary['mIoU_per_round'].items():
        print('%-8s mIoU per round: %s' % (case, ', '.join('%.1f' % v for v in values)))
    if summary['verdict']:
        print(summary['verdict'])
    if 'CBST' in summary['gains'] and summary.get('band'):
        print(summary['band']['line'])
    print('\nwritten in %s: table.md, pseudo_labels.md, summary.json, mIoU_per_round.png, predictions.png, logs/'
          % os.path.abspath(output))
    print('run reports: source/report.html, adapt/<case>/report.html (python -m issegm.report adapt/<case> --select: '
          'the round to keep)')
    print('total time %.0f s' % summary['seconds'])


def _print_seeds(summary, output):
    print()
    print(summary['table'])
    if summary['verdict']:
        print(summary['verdict'])
    print('\nwritten in %s: table.md, pseudo_labels.md, summary.json; each seed\'s run in seed<N>/'
          % os.path.abspath(output))
    print('total time %.0f s' % summary['seconds'])


def parse_overrides(items):
    """``--set KEY=VALUE`` items -> preset overrides, each converted to the type of the full preset's value."""
    full, overrides = PRESETS['full'], {}
    for item in items:
        key, _, value = item.partition('=')
        if key not in full:
            raise ValueError('--set %s: no such preset key; known: %s' % (key, ', '.join(sorted(full))))
        overrides[key] = type(full[key])(value)
    return overrides


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--output', default='demo_out', help='work folder (default demo_out)')
    parser.add_argument('--preset', default='full', choices=sorted(PRESETS))
    which = parser.add_mutually_exclusive_group()
    which.add_argument('--seed', type=int, default=0, help='the benchmark draw and training seed (default 0)')
    which.add_argument('--seeds', default=None, metavar='S1,S2,...',
                       help='run each seed in {output}/seed<N> and report the mean and spread over them')
    parser.add_argument('--gpus', default='0', help='as in the scripts; the CPU is used without a GPU')
    parser.add_argument('--methods', default=','.join(m[0] for m in METHODS),
                        help='comma-separated cases (default %(default)s; also ' + ', '.join(CRST_FLAGS) + ')')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='change a preset value, e.g. --set rounds=4 (keys: %s)'
                        % ', '.join(sorted(PRESETS['full'])))
    args = parser.parse_args(argv)
    try:
        methods = select_methods(args.methods)
        overrides = parse_overrides(args.set)
    except ValueError as exc:
        parser.error(str(exc))
    if args.seeds is not None:
        try:
            seeds = parse_seeds(args.seeds)
        except ValueError as exc:
            parser.error(str(exc))
        _print_seeds(run_seeds(args.output, seeds, args.preset, args.gpus, methods, overrides), args.output)
    else:
        summary = run_demo(args.output, args.preset, args.seed, args.gpus, methods, overrides)
        _print_single(summary, args.output)


if __name__ == '__main__':
    main()
