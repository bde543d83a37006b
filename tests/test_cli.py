"""The published commands (as the README lists them) parse unchanged; shared flags keep their defaults."""
import argparse
import importlib
import os
import shlex

import pytest

from issegm.cli import FLAGS, add_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


SCRIPTS = ('issegm/solve_AO.py', 'issegm/solve_ST.py', 'issegm/evaluate.py', 'issegm/train_src.py')


def published_commands():
    with open(os.path.join(ROOT, 'README.md')) as f:
        commands = [shlex.split(line.strip()) for line in f if line.strip().startswith('python issegm/')]
    return [argv for argv in commands if argv[1] in SCRIPTS]


def test_readme_lists_the_eight_published_commands():
    scripts = [argv[1] for argv in published_commands()]
    assert scripts.count('issegm/solve_AO.py') == 2
    assert scripts.count('issegm/evaluate.py') == 4
    assert scripts.count('issegm/train_src.py') == 2


@pytest.mark.parametrize('argv', published_commands(), ids=lambda a: a[1])
def test_published_command_parses(argv):
    module = importlib.import_module('issegm.' + os.path.basename(argv[1])[:-3])
    args = module.build_parser().parse_args(argv[2:])
    assert args.gpus in ('0', '0,1,2,3')
    assert args.weights.startswith('models/') and args.weights.endswith('.params')


def test_script_defaults_differ_where_the_reference_did():
    from issegm import solve_AO, solve_ST, train_src
    assert train_src.build_parser().parse_args([]).kvstore == 'device'
    assert solve_ST.build_parser().parse_args([]).kvstore == 'local'
    assert train_src.build_parser().parse_args([]).origin_size is None
    assert solve_ST.build_parser().parse_args([]).origin_size == 2048
    assert solve_AO.build_parser().parse_args([]).kc_policy is None
    assert solve_ST.build_parser().parse_args([]).kc_policy == 'cb'


def test_add_flags_rejects_unknown_defaults():
    with pytest.raises(ValueError, match='no such flags: nope'):
        add_flags(argparse.ArgumentParser(), ['--gpus'], nope=1)
    assert '--no-cudnn' in FLAGS and FLAGS['--no-cudnn']['dest'] == 'no_mxnet_cudnn_autotune_default'
