"""Training iterator epochs and workers (docs/behaviour.md section 5): epochs, seeds, the parts of a
distributed batch, thread and process prefetchers, the image cache, source selection and list files.

Builders shared with the other ``test_iterator_*`` modules are fixtures of this folder's conftest.py.
"""
import os

import numpy as np
import pytest
from PIL import Image

from issegm.benchmark.layouts import write_cityscapes, write_list
from issegm.benchmark.toy import write_gta
from issegm.engine.iterator import SOURCE, TARGET, Sample, parse_split_file, select_source_indices
from issegm.errors import DataError
from util.image import MEAN_RGB, STD_RGB

H, W = 48, 96          # image size
T, S = 32, 8           # crop size, stride


def _sample_numbers(batch):
    """Recover each crop's sample number from its (uniform) image colour."""
    data = batch.data[0].asnumpy()
    out = []
    for d in data:
        red = d[0][d[0] != 0]
        value = np.median(red) * STD_RGB[0] * 255 + MEAN_RGB[0] * 255
        out.append(int(round((value - 5) / 10.)))
    return out


def _epoch(it):
    it.reset()
    return [(b.data[0].asnumpy(), b.label[0].asnumpy()) for b in it]


# -- epochs and seeds --------------------------------------------------------------------

@pytest.mark.parametrize('kind,threads', [('thread', 1), ('thread', 2), ('process', 2)])
def test_epoch_delivers_each_sample_once(make_dataset, make_iter, kind, threads):
    samples = make_dataset(10)
    it = make_iter(samples, prefetch_threads=threads, prefetcher_type=kind)
    assert it.provide_data[0].shape == (3, 3, 32, 32)
    assert it.provide_label[0].shape == (3, 16)
    for epoch in range(2):
        it.reset()
        seen = []
        for batch in it:
            assert batch.data[0].shape == it.provide_data[0].shape
            assert batch.label[0].shape == it.provide_label[0].shape
            seen += _sample_numbers(batch)
        assert len(seen) == 9 == len(set(seen)) and set(seen) <= set(range(10))
        assert seen == it.epoch_indices()


def test_epochs_draw_a_fresh_crop_per_sample_and_sequential_keeps_list_order(coded_samples, identity_labels,
                                                                            make_dataset, make_iter):
    samples, _ = coded_samples(48, 64)                      # a random image
    it = make_iter(samples[:1] * 120, batch_images=10, scale_rate_range=(0.7, 1.3))
    identity_labels(it.reader)
    it.reset()
    crops = {b.data[0].asnumpy()[i].tobytes() for b in it for i in range(10)}
    assert len(crops) > 100                                # each sample has its own random draw
    it = make_iter(make_dataset(7), batch_images=2, sampler='sequential')
    it.reset()
    assert it.epoch_indices() == [0, 1, 2, 3, 4, 5]


def test_same_seed_same_batches_for_any_workers(make_dataset, make_iter):
    samples = make_dataset(7)
    a = make_iter(samples, seed=3, mine_port=0.5, mine_id=[18])
    b = make_iter(samples, seed=3, mine_port=0.5, mine_id=[18], prefetch_threads=2, prefetcher_type='process')
    c = make_iter(samples, seed=4, mine_port=0.5, mine_id=[18])
    ea, eb, ec = _epoch(a), _epoch(b), _epoch(c)
    assert len(ea) == 2
    for (da, la), (db, lb) in zip(ea, eb):
        np.testing.assert_array_equal(da, db)
        np.testing.assert_array_equal(la, lb)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(ea, ec))
    # The next epoch is a new draw.
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(ea, _epoch(a)))


# -- prefetchers and the parts of a distributed batch ----------------------------------------

@pytest.mark.parametrize('kind,threads', [('thread', 2), ('process', 1), ('process', 2)])
def test_batches_equal_single_thread_for_any_prefetcher(make_dataset, make_iter, kind, threads):
    samples = make_dataset(7)
    base = make_iter(samples, seed=11, mine_port=0.5, mine_id=[18])
    other = make_iter(samples, seed=11, mine_port=0.5, mine_id=[18], prefetch_threads=threads,
                      prefetcher_type=kind)
    for _ in range(2):   # two epochs: the second epoch's draw is reproduced too
        ea, eb = _epoch(base), _epoch(other)
        assert base.epoch_indices() == other.epoch_indices()
        assert len(ea) == len(eb) == 2
        for (da, la), (db, lb) in zip(ea, eb):
            np.testing.assert_array_equal(da, db)
            np.testing.assert_array_equal(la, lb)


def test_parts_together_are_one_process_batches(make_dataset, make_iter):
    """Distributed training: each part yields its consecutive share of every global batch."""
    samples = make_dataset(9)
    whole = make_iter(samples, batch_images=4, seed=5, mine_port=0.5, mine_id=[18])
    parts = [make_iter(samples, batch_images=4, seed=5, mine_port=0.5, mine_id=[18], num_parts=2, part_index=k)
             for k in (0, 1)]
    assert [p.provide_data[0].shape[0] for p in parts] == [2, 2] and parts[0].batches_per_epoch == 2
    for _ in range(2):  # two epochs: each part draws the epoch as the whole does
        ew, e0, e1 = _epoch(whole), _epoch(parts[0]), _epoch(parts[1])
        assert len(ew) == len(e0) == len(e1) == 2
        for (dw, lw), (d0, l0), (d1, l1) in zip(ew, e0, e1):
            np.testing.assert_array_equal(dw, np.concatenate([d0, d1]))
            np.testing.assert_array_equal(lw, np.concatenate([l0, l1]))
        assert whole.epoch_indices() == [i for b in range(2) for p in parts
                                         for i in p.epoch_indices()[2 * b:2 * b + 2]]
    with pytest.raises(ValueError, match='--batch-images 3 .* cannot be split evenly over 2 workers'):
        make_iter(samples, batch_images=3, num_parts=2, part_index=0)


def test_cache_images_reads_each_file_once(make_dataset, make_iter):
    samples = make_dataset(3)
    it = make_iter(samples, batch_images=1, cache_images=True)
    first = it.reader.make(0, 5)
    os.remove(samples[0].image)   # served from the byte cache now
    again = it.reader.make(0, 5)
    np.testing.assert_array_equal(first[0], again[0])
    assert samples[0].image in it.reader.cache


# -- source selection and list files -------------------------------------------------------

def test_select_source_indices_is_the_reference_draw():
    for n_all, n_sel, seed in ((24966, 749, 0), (9400, 188, 3), (10, 10, 1), (7, 0, 2)):
        np.random.seed(seed)
        want = np.random.choice(n_all, n_sel, replace=False)
        np.testing.assert_array_equal(select_source_indices(n_all, n_sel, seed), want)
    # cumulative policy: a larger portion with the same seed extends the smaller one
    small, large = select_source_indices(1000, 30, 0), select_source_indices(1000, 60, 0)
    np.testing.assert_array_equal(large[:30], small)
    assert not np.array_equal(select_source_indices(1000, 30, 1), small)


def _lists_in_cwd(tmp_path, monkeypatch, n_src=12, n_tgt=3, gpus='0'):
    """GTA-5 source and Cityscapes target lists (pseudo-labels under out/) in a working folder of tmp_path."""
    monkeypatch.chdir(tmp_path)
    src_root, tgt_root = tmp_path / 'gta', tmp_path / 'cs'
    img, lab = np.zeros((H, W, 3), np.uint8), np.full((H, W), 7, np.uint8)
    src = [write_gta(str(src_root), k, img, lab) for k in range(1, n_src + 1)]
    write_list('issegm/data_list/gta/train.lst', src)
    tgt = []
    for k in range(n_tgt):
        image_rel, _ = write_cityscapes(str(tgt_root), 'train', 'aachen', '%06d_000019' % k, img, lab)
        pseudo = str(tmp_path / 'out' / '0' / 'self_train' / 'pseudo_labelIds' / ('t%d.png' % k))
        os.makedirs(os.path.dirname(pseudo), exist_ok=True)
        Image.fromarray(lab).save(pseudo)
        tgt.append((image_rel, pseudo))
    write_list('issegm/data_list/cityscapes/train_training_gpu%s.lst' % gpus, tgt)
    return src_root, tgt_root, src, tgt


def test_parse_split_file_reads_lists_from_the_working_directory(tmp_path, monkeypatch):
    src_root, tgt_root, src, tgt = _lists_in_cwd(tmp_path, monkeypatch, gpus='1')
    samples = parse_split_file('gta', 'train', num_sel_source=5, num_source=12, seed_int=3,
                               dataset_tgt='cityscapes', split_tgt='train', data_root=str(src_root),
                               data_root_tgt=str(tgt_root), gpus='1')
    np.random.seed(3)
    chosen = np.random.choice(12, 5, replace=False)
    assert samples[:5] == [Sample(os.path.join(str(src_root), src[k][0]), os.path.join(str(src_root), src[k][1]),
                                  SOURCE) for k in chosen]
    # Target lines: image under the target root, pseudo-label path used as written.
    assert samples[5:] == [Sample(os.path.join(str(tgt_root), i), l, TARGET) for i, l in tgt]
    # No selection: every source line, in list order; no target list without dataset_tgt.
    assert [s.image for s in parse_split_file('gta', 'train', data_root=str(src_root))] == \
        [os.path.join(str(src_root), i) for i, _ in src]
    # The target list is looked up for the given gpus string; a missing one is named.
    with pytest.raises(DataError, match='train_training_gpu0.lst'):
        parse_split_file('gta', 'train', 5, 12, 3, 'cityscapes', 'train', str(src_root), str(tgt_root), gpus='0')
    # A missing source file is named with its list and line before any work.
    os.remove(str(src_root / src[6][1]))
    with pytest.raises(DataError, match=r'gta/train.lst: 1 file.*labels/00007.png \(line 7\)'):
        parse_split_file('gta', 'train', 5, 12, 3, data_root=str(src_root))


def test_fileiter_from_list_files(tmp_path, monkeypatch, file_iter):
    src_root, tgt_root, _, _ = _lists_in_cwd(tmp_path, monkeypatch)
    kw = dict(num_sel_source=4, num_source=12, seed_int=0, dataset_tgt='cityscapes', split_tgt='train',
              data_root=str(src_root), data_root_tgt=str(tgt_root))
    it = file_iter('gta', 'train', batch_images=2, crop_size=T, feat_stride=S, scale_rate_range=(0.7, 1.3),
                   origin_size=W, origin_size_tgt=W, seed=0,
                   meta=dict(max_shape_src=(H, W), max_shape_tgt=(H, W)), **kw)   # gpus: '0' by default
    assert it.samples == parse_split_file('gta', 'train', gpus='0', **kw)
    assert it.num_data == 7 and it.batches_per_epoch == 3
    it.reset()
    batches = list(it)
    seen = it.epoch_indices()
    assert len(batches) == 3 and len(set(seen)) == 6 and set(seen) <= set(range(7))
    # Target samples (the last three) are in the epoch alongside the selected source ones.
    assert {s.domain for s in it.samples} == {SOURCE, TARGET}
    assert all(b.data[0].shape == it.provide_data[0].shape for b in batches)
