"""preflight: training lists (repeats, content), memory of --test-scales, crops larger than every image."""
import logging

import numpy as np
import pytest
from PIL import Image

from issegm.errors import DataError, FlagError
from issegm.phases import preflight
from util import memory


def test_repeated_training_entries_are_a_warning_with_the_count_and_damage_an_error(tmp_path, caplog):
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(str(tmp_path / 'a.png'))
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(str(tmp_path / 'la.png'))
    items = [('a.png', 'la.png')] * 3
    with caplog.at_level(logging.WARNING):
        preflight.check_training_list('t.lst', items, str(tmp_path))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ['t.lst: 2 entries repeat an earlier image (the first: a.png); they are drawn more often']
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(str(tmp_path / 'la.png'))
    with pytest.raises(DataError, match=r't.lst: 3 file\(s\) fail the content check: label .*la.png: a colour label'):
        preflight.check_training_list('t.lst', items, str(tmp_path))


def test_test_scales_whose_maps_cannot_fit_are_refused_with_the_figures(monkeypatch):
    monkeypatch.setattr(memory, 'physical_memory', lambda: 10 ** 9)
    preflight.check_scale_memory([1024], 19, (1024, 2048))      # 3 x 19 x 512 x 1024 x 4 B = 0.1 GB
    with pytest.raises(FlagError) as err:
        preflight.check_scale_memory([2048, 4096], 19, (1024, 2048))
    assert str(err.value) == ('--test-scales 4096: three float32 maps of 19 classes at 2048x4096 need about 1.9 GB, '
                              'more than the 1.0 GB of this machine; lower --test-scales')
    monkeypatch.setattr(memory, 'physical_memory', lambda: None)   # unknown: nothing refused
    preflight.check_scale_memory([8192], 19, (1024, 2048))


def test_a_crop_larger_than_every_image_is_a_warning_with_the_figures(caplog):
    assert preflight.warn_large_crop(500, 1914, '0.7,1.3', 'source') is None
    with caplog.at_level(logging.WARNING):
        text = preflight.warn_large_crop(200, 128, '0.7,1.3', 'training')
    assert text.startswith('--crop-size 200 is larger than every training image: their longer side is at most 166 '
                           'after rescaling (128 x 1.3')
    assert [r.getMessage() for r in caplog.records] == [text]
