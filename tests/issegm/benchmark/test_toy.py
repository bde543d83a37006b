"""The toy GTA-5 -> Cityscapes benchmark: determinism, real layouts, labels, domain gap."""
import filecmp
import os
import re

import numpy as np
import pytest
from PIL import Image

from issegm.benchmark import toy
from util.image import read_image, read_label

SMALL = dict(n_source=6, n_source_val=2, n_target_train=4, n_target_val=3, size=(64, 128))
GTA_RE = re.compile(r'^images/(\d{5})\.png\tlabels/\1\.png$')
CS_RE = re.compile(r'^leftImg8bit/(train|val)/([a-z]+)/(\2_\d{6}_\d{6})_leftImg8bit\.png\t'
                   r'gtFine/\1/\2/\3_gtFine_labelIds\.png$')


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    """A small benchmark on disk."""
    root = str(tmp_path_factory.mktemp('toy') / 'toy')
    return toy.generate(root, seed=3, **SMALL)


@pytest.fixture(scope='module')
def scenes():
    """Enough scenes of each domain (in memory) for class and colour statistics."""
    return {dom: [toy.render_scene(toy.image_rng(0, dom, 'train', i), (64, 128), dom) for i in range(60)]
            for dom in ('source', 'target')}


def _files(root):
    """Every file under ``root``, relative."""
    out = []
    for folder, _, names in os.walk(root):
        out += [os.path.relpath(os.path.join(folder, n), root) for n in names]
    return sorted(out)


def _read_list(path):
    with open(path) as f:
        return [line.rstrip('\n') for line in f if line.strip()]


def test_same_seed_same_bytes_other_seed_other_images(bench, tmp_path):
    again = toy.generate(str(tmp_path / 'again'), seed=3, **SMALL)
    files = _files(bench['root'])
    assert files == _files(again['root'])
    match, mismatch, errors = filecmp.cmpfiles(bench['root'], again['root'], files, shallow=False)
    assert not mismatch and not errors and len(match) == len(files)
    other = toy.generate(str(tmp_path / 'other'), seed=4, **SMALL)
    first = 'images/00001.png'
    assert not np.array_equal(read_image(os.path.join(bench['gta_root'], first)),
                              read_image(os.path.join(other['gta_root'], first)))


def test_layout_matches_lists(bench):
    expect = {('gta', 'train'): 6, ('gta', 'val'): 2, ('cityscapes', 'train'): 4, ('cityscapes', 'val'): 3}
    data_root = {'gta': bench['gta_root'], 'cityscapes': bench['cityscapes_root']}
    listed = {'gta': set(), 'cityscapes': set()}
    for (dataset, split), n in expect.items():
        path = os.path.join(bench['root'], 'lists', dataset, split + '.lst')
        assert bench['lists'][(dataset, split)] == path
        lines = _read_list(path)
        assert len(lines) == n
        for line in lines:
            m = (GTA_RE if dataset == 'gta' else CS_RE).match(line)
            assert m, line
            if dataset == 'cityscapes':
                assert m.group(1) == split
                assert m.group(2) in (toy.TRAIN_CITIES if split == 'train' else toy.VAL_CITIES)
            for rel in line.split('\t'):
                assert os.path.isfile(os.path.join(data_root[dataset], rel)), rel
                listed[dataset].add(rel)
    # nothing on disk that the lists do not name
    for dataset, root in data_root.items():
        assert set(_files(root)) == listed[dataset]
    numbers = sorted(int(GTA_RE.match(l).group(1)) for s in ('train', 'val')
                     for l in _read_list(bench['lists'][('gta', s)]))
    assert numbers == list(range(1, 9))


def test_images_and_labels_are_valid(bench):
    allowed = set(toy.SCENE_CLASSES) | {toy.EGO_VEHICLE}
    roots = {'gta': bench['gta_root'], 'cityscapes': bench['cityscapes_root']}
    for (dataset, split), path in bench['lists'].items():
        for line in _read_list(path):
            img_rel, lab_rel = line.split('\t')
            image = read_image(os.path.join(roots[dataset], img_rel))
            label = read_label(os.path.join(roots[dataset], lab_rel))
            assert image.shape == (64, 128, 3) and label.shape == (64, 128)
            assert set(np.unique(label)) <= allowed, (lab_rel, np.unique(label))
            if dataset == 'gta':
                assert toy.EGO_VEHICLE not in label          # no bonnet in the game frames
    # GTA-5 labels are palette PNGs with the Cityscapes colours, as released
    with Image.open(os.path.join(bench['gta_root'], 'labels/00001.png')) as im:
        assert im.mode == 'P'
        pal = np.asarray(im.getpalette()[:3 * 34], np.uint8)
    assert np.array_equal(pal, toy.CITYSCAPES_PALETTE[:3 * 34])


def test_every_class_appears_and_rare_classes_are_rare(scenes):
    for dom, pairs in scenes.items():
        labels = np.stack([lab for _, lab in pairs])
        share = np.bincount(labels.ravel(), minlength=256) / labels.size
        for lid in toy.SCENE_CLASSES:
            assert share[lid] > 0, (dom, lid)
        for lid in toy.RARE_CLASSES:
            assert share[lid] < 0.03, (dom, lid, share[lid])
        for lid in (toy.ROAD, toy.BUILDING, toy.SKY, toy.VEGETATION, toy.SIDEWALK):
            assert share[lid] > 0.04, (dom, lid, share[lid])


def test_default_target_val_holds_every_class():
    # the reference's mIoU counts a class without ground truth as 0, so the
    # default validation split must show all 19 classes
    seen = set()
    for i in range(30):
        seen |= set(np.unique(toy.render_scene(toy.image_rng(0, 'target', 'val', i), (128, 256), 'target')[1]))
    assert set(toy.SCENE_CLASSES) <= seen, set(toy.SCENE_CLASSES) - seen


def test_class_frequency_shift(scenes):
    def share(dom, lid):
        return np.mean([np.mean(lab == lid) for _, lab in scenes[dom]])
    assert share('target', toy.PERSON) > 2 * share('source', toy.PERSON)
    assert share('source', toy.CAR) > 1.2 * share('target', toy.CAR)
    assert share('target', toy.VEGETATION) > 1.3 * share('source', toy.VEGETATION)


def test_domains_differ_in_colour(scenes):
    def stats(pairs):
        px = np.concatenate([img.reshape(-1, 3) for img, _ in pairs]).astype(np.float64)
        sat = (px.max(1) - px.min(1)).mean()
        return px.mean(0), px.std(0).mean(), sat
    (m_s, std_s, sat_s), (m_t, std_t, sat_t) = stats(scenes['source']), stats(scenes['target'])
    assert sat_s > 1.5 * sat_t                       # saturated game vs muted camera
    assert std_s > 1.2 * std_t                       # lower contrast in the target
    # a colour-only classifier fitted on the source works there and fails on the target
    fit, held = scenes['source'][:45], scenes['source'][45:]
    res = toy.colour_classifier_gap(fit, {'source': held, 'target': scenes['target']}, method='histogram')
    assert res['source'][0] > 0.75
    assert res['target'][0] < 0.5 * res['source'][0]
    assert res['target'][1] < 0.5 * res['source'][1]


def test_gap_knob_darkens_and_cools_the_target_and_widens_the_colour_gap(scenes):
    # the same target scenes (gap draws nothing from the generator) at three gaps
    fit = scenes['source'][:45]
    seen = {}
    for gap in (0.0, toy.DEFAULT_GAP, 0.5):
        pairs = [toy.render_scene(toy.image_rng(0, 'target', 'train', i), (64, 128), 'target', gap)
                 for i in range(20)]
        assert all(np.array_equal(lab, scenes['target'][i][1]) for i, (_, lab) in enumerate(pairs))
        px = np.concatenate([img.reshape(-1, 3) for img, _ in pairs]).astype(np.float64)
        acc = toy.colour_classifier_gap(fit, {'t': pairs}, method='histogram')['t'][0]
        seen[gap] = (px.mean(), px[:, 2].mean() / px[:, 0].mean(), acc)
    (b0, c0, a0), (b1, c1, a1), (b2, c2, a2) = seen[0.0], seen[toy.DEFAULT_GAP], seen[0.5]
    assert b0 > b1 + 5 > b2 + 10                     # darker exposure
    assert c0 + 0.05 < c1 < c2 - 0.05                # bluer cast
    assert a0 > a1 + 0.1 > a2 + 0.2                  # a source colour model fails more and more


def test_cli_writes_benchmark_and_preview(tmp_path, capsys):
    out, preview = str(tmp_path / 'cli'), str(tmp_path / 'preview.png')
    assert toy.main(['--out', out, '--n-source', '3', '--n-source-val', '1', '--n-target-train', '2',
                     '--n-target-val', '2', '--size', '32', '64', '--preview', preview, '--check-gap']) == 0
    text = capsys.readouterr().out
    assert 'colour classifier (histogram)' in text and 'generated in' in text
    assert len(_read_list(os.path.join(out, 'lists', 'cityscapes', 'val.lst'))) == 2
    with Image.open(preview) as im:
        assert im.size == (128, 32 * 5)             # 3 source + 2 target rows, image | labels
