"""HFEncoder: frozen features from a tiny random BERT / MPNet, through build_encoder and the extract_features stage.

Every model here is built in the test (tests/conftest.py ``make_tiny_hf``): no download.
"""

from __future__ import annotations

import numpy as np
import transformers  # noqa: F401 - a hard dependency: a broken install fails, never skips

from mmre_cli.features.encoders import build_encoder  # noqa: E402


def test_frozen_features_through_build_encoder(tiny_hf):
    enc = build_encoder("hf", weights=str(tiny_hf), batch_size=2)
    assert enc.name == "hf" and enc.dim == 32 and enc.fingerprint().startswith("hf:model:")
    words = enc.encode_words([["Alice", "met", "Bob"], ["news", "today"], []])
    assert [w.shape for w in words] == [(3, 32), (2, 32), (0, 32)]
    assert np.allclose(np.linalg.norm(words[0], axis=1), 1.0, atol=1e-5)
    texts = enc.encode_texts(["a man holds a trophy", "news"])
    assert texts.shape == (2, 32) and np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)


def test_extract_features_stage_with_an_hf_encoder(tiny_bert, tmp_path):
    """extract_features.encoder: hf with weights: DIR writes a features artifact of the model's width."""
    import copy
    from pathlib import Path

    from mmre_cli.params import DEFAULTS
    from mmre_cli.store.manifest import read_manifest
    from stages import extract_features

    sample = Path(__file__).resolve().parents[2] / "data" / "sample"
    params = copy.deepcopy(DEFAULTS)
    params["data"].update(root=str(sample), captions=str(sample / "captions_{split}.txt"))
    params["extract_features"].update(encoder="hf", weights=str(tiny_bert), workers=0)
    stats = extract_features.run(out=tmp_path / "features", params=params)
    man = read_manifest(tmp_path / "features")
    assert man["dim"] == 32 and man["encoder"].startswith("hf:model:") and stats["encoder"] == "hf"
