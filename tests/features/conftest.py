"""Shared fixtures for the features tests: isolated env/cache, a network guard, loaded models; vector checks."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

_ENV_VARS = (
    "MMRE_CACHE",
    "MMRE_OFFLINE",
    "MMRE_ALLOW_DOWNLOAD",
    "HF_HUB_OFFLINE",
    "MMRE_CLIP_WEIGHTS",
    "MMRE_YOLO_WEIGHTS",
    "MMRE_MINILM",
)

#: 12 real MNRE photos, next to the repository (``../shared``); tests using them skip if absent.
REAL_IMAGES_DIR = Path(__file__).resolve().parents[3] / "shared/data/mnre/real_image_sample/data/RE_data/img_org"


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No weight env vars set, offline flags off, MMRE_CACHE an empty temp dir (returned)."""
    for var in _ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    cache = tmp_path / "mmre-cache"
    cache.mkdir()
    monkeypatch.setenv("MMRE_CACHE", str(cache))
    return cache


class NetworkGuard:
    def __init__(self) -> None:
        self.attempts: list[tuple] = []


def block_network(monkeypatch: pytest.MonkeyPatch) -> NetworkGuard:
    """Make any socket connect or DNS lookup fail, recording it on the returned guard."""
    guard = NetworkGuard()

    def connect(self, address, *a, **k):  # noqa: ANN001
        guard.attempts.append(("connect", address))
        raise OSError(f"network disabled in tests (connect to {address!r})")

    def getaddrinfo(host, *a, **k):  # noqa: ANN001
        guard.attempts.append(("dns", host))
        raise socket.gaierror(f"network disabled in tests (lookup {host!r})")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: connect(None, address))
    return guard


@pytest.fixture
def no_network(monkeypatch):
    """Fail (and record) any socket connect or DNS lookup made during the test."""
    return block_network(monkeypatch)


@pytest.fixture(scope="session")
def network_blocker():
    """``block_network`` for module/session-scoped fixtures (they cannot use ``no_network``)."""
    return block_network


@pytest.fixture(scope="session")
def real_images() -> list[Path]:
    """The 12 real MNRE sample photos (skips the test when the shared data is absent)."""
    paths = sorted(REAL_IMAGES_DIR.glob("*/*.jpg"))
    if not paths:
        pytest.skip(f"real MNRE sample images absent ({REAL_IMAGES_DIR})")
    return paths


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def assert_unit_rows(x: np.ndarray, dim: int) -> None:
    assert x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == dim
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
