"""The retraining phase (issegm/phases/retraining.py): the source draw, the round's iterator."""
import numpy as np

from issegm.phases import self_training as st
from issegm.phases.retraining import retrain, select_source
from issegm.solve_ST import build_parser
from issegm.testing.fakes import NAMES, SHAPE, FakePredictor, val_args


def test_select_source_matches_numpy_legacy_choice_and_is_cumulative():
    np.random.seed(0)
    expected = np.random.choice(1000, 30, replace=False)
    np.testing.assert_array_equal(select_source(1000, 0.03, 0), expected)
    small, large = select_source(1000, 0.03, 0), select_source(1000, 0.0325, 0)
    assert len(small) == 30 and len(large) == 32
    np.testing.assert_array_equal(large[:30], small)  # a larger portion extends the smaller one


def test_mining_statistics_of_the_round_reach_the_training_iterator(layout, monkeypatch):
    """``--phase train`` builds the real FileIter with ``mine_id`` / ``mine_id_priority`` read
    from ``--mine-id-address`` and ``--mine-port``: every source crop is centred on the
    priority class."""
    import issegm.engine.training as training
    from issegm.engine.iterator import SOURCE, TARGET, FileIter
    from issegm.benchmark.layouts import write_gta, write_list
    entries = []
    for k in range(1, 5):
        label = np.full(SHAPE, 7, np.uint8)          # road
        label[12:28, 30 + 5 * k:46 + 5 * k] = 33     # a bicycle block (train id 18)
        label[18:24, 0:24] = 17                      # a pole block (train id 5), also minable
        entries.append(write_gta('gta', k, np.full(SHAPE + (3,), 60 + k, np.uint8), label))
    write_list('issegm/data_list/gta/train.lst', entries)
    assert st.run(val_args('out'), predictor=FakePredictor()) == 0
    np.save('out/stats/mine_id.npy', np.array([5, 3, 18]))
    np.save('out/stats/mine_id_priority.npy', np.array([18]))
    seen = {}

    def fake_train(label, dataiter, prefix, **kw):
        seen.update(kw, label=label, dataiter=dataiter, prefix=prefix)
        return []

    monkeypatch.setattr(training, 'train', fake_train)
    args = st.complete_args(build_parser().parse_args([
        '--phase', 'train', '--dataset', 'gta', '--dataset-tgt', 'cityscapes', '--split', 'train',
        '--split-tgt', 'train', '--data-root', 'gta', '--data-root-tgt', 'cs', '--output', 'out',
        '--model', 'cityscapes_rna-a1_cls19_s8', '--weights', 'models/gta_rna-a1_cls19_s8_ep-0000.params',
        '--batch-images', '2', '--crop-size', '24', '--scale-rate-range', '1.0,1.0', '--origin-size', '2048',
        '--init-src-port', '1.0', '--mine-id-address', 'out/stats', '--mine-port', '1.0', '--to-epoch', '2',
        '--idx-round', '0', '--base-lr', '1e-4', '--gpus', '0', '--lr-type', 'step', '--lr-steps', '1',
        '--seed-int', '3', '--kvstore', 'local']))
    retrain(args)
    it = seen['dataiter']
    assert isinstance(it, FileIter)
    dataiter = seen.pop('dataiter')
    assert seen == dict(label='cityscapes_rna-a1_cls19_s8', prefix='out/0/cityscapes_rna-a1_cls19_s8_ep',
                        contexts=seen['contexts'], stop_epoch=2,
                        weights='models/gta_rna-a1_cls19_s8_ep-0000.params', from_epoch=0, to_epoch=2,
                        base_lr=1e-4, lr_policy='step', lr_steps=[1], weight_decay=5e-4, kvstore='local',
                        backward_do_mirror=False, seed=3, schedule_batches=4 // 2, objective=None,
                        epoch_end_callback=seen['epoch_end_callback'])
    assert callable(seen['epoch_end_callback'])  # the round's health record, per epoch
    assert dataiter is it
    assert [s.domain for s in it.samples].count(SOURCE) == 4 and [s.domain for s in it.samples].count(TARGET) == 4
    targets = [s for s in it.samples if s.domain == TARGET]
    for sample, name in zip(targets, NAMES):
        assert sample.image == 'cs/leftImg8bit/train/aachen/%s.png' % name
        assert sample.label == 'out/0/self_train/pseudo_labelIds/%s.png' % name
    from issegm.storage.datasets import get_dataset
    np.testing.assert_array_equal(it.reader.label2train[TARGET], get_dataset('cityscapes').label2train)
    for k, sample in enumerate(it.samples):
        if sample.domain != SOURCE:
            continue
        train = it.reader.load(sample)[1]
        for seed in range(10):
            g = it.reader.make(k, seed)[2]
            assert g.mined and train[g.y0 + g.crop // 2 - g.d0, g.x0 + g.crop // 2 - g.d0] == 18
    it.close()
