"""scripts/compare_runs.py: same bytes, or JSON equal but for when, where and which commit."""
import json

from scripts import compare_runs


def write(folder, name, data, text=False):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if text else json.dumps(data))


def test_volatile_keys_and_own_paths_do_not_count_but_numbers_do(tmp_path):
    old, new = tmp_path / 'old', tmp_path / 'new'
    for root, stamp in ((old, '02:00'), (new, '03:00')):
        write(root, 'run.json', {'created': stamp, 'git_commit': stamp, 'args': {'--output': str(root / 'x')},
                                 'scores': {'miou': 0.5}})
        write(root, 'a/pred.png', 'same bytes', text=True)
        write(root, 'a/job.log', stamp, text=True)
    assert compare_runs.main([str(old), str(new)]) == 0
    write(new, 'run.json', {'created': '03:00', 'args': {'--output': str(new / 'x')}, 'scores': {'miou': 0.6}})
    write(new, 'health.json', {})
    compared, differing, missing, extra = compare_runs.compare(str(old), str(new))
    assert (compared, differing, missing, extra) == (2, ['run.json'], [], ['health.json'])
    assert compare_runs.compare(str(old), str(new), ignore_new=['health.json'])[3] == []
    (new / 'a' / 'pred.png').unlink()
    assert compare_runs.compare(str(old), str(new))[2] == ['a/pred.png']
