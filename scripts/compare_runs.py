"""Compare two output folders of the same commands, run at other times, places or commits.

    python scripts/compare_runs.py OLD NEW [--ignore-new health.json ...]

Every file of OLD must be in NEW with the same bytes, except what cannot be
the same from run to run: logs and lock files (times, process ids), and in
JSON files the keys that record when, where and at which commit a run was
made (``created``, ``started``, ``git_commit``, seconds taken, and the two
folders' own paths, which are replaced by one placeholder). Files only in NEW
are listed (``--ignore-new`` names those expected there). Exit 0 when
nothing else differs; the last line counts the files compared.
"""
import argparse
import json
import os
import sys

__all__ = ['volatile_free', 'compare', 'main']

#: Keys whose values say when, how long, or at which commit: never the same in two runs.
VOLATILE_KEYS = ('created', 'started', 'git_commit', 'seconds', 'step_seconds', 'times')
SKIPPED_ENDINGS = ('.log', '.lock')


def volatile_free(value, roots):
    """``value`` (parsed JSON) without volatile keys, the folders in ``roots`` replaced by ``<run>``."""
    if isinstance(value, dict):
        return {k: volatile_free(v, roots) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [volatile_free(v, roots) for v in value]
    if isinstance(value, str):
        for root in roots:
            value = value.replace(root, '<run>')
    return value


def _files(folder):
    out = set()
    for base, _, names in os.walk(folder):
        for name in names:
            out.add(os.path.relpath(os.path.join(base, name), folder))
    return out


def _same(old, new, rel):
    a, b = os.path.join(old, rel), os.path.join(new, rel)
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        if fa.read() == fb.read():
            return True
    if not rel.endswith('.json'):
        return False
    roots = [os.path.abspath(old), os.path.abspath(new)]
    with open(a) as fa, open(b) as fb:
        return volatile_free(json.load(fa), roots) == volatile_free(json.load(fb), roots)


def compare(old, new, ignore_new=()):
    """``(compared, differing, missing, extra)``: file counts and the lists of relative paths."""
    old_files, new_files = _files(old), _files(new)
    kept = sorted(f for f in old_files if not f.endswith(SKIPPED_ENDINGS))
    missing = [f for f in kept if f not in new_files]
    differing = [f for f in kept if f in new_files and not _same(old, new, f)]
    extra = sorted(f for f in new_files - old_files
                   if not f.endswith(SKIPPED_ENDINGS) and os.path.basename(f) not in ignore_new)
    return len(kept), differing, missing, extra


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('old')
    parser.add_argument('new')
    parser.add_argument('--ignore-new', nargs='*', default=[], help='file names expected only in NEW')
    args = parser.parse_args(argv)
    compared, differing, missing, extra = compare(args.old, args.new, args.ignore_new)
    for title, rows in (('differ', differing), ('missing in NEW', missing), ('only in NEW', extra)):
        for rel in rows:
            print('%s: %s' % (title, rel))
    print('%d files compared: %d differ, %d missing, %d only in NEW'
          % (compared, len(differing), len(missing), len(extra)))
    return 1 if differing or missing or extra else 0


if __name__ == '__main__':
    sys.exit(main())
