#!/usr/bin/env python3
"""Fails if a module of a crate imports, directly or through others, a module that imports it.

A module is a file under crates/<crate>/src (a folder's mod.rs is the folder's module; a
file in a folder is its own module, e.g. `watch::feed`). An import is any `crate::a::b` path
in the file, outside comments. Submodules a module declares (`mod x;`) are not imports of it,
`super::` paths are imports of the parent, and a module's use of a submodule's items
(`child::item`, `pub use child::…`) is an import of the submodule: a submodule that uses its
parent's items while the parent uses the submodule's is a cycle too. Usage: scripts/module-cycles.py [crate dirs…]
"""
import os
import re
import sys


def modules(src):
    found = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            found["::".join(rel)] = path
    return found


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def imports(name, path, mods):
    text = strip_comments(open(path, encoding="utf-8").read())
    # The unit tests of a file are not part of its layering.
    text = re.split(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod tests", text)[0]
    out = set()
    here = name.split("::") if name else []
    for m in re.finditer(r"\b(crate|super)((?:::\w+)+)", text):
        base = [] if m.group(1) == "crate" else here[:-1]
        parts = base + m.group(2).strip(":").split("::")
        # The longest prefix that names a module.
        for n in range(len(parts), 0, -1):
            cand = "::".join(parts[:n])
            if cand in mods:
                break
        else:
            continue
        if cand != name and not cand.startswith(name + "::" if name else "\x00"):
            out.add(cand)
    # A submodule's items, named from its parent.
    for m in re.finditer(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text, flags=re.M):
        child = "::".join(here + [m.group(1)])
        if child in mods and re.search(r"(?<![:\w])" + m.group(1) + r"::", text):
            out.add(child)
    # `use crate::{a, b::c}` and `use super::{a, b}` groups.
    for m in re.finditer(r"use (crate|super)::\{([^;]*)\};", text, flags=re.S):
        base = [] if m.group(1) == "crate" else here[:-1]
        for item in re.split(r",\s*", m.group(2)):
            parts = base + [p for p in item.strip().split(" ")[0].split("::") if p and p != "{"]
            for n in range(len(parts), -1, -1):
                cand = "::".join(parts[:n])
                if cand in mods:
                    break
            else:
                continue
            if cand != name and not (name and cand.startswith(name + "::")) and (cand or n):
                out.add(cand)
    return out


def cycles(graph):
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                sccs.append(sorted(scc))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return sccs


def main():
    crates = sys.argv[1:] or sorted(
        os.path.join("crates", c) for c in os.listdir("crates")
    )
    failed = False
    for crate in crates:
        mods = modules(os.path.join(crate, "src"))
        graph = {name: imports(name, path, mods) for name, path in mods.items()}
        for scc in cycles(graph):
            failed = True
            print(f"{crate}: import cycle among: {', '.join(m or '(root)' for m in scc)}")
            for m in scc:
                inner = sorted(graph[m] & set(scc))
                print(f"  {m} -> {', '.join(inner)}")
    if failed:
        sys.exit(1)
    print("no import cycles in " + ", ".join(crates))


if __name__ == "__main__":
    main()
