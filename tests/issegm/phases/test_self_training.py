"""solve_ST.py's phases refuse a missing or absent --weights with one line, before anything is written."""
import os

import pytest

from issegm import solve_ST

COMMON = ['--dataset', 'gta', '--dataset-tgt', 'cityscapes', '--data-root', 'gta', '--data-root-tgt', 'cs',
          '--split', 'train', '--split-tgt', 'train', '--output', 'out', '--model', 'cityscapes_rna-a1_cls19_s8',
          '--gpus', '', '--test-scales', '64', '--batch-images', '2', '--crop-size', '32', '--base-lr', '1e-4',
          '--to-epoch', '1']


@pytest.mark.parametrize('phase', ['val', 'train'])
@pytest.mark.parametrize('weights, needle', [(None, '--weights is required'),
                                             ('models/gone_ep-0000.params', 'weights not found: models/gone')])
def test_missing_weights_is_one_line_in_both_phases(tmp_path, monkeypatch, capsys, phase, weights, needle):
    monkeypatch.chdir(tmp_path)
    argv = COMMON + ['--phase', phase] + (['--weights', weights] if weights else [])
    assert solve_ST.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and err[0].startswith('solve_ST.py: error:'), err
    assert not os.path.exists('out')
