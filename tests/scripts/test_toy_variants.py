"""scripts/toy_variants.py: each variant changes what it says and nothing else; the driver's guards."""
import os
import sys

import numpy as np
import pytest

from issegm.benchmark import toy

from scripts import toy_variants

N = 3


@pytest.fixture
def restore_toy(monkeypatch):
    """Undo a variant's changes to :mod:`issegm.benchmark.toy` after the test."""
    for name in ('render_target', 'draw_pole', 'draw_two_wheeler', 'SMALL_SCALE', 'SMALL_MAX_DEPTH'):
        monkeypatch.setattr(toy, name, getattr(toy, name))
    for dom in (toy.SOURCE, toy.TARGET):
        for key in ('counts', 'camera'):
            if key in dom:
                monkeypatch.setitem(dom, key, dom[key])


def scenes(domain, seed=5):
    return [toy.render_scene(toy.image_rng(seed, domain, 'train', i), (128, 256), domain) for i in range(N)]


def same(a, b):
    return all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))


@pytest.mark.parametrize('name', [n for n, v in toy_variants.VARIANTS.items() if v[0] == 'target'])
def test_a_target_variant_changes_target_images_only(name, restore_toy):
    source, target = scenes('source'), scenes('target')
    toy_variants.VARIANTS[name][1]()
    assert same(scenes('source'), source)
    changed = scenes('target')
    assert all(np.array_equal(c[1], t[1]) for c, t in zip(changed, target))   # same labels
    assert all(np.abs(c[0].astype(int) - t[0]).mean() > 1.0 for c, t in zip(changed, target))


def class_pixels(pairs, ids):
    return sum(int(np.isin(label, ids).sum()) for _, label in pairs)


def test_no_unlearnable_removes_the_five_classes_from_both_domains(restore_toy):
    five = (toy.LIGHT, toy.SIGN, toy.RIDER, toy.MOTORCYCLE, toy.BICYCLE)
    before = scenes('source', 1) + scenes('target', 1)
    assert class_pixels(before, five) > 0
    toy_variants.VARIANTS['no-unlearnable'][1]()
    after = scenes('source', 1) + scenes('target', 1)
    assert class_pixels(after, five) == 0
    assert class_pixels(after, (toy.POLE, toy.PERSON)) > 0


def test_big_objects_make_the_small_classes_larger(restore_toy):
    small = (toy.PERSON, toy.RIDER, toy.BICYCLE, toy.MOTORCYCLE, toy.POLE, toy.SIGN, toy.LIGHT)
    before = class_pixels(scenes('source') + scenes('target'), small)
    toy_variants.VARIANTS['big-objects'][1]()
    assert class_pixels(scenes('source') + scenes('target'), small) > 1.5 * before


def test_solid_bicycles_paint_more_bicycle_pixels(restore_toy):
    toy_variants.VARIANTS['big-objects'][1]()     # bicycles big enough to compare
    before = class_pixels(scenes('target', 2), (toy.BICYCLE,))
    toy_variants.VARIANTS['solid-bicycles'][1]()
    assert class_pixels(scenes('target', 2), (toy.BICYCLE,)) > 1.3 * before > 0


def test_source_from_is_refused_with_a_variant_that_changes_the_source(tmp_path):
    with pytest.raises(SystemExit, match='big-objects change the source too'):
        toy_variants.main(['--variants', 'hue30,big-objects', '--source-from', str(tmp_path / 'demo'),
                           '--output', str(tmp_path / 'out')])


def test_unknown_names_are_refused_naming_them(tmp_path):
    with pytest.raises(SystemExit, match='unknown variant sepia'):
        toy_variants.main(['--variants', 'hue30,sepia', '--output', str(tmp_path)])
    with pytest.raises(SystemExit, match='--set epochs: no such preset key'):
        toy_variants.main(['--set', 'epochs=3', '--output', str(tmp_path)])


def test_a_missing_source_model_is_named(tmp_path):
    with pytest.raises(SystemExit, match='ep-0150.params is missing'):
        toy_variants.main(['--variants', 'hue30', '--source-from', str(tmp_path / 'nothing'),
                           '--output', str(tmp_path / 'out')])
