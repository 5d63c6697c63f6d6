"""The import contracts of pyproject.toml (docs/architecture.md) hold: no stage imports another
stage, only the CLI imports the stages, each layer imports only those below it, and there is no
import cycle in ``mmre_cli`` or ``stages``; the contracts name every package, and the picture in
docs/architecture.md is the one ``tools/import_graph.py`` draws from the code now."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return {c["id"]: c for c in config["tool"]["importlinter"]["contracts"]}


def _children(package: str) -> set[str]:
    """The modules and subpackages directly inside ``package`` (from the files, not the imports)."""
    folder = REPO / package
    names = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    names |= {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
    return {f"{package}.{n}" for n in names}


def _run(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter that imports this checkout's packages (not an installed copy)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_are_kept():
    done = _run(
        "from importlinter.cli import lint_imports\n"
        "raise SystemExit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_the_library_contract_covers_every_package_but_the_cli():
    """A new module of mmre_cli is checked for stage imports without anyone remembering to list it."""
    listed = set(_contracts()["library-without-stages"]["source_modules"])
    assert listed == _children("mmre_cli") - {"mmre_cli.cli", "mmre_cli.__main__"}


def test_every_package_sits_in_a_layer():
    layers = _contracts()["layers"]["layers"]
    placed = {m.strip() for layer in layers for m in re.split(r"[|:]", layer)}
    assert placed == (_children("mmre_cli") - {"mmre_cli.__main__"}) | {"stages"}


def test_no_module_is_part_of_an_import_cycle():
    """Module level (the acyclic_siblings contract sees packages): strongly connected components
    of the import graph of both packages, imports inside functions included (those under
    ``if TYPE_CHECKING:`` never run and are left out, as the contracts leave them out)."""
    done = _run("""
import grimp
graph = grimp.build_graph("mmre_cli", "stages", cache_dir=None, exclude_type_checking_imports=True)
index, low, stack, on, cycles = {}, {}, [], set(), []
def visit(v):  # Tarjan, iterative over the successors of each node
    index[v] = low[v] = len(index); stack.append(v); on.add(v)
    for w in sorted(graph.find_modules_directly_imported_by(v)):
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        part = []
        while True:
            w = stack.pop(); on.discard(w); part.append(w)
            if w == v:
                break
        if len(part) > 1:
            cycles.append(sorted(part))
import sys
sys.setrecursionlimit(10000)
for m in sorted(graph.modules):
    if m not in index:
        visit(m)
print(cycles)
""")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"modules importing each other: {done.stdout}"


def test_the_architecture_picture_is_current():
    done = _run(
        "import runpy, sys; sys.argv = ['import_graph']; runpy.run_path('tools/import_graph.py', run_name='__main__')"
    )
    assert done.returncode == 0, done.stderr
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert done.stdout.strip() in doc, "docs/architecture.md is stale: run python tools/import_graph.py --write"
