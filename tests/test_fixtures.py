"""The repository's copy of the checkpoint fixtures equals shared/ (where shared/ is beside it)."""
import filecmp
import os

import pytest

from issegm.testing.checkpoints import FIXTURES, SHARED_FIXTURES


@pytest.mark.skipif(not os.path.isdir(SHARED_FIXTURES), reason='no shared/ beside the repository')
def test_fixture_copy_is_current():
    names = sorted(os.listdir(SHARED_FIXTURES))
    assert sorted(os.listdir(FIXTURES)) == names
    match, mismatch, errors = filecmp.cmpfiles(SHARED_FIXTURES, FIXTURES, names, shallow=False)
    assert not mismatch and not errors, 'refresh tests/fixtures/checkpoints from shared/: %s' % mismatch
