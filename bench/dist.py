"""What does training over several machines cost in communication?

1. **Measured**: seconds per training step spent in the KVStore's push + pull
   of every gradient of the full ResNet-38 (``cityscapes_rna-a1_cls19_s8``,
   124 M parameters) under ``dist_sync``, 2 workers and 1 server started by
   :mod:`issegm.launch` on this machine (loopback), exactly as training
   exchanges them (``pushpull`` per parameter, by priority); the bytes a
   worker moves per step (its gradients out, the summed ones back) and the
   loopback interface's byte counter over the timed steps (it counts both
   directions of every message, plus any other loopback traffic).
2. **A projection, not a measurement**: the communication time per step of
   the published source training (global batch 16, 4 GPUs a machine) on
   10 and 100 Gbit/s networks for 2, 4 and 8 machines, one server per
   machine. Each machine's link carries its worker's pushes to the other
   machines' servers and its server's replies to the other workers:
   ``2 * B * (M - 1) / M`` bytes each way per step (``B`` = 4 bytes x
   parameters). Next to an ASSUMED GPU step of 0.35 s for 2 images on one
   GPU (``--gpu-step``, as ``bench/iterator.py``), the overhead is
   ``comm / (compute + comm)``, with no overlap of communication and
   backward (MXNet does overlap them by priority, so this is an upper bound).
3. **Measured**: pseudo-labelling throughput (``solve_ST.py --phase val`` on
   the miniature benchmark with the thin network) of 1 worker and of 2
   workers under the launcher on this machine.

    python bench/dist.py [--steps 5] [--servers 1] [--gpu-step 0.35] [--pl-images 48] [--skip-pseudo-labels]

About 1-2 minutes on 2 cores (the 124 M-parameter exchange needs ~4 GB of memory).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = 'cityscapes_rna-a1_cls19_s8'
PUBLISHED_BATCH = 16     # train_src.py --batch-images 16 --gpus 0,1,2,3 (README)
GPUS_PER_MACHINE = 4


def loopback_bytes():
    """Bytes received on the loopback interface so far (each message counted once)."""
    with open('/proc/net/dev') as f:
        for line in f:
            name, _, rest = line.partition(':')
            if name.strip() == 'lo':
                return int(rest.split()[0])
    return 0


def comm_worker(steps, out):
    """One worker of the measured exchange (run under the launcher)."""
    import mxnet as mx
    import numpy as np
    from issegm.engine.model import get_symbol, param_shapes
    shapes = param_shapes(get_symbol(MODEL), data_shape=(1, 3, 64, 64))[0]
    names = sorted(shapes)
    kv = mx.kv.create('dist_sync')
    grads = {n: mx.nd.ones(shapes[n]) * (kv.rank + 1) for n in names}
    for n in names:
        kv.init(n, mx.nd.zeros(shapes[n]))
    times = []
    lo = []
    for step in range(steps + 1):            # step 0 warms up
        kv._barrier()
        lo.append(loopback_bytes())
        t0 = time.time()
        for idx, n in enumerate(names):
            kv.pushpull(n, grads[n], out=grads[n], priority=-idx)
        mx.nd.waitall()
        times.append(time.time() - t0)
    kv._barrier()
    lo.append(loopback_bytes())
    params = int(sum(np.prod(s) for s in shapes.values()))
    if kv.rank == 0:
        with open(out, 'w') as f:
            json.dump({'times': times[1:], 'params': params, 'keys': len(names),
                       'loopback_bytes': lo[-1] - lo[1], 'steps': steps, 'workers': kv.num_workers}, f)


def launch(workers, servers, command, cwd=None, env=None):
    full_env = dict(os.environ, PYTHONPATH=ROOT)
    full_env.update(env or {})
    cmd = [sys.executable, '-m', 'issegm.launch', '-n', str(workers), '-s', str(servers), '--'] + command
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=cwd or ROOT, env=full_env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit('bench/dist.py: %s failed:\n%s' % (' '.join(command), proc.stderr[-3000:]))
    return time.time() - t0


def measure_exchange(steps, servers):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'comm.json')
        launch(2, servers, [sys.executable, os.path.abspath(__file__), '--comm-worker', out,
                            '--steps', str(steps)])
        with open(out) as f:
            return json.load(f)


def projection(params, gpu_step, machines=(2, 4, 8), gbits=(10, 100)):
    """Rows of the communication projection (see the module docstring)."""
    payload = 4.0 * params
    per_image = gpu_step / 2.0
    rows = []
    for m in machines:
        gpus = min(GPUS_PER_MACHINE, PUBLISHED_BATCH // m)
        compute = (PUBLISHED_BATCH / float(m * gpus)) * per_image
        row = {'machines': m, 'gpus': gpus, 'images_per_gpu': PUBLISHED_BATCH / float(m * gpus),
               'compute': compute}
        for g in gbits:
            comm = 2.0 * payload * (m - 1) / m / (g * 1e9 / 8)
            row[g] = (comm, comm / (compute + comm))
        rows.append(row)
    return rows


def _phase_seconds(log):
    """Seconds from a phase's first log line to its last (without process start-up)."""
    import datetime
    stamps = []
    with open(log) as f:
        for line in f:
            try:
                stamps.append(datetime.datetime.strptime(line[:23], '%Y-%m-%d %H:%M:%S,%f'))
            except ValueError:
                continue
    return (stamps[-1] - stamps[0]).total_seconds()


def pseudo_label_throughput(num_images):
    """``solve_ST.py --phase val`` over ``num_images`` toy images with 1 and 2 workers.

    Returns ``{workers: (wall seconds with start-up, seconds of the phase in rank 0's log)}``.
    """
    import mxnet as mx
    from issegm.benchmark import toy
    from issegm.engine.model import get_model
    from util.mxutil import save_params
    model = 'cityscapes_rna-t1_cls19_s8'
    with tempfile.TemporaryDirectory() as tmp:
        toy.generate(os.path.join(tmp, 'toy'), seed=0, n_source=1, n_source_val=0, n_target_train=num_images,
                     n_target_val=0)
        os.makedirs(os.path.join(tmp, 'issegm', 'data_list'))
        for ds in ('gta', 'cityscapes'):
            os.symlink(os.path.join(tmp, 'toy', 'lists', ds), os.path.join(tmp, 'issegm', 'data_list', ds))
        mx.random.seed(0)
        net = get_model(model)
        weights = os.path.join(tmp, 'models', model + '_ep-0000.params')
        params = {k: v.data() for k, v in net.collect_params().items()}
        aux_names = ('moving_mean', 'moving_var')
        save_params(weights, {k: v for k, v in params.items() if not k.endswith(aux_names)},
                    {k: v for k, v in params.items() if k.endswith(aux_names)})
        results = {}
        for workers in (1, 2):
            out = os.path.join(tmp, 'out%d' % workers)
            cmd = [sys.executable, os.path.join(ROOT, 'issegm', 'solve_ST.py'), '--phase', 'val',
                   '--dataset', 'gta', '--dataset-tgt', 'cityscapes', '--split-tgt', 'train',
                   '--data-root-tgt', os.path.join(tmp, 'toy', 'cityscapes'), '--output', out,
                   '--model', model, '--weights', weights, '--test-scales', '256', '--test-flipping',
                   '--init-tgt-port', '0.2', '--idx-round', '0', '--gpus', '0']
            if workers == 1:
                t0 = time.time()
                proc = subprocess.run(cmd, cwd=tmp, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                                      text=True)
                if proc.returncode:
                    raise SystemExit('bench/dist.py: pseudo-labelling failed:\n' + proc.stderr[-3000:])
                wall = time.time() - t0
            else:
                wall = launch(workers, 1, cmd, cwd=tmp)
            results[workers] = (wall, _phase_seconds(os.path.join(out, '%s_ep-0000_train.log' % model)))
        return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=5, help='Timed exchange steps (after one warm-up).')
    parser.add_argument('--servers', type=int, default=1, help='Servers of the measured exchange.')
    parser.add_argument('--gpu-step', type=float, default=0.35,
                        help='ASSUMED GPU seconds per training step of 2 images on one GPU (Titan-class).')
    parser.add_argument('--pl-images', type=int, default=48, help='Toy images of the pseudo-label timing.')
    parser.add_argument('--skip-pseudo-labels', action='store_true')
    parser.add_argument('--comm-worker', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.comm_worker:
        comm_worker(args.steps, args.comm_worker)
        return 0

    r = measure_exchange(args.steps, args.servers)
    import numpy as np
    t = np.array(r['times'])
    payload = 4 * r['params']
    print('measured: dist_sync push+pull of %d gradients (%.1f M parameters), 2 workers, %d server(s), loopback'
          % (r['keys'], r['params'] / 1e6, args.servers))
    print('  %.3f s a step (mean of %d; min %.3f, max %.3f)' % (t.mean(), t.size, t.min(), t.max()))
    print('  bytes a worker moves a step: %.1f MB out + %.1f MB back = %.1f MB; loopback counter: %.1f MB a step '
          '(both workers, both directions)' % (payload / 1e6, payload / 1e6, 2 * payload / 1e6,
                                              r['loopback_bytes'] / float(r['steps']) / 1e6))
    print()
    print('PROJECTION (not measured): source training at the published global batch %d, %d GPUs a machine, one '
          'server a machine, ASSUMED %.2f s GPU step for 2 images; comm = 2 x %.0f MB x (M-1)/M each way a '
          'step, no overlap with backward (upper bound)' % (PUBLISHED_BATCH, GPUS_PER_MACHINE, args.gpu_step,
                                                            payload / 1e6))
    print('| machines | GPUs each | images/GPU | compute s | comm s @10 Gbit/s | overhead | comm s @100 Gbit/s '
          '| overhead |')
    print('|---|---|---|---|---|---|---|---|')
    for row in projection(r['params'], args.gpu_step):
        print('| %d | %d | %g | %.3f | %.3f | %.0f%% | %.3f | %.0f%% |' % (
            row['machines'], row['gpus'], row['images_per_gpu'], row['compute'], row[10][0], 100 * row[10][1],
            row[100][0], 100 * row[100][1]))
    if not args.skip_pseudo_labels:
        print()
        runs = pseudo_label_throughput(args.pl_images)
        print('measured: pseudo-labelling %d toy images (rna-t1, 128x256, flipping, both passes): seconds with '
              'start-up / of the phase in rank 0\'s log' % args.pl_images)
        for workers in sorted(runs):
            wall, phase = runs[workers]
            print('  %d worker(s): %.1f s / %.1f s = %.2f images/s' % (workers, wall, phase, args.pl_images / phase))
        print('  throughput 2 workers / 1 worker: %.2f (phase), %.2f (with start-up); this machine has %d cores, '
              'shared by both workers and everything else' % (runs[1][1] / runs[2][1], runs[1][0] / runs[2][0],
                                                             os.cpu_count()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
