#!/usr/bin/env python3
"""Module graph of src/ (library only) from `use crate::...`, `crate::...` paths and `super::`/`self::`
paths. A node is a module: top-level (e.g. `stats`) or a submodule of reactor/connection/udp/service/metrics
(e.g. `reactor::slot`). Edges between a parent module and its own children are kept. Prints edges and cycles."""
import os, re, sys, itertools
root = sys.argv[1] if len(sys.argv) > 1 else 'src'
files = {}
for d, _, fs in os.walk(root):
    if '/bin' in d: continue
    for f in fs:
        if f.endswith('.rs'):
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)[:-3].split('/')
            if rel[-1] == 'mod': rel = rel[:-1]
            if rel == ['lib']: continue
            files[p] = rel
def node(path):  # module path list -> graph node (depth 2 at most)
    return '::'.join(path[:2])
edges = set()
for p, mod in files.items():
    src = open(p).read()
    # drop test modules
    src = re.split(r'#\[cfg\(test\)\]\s*mod tests', src)[0]
    me = node(mod)
    modfile = p.endswith('mod.rs')
    for m in re.finditer(r'\bcrate::([a-z_]+)(?:::([a-z_]+))?', src):
        tgt = [m.group(1)] + ([m.group(2)] if m.group(2) else [])
        t = node(tgt)
        if not os.path.exists(os.path.join(root, tgt[0]+'.rs')) and not os.path.isdir(os.path.join(root, tgt[0])): continue
        if len(tgt) == 2 and not (os.path.exists(os.path.join(root, tgt[0], tgt[1]+'.rs')) or os.path.isdir(os.path.join(root,tgt[0],tgt[1]))):
            t = tgt[0]
        if t != me: edges.add((me, t))
    parent = mod if modfile else mod[:-1]
    for m in re.finditer(r'\b(super|self)::(\{[^}]*\}|[A-Za-z_]+)', src):
        base = parent if m.group(1) == 'self' else (parent[:-1] if modfile else parent)
        if m.group(1) == 'self' and not modfile: continue
        if m.group(1) == 'super' and not modfile: base = mod[:-1]
        elif m.group(1) == 'super': base = mod[:-1]
        names = [n.strip().split('::')[0] for n in m.group(2).strip('{}').split(',') if n.strip()]
        for name in names:
          cand = base + [name]
          d = os.path.join(root, *cand)
          if os.path.exists(d + '.rs') or os.path.isdir(d):
              t = node(cand)
          else:
              t = node(base) if base else None
          if t and t != me: edges.add((me, t))
nodes = sorted({a for a, _ in edges} | {b for _, b in edges})
adj = {n: sorted(b for a, b in edges if a == n) for n in nodes}
for n in nodes:
    if adj[n]: print(f"{n} -> {', '.join(adj[n])}")
# strongly connected components (Tarjan)
index = {}; low = {}; stack = []; on = set(); sccs = []; i = [0]
def sc(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in adj[v]:
        if w not in index: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
sys.setrecursionlimit(10000)
for n in nodes:
    if n not in index: sc(n)
print("\ncycles (strongly connected components):", sccs if sccs else "none")
