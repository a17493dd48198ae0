#!/usr/bin/env python3
"""Checks the shape of core/src that the compiler does not: imports between modules run
one way, and functions stay short.

  scripts/check-layout.py [--list] [--max-lines N] [SRC]

1. The modules of core/src (its top-level directories and files) depend on each other
   through `crate::<module>` paths. That graph must have no cycle: a cycle means a concept
   lives in the wrong home. `--list` prints the modules in dependency order with what each
   uses.
2. Inside each module directory, files refer to each other (`super::<file>`,
   `crate::<module>::<file>`, `self::<file>`); that graph must have no cycle either.
3. No function outside tests is longer than N lines (default 120), counted from its
   `fn` line to its closing brace.

Test code is left out: `#[cfg(test)]` modules at the end of a file, and files that are
test modules of their own (tests.rs, testing.rs). Exit status 1 when a check fails.
"""

import argparse
import re
import sys
from pathlib import Path

TEST_FILES = {"tests.rs", "testing.rs"}


def production_text(path: Path) -> str:
    """The file without its trailing `#[cfg(test)] mod ... { }` modules."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "#[cfg(test)]" and i + 1 < len(lines):
            nxt = lines[i + 1].strip()
            if re.match(r"(pub(\(\w+\))? )?mod \w+ \{", nxt):
                return "\n".join(lines[:i])
    return "\n".join(lines)


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def sources(src: Path):
    for path in sorted(src.rglob("*.rs")):
        if path.name in TEST_FILES:
            continue
        yield path


def top_module(src: Path, path: Path) -> str:
    rel = path.relative_to(src)
    return rel.parts[0].removesuffix(".rs")


def find_cycle(graph: dict) -> list:
    """One cycle of `graph` (node -> set of nodes), or []."""
    state = {}
    stack = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def layers(graph: dict) -> list:
    """Nodes in dependency order (leaves first)."""
    order, done = [], set()

    def visit(node):
        if node in done:
            return
        done.add(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        order.append(node)

    for node in sorted(graph):
        visit(node)
    return order


def module_graph(src: Path) -> dict:
    modules = {top_module(src, p) for p in sources(src)} - {"lib", "main"}
    graph = {m: set() for m in modules}
    for path in sources(src):
        me = top_module(src, path)
        if me in ("lib", "main"):
            continue
        text = strip_comments(production_text(path))
        for used in re.findall(r"\bcrate::(\w+)", text):
            if used != me and used in modules:
                graph[me].add(used)
    return graph


def file_graphs(src: Path) -> dict:
    """Per module directory: file -> files of the same directory it uses."""
    graphs = {}
    for directory in sorted(p for p in src.rglob("*") if p.is_dir()):
        files = {p.stem for p in directory.glob("*.rs") if p.name not in TEST_FILES}
        files |= {p.name for p in directory.iterdir() if (p / "mod.rs").exists()}
        files.discard("mod")
        rel = directory.relative_to(src)
        crate_path = "crate::" + "::".join(rel.parts)
        graph = {f: set() for f in files}
        for name in files:
            path = directory / f"{name}.rs"
            if not path.exists():
                path = directory / name / "mod.rs"
            text = strip_comments(production_text(path))
            prefixes = [re.escape(crate_path) + "::"]
            if path.name == "mod.rs" and path.parent != directory:
                prefixes.append(r"super::super::")
            else:
                prefixes.append(r"super::")
            for prefix in prefixes:
                for used in re.findall(prefix + r"(\w+)", text):
                    if used != name and used in files:
                        graph[name].add(used)
        graphs[str(rel)] = graph
    return graphs


def long_functions(src: Path, limit: int):
    for path in sources(src):
        lines = production_text(path).splitlines()
        i = 0
        while i < len(lines):
            m = re.match(r"\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)", lines[i])
            if not m:
                i += 1
                continue
            # Find the body's opening brace, then its match.
            depth, start, j, opened = 0, i, i, False
            while j < len(lines):
                code = lines[j].split("//", 1)[0]
                code = re.sub(r"'(\\.|[^'\\])'", "''", code)
                code = re.sub(r'"(\\.|[^"\\])*"', '""', code)
                for ch in code:
                    if ch == "{":
                        depth += 1
                        opened = True
                    elif ch == "}":
                        depth -= 1
                if opened and depth <= 0:
                    break
                if not opened and code.rstrip().endswith(";"):
                    break  # a declaration without a body
                j += 1
            length = j - start + 1
            if opened and length > limit:
                yield path.relative_to(src.parent.parent), start + 1, m.group(6), length
            i = j + 1 if opened else i + 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", nargs="?", default=str(Path(__file__).resolve().parent.parent / "core" / "src"))
    ap.add_argument("--list", action="store_true", help="print the modules in dependency order")
    ap.add_argument("--max-lines", type=int, default=120)
    args = ap.parse_args()
    src = Path(args.src)
    failed = False

    graph = module_graph(src)
    cycle = find_cycle(graph)
    if cycle:
        print("import cycle between modules: " + " -> ".join(cycle))
        failed = True
    elif args.list:
        for module in layers(graph):
            uses = ", ".join(sorted(graph[module])) or "-"
            print(f"{module:10} uses {uses}")

    for directory, files in file_graphs(src).items():
        cycle = find_cycle(files)
        if cycle:
            print(f"import cycle between the files of {directory}/: " + " -> ".join(cycle))
            failed = True

    for path, line, name, length in long_functions(src, args.max_lines):
        print(f"{path}:{line}: fn {name} is {length} lines (limit {args.max_lines})")
        failed = True

    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
