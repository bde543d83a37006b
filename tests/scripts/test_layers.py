"""scripts/layers.py: the layers picture of docs/design.md is the code's, and the layers hold."""
from scripts import layers


def test_design_page_holds_the_current_picture():
    assert layers.main(['--check']) == 0


def test_no_circle_and_one_import_back_up_at_most():
    level, back = layers.levels(layers.edges(layers.rooms_of()))
    assert back == [('issegm/phases/', 'issegm/solve_ST.py')]
    assert level['issegm/errors.py'] == level['issegm/flags.py'] == 1  # they import nothing of the project


def test_a_circle_is_refused_and_an_upward_import_is_listed():
    import pytest
    with pytest.raises(ValueError, match='import circle'):
        layers.levels({('a', 'b'), ('b', 'a')}, kept=())
    level, back = layers.levels({('a', 'b'), ('b', 'c'), ('c', 'a')}, kept=(('c', 'a'),))
    assert back == [('c', 'a')] and level == {'c': 1, 'b': 2, 'a': 3}


def _python_files(*folders):
    import glob
    import os
    from util.child_env import REPO
    for folder in folders:
        yield from glob.glob(os.path.join(REPO, folder, '**', '*.py'), recursive=True)


def test_benches_and_scripts_import_the_installed_project_without_editing_sys_path():
    edits = [path for path in _python_files('bench', 'scripts')
             if 'sys.path.insert' in open(path).read() or 'sys.path.append' in open(path).read()]
    assert edits == []


def test_no_test_module_imports_another():
    import ast
    offenders = []
    for path in _python_files('tests'):
        for node in ast.walk(ast.parse(open(path).read())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ''] if isinstance(node, ast.ImportFrom) else []
            offenders += ['%s imports %s' % (path, n) for n in names if n.split('.')[-1].startswith('test_')]
    assert offenders == []
