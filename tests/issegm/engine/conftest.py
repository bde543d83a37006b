"""Builders the training-iterator tests (``test_iterator_*.py``) share, as fixtures.

Every builder writes tiny synthetic samples under the test's ``tmp_path``; every
:class:`FileIter` made through ``file_iter`` or ``make_iter`` is closed at teardown,
so a failing test cannot leave prefetch workers behind.
"""
import numpy as np
import pytest
from PIL import Image

from issegm.benchmark.layouts import write_cityscapes
from issegm.engine.iterator import SOURCE, FileIter, Sample

# The iterator tests' sizes (each test module repeats this block): image, crop, stride.
H, W = 48, 96
T, S = 32, 8


@pytest.fixture
def file_iter():
    """``FileIter(*args, **kwargs)``, closed when the test ends."""
    made = []

    def build(*args, **kwargs):
        it = FileIter(*args, **kwargs)
        made.append(it)
        return it

    yield build
    for it in made:
        it.close()


@pytest.fixture
def make_iter(file_iter):
    """A Cityscapes FileIter over ``samples`` on H x W max shapes, closed when the test ends.

    Defaults: batch of 3, crop 30 (made divisible by the stride: 32), stride S, origin W,
    scale rates (0.7, 1.3), seed 0, no mining; ``mine_port``, ``mine_id`` and
    ``mine_id_priority`` go to the meta dict, any other keyword to FileIter.
    """
    def build(samples, **kw):
        meta = dict(max_shape_src=(H, W), max_shape_tgt=(H, W), mine_port=kw.pop('mine_port', 0.),
                    mine_id=kw.pop('mine_id', ()), mine_id_priority=kw.pop('mine_id_priority', ()))
        args = dict(dataset='cityscapes', samples=samples, meta=meta, batch_images=3, feat_stride=S,
                    crop_size=30, origin_size=W, origin_size_tgt=W, scale_rate_range=(0.7, 1.3), seed=0)
        args.update(kw)
        return file_iter(**args)

    return build


@pytest.fixture
def make_dataset(tmp_path):
    """``make_dataset(n, rare_every_image=True, seed=0)``: n Cityscapes-layout source samples of
    road (id 7), each with one 6x6 bicycle (id 33) block; sample k's image is all ``10 k + 5``."""
    def build(n, rare_every_image=True, seed=0):
        rng = np.random.RandomState(seed)
        samples = []
        for k in range(n):
            label = np.full((H, W), 7, np.uint8)
            if rare_every_image:
                y, x = rng.randint(18, H - 24), rng.randint(18, W - 24)
                label[y:y + 6, x:x + 6] = 33
            image = np.full((H, W, 3), 10 * k + 5, np.uint8)   # the sample's number, readable in the batch
            rel = write_cityscapes(str(tmp_path), 'train', 'bonn', '%06d_000019' % k, image, label)
            samples.append(Sample(str(tmp_path / rel[0]), str(tmp_path / rel[1]), SOURCE))
        return samples

    return build


@pytest.fixture
def coded_samples(tmp_path):
    """``coded_samples(h, w, domain=SOURCE, tag='a')`` -> ``(samples, image)``: two samples of one
    random h x w image whose labels are the row index and the column index (positions as labels)."""
    def build(h, w, domain=SOURCE, tag='a'):
        assert max(h, w) < 255
        rng = np.random.RandomState(h * 1000 + w)
        image = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
        yy, xx = np.mgrid[:h, :w].astype(np.uint8)
        out = []
        for kind, label in (('rows', yy), ('cols', xx)):
            img_path = str(tmp_path / ('%s_img.png' % tag))
            lab_path = str(tmp_path / ('%s_%s.png' % (tag, kind)))
            Image.fromarray(image).save(img_path)
            Image.fromarray(np.ascontiguousarray(label)).save(lab_path)
            out.append(Sample(img_path, lab_path, domain))
        return out, image

    return build


@pytest.fixture
def identity_labels():
    """``identity_labels(reader)``: let a reader built for a real dataset pass position codes
    through unchanged (identity label tables); returns the reader."""
    def apply(reader):
        l2t = np.arange(256, dtype=np.uint8)
        reader.label2train = (l2t, l2t)
        return reader

    return apply
