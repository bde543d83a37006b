"""End to end: a one-round solve_AO on the miniature layout writes health records; the report reads them."""
import base64
import json
import os
import re

import pytest

from issegm.testing.miniature import MODEL, SRC_MODEL


FLAGS = ['--num-round', '1', '--test-scales', '64', '--dataset', 'gta', '--dataset-tgt', 'cityscapes', '--split',
         'train', '--split-tgt', 'train', '--data-root', 'gta', '--data-root-tgt', 'cityscapes', '--output', 'ao',
         '--model', MODEL, '--weights', 'models/%s_ep-0000.params' % SRC_MODEL, '--batch-images', '2',
         '--crop-size', '32', '--init-tgt-port', '0.2', '--init-src-port', '0.5', '--max-src-port', '0.6', '--seed-int', '0',
         '--base-lr', '1e-4', '--to-epoch', '1', '--epoch-per-round', '1', '--kc-policy', 'cb',
         '--prefetch-threads', '1', '--gpus', '0', '--with-prior', 'False']


def test_one_round_records_its_health_and_the_report_shows_it(mini, capsys):
    from issegm import solve_AO
    from issegm.report.__main__ import main
    assert solve_AO.main(FLAGS) == 0
    with open('ao/0/health.json') as f:
        record = json.load(f)
    assert set(record) >= {'confidence', 'pseudo_labels', 'training', 'guard'}
    pl = record['pseudo_labels']
    assert sum(pl['source_share']) == pytest.approx(1) and pl['source_images'] == 6  # the source list's labels
    assert pl['scores']['mean_iou'] >= 0 and len(pl['thresholds']) == 19
    assert [e['epoch'] for e in record['training'].values()] == [1]
    assert os.path.exists('ao/stats/source_class_shares.json')
    assert main(['ao']) == 0
    page = open('ao/report.html').read()
    uris = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == len(re.findall(r'<img ', page)) >= 4
    assert all(base64.b64decode(u).startswith(b'\x89PNG') for u in uris)
    assert main(['ao', '--select']) == 0
    assert 'keep the weights that entered round 0 (source model)' in capsys.readouterr().out
