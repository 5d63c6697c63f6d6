"""dvc.yaml declares, for every stage, each repository file its stage module can import — no more
than the folders and modules it touches (a change elsewhere reruns nothing), no less (a change in
code a stage runs always reruns it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mmre_cli", "stages")


def _module_file(name: str) -> Path | None:
    p = REPO.joinpath(*name.split("."))
    if (p / "__init__.py").is_file():
        return p / "__init__.py"
    return p.with_suffix(".py") if p.with_suffix(".py").is_file() else None


def _imports(path: Path, name: str) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):  # lazy imports inside functions count
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def import_closure(module: str) -> set[Path]:
    """Every repository file importing ``module`` can load (package ``__init__`` files included)."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None or name in seen:
            continue
        seen[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(_imports(path, name))
    return {p.relative_to(REPO) for p in seen.values()}


def _stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_every_file_a_stage_can_import_is_a_declared_dependency(stage):
    deps = [Path(d) for d in _stages()[stage]["deps"] if not str(d).startswith(("${", "out/"))]
    missing = sorted(
        str(f) for f in import_closure(f"stages.{stage}") if not any(f == d or d in f.parents for d in deps)
    )
    assert not missing, f"{stage}: add to its deps in dvc.yaml: {missing}"


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_no_stage_depends_on_code_it_cannot_import(stage):
    closure = import_closure(f"stages.{stage}")
    code = [Path(d) for d in _stages()[stage]["deps"] if str(d).startswith(PACKAGES)]
    unused = [str(d) for d in code if not any(f == d or d in f.parents for f in closure)]
    assert not unused, f"{stage}: not imported, drop from its deps: {unused}"
    assert Path("mmre_cli") not in code and Path("stages") not in code  # never the whole package


def declared_code(stage: str) -> list[str]:
    """The code deps ``stage`` should declare: its import closure, a folder where every one of its
    ``.py`` files is in the closure, else each file (``python tests/test_dvc_deps.py`` prints them)."""
    closure = import_closure(f"stages.{stage}")
    out: list[str] = []
    for top in PACKAGES:
        for folder in sorted({f.parent for f in closure if f.parts[0] == top}, key=lambda p: (len(p.parts), p)):
            if any(str(folder).startswith(o + "/") or str(folder) == o for o in out):
                continue
            files = {p.relative_to(REPO) for p in (REPO / folder).rglob("*.py")}
            if folder != Path(top) and files <= closure:
                out.append(str(folder))
        out += sorted(str(f) for f in closure if f.parts[0] == top and not any(str(f).startswith(o + "/") for o in out))
    return out


if __name__ == "__main__":
    for name in _stages():
        print(f"{name}:")
        for dep in declared_code(name):
            print(f"    - {dep}")
