"""Training iterator input errors (docs/behaviour.md section 5, 11.5): argument errors, bad image and
label files named through every prefetcher, and label values outside the encoding (ignored with a warning).

Builders shared with the other ``test_iterator_*`` modules are fixtures of this folder's conftest.py.
"""
import logging

import numpy as np
import pytest
from PIL import Image

from issegm.engine.iterator import SOURCE, Sample
from issegm.errors import DataError
from issegm.storage.datasets import get_dataset

H, W = 48, 96          # image size
T, S = 32, 8           # crop size, stride


# -- arguments ---------------------------------------------------------------------------

@pytest.mark.parametrize('kw,message', [
    (dict(crop_size=0), '^--crop-size must be positive$'),
    (dict(label_steps=2), '^only label_steps=1, crops_per_image=1 and labelled samples are supported'),
    (dict(crops_per_image=2), '^only label_steps=1, crops_per_image=1 and labelled samples are supported'),
    (dict(has_gt=False), '^only label_steps=1, crops_per_image=1 and labelled samples are supported'),
    (dict(transformer=object()), '^custom transformers are not supported; the reference pipeline is built in$'),
    (dict(label_stride=4), '^label_stride must equal feat_stride$'),
    (dict(samples=[]), '^no training samples \\(empty source selection and target list\\)$'),
    (dict(prefetcher_type='fork'), "^--prefetcher is thread or process, not 'fork'$"),
])
def test_unsupported_iterator_arguments_are_named(make_dataset, file_iter, kw, message):
    args = dict(samples=make_dataset(1), batch_images=1, crop_size=T)
    args.update(kw)
    with pytest.raises((ValueError, DataError), match=message):
        file_iter('cityscapes', **args)


def test_fewer_samples_than_a_batch_is_an_error(make_dataset, make_iter):
    # Otherwise every epoch has no batch and a training phase would save untrained 'epochs'.
    samples = make_dataset(2)
    with pytest.raises(DataError, match='2 training samples, fewer than one batch of 3'):
        make_iter(samples, batch_images=3)
    it = make_iter(samples, batch_images=2)
    assert it.batches_per_epoch == 1


# -- bad files ---------------------------------------------------------------------------

def test_bad_files_stop_with_the_file_name(make_dataset, make_iter):
    samples = make_dataset(2)
    it = make_iter(samples, batch_images=1)
    # Size mismatch between image and label.
    Image.fromarray(np.full((H, W - 2), 7, np.uint8)).save(samples[0].label)
    with pytest.raises(DataError, match='is 48x94 but its image'):
        it.reader.make(0, 0)
    # A damaged image, reported through the prefetcher too.
    with open(samples[1].image, 'wb') as f:
        f.write(b'not a png')
    with pytest.raises(DataError, match='cannot read image .*000001_000019_leftImg8bit.png'):
        it.reader.make(1, 0)
    it2 = make_iter([samples[1]], batch_images=1, prefetch_threads=2)
    with pytest.raises(DataError, match='000001_000019'):
        it2.reset()
        next(iter(it2))


@pytest.mark.parametrize('kind', ['thread', 'process'])
def test_truncated_image_is_named_through_the_prefetcher(make_dataset, make_iter, kind):
    samples = make_dataset(4)
    data = open(samples[2].image, 'rb').read()
    with open(samples[2].image, 'wb') as f:   # a copy cut short, as after an interrupted download
        f.write(data[:len(data) // 2])
    it = make_iter(samples, batch_images=1, prefetch_threads=2, prefetcher_type=kind, sampler='sequential')
    it.reset()
    with pytest.raises(DataError, match='cannot read image .*000002_000019_leftImg8bit.png'):
        for _ in it:
            pass


# -- label values outside the encoding -------------------------------------------------------

def test_unknown_label_ids_are_ignored_with_one_warning_per_run(make_dataset, make_iter, caplog):
    """11.5: ids outside the encoding become 255 (as the reference's table maps them), reported once."""
    samples = make_dataset(4)
    label = np.full((H, W), 26, np.uint8)   # car
    label[:, :10] = 200
    label[0, 0] = 34
    Image.fromarray(label).save(samples[1].label)
    it = make_iter(samples, batch_images=2, prefetch_threads=2, prefetcher='process')
    for seed in range(6):   # the ignored pixels never reach the labels as a class
        assert set(it.reader.make(1, seed)[1].tolist()) <= {13., 255.}
    caplog.set_level(logging.WARNING)
    for epoch in range(2):
        it.reset()
        assert len(list(it)) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith('1 label file(s) hold values outside the cityscapes label ids (34, 200)')
    assert '000001_000019_gtFine_labelIds.png (34,200)' in warnings[0]


def test_label_files_of_train_ids_get_a_warning_naming_prepare_data(make_dataset, make_iter, caplog):
    samples = make_dataset(2)
    train_ids = np.kron(np.array([[0, 1, 2, 8], [0, 2, 10, 13]], np.uint8), np.ones((H // 2, W // 4), np.uint8))
    Image.fromarray(np.pad(train_ids, ((0, 0), (0, W % 4)), mode='edge')).save(samples[0].label)
    it = make_iter(samples, batch_images=2)
    caplog.set_level(logging.WARNING)
    it.reset()
    list(it)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and 'look like train ids or colours' in warnings[0]
    assert '000000_000019_gtFine_labelIds.png' in warnings[0] and 'prepare_data.py' in warnings[0]
    assert '000001_000019' not in warnings[0]   # a real label-id file is not suspected


def test_labels_outside_other_encodings_and_wrong_kinds_are_named(tmp_path, make_iter):
    image = np.zeros((H, W, 3), np.uint8)
    Image.fromarray(image).save(str(tmp_path / 'img.png'))
    syn = np.full((H, W), 3, np.uint8)
    syn[0, 0] = 23                         # SYNTHIA ids stop at 22 (lanemarking)
    Image.fromarray(syn).save(str(tmp_path / 'syn.png'))
    sample = Sample(str(tmp_path / 'img.png'), str(tmp_path / 'syn.png'), SOURCE)
    it = make_iter([sample], dataset='synthia', batch_images=1)
    assert it.reader.load(sample)[2] == (sample.label, (23,), False)
    syn[0, 0] = 22                         # the largest SYNTHIA id is known (and ignored in training)
    Image.fromarray(syn).save(str(tmp_path / 'syn.png'))
    assert set(it.reader.make(0, 0)[1].tolist()) <= {0., 255.} and it.reader.load(sample)[2] is None
    assert get_dataset('synthia').label2train[22] == 255
    # A colour label and a raw 16-bit label are refused with the file's name.
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(str(tmp_path / 'rgb.png'))
    Image.fromarray(np.zeros((H, W), np.uint16)).save(str(tmp_path / 'deep.png'))
    for name in ('rgb.png', 'deep.png'):
        it = make_iter([Sample(sample.image, str(tmp_path / name), SOURCE)], batch_images=1)
        with pytest.raises(DataError, match='label .*%s has shape' % name):
            it.reader.make(0, 0)
