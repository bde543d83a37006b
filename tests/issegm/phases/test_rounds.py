"""The round driver (issegm/phases/rounds.py): the schedule of docs/behaviour.md section 8 and the phases' command lines."""
from issegm.phases.rounds import round_schedule, train_argv, val_argv


def test_solve_AO_passes_postprocess_on_only_when_chosen():
    from issegm.solve_AO import build_parser
    argv = ['--model', 'cityscapes_rna-a1_cls19_s8', '--weights', 'w.params', '--base-lr', '1e-4']
    rnd = {'round': 0, 'weights': 'w.params', 'tgt_port': '0.2'}
    assert '--postprocess' not in val_argv(build_parser().parse_args(argv), rnd)  # the reference's command
    got = val_argv(build_parser().parse_args(argv + ['--postprocess', 'pil']), rnd)
    assert got[got.index('--postprocess') + 1] == 'pil'


SYNTHIA_AO = ('--num-round 6 --test-scales 1850 --scale-rate-range 0.7,1.3 --dataset synthia --dataset-tgt cityscapes '
              '--split train --split-tgt train --data-root DATA_ROOT_SYNTHIA --data-root-tgt DATA_ROOT_CITYSCAPES '
              '--output syn2city/cbst --model cityscapes_rna-a1_cls16_s8 '
              '--weights models/synthia_rna-a1_cls16_s8_ep-0000.params --batch-images 2 --crop-size 500 '
              '--origin-size 1280 --origin-size-tgt 2048 --init-tgt-port 0.2 --init-src-port 0.02 --max-src-port 0.06 '
              '--seed-int 0 --mine-port 0.8 --mine-id-number 3 --mine-thresh 0.001 --base-lr 1e-4 --to-epoch 2 '
              '--source-sample-policy cumulative --self-training-script issegm/solve_ST.py --kc-policy cb '
              '--prefetch-threads 2 --gpus 0 --with-prior False').split()


def _ao_args(*changes):
    from issegm.solve_AO import build_parser
    argv = list(SYNTHIA_AO)
    for flag, value in changes:   # a flag given twice: argparse keeps the last
        argv += [flag, value]
    return build_parser().parse_args(argv)


def test_round_schedule_of_the_published_synthia_command():
    """Spec 8 written out by hand for six rounds: portions +0.05 / +0.0025 (defaults) below
    their caps, lr / sqrt(2), two more epochs, weights from the previous round, seed 0."""
    rounds = round_schedule(_ao_args())
    ckpt = 'syn2city/cbst/%d/cityscapes_rna-a1_cls16_s8_ep-%04d.params'
    assert [r['round'] for r in rounds] == [0, 1, 2, 3, 4, 5]
    assert [r['tgt_port'] for r in rounds] == ['0.2', '0.25', '0.3', '0.35', '0.4', '0.45']
    assert [r['src_port'] for r in rounds] == ['0.02', '0.0225', '0.025', '0.0275', '0.03', '0.0325']
    assert [r['lr'] for r in rounds] == ['0.0001', '7.07106781187e-05', '5e-05', '3.53553390593e-05', '2.5e-05',
                                         '1.76776695297e-05']
    assert [r['to_epoch'] for r in rounds] == [2, 4, 6, 8, 10, 12]
    assert [r['seed'] for r in rounds] == [0] * 6
    assert [r['weights'] for r in rounds] == ['models/synthia_rna-a1_cls16_s8_ep-0000.params'] + [
        ckpt % (r, 2 * r + 2) for r in range(5)]
    assert [r['final'] for r in rounds] == [ckpt % (r, 2 * r + 2) for r in range(6)]
    # What round 3's phases are told.
    train = train_argv(_ao_args(), rounds[3])
    for flag, value in (('--init-src-port', '0.0275'), ('--base-lr', '3.53553390593e-05'), ('--to-epoch', '8'),
                        ('--seed-int', '0'), ('--weights', ckpt % (2, 6)), ('--idx-round', '3'),
                        ('--origin-size', '1280'), ('--origin-size-tgt', '2048'), ('--mine-port', '0.8'),
                        ('--mine-id-address', 'syn2city/cbst/stats'), ('--dataset', 'synthia')):
        assert train[train.index(flag) + 1] == value, flag
    val = val_argv(_ao_args(), rounds[3])
    for flag, value in (('--init-tgt-port', '0.35'), ('--weights', ckpt % (2, 6)), ('--idx-round', '3'),
                        ('--kc-policy', 'cb'), ('--with-prior', 'False'), ('--test-scales', '1850')):
        assert val[val.index(flag) + 1] == value, flag


def test_round_schedule_caps_the_portions_and_draws_a_new_seed_each_round_with_random():
    rounds = round_schedule(_ao_args(('--source-sample-policy', 'random'), ('--max-tgt-port', '0.3'),
                                        ('--max-src-port', '0.025')))
    # A portion stops growing once it is not below its cap. 0.02 + 2 * 0.0025 is
    # 0.024999999999999998 in floating point, below 0.025: it grows once more (as in the reference).
    assert [r['tgt_port'] for r in rounds] == ['0.2', '0.25', '0.3', '0.3', '0.3', '0.3']
    assert [r['src_port'] for r in rounds] == ['0.02', '0.0225', '0.025', '0.0275', '0.0275', '0.0275']
    assert [r['seed'] for r in rounds] == [0, 1, 2, 3, 4, 5]
    argvs = [train_argv(_ao_args(), r) for r in rounds]
    assert [a[a.index('--seed-int') + 1] for a in argvs] == ['0', '1', '2', '3', '4', '5']


def test_phase_command_lines_parse_to_the_reference_commands():
    """Both phases' argv, read back by solve_ST's own parser, hold the reference solve_AO's values
    (written out by hand for round 3 of the published SYNTHIA command)."""
    from issegm.solve_ST import build_parser
    rounds = round_schedule(_ao_args())
    ckpt = 'syn2city/cbst/2/cityscapes_rna-a1_cls16_s8_ep-0006.params'
    common = dict(dataset='synthia', dataset_tgt='cityscapes', data_root='DATA_ROOT_SYNTHIA',
                  data_root_tgt='DATA_ROOT_CITYSCAPES', split_tgt='train', output='syn2city/cbst',
                  model='cityscapes_rna-a1_cls16_s8', weights=ckpt, idx_round=3, gpus='0', mine_thresh=0.001)
    val = vars(build_parser().parse_args(val_argv(_ao_args(), rounds[3])))
    want = dict(common, phase='val', mine_id_number=3, test_scales='1850', init_tgt_port=0.35,
                no_mxnet_cudnn_autotune_default=True, test_flipping=True, with_prior='False', kc_policy='cb')
    assert {k: val[k] for k in want} == want
    train = vars(build_parser().parse_args(train_argv(_ao_args(), rounds[3])))
    want = dict(common, phase='train', split='train', init_src_port=0.0275, batch_images=2, crop_size=500,
                scale_rate_range='0.7,1.3', base_lr=3.53553390593e-05, to_epoch=8, prefetch_threads=2,
                prefetcher='process', mine_id_address='syn2city/cbst/stats', mine_port=0.8, cache_images=0,
                backward_do_mirror=True, origin_size=1280, origin_size_tgt=2048, seed_int=0, kvstore='local')
    assert {k: train[k] for k in want} == want
    # Ours, passed on only when chosen: a distributed kvstore.
    dist = vars(build_parser().parse_args(train_argv(_ao_args(('--kvstore', 'dist_sync')), rounds[3])))
    assert dist['kvstore'] == 'dist_sync'
    # CRST's flags reach both phases (LRENT's alpha decides the labels, the weights the loss).
    crst = _ao_args(('--lr-weight-ent', '0.25'), ('--mr-weight-kld', '0.1'))
    for argv in (val_argv(crst, rounds[3]), train_argv(crst, rounds[3])):
        parsed = build_parser().parse_args(argv)
        assert (parsed.lr_weight_ent, parsed.mr_weight_kld) == (0.25, 0.1)


def test_stop_on_collapse_reaches_both_phases_only_when_asked_and_is_not_a_setting():
    from issegm.phases.preflight import rounds_settings
    from issegm.solve_AO import build_parser
    from issegm.solve_ST import build_parser as st_parser
    plain, stopping = _ao_args(), build_parser().parse_args(SYNTHIA_AO + ['--stop-on-collapse'])
    rnd = round_schedule(plain)[1]
    for argv_of in (val_argv, train_argv):
        assert '--stop-on-collapse' not in argv_of(plain, rnd)  # the reference's commands
        assert st_parser().parse_args(argv_of(stopping, rnd)).stop_on_collapse
    # Removing the flag on a rerun continues the same run (the guard changes no number).
    assert rounds_settings(plain, 1) == rounds_settings(stopping, 1)
