"""ClipEncoder: a tiny random-initialised open_clip model, saved and loaded through the real path."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from mmre_cli.errors import MmreError
from mmre_cli.features.clip import ClipEncoder
from mmre_cli.features.encoders import build_encoder
from tests.features.conftest import assert_unit_rows

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """(model name registered with open_clip, saved state_dict, .safetensors path, .bin path)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("tiny_clip")
    name = f"mmre-tiny-clip-{uuid.uuid4().hex[:8]}"
    (d / f"{name}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(d)
    assert name in open_clip.list_models()
    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CFG)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    st_path, bin_path = d / "tiny.safetensors", d / "tiny.bin"
    save_file(sd, str(st_path))
    torch.save(sd, bin_path)
    return name, sd, st_path, bin_path, model


def _check_clip(enc: ClipEncoder) -> None:
    from PIL import Image

    assert enc.dim == 32 and enc.supports_images
    assert_unit_rows(enc.encode_texts(["a photo of a dog", "two men"]), 32)
    imgs = [Image.new("RGB", (50, 40), (255, 0, 0)), Image.new("L", (20, 90), 7), Image.new("RGBA", (33, 33))]
    assert_unit_rows(enc.encode_images(imgs), 32)
    assert enc.encode_images([]).shape == (0, 32)
    words = enc.encode_words([["a", "dog", "", "a"], []])
    assert words[0].shape == (4, 32) and words[1].shape == (0, 32)
    np.testing.assert_array_equal(words[0][0], words[0][3])  # per-word, cached
    np.testing.assert_allclose(words[0][1], enc.encode_texts(["dog"])[0], atol=1e-6)


def test_clip_loads_safetensors_through_open_clip(tiny_clip, clean_env, monkeypatch):
    import torch

    name, sd, st_path, bin_path, _ = tiny_clip
    monkeypatch.setenv("MMRE_OFFLINE", "1")
    enc = ClipEncoder(model_name=name, pretrained=st_path, batch_size=2)
    loaded = enc._model.state_dict()
    assert set(loaded) == set(sd) and all(torch.equal(loaded[k], sd[k]) for k in sd)
    _check_clip(enc)
    assert enc.name == f"clip:{name}"
    fp = enc.fingerprint()
    assert fp.startswith(f"clip:{name}:sha256=") and f"size={st_path.stat().st_size}" in fp
    x = enc.encode_texts(["same", "same"])
    assert np.array_equal(x[0], x[1])


def test_clip_loads_bin_via_factory_env_and_cache(tiny_clip, clean_env, monkeypatch):
    import torch

    name, sd, st_path, bin_path, _ = tiny_clip
    monkeypatch.setenv("MMRE_OFFLINE", "1")
    enc = build_encoder(f"clip:{name}", weights=str(bin_path))
    assert all(torch.equal(enc._model.state_dict()[k], sd[k]) for k in sd)
    monkeypatch.setenv("MMRE_CLIP_WEIGHTS", str(st_path))
    assert ClipEncoder(name).weights_path == st_path.resolve()
    monkeypatch.delenv("MMRE_CLIP_WEIGHTS")
    cached = clean_env / f"{name}.safetensors"
    cached.write_bytes(st_path.read_bytes())
    enc = ClipEncoder(name)
    assert enc.weights_path == cached.resolve()
    assert all(torch.equal(enc._model.state_dict()[k], sd[k]) for k in sd)


def test_clip_missing_weights_offline_is_helpful(tiny_clip, clean_env, monkeypatch, tmp_path):
    name = tiny_clip[0]
    monkeypatch.setenv("MMRE_OFFLINE", "1")
    with pytest.raises(MmreError) as exc:
        ClipEncoder(name)
    msg = str(exc.value)
    assert "MMRE_CLIP_WEIGHTS" in msg and str(clean_env) in msg and f"{name}.safetensors" in msg
    with pytest.raises(MmreError, match="missing.safetensors"):
        build_encoder("clip", weights=str(tmp_path / "missing.safetensors"))
    with pytest.raises(MmreError, match="needs a download"):
        ClipEncoder("ViT-B-32", pretrained="openai")


def test_clip_wrong_weights_is_an_mmre_error(tiny_clip, clean_env, tmp_path):
    import open_clip
    from safetensors.torch import save_file

    name = tiny_clip[0]
    other = dict(TINY_CFG, embed_dim=16)
    bad = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in open_clip.CLIP(**other).state_dict().items()}, str(bad))
    with pytest.raises(MmreError, match="cannot load CLIP model"):
        ClipEncoder(name, pretrained=bad)
    with pytest.raises(MmreError, match="unknown open_clip model"):
        ClipEncoder("No-Such-Model", pretrained=bad)


def test_clip_accepts_a_built_model(tiny_clip):
    name, _, _, _, model = tiny_clip
    enc = ClipEncoder(name, model=model)
    _check_clip(enc)
    assert "in-memory:sha256=" in enc.fingerprint()
