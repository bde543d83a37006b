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


@pytest.mark.parametrize('script, argv, needle', [
    ('solve_AO', ['--init-tgt-port', '0.6', '--max-tgt-port', '0.5'],
     '--init-tgt-port 0.6 is above --max-tgt-port 0.5: the target portion starts above its maximum'),
    ('solve_AO', ['--init-src-port', '0.1', '--max-src-port', '0.05'],
     '--init-src-port 0.1 is above --max-src-port 0.05: the source portion starts above its maximum'),
    ('train_src', ['--lr-steps', '40000,20000'], '--lr-steps 40000,20000: expected increasing update counts'),
    ('train_src', ['--lr-steps', '100,100'], '--lr-steps 100,100: expected increasing update counts'),
    ('train_src', ['--cache-images', '2'], '--cache-images 2: expected 0 or 1'),
    ('evaluate', ['--test-scales', '2048,9000'], '--test-scales 2048,9000: expected comma-separated longer sides '
                                                 'of 32 to 8192 pixels'),
])
def test_contradictory_and_out_of_range_flags_are_refused(script, argv, needle):
    from issegm.phases.cli import check_flags
    from issegm.errors import FlagError
    parser = importlib.import_module('issegm.' + script).build_parser()
    with pytest.raises(FlagError) as err:
        check_flags(parser.parse_args(argv))
    assert str(err.value).startswith(needle)
    check_flags(parser.parse_args([]))   # the defaults agree


def test_gpus_beyond_the_counted_devices_are_refused_and_a_cpu_machine_keeps_its_fallback(monkeypatch):
    from issegm import evaluate
    from issegm.phases.cli import check_flags
    from issegm.errors import FlagError
    from util import device
    parser = evaluate.build_parser()
    monkeypatch.setattr(device, 'num_gpus', lambda: 2)
    check_flags(parser.parse_args(['--gpus', '0,1']))
    with pytest.raises(FlagError, match=r'--gpus 0,2 names device\(s\) \[2\] but only 2 GPU\(s\) exist'):
        check_flags(parser.parse_args(['--gpus', '0,2']))
    monkeypatch.setattr(device, 'num_gpus', lambda: 0)   # documented: the CPU, after one warning, for any ids
    for gpus in ('0', '5', '-1', 'cpu'):
        check_flags(parser.parse_args(['--gpus', gpus]))


def test_sigterm_is_one_line_like_ctrl_c_with_exit_code_143(capsys):
    import signal
    import time
    from issegm.phases.cli import script_main

    def terminated(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)   # the signal ends this at once
        return 0

    def interrupted(args):
        raise KeyboardInterrupt()

    before = signal.getsignal(signal.SIGTERM)
    start = time.time()
    assert script_main('train_src.py', terminated, argparse.Namespace(debug=False)) == 143
    assert time.time() - start < 5
    assert capsys.readouterr().err == 'train_src.py: interrupted; rerun the same command to continue\n'
    assert signal.getsignal(signal.SIGTERM) is before   # the handler is the run's only
    assert script_main('evaluate.py', interrupted, argparse.Namespace(debug=False)) == 130
    assert capsys.readouterr().err == 'evaluate.py: interrupted; rerun the same command to continue\n'
    # a phase solve_AO runs in its own process: the driver ends, and says so once
    assert script_main('solve_AO.py', lambda args: script_main('solve_ST.py', terminated, args),
                       argparse.Namespace(debug=False)) == 143
    assert capsys.readouterr().err == 'solve_AO.py: interrupted; rerun the same command to continue\n'
