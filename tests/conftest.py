"""Fixtures shared by the whole suite; the project root is importable (pytest.ini's pythonpath)."""
import pytest


@pytest.fixture(autouse=True)
def _pil_strict_about_truncated_files():
    """PIL's default before every test: a truncated image is an error.

    Importing gluoncv (its ``data`` package) sets ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``
    for the whole process; the project never imports it, two tests do, and the
    tests after them would then read cut files without an error.
    """
    from PIL import ImageFile
    ImageFile.LOAD_TRUNCATED_IMAGES = False


@pytest.fixture(scope='session')
def golden_checkpoint(tmp_path_factory):
    """The golden recipe checkpoint of ``shared/fixtures``, saved in the released format."""
    import mxnet as mx
    from issegm.testing.checkpoints import read_tsv, recipe_params
    path = tmp_path_factory.mktemp('golden') / 'gta_rna-a1_cls19_s8_ep-0000.params'
    mx.nd.save(str(path), recipe_params(read_tsv('rna-a1_cls19_s8.tsv')))
    return str(path)


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """The pseudo-label phase's miniature target layout (:mod:`issegm.testing.fakes`), as the working folder."""
    from issegm.testing.fakes import make_layout
    monkeypatch.chdir(tmp_path)
    make_layout(str(tmp_path))
    return tmp_path
