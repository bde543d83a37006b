"""One phase of one CBST round: pseudo-labels (``--phase val``) or retraining (``--phase train``).

    export PYTHONPATH=PYTHONPATH:./
    python issegm/solve_ST.py --phase val --dataset gta --dataset-tgt cityscapes --split-tgt train \\
        --data-root-tgt DATA_ROOT_CITYSCAPES --output gta2city/cbst --model cityscapes_rna-a1_cls19_s8 \\
        --weights models/gta_rna-a1_cls19_s8_ep-0000.params --test-scales 1850 --test-flipping \\
        --init-tgt-port 0.15 --idx-round 0 --kc-policy cb --with-prior False --gpus 0

Usually run by ``solve_AO.py``. Every flag of the reference ``solve_ST.py``
is accepted with its name and default; the work is in :mod:`issegm.self_training`.
"""
import argparse
import os
import sys

if __package__ in (None, ''):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_parser():
    p = argparse.ArgumentParser(description='Self-training phase of CBST: pseudo-labels (val) or retraining (train).')
    p.add_argument('--dataset', default=None, help='The source dataset to use, e.g. gta, synthia.')
    p.add_argument('--dataset-tgt', dest='dataset_tgt', default=None,
                   help='The target dataset to use, e.g. cityscapes.')
    p.add_argument('--split', dest='split', default='train', help='The source split, e.g. train.')
    p.add_argument('--split-tgt', dest='split_tgt', default='val', help='The target split, e.g. train.')
    p.add_argument('--data-root', dest='data_root', default=None, type=str,
                   help='The root data dir. for source domain (default data/{dataset}).')
    p.add_argument('--data-root-tgt', dest='data_root_tgt', default=None, type=str,
                   help='The root data dir. for target domain')
    p.add_argument('--output', default=None,
                   help='The output dir (default: the folder of --weights in val, "output" in train).')
    p.add_argument('--model', default=None,
                   help='The unique label of this model (default: the weights name before _ep-).')
    p.add_argument('--batch-images', dest='batch_images', default=None, type=int,
                   help='The number of images per batch.')
    p.add_argument('--crop-size', dest='crop_size', default=None, type=int,
                   help='The size of network input during training.')
    p.add_argument('--origin-size', dest='origin_size', default=2048, type=int,
                   help='The size of images to crop from in source domain')
    p.add_argument('--origin-size-tgt', dest='origin_size_tgt', default=2048, type=int,
                   help='The size of images to crop from in target domain')
    p.add_argument('--scale-rate-range', dest='scale_rate_range', default='0.7,1.3', type=str,
                   help='The range of rescaling')
    p.add_argument('--weights', default=None, help='The path of a pretrained model.')
    p.add_argument('--gpus', default='0', help='The devices to use, e.g. 0,1,2,3 (CPU if none)')
    p.add_argument('--lr-type', dest='lr_type', default=None, type=str,
                   help='The learning rate scheduler, e.g., fixed(default)/step/linear/poly')
    p.add_argument('--base-lr', dest='base_lr', default=None, type=float, help='The lr to start from.')
    p.add_argument('--lr-steps', dest='lr_steps', default=None, type=str,
                   help='The steps when to reduce lr.')
    p.add_argument('--weight-decay', dest='weight_decay', default=0.0005, type=float,
                   help='The weight decay in sgd.')
    p.add_argument('--from-epoch', dest='from_epoch', default=None, type=int, help='The epoch to start from.')
    p.add_argument('--stop-epoch', dest='stop_epoch', default=None, type=int, help='The index of epoch to stop.')
    p.add_argument('--to-epoch', dest='to_epoch', default=None, type=int, help='The number of epochs to run.')
    p.add_argument('--idx-round', dest='idx_round', default=0, type=int,
                   help='The current number of rounds to generate pseudo labels')
    p.add_argument('--init-tgt-port', dest='init_tgt_port', default=0.3, type=float,
                   help='The initial portion of pixels selected in target dataset, both by global and '
                        'class-wise threshold')
    p.add_argument('--init-src-port', dest='init_src_port', default=0.3, type=float,
                   help='The initial portion of images selected in source dataset')
    p.add_argument('--seed-int', dest='seed_int', default=0, type=int, help='The random seed')
    p.add_argument('--mine-port', dest='mine_port', default=0.5, type=float,
                   help='The portion of data being mined')
    p.add_argument('--mine-id-number', dest='mine_id_number', default=3, type=int,
                   help='Thresholding value for deciding mine id')
    p.add_argument('--mine-thresh', dest='mine_thresh', default=0.001, type=float,
                   help='The threshold to determine the mine id')
    p.add_argument('--mine-id-address', dest='mine_id_address', default=None, type=str,
                   help='The address of mine id')
    p.add_argument('--phase', default='train', type=str, help='Phase of this call, e.g., train/val.')
    p.add_argument('--with-prior', dest='with_prior', default='False', type=str,
                   help='with prior: True or False')
    p.add_argument('--test-scales', dest='test_scales', default=None, type=str,
                   help='Lengths of the longer side to resize an image into, e.g., 1850.')
    p.add_argument('--test-flipping', dest='test_flipping', default=False, action='store_true',
                   help='If average predictions of original and flipped images.')
    p.add_argument('--test-steps', dest='test_steps', default=1, type=int,
                   help='The number of steps to take, for predictions at a higher resolution (1 only).')
    p.add_argument('--kvstore', dest='kvstore', default='local', type=str,
                   help='The type of kvstore, e.g., local/device.')
    p.add_argument('--prefetch-threads', dest='prefetch_threads', default=1, type=int,
                   help='The number of threads to fetch data.')
    p.add_argument('--prefetcher', dest='prefetcher', default='thread', type=str,
                   help='The type of prefetercher, e.g., process/thread.')
    p.add_argument('--cache-images', dest='cache_images', default=None, type=int,
                   help='If cache images, e.g., 0/1')
    p.add_argument('--log-file', dest='log_file', default=None, type=str)
    p.add_argument('--check-start', dest='check_start', default=1, type=int,
                   help='The first epoch to snapshot.')
    p.add_argument('--check-step', dest='check_step', default=4, type=int,
                   help='The steps between adjacent snapshots.')
    p.add_argument('--debug', default=False, action='store_true', help='True means logging debug info.')
    p.add_argument('--backward-do-mirror', dest='backward_do_mirror', default=False, action='store_true',
                   help='True means less gpu memory usage.')
    p.add_argument('--no-cudnn', dest='no_mxnet_cudnn_autotune_default', default=False, action='store_true',
                   help='True means deploy cudnn.')
    p.add_argument('--kc-policy', dest='kc_policy', default='cb', type=str,
                   help='The kc determination policy, currently only "global" and "cb" (class-balanced)')
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 1
    args = parser.parse_args(argv)
    from issegm import self_training
    return self_training.run(args)


if __name__ == '__main__':
    sys.exit(main())
