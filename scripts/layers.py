"""The layers of the code, computed from its imports: the picture in docs/design.md.

    python scripts/layers.py            # print the picture
    python scripts/layers.py --check    # exit 1 if docs/design.md holds another one

A room is a sub-package of ``issegm`` (``issegm/engine/``), a module at its top
(``issegm/flags.py``), or ``util/``. Its level is one above the highest room it
imports; an import of a room at its own level or above is listed as running
back up (the round driver's in-process call of ``solve_ST`` is the one kept).
"""
import ast
import os
import sys

__all__ = ['rooms_of', 'imports', 'levels', 'picture', 'main']

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = '<!-- layers: begin (scripts/layers.py) -->', '<!-- layers: end -->'


def room(module):
    """The room of a dotted module name, or None outside the project."""
    parts = module.split('.')
    if parts[0] == 'util':
        return 'util/'
    if parts[0] != 'issegm' or len(parts) == 1:
        return None
    if os.path.isdir(os.path.join(REPO, 'issegm', parts[1])):
        return 'issegm/%s/' % parts[1]
    return 'issegm/%s.py' % parts[1]


def rooms_of(root=REPO):
    """``{dotted module: path}`` of every module of ``issegm`` and ``util``."""
    out = {}
    for top in ('issegm', 'util'):
        for folder, _, files in os.walk(os.path.join(root, top)):
            for name in files:
                if name.endswith('.py'):
                    path = os.path.join(folder, name)
                    rel = os.path.relpath(path, root)[:-3].replace(os.sep, '.')
                    out[rel[:-len('.__init__')] if rel.endswith('.__init__') else rel] = path
    return out


def imports(path):
    """Dotted names a module imports (``from a.b import c`` gives ``a.b.c`` and ``a.b``)."""
    tree = ast.parse(open(path, encoding='utf-8').read())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [node.module] + ['%s.%s' % (node.module, a.name) for a in node.names]
    return names


def edges(modules):
    """``{(room, room)}``: which room imports which (within a room nothing counts)."""
    out = set()
    for module, path in modules.items():
        # The package's own __init__ (issegm.get_model) is a room; ``from issegm import x`` names x.
        src = 'issegm/__init__.py' if module == 'issegm' else room(module)
        for name in imports(path):
            dst = room(name)
            if dst and dst != src and (name in modules or name.rsplit('.', 1)[0] in modules):
                out.add((src, dst))
    return out


def levels(pairs, kept=(('issegm/phases/', 'issegm/solve_ST.py'),)):
    """``({room: level}, back)``: levels over the import graph less ``kept``; ``back`` the pairs left over."""
    graph = {}
    for a, b in pairs:
        graph.setdefault(a, set())
        graph.setdefault(b, set())
        if (a, b) not in kept:
            graph[a].add(b)
    level, busy = {}, set()

    def visit(node):
        if node in level:
            return level[node]
        if node in busy:
            raise ValueError('import circle through %s' % node)
        busy.add(node)
        level[node] = 1 + max([visit(n) for n in graph[node]] or [0])
        busy.discard(node)
        return level[node]
    for node in sorted(graph):
        visit(node)
    back = sorted((a, b) for a, b in pairs if level[b] >= level[a])
    return level, back


def picture(root=REPO):
    """The layers as Markdown lines, top level first."""
    pairs = edges(rooms_of(root))
    level, back = levels(pairs)
    lines = ['```']
    for lv in sorted(set(level.values()), reverse=True):
        for node in sorted(n for n in level if level[n] == lv):
            below = sorted(b for a, b in pairs if a == node and level[b] < lv)
            lines.append('%d  %-26s -> %s' % (lv, node, ', '.join(below) or '(nothing of the project)'))
    lines.append('```')
    lines.append('Imports running back up: %s.' % ('; '.join('%s -> %s' % p for p in back) or 'none'))
    return lines


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    lines = picture()
    if '--check' not in argv:
        print('\n'.join(lines))
        return 0
    text = open(os.path.join(REPO, 'docs', 'design.md'), encoding='utf-8').read()
    inside = text.split(BEGIN, 1)[-1].split(END, 1)[0].strip('\n').split('\n')
    if inside != lines:
        print('docs/design.md: the layers picture is out of date; paste `python scripts/layers.py` between '
              'its markers', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
