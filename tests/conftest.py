"""Shared fixtures: paths to the repository, the shipped sample, and the optional real MNRE data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
SHARED_MNRE = REPO.parent / "shared" / "data" / "mnre"

needs_shared = pytest.mark.skipif(not SHARED_MNRE.exists(), reason="../shared/data/mnre not present")


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture
def shared_mnre() -> Path:
    if not SHARED_MNRE.exists():
        pytest.skip("../shared/data/mnre not present")
    return SHARED_MNRE
