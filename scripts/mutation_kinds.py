"""Sort the surviving mutants of a ``scripts/mutation_check.sh`` report by kind of change.

    python scripts/mutation_kinds.py mutants/report.txt [--other]

A first, mechanical sorting for the README's survivor review: each survivor
goes to the first kind whose pattern matches its changed lines (the removed
and the added one). ``other`` is what no pattern matched; ``--other`` lists
those, for review by hand. The kinds are about what a change touches, not a
proof that it is harmless.
"""
import collections
import re
import sys

KINDS = (
    ('messages and logs', r"logger\.|raise \w+|Error\(|warn|'XX|\"XX|print\(|bar\.|progress\(|tqdm"),
    ('cost accounting', r"_count\(|flops|nbytes|width_first|kh \* kw"),
    ('dtypes and copies', r"dtype|astype|float32|float64|int64|int32|uint8|copy=|writeable|, bool\)"),
    ('devices', r"ctx|context|as_in_context|asnumpy|mx\.cpu|mx\.gpu"),
    ('distributed branch', r"distributed\.|gather|is_root|rank|num_workers|parts|root_only|shard"),
    ('CRST branch', r"alpha|soft|crst|mr_weight|lr_weight|kld"),
    ('threads and overlap', r"depth|ahead\(|Writer|prefetch|threads|workers|submit|future"),
)
NOT_KILLED = ('survived', 'suspicious', 'no tests')


def read_report(lines):
    """``{group: [(name, state, changed_lines)]}`` of the survivors in a mutation_check.sh report."""
    groups, group, current = collections.OrderedDict(), None, None
    for line in lines:
        head = re.match(r'^== (\w+):', line)
        if head:
            group = head.group(1)
            groups[group] = []
            continue
        mutant = re.match(r'^   (\S+) \[([\w ]+)\]$', line)
        if mutant and group:
            current = (mutant.group(1), mutant.group(2), [])
            if current[1] in NOT_KILLED:
                groups[group].append(current)
            continue
        if current is not None and re.match(r'^      [-+]', line):
            current[2].append(line.strip()[1:])
    return groups


def kind_of(changed):
    text = ' '.join(changed)
    for kind, pattern in KINDS:
        if re.search(pattern, text):
            return kind
    return 'other'


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], encoding='utf-8') as f:
        groups = read_report(f.read().splitlines())
    names = [k for k, _ in KINDS] + ['other']
    print('| group | survivors | ' + ' | '.join(names) + ' |')
    print('|---' * (len(names) + 2) + '|')
    for group, items in groups.items():
        counts = collections.Counter(kind_of(changed) for _, _, changed in items)
        print('| %s | %d | %s |' % (group, len(items), ' | '.join(str(counts.get(n, 0)) for n in names)))
    if '--other' in argv:
        for group, items in groups.items():
            for name, state, changed in items:
                if kind_of(changed) == 'other':
                    print('%s [%s]\n      %s' % (name, state, '\n      '.join(changed)))


if __name__ == '__main__':
    main()
