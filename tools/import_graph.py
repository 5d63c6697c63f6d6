"""The import structure of ``mmre_cli`` and ``stages`` as a Mermaid ``graph TD`` (docs/architecture.md).

Modules are grouped by package (``mmre_cli.pipeline.features`` -> ``mmre_cli.pipeline``; every
stage -> ``stages``; ``mmre_cli.__main__`` -> ``mmre_cli.cli``); an arrow ``A --> B`` means some
module of A imports one of B (imports inside functions count, as :mod:`grimp` reads them; those
under ``if TYPE_CHECKING:`` do not). Arrows
implied by a longer path are left out (a transitive reduction), so the picture shows the layers
rather than every shortcut. The groups sit in the layers of pyproject.toml's ``layers`` contract.

    python tools/import_graph.py            # print the Mermaid block
    python tools/import_graph.py --write    # replace the block in docs/architecture.md

``tests/test_import_layers.py`` checks that docs/architecture.md holds what this prints.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
START, END = "<!-- import-graph:start -->", "<!-- import-graph:end -->"
#: the package whose modules stand for themselves (their own root module is left out: versions only)
ROOT = "mmre_cli"


def group(module: str) -> str | None:
    """The node a module is drawn in (``None``: the root package's ``__init__``, left out)."""
    parts = module.split(".")
    if parts[0] == "stages":
        return "stages"
    if module == ROOT:
        return None
    if parts[1] == "__main__":
        return f"{ROOT}.cli"
    return ".".join(parts[:2])


def group_edges() -> set[tuple[str, str]]:
    """``(importer, imported)`` between groups, from the import graph of the two packages."""
    import grimp

    sys.path.insert(0, str(REPO))
    graph = grimp.build_graph(ROOT, "stages", cache_dir=None, exclude_type_checking_imports=True)
    edges = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = group(module), group(imported)
            if a and b and a != b:
                edges.add((a, b))
    return edges


def reduce(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The transitive reduction of an acyclic edge set: drop ``a -> b`` when a longer path exists."""
    succ: dict[str, set[str]] = {}
    for a, b in edges:
        succ.setdefault(a, set()).add(b)

    def reachable(start: str, skip: tuple[str, str]) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            for nxt in succ.get(node, ()):
                if (node, nxt) != skip and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    return {(a, b) for a, b in edges if b not in reachable(a, (a, b))}


def layers() -> list[list[str]]:
    """The groups of each layer of pyproject.toml's ``layers`` contract, top first."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    return [[m.strip() for m in re.split(r"[|:]", layer)] for layer in contract["layers"]]


def node_id(name: str) -> str:
    return name.replace(".", "_")


def mermaid() -> str:
    """The ``graph TD`` block: one subgraph per layer, the reduced arrows between groups."""
    edges = reduce(group_edges())
    lines = ["```mermaid", "graph TD"]
    for k, members in enumerate(layers(), 1):
        lines.append(f'    subgraph L{k}["layer {k}"]')
        lines += [f'        {node_id(m)}["{m}"]' for m in members]
        lines.append("    end")
    lines += [f"    {node_id(a)} --> {node_id(b)}" for a, b in sorted(edges)]
    lines.append("```")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"replace the block in {DOC.relative_to(REPO)}")
    args = parser.parse_args()
    block = mermaid()
    if not args.write:
        print(block)
        return
    text = DOC.read_text(encoding="utf-8")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    DOC.write_text(f"{before}{START}\n{block}\n{END}{after}", encoding="utf-8")


if __name__ == "__main__":
    main()
