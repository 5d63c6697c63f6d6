"""Shared fixtures for the dataset-reader tests (fixtures are made-up sentences, not MNRE lines).

Helpers are handed out as fixtures (not imported) so this conftest never clashes with another.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def _make_image(path: Path, fmt: str = "JPEG") -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 3), (200, 30, 30)).save(path, fmt)
    return path


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(Path(root).rglob("*")) if p.is_file()}


@pytest.fixture
def make_image():
    """Write a tiny real image (made at test time, so no binary files live in the repo)."""
    return _make_image


@pytest.fixture
def snapshot():
    """Bytes and mtime of every file under a folder (to prove reading changes nothing)."""
    return _snapshot


@pytest.fixture
def fixture_copy(tmp_path):
    """Copy a fixture dataset folder into tmp_path and return the copy."""

    def copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(FIXTURES / name, dst)
        return dst

    return copy
