"""The CBST round driver: for each round, pseudo-labels then retraining (spec section 8).

    export PYTHONPATH=PYTHONPATH:./
    python issegm/solve_AO.py --num-round 6 --test-scales 1850 --scale-rate-range 0.7,1.3 \\
        --dataset gta --dataset-tgt cityscapes --split train --split-tgt train \\
        --data-root DATA_ROOT_GTA5 --data-root-tgt DATA_ROOT_CITYSCAPES --output gta2city/cbst-sp \\
        --model cityscapes_rna-a1_cls19_s8 --weights models/gta_rna-a1_cls19_s8_ep-0000.params \\
        --batch-images 2 --crop-size 500 --origin-size-tgt 2048 --init-tgt-port 0.15 --init-src-port 0.03 \\
        --seed-int 0 --mine-port 0.8 --mine-id-number 3 --mine-thresh 0.001 --base-lr 1e-4 --to-epoch 2 \\
        --source-sample-policy cumulative --self-training-script issegm/solve_ST.py --kc-policy cb \\
        --prefetch-threads 2 --gpus 0 --with-prior True

With ``--self-training-script`` each phase runs as a subprocess of that
script (as the reference does); without it, in this process. Rerunning the
same command after a kill continues where it stopped. Every flag of the
reference ``solve_AO.py`` is accepted with its name and default; the work is
in :func:`issegm.self_training.run_rounds`.
"""
import argparse
import os
import sys

if __package__ in (None, ''):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_parser():
    p = argparse.ArgumentParser(description='Conservative self-trained segmentation ResNet-38 (CBST rounds).')
    p.add_argument('--dataset', default=None, help='The source dataset to use, e.g. gta, synthia.')
    p.add_argument('--dataset-tgt', dest='dataset_tgt', default=None,
                   help='The target dataset to use, e.g. cityscapes.')
    p.add_argument('--split', dest='split', default='train', help='The split to use, e.g. train, trainval.')
    p.add_argument('--split-tgt', dest='split_tgt', default='val',
                   help='The split to use in target domain e.g. train, trainval.')
    p.add_argument('--data-root', dest='data_root', default=None, type=str,
                   help='The root data dir. for source domain')
    p.add_argument('--data-root-tgt', dest='data_root_tgt', default=None, type=str,
                   help='The root data dir. for target domain')
    p.add_argument('--output', default=None, help='The output dir.')
    p.add_argument('--model', default=None, help='The unique label of this model.')
    p.add_argument('--weights', default=None, help='The path of a pretrained model.')
    p.add_argument('--batch-images', dest='batch_images', default=None, type=int,
                   help='The number of images per batch.')
    p.add_argument('--crop-size', dest='crop_size', default=None, type=int,
                   help='The size of network input during training.')
    p.add_argument('--origin-size', dest='origin_size', default=2048, type=int,
                   help='The size of images to crop from in source domain')
    p.add_argument('--origin-size-tgt', dest='origin_size_tgt', default=2048, type=int,
                   help='The size of images to crop from in target domain')
    p.add_argument('--init-tgt-port', dest='init_tgt_port', default=0.3, type=float,
                   help='The initial portion of pixels selected in target dataset, both by global and '
                        'class-wise threshold')
    p.add_argument('--init-src-port', dest='init_src_port', default=0.3, type=float,
                   help='The initial portion of images selected in source dataset')
    p.add_argument('--max-tgt-port', dest='max_tgt_port', default=0.5, type=float,
                   help='The max portion of pixels selected in target dataset, both by global and '
                        'class-wise threshold')
    p.add_argument('--max-src-port', dest='max_src_port', default=0.06, type=float,
                   help='The max portion of images selected in source dataset')
    p.add_argument('--step-tgt-port', dest='step_tgt_port', default=0.05, type=float,
                   help='The step portion of pixels selected in target dataset, both by global and '
                        'class-wise threshold')
    p.add_argument('--step-src-port', dest='step_src_port', default=0.0025, type=float,
                   help='The step portion of images selected in source dataset')
    p.add_argument('--epoch-per-round', dest='epr', default=2, type=int, help='Training epochs in each round')
    p.add_argument('--seed-int', dest='seed_int', default=0, type=int, help='The random seed')
    p.add_argument('--mine-port', dest='mine_port', default=0.5, type=float,
                   help='The portion of data being mined')
    p.add_argument('--mine-id-number', dest='mine_id_number', default=3, type=int,
                   help='Thresholding value for deciding mine id')
    p.add_argument('--mine-thresh', dest='mine_thresh', default=0.001, type=float,
                   help='The threshold to determine the mine id')
    p.add_argument('--with-prior', dest='with_prior', default='False', type=str, help='with prior: True or False')
    p.add_argument('--num-round', dest='num_round', default=12, type=int,
                   help='the number of round in self-training')
    p.add_argument('--test-scales', dest='test_scales', default=None, type=str,
                   help='Lengths of the longer side to resize an image into, e.g., 1850.')
    p.add_argument('--scale-rate-range', dest='scale_rate_range', default='0.7,1.3', type=str,
                   help='The range of rescaling')
    p.add_argument('--base-lr', dest='base_lr', default=None, type=float, help='The lr to start from.')
    p.add_argument('--to-epoch', dest='to_epoch', default=None, type=int,
                   help='The number of epochs to run (accepted; rounds count --epoch-per-round, as the reference).')
    p.add_argument('--source-sample-policy', dest='source_sample_policy', default='cumulative', type=str,
                   help='The sampling policy in source domain, only support "cumulative" and "random"')
    p.add_argument('--self-training-script', dest='self_training_script', default=None, type=str,
                   help='The solve_ST.py to run each phase with, as a subprocess (default: in this process)')
    p.add_argument('--kc-policy', dest='kc_policy', default=None, type=str,
                   help='The kc determination policy, currently only "global" and "cb" (class-balanced)')
    p.add_argument('--prefetch-threads', dest='prefetch_threads', default=1, type=int,
                   help='The number of threads to fetch data.')
    p.add_argument('--gpus', default='0', type=str, help='The devices to use, e.g. 0,1,2,3 (CPU if none)')
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from issegm.self_training import run_rounds
    return run_rounds(args)


if __name__ == '__main__':
    sys.exit(main())
