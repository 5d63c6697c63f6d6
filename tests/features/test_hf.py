"""Any Hugging Face encoder (mmre_cli.features.hf): the split network, pairs, frozen features, fine-tuning.

Every model here is a tiny random-initialised BERT or MPNet built in the test (tests/conftest.py
``make_tiny_hf``): no download, and the real all-mpnet-base-v2 is not needed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import transformers  # noqa: F401 - a hard dependency: a broken install fails, never skips

from mmre_cli.errors import MmreError  # noqa: E402
from mmre_cli.features.encoders import build_encoder, hf_folder, load_text_network  # noqa: E402
from mmre_cli.features.hf import load_hf  # noqa: E402


@pytest.fixture(params=["bert", "mpnet"])
def tiny(request, tiny_bert, tiny_mpnet):
    return {"bert": tiny_bert, "mpnet": tiny_mpnet}[request.param]


def test_lower_then_upper_is_the_whole_model(tiny):
    tok, net = load_hf(tiny, 64)
    enc = tok.pairs([["Alice", "met", "Bob", "in", "Paris"], ["news"]], ["a man holds a trophy on a stage", None], 4)
    with torch.no_grad():
        own = net.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
        whole = net(enc.input_ids, enc.attention_mask, enc.token_type_ids)
        for m in range(net.num_layers + 1):
            split = net.upper(net.lower(enc.input_ids, enc.attention_mask, enc.token_type_ids, stop=m),
                              enc.attention_mask, start=m)
            assert torch.allclose(split, whole, atol=1e-6), m
    keep = enc.attention_mask.bool()
    if net._uses_types:  # BERT: the second segment has token type 1, which the plain call above did not pass
        own = net.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                        token_type_ids=enc.token_type_ids).last_hidden_state.detach()
    assert torch.allclose(whole[keep], own[keep], atol=1e-6)
    assert not whole[~keep].any()  # padded rows are zero, as BertModel's
    assert net._blocks is net.model.encoder.layer  # the split restored the model


def test_pairs_cut_the_caption_to_caption_tokens(tiny):
    tok, _ = load_hf(tiny, 64)
    caption = "a man holds a trophy on a stage " * 4
    alone = tok.pairs([["x"]], [caption], 1000)
    assert alone.token_type_ids is not None
    for k in (1, 3, 7):
        enc = tok.pairs([["Alice", "met", "Bob"]], [caption], k)
        first = [w for w in enc.word_ids[0] if w is not None]
        assert first == [0, 1, 2]  # word ids index the sentence only
        n_special = tok._tok.num_special_tokens_to_add(True)
        assert int(enc.attention_mask.sum()) == 3 + k + n_special
    none = tok.pairs([["Alice", "met", "Bob"]], [caption], 0)
    assert int(none.attention_mask.sum()) == 3 + tok._tok.num_special_tokens_to_add(False)
    # the sentence gives way to the caption's pieces only up to max_length
    tok.max_length = 8
    long = tok.pairs([["Alice", "met", "Bob", "in", "Paris", "."] * 3], [caption], 3)
    assert long.input_ids.shape[1] == 8


def test_frozen_features_through_build_encoder(tiny):
    enc = build_encoder("hf", weights=str(tiny), batch_size=2)
    assert enc.name == "hf" and enc.dim == 32 and enc.fingerprint().startswith("hf:model:")
    words = enc.encode_words([["Alice", "met", "Bob"], ["news", "today"], []])
    assert [w.shape for w in words] == [(3, 32), (2, 32), (0, 32)]
    assert np.allclose(np.linalg.norm(words[0], axis=1), 1.0, atol=1e-5)
    texts = enc.encode_texts(["a man holds a trophy", "news"])
    assert texts.shape == (2, 32) and np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)


def test_hf_needs_a_folder(tmp_path):
    with pytest.raises(MmreError, match="needs weights"):
        hf_folder(None)
    with pytest.raises(MmreError, match="model folder"):
        hf_folder(tmp_path / "missing")


def test_load_text_network_gives_one_interface(tiny_bert):
    from mmre_cli.features.encoders import resolve_minilm_dir

    nets = [load_text_network("hf", tiny_bert, 32)[1]]
    if resolve_minilm_dir() is not None:
        nets.append(load_text_network("minilm", None, 32)[1])
    for net in nets:
        ids = torch.tensor([[2, 10, 11, 3]])
        mask = torch.ones_like(ids)
        with torch.no_grad():
            top = net.upper(net.lower(ids, mask, None, stop=1), mask, start=1)
            assert torch.allclose(top, net(ids, mask), atol=1e-5)
        assert net.num_layers == len(net.layers) and net.embedding_modules()


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
