"""The published commands (as the README lists them) parse unchanged; shared flags keep their defaults."""
import argparse
import importlib
import os
import shlex

import pytest

from issegm.phases.cli import add_flags
from issegm.flags import FLAGS

from util.child_env import REPO as ROOT  # noqa: E402


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
    from issegm import solve_AO
    from issegm import solve_ST
    from issegm import train_src
    from issegm.phases import source_training
    assert train_src.build_parser().parse_args([]).kvstore == 'device'
    assert solve_ST.build_parser().parse_args([]).kvstore == 'local'
    assert train_src.build_parser().parse_args([]).origin_size is None
    assert solve_ST.build_parser().parse_args([]).origin_size == 2048
    assert solve_AO.build_parser().parse_args([]).kc_policy is None
    assert solve_ST.build_parser().parse_args([]).kc_policy == 'cb'
    # Spec 7: weight decay 5e-4 in both trainings unless --weight-decay says otherwise.
    assert train_src.build_parser().parse_args([]).weight_decay == 5e-4
    assert solve_ST.build_parser().parse_args([]).weight_decay == 5e-4


def test_add_flags_rejects_unknown_defaults():
    with pytest.raises(ValueError, match='no such flags: nope'):
        add_flags(argparse.ArgumentParser(), ['--gpus'], nope=1)
    assert '--no-cudnn' in FLAGS and FLAGS['--no-cudnn']['dest'] == 'no_mxnet_cudnn_autotune_default'


def test_non_utf8_paths_and_out_of_range_values_name_their_flag():
    from issegm import evaluate
    from issegm import train_src
    from issegm.phases import source_training
    from issegm.phases.cli import check_flags
    from issegm.errors import FlagError
    bad = os.fsdecode(b'out\xff')   # a Latin-1 byte from the command line
    with pytest.raises(FlagError, match=r'--output out\ufffd: the path is not UTF-8'):
        check_flags(evaluate.build_parser().parse_args(['--output', bad]))
    for argv, needle in ((['--crop-size', '0'], '--crop-size 0: expected a positive size'),
                         (['--base-lr', 'nan'], '--base-lr nan: expected a finite rate'),
                         (['--batch-images', '0'], '--batch-images 0: expected a positive number'),
                         (['--prefetcher', 'gpu'], '--prefetcher gpu: expected thread or process')):
        with pytest.raises(FlagError, match=needle):
            check_flags(train_src.build_parser().parse_args(argv))


def test_failures_are_one_line_with_an_exit_code_that_says_whether_a_rerun_helps(capsys):
    import errno
    from issegm.phases.cli import describe_failure, script_main
    from util.io import DiskFullError
    assert describe_failure(DiskFullError('/data/out'))[0] == 1
    assert 'disk full while writing in /data/out' in describe_failure(DiskFullError('/data/out'))[1]
    assert describe_failure(ValueError('--x 1: bad'))[0] == 2
    code, line = describe_failure(RuntimeError('deep\ninside: boom'))
    assert code == 1 and line == 'RuntimeError: inside: boom (unexpected; rerun with --debug for the traceback)'
    assert describe_failure(PermissionError(errno.EACCES, 'Permission denied', '/ro'))[0] == 2

    def boom(args):
        raise RuntimeError('boom')

    args = argparse.Namespace(debug=False)
    assert script_main('x.py', boom, args) == 1
    assert capsys.readouterr().err == 'x.py: error: RuntimeError: boom (unexpected; rerun with --debug for the traceback)\n'
    args.debug = True
    assert script_main('x.py', boom, args) == 1
    err = capsys.readouterr().err
    assert 'Traceback' in err and err.endswith('x.py: error: RuntimeError: boom (unexpected; rerun with --debug for '
                                               'the traceback)\n')
