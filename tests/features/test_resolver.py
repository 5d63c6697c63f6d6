"""resolve_weights: explicit -> env var -> cache -> fallbacks -> download (None) / offline error."""

from __future__ import annotations

import pytest

from mmre_cli.errors import MmreError
from mmre_cli.features.resolver import cache_dir, is_offline, resolve_weights

KW = dict(env_var="MMRE_TEST_WEIGHTS", cache_names=["model.bin", "model.safetensors"])


@pytest.fixture
def env(clean_env, monkeypatch):
    monkeypatch.delenv("MMRE_TEST_WEIGHTS", raising=False)
    return clean_env


def test_explicit_path_wins_over_env_and_cache(env, tmp_path, monkeypatch):
    explicit = tmp_path / "mine.bin"
    explicit.write_bytes(b"x")
    other = tmp_path / "other.bin"
    other.write_bytes(b"y")
    monkeypatch.setenv("MMRE_TEST_WEIGHTS", str(other))
    (env / "model.bin").write_bytes(b"z")
    assert resolve_weights("Test", explicit, **KW) == explicit.resolve()
    assert resolve_weights("Test", str(explicit), **KW) == explicit.resolve()


def test_explicit_missing_is_an_error_naming_it(env, tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(MmreError, match="nope.safetensors"):
        resolve_weights("Test", missing, **KW)


def test_env_var_then_cache(env, tmp_path, monkeypatch):
    other = tmp_path / "other.bin"
    other.write_bytes(b"y")
    (env / "model.bin").write_bytes(b"z")
    monkeypatch.setenv("MMRE_TEST_WEIGHTS", str(other))
    assert resolve_weights("Test", None, **KW) == other.resolve()
    monkeypatch.delenv("MMRE_TEST_WEIGHTS")
    assert resolve_weights("Test", None, **KW) == (env / "model.bin").resolve()


def test_env_var_pointing_nowhere_names_the_variable(env, tmp_path, monkeypatch):
    monkeypatch.setenv("MMRE_TEST_WEIGHTS", str(tmp_path / "gone.bin"))
    with pytest.raises(MmreError, match="MMRE_TEST_WEIGHTS"):
        resolve_weights("Test", None, **KW)


def test_cache_kind_subdirectory_and_name_order(env):
    (env / "test").mkdir()
    (env / "test" / "model.safetensors").write_bytes(b"a")
    assert resolve_weights("Test", None, **KW) == (env / "test" / "model.safetensors").resolve()
    (env / "model.bin").write_bytes(b"b")  # first cache name wins
    assert resolve_weights("Test", None, **KW) == (env / "model.bin").resolve()


def test_fallbacks_after_cache(env, tmp_path):
    fb = tmp_path / "pkgdir"
    fb.mkdir()
    assert resolve_weights("Test", None, fallbacks=[tmp_path / "missing", fb], **KW) == fb.resolve()


def test_none_means_download_only_when_allowed(env, monkeypatch):
    for var in ("MMRE_ALLOW_DOWNLOAD", "MMRE_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    assert is_offline()  # the default: nothing is downloaded
    with pytest.raises(MmreError, match="MMRE_ALLOW_DOWNLOAD=1"):
        resolve_weights("Test", None, **KW)
    monkeypatch.setenv("MMRE_ALLOW_DOWNLOAD", "1")
    assert not is_offline()
    assert resolve_weights("Test", None, **KW) is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a forced offline wins
    assert is_offline()


def test_forbid_downloads_sets_the_library_switches_it_may(monkeypatch):
    from mmre_cli.features.resolver import LIBRARY_OFFLINE_VARS, forbid_downloads

    for var in ("MMRE_ALLOW_DOWNLOAD", "MMRE_OFFLINE", *LIBRARY_OFFLINE_VARS):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("YOLO_OFFLINE", "0")  # the user's own setting is kept
    forbid_downloads()
    import os

    assert [os.environ[v] for v in LIBRARY_OFFLINE_VARS] == ["1", "1", "1", "0"]
    for var in LIBRARY_OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MMRE_ALLOW_DOWNLOAD", "1")
    forbid_downloads()
    assert not any(v in os.environ for v in LIBRARY_OFFLINE_VARS)


@pytest.mark.parametrize("var", ["MMRE_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_error_explains_every_way_to_supply_weights(env, monkeypatch, var):
    monkeypatch.setenv(var, "1")
    assert is_offline()
    with pytest.raises(MmreError) as exc:
        resolve_weights("Test", None, option_hint="--weights PATH", **KW)
    msg = str(exc.value)
    assert "--weights PATH" in msg and "MMRE_TEST_WEIGHTS" in msg and str(env) in msg
    assert "model.bin" in msg and "MMRE_CACHE" in msg
    assert "\n" not in msg
    # explicit online override
    assert resolve_weights("Test", None, offline=False, **KW) is None


def test_cache_dir_default(monkeypatch):
    monkeypatch.delenv("MMRE_CACHE", raising=False)
    assert cache_dir().parts[-2:] == (".cache", "mmre")
