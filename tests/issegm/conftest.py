"""Fixtures of the end-to-end runs of the scripts."""
import pytest


@pytest.fixture
def mini(tmp_path, monkeypatch):
    """The miniature GTA-5 -> Cityscapes layout and a source model (:mod:`issegm.testing.miniature`), as the
    working folder. Modules that need another layout define their own ``mini``."""
    from issegm.testing.miniature import SRC_MODEL, write_layout, write_weights
    monkeypatch.chdir(tmp_path)
    write_layout(str(tmp_path))
    write_weights(str(tmp_path / 'models' / (SRC_MODEL + '_ep-0000.params')), SRC_MODEL)
    return tmp_path
