"""all-mpnet-base-v2 assembly from split parts: joined in order, hash-checked, refused when corrupted."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from mmre_cli.errors import MmreError
from mmre_cli.features.mpnet import MPNET_SAFETENSORS_SHA256, assemble_parts, installed_parts, mpnet_folder


def _split_zip(tmp_path: Path, payload: bytes, n: int = 5) -> list[Path]:
    """A zip of ``all-mpnet-base-v2/{model.safetensors, config.json}`` cut into ``n`` parts."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("all-mpnet-base-v2/model.safetensors", payload)
        zf.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
    data = buf.getvalue()
    size = -(-len(data) // n)
    parts = []
    for i in range(n):
        p = tmp_path / f"all-mpnet-base-v2.zip.00{i + 1}"
        p.write_bytes(data[i * size : (i + 1) * size])
        parts.append(p)
    return parts


def test_assembles_and_checks_the_hash(tmp_path):
    payload = bytes(range(256)) * 400
    parts = _split_zip(tmp_path, payload)
    dest = assemble_parts(parts, tmp_path / "cache" / "all-mpnet-base-v2", hashlib.sha256(payload).hexdigest())
    assert (dest / "model.safetensors").read_bytes() == payload
    assert (dest / "config.json").is_file()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["all-mpnet-base-v2"]  # no temp folder left


def test_refuses_a_corrupted_part(tmp_path):
    payload = bytes(range(256)) * 400
    parts = _split_zip(tmp_path, payload)
    raw = bytearray(parts[2].read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte inside the stored model.safetensors
    parts[2].write_bytes(bytes(raw))
    dest = tmp_path / "cache" / "all-mpnet-base-v2"
    with pytest.raises(MmreError, match="corrupt"):
        assemble_parts(parts, dest, hashlib.sha256(payload).hexdigest())
    assert not dest.exists() and list((tmp_path / "cache").iterdir()) == []


def test_refuses_a_wrong_hash_and_a_missing_part(tmp_path):
    parts = _split_zip(tmp_path, b"not the real weights" * 50)
    with pytest.raises(MmreError, match="sha256"):
        assemble_parts(parts, tmp_path / "c1" / "m")  # the real hash cannot match
    with pytest.raises(MmreError, match="missing"):
        assemble_parts(parts[:4] + [tmp_path / "nope.005"], tmp_path / "c2" / "m")
    with pytest.raises(MmreError, match="zip"):
        assemble_parts(parts[1:], tmp_path / "c3" / "m", "0" * 64)


def test_explicit_folder_and_env(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    assert mpnet_folder(folder) == folder.resolve()
    monkeypatch.setenv("MMRE_MPNET", str(tmp_path / "absent"))
    with pytest.raises(MmreError, match="MMRE_MPNET"):
        mpnet_folder()


@pytest.mark.skipif(
    installed_parts() is None, reason="the all-mpnet-base-v2 part packages are not installed (.[mpnet])"
)
def test_the_installed_parts_give_the_published_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("MMRE_CACHE", str(tmp_path))
    monkeypatch.delenv("MMRE_MPNET", raising=False)
    folder = mpnet_folder()
    assert folder == tmp_path / "all-mpnet-base-v2"
    from mmre_cli.hashing import sha256_file

    assert sha256_file(folder / "model.safetensors") == MPNET_SAFETENSORS_SHA256
    assert mpnet_folder() == folder  # the second call finds the cache
