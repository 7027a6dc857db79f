#!/usr/bin/env python3
"""Fails when a crate of the workspace has an import circle: between files (modules), or between the
top-level modules of a crate. Reads `crate::` and `super::` paths as text (tests and comments left out).
Usage: deploy/import-cycles.py CRATE_SRC_DIR..."""
import re, sys, os, glob, itertools
from collections import defaultdict

def module_of(crate_src, path):
    rel = os.path.relpath(path, crate_src)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ('mod', 'lib', 'main'): parts = parts[:-1]
    return '::'.join(parts)

def sccs(nodes, edges):
    index = {}; low = {}; st = []; on = set(); out = []; i = [0]
    sys.setrecursionlimit(10000)
    def visit(v):
        index[v] = low[v] = i[0]; i[0] += 1; st.append(v); on.add(v)
        for w in edges[v]:
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = st.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    for v in nodes:
        if v not in index: visit(v)
    return out

bad = 0
for src in sys.argv[1:]:
    # A `tests.rs` file is a test module (`#[cfg(test)] mod tests;`): left out like inline test modules.
    files = [f for f in glob.glob(os.path.join(src, '**', '*.rs'), recursive=True) if os.path.basename(f) != 'tests.rs']
    mods = {module_of(src, f): f for f in files}
    edges = defaultdict(set); top = defaultdict(set)
    for m, f in mods.items():
        text = open(f).read()
        text = re.split(r'#\[cfg\(test\)\]\s*mod tests', text)[0]
        text = '\n'.join(l for l in text.splitlines() if not l.lstrip().startswith('//'))
        base = m.split('::') if m else []
        for ref in re.findall(r'\b(crate|super)::([a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*)', text):
            kind, path = ref
            parts = path.split('::')
            if kind == 'super':
                here = base[:-1] if not f.endswith(('mod.rs', 'lib.rs')) else base[:-1]
                parts = here + parts
            # longest existing module prefix
            target = None
            for k in range(len(parts), 0, -1):
                cand = '::'.join(parts[:k])
                if cand in mods: target = cand; break
            if target is None or target == m: continue
            if m.startswith(target + '::') or target == '': continue  # parent module re-export
            edges[m].add(target)
            a, b = (m.split('::')[0] if m else ''), target.split('::')[0]
            if a and a != b: top[a].add(b)
    fc = sccs(list(mods), edges); tc = sccs(list(top), top)
    print(f'{src}: {len(mods)} modules, file-level circles: {fc or "none"}, top-module circles: {tc or "none"}')
    bad += len(fc) + len(tc)
sys.exit(1 if bad else 0)
