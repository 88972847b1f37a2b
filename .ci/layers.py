#!/usr/bin/env python3
"""The use-graph check of issue 14: no import cycle between the top-level
modules of any crate, and no module importing from a layer above it.

For every crate root (src/lib.rs, src/main.rs) of every workspace member, the
top-level modules are the `mod` declarations of the root. Every path that
names another top-level module of the same crate (`crate::x`, `super::x`
climbing back to the root, or `posgate_xxx::x` from the crate's own binary is
another crate and not counted) is an edge of the graph. Comments and string
literals are dropped first, so a doc line naming a module is not an edge.

LAYERS ranks the modules of the crates that have layers: a module may use
modules of its own rank or below, never above. Modules of one rank must still
not form a cycle. A crate without an entry is checked for cycles only.

Run from the repository root: `python3 .ci/layers.py`. It prints the graph of
every crate and exits non-zero on a cycle or a layer violation.
"""

import re
import sys
from pathlib import Path

# Lower number = lower layer. Within a rank, any direction without a cycle.
LAYERS = {
    "gateway/core/src/lib.rs": {
        "model": 0,
        "ports": 1,
        "worker": 1,
        "metrics": 1,  # gauges the sealer sets; its backlog worker reads the database port
        "bill": 2,
        "cards": 2,
        "clearing": 2,
        "audit": 2,
        "instance": 2,  # leases and leadership, used by the domains' workers
        "wallet": 3,  # auto-reload tops a wallet up by card payment
        "config": 4,  # assembles every domain's section
    },
}

MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.M)
CRATE_PATH = re.compile(r"\bcrate::(\{[^;]*?\}|\w+)")
SUPER_PATH = re.compile(r"\b((?:super::)+)(\{[^;]*?\}|\w+)")


# Crates whose graph is printed but not enforced, with the reason. Empty:
# cycles are enforced in every crate.
REPORT_ONLY = {}


def strip_comments_and_strings(text: str) -> str:
    """Removes comments, string and char literals (keeps line structure)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            i = n if end < 0 else end + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]):
            i = text.index("'", i + 2 if text[i + 1] != "\\" else i + 3) + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def first_names(group: str):
    """`{a, b::c, d::{e}}` -> a, b, d; `x` -> x."""
    if not group.startswith("{"):
        yield group
        return
    depth, item = 0, ""
    for c in group[1:-1] + ",":
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if c == "," and depth == 0:
            name = item.strip().split("::")[0].strip()
            if re.fullmatch(r"\w+", name):
                yield name
            item = ""
        else:
            item += c


def module_files(src: Path, name: str):
    """Every file of top-level module `name` with its depth below the root."""
    single = src / f"{name}.rs"
    folder = src / name
    if single.exists():
        yield single, 1
    if folder.is_dir():
        for path in folder.rglob("*.rs"):
            rel = path.relative_to(src).parts
            depth = len(rel) - (1 if rel[-1] == "mod.rs" else 0)
            yield path, depth
    # Nested modules declared inline in `name.rs` with files under `name/`
    # are covered by the folder walk above.


def graph_of(root: Path):
    src = root.parent
    modules = MOD_DECL.findall(root.read_text())
    edges = {m: set() for m in modules}
    for module in modules:
        for path, depth in module_files(src, module):
            code = strip_comments_and_strings(path.read_text())
            for group in CRATE_PATH.findall(code):
                for name in first_names(group):
                    if name in edges and name != module:
                        edges[module].add(name)
            for supers, group in SUPER_PATH.findall(code):
                if supers.count("super::") == depth:
                    for name in first_names(group):
                        if name in edges and name != module:
                            edges[module].add(name)
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    repo = Path(__file__).resolve().parent.parent
    roots = sorted(
        p for p in repo.glob("**/src/*.rs")
        if p.name in ("lib.rs", "main.rs")
        and "target" not in p.parts and "fuzz" not in p.parts
        and (p.parent.parent / "Cargo.toml").exists()
    )
    failed = False
    for root in roots:
        rel = root.relative_to(repo).as_posix()
        edges = graph_of(root)
        if not edges:
            continue
        print(f"{rel}:")
        ranks = LAYERS.get(rel, {})
        for module in sorted(edges):
            uses = ", ".join(sorted(edges[module])) or "-"
            print(f"  {module} -> {uses}")
            if module in ranks:
                for used in sorted(edges[module]):
                    if used in ranks and ranks[used] > ranks[module]:
                        print(f"  LAYER VIOLATION in {rel}: {module} (layer {ranks[module]}) "
                              f"uses {used} (layer {ranks[used]})")
                        failed = True
        for unranked in sorted(set(edges) - set(ranks)) if ranks else []:
            print(f"  UNRANKED MODULE in {rel}: {unranked} (add it to LAYERS in .ci/layers.py)")
            failed = True
        for component in cycles(edges):
            print(f"  IMPORT CYCLE in {rel}: {' <-> '.join(component)}")
            if rel in REPORT_ONLY:
                print(f"  (reported, not enforced: {REPORT_ONLY[rel]})")
            else:
                failed = True
    print("use graph: " + ("FAILED" if failed else "no cycles, no layer violations"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
