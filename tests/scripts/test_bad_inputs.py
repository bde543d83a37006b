"""scripts/bad_inputs.py: flag-only cases through the script's own table, and its checks on a made-up run."""
import pytest

from scripts import bad_inputs


def run(name, tmp_path):
    result = bad_inputs.run_case(bad_inputs.case(name), None, str(tmp_path))
    return result, bad_inputs.row(result)


@pytest.mark.parametrize('name', [
    'launch --port 70000',
    'solve_ST --lr-steps 50,10',
    'metrics merge empty JSON',
])
def test_flag_only_cases_are_refused_before_work(name, tmp_path):
    c = bad_inputs.case(name)
    assert c.parts == ()   # needs no quick preset
    result, line = run(name, tmp_path)
    assert result['count'] >= 1, line   # the words are in one line
    assert result['before'] and not result['lost'], line
    assert result['rc'] == c.rc and result['ok'] and line.endswith('| yes |'), line


def test_a_lost_file_a_grown_log_and_work_made(tmp_path):
    before = {'ev/a.json': b'{}', 'ev/x.log': b'one\n', 'ev/b.png': b'png'}
    after = {'ev/a.json': b'{}', 'ev/x.log': b'one\ntwo\n', 'ev/trainId/c.png': b'new'}
    assert bad_inputs.lost(before, after) == ['ev/b.png']
    assert bad_inputs.lost(before, dict(after, **{'ev/b.png': b'png', 'ev/x.log': b'two\n'})) == ['ev/x.log']
    assert bad_inputs.worked(before, after, bad_inputs.EVAL_WORK) == ['ev/trainId/c.png']
    assert bad_inputs.the_line('x\nerror: --port 1 bad\n', ['--PORT', 'bad']) == ('error: --port 1 bad', 1)


def test_a_case_is_not_as_expected_with_another_exit_code_or_without_its_words(tmp_path):
    c = bad_inputs.case('solve_ST --cache-images 2')
    good = dict(rc=2, count=1, lost=[], before=True, seconds=1.0)
    assert bad_inputs.expected(c, good)
    for change in (dict(rc=1), dict(count=0), dict(lost=['a']), dict(before=False), dict(seconds=1e4)):
        assert not bad_inputs.expected(c, dict(good, **change)), change
    assert not bad_inputs.expected(bad_inputs.case('evaluate --gpus 5 without GPU'), dict(good, rc=0, count=2))


def test_edit_drops_and_sets_flags():
    argv = ['py', 's.py', '--weights', 'w.params', '--test-flipping', '--gpus', '0']
    assert bad_inputs.edit(argv, drop=['--weights']) == ['py', 's.py', '--test-flipping', '--gpus', '0']
    assert bad_inputs.edit(argv, gpus=5, lr_steps='50,10') == ['py', 's.py', '--weights', 'w.params',
                                                              '--test-flipping', '--gpus', '5', '--lr-steps', '50,10']
    assert bad_inputs.edit(argv, drop=['--test-flipping'])[-2:] == ['--gpus', '0']
