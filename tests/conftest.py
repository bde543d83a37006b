"""Shared fixtures. Tests run from any folder; the project root, tests/ and bench/ go on sys.path."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, 'tests'), os.path.join(ROOT, 'bench')):
    if path not in sys.path:
        sys.path.insert(0, path)


@pytest.fixture(scope='session')
def golden_checkpoint(tmp_path_factory):
    """The golden recipe checkpoint of ``shared/fixtures``, saved in the released format."""
    import mxnet as mx
    from checkpoint_recipe import read_tsv, recipe_params
    path = tmp_path_factory.mktemp('golden') / 'gta_rna-a1_cls19_s8_ep-0000.params'
    mx.nd.save(str(path), recipe_params(read_tsv('rna-a1_cls19_s8.tsv')))
    return str(path)
