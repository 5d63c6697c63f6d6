"""Any Hugging Face encoder network (mmre_cli.features.hf): the split network and caption pairs.

Every model here is a tiny random-initialised BERT or MPNet built in the test (tests/conftest.py
``make_tiny_hf``): no download, and the real all-mpnet-base-v2 is not needed.
"""

from __future__ import annotations

import torch
import transformers  # noqa: F401 - a hard dependency: a broken install fails, never skips

from mmre_cli.features.hf import load_hf  # noqa: E402


def test_lower_then_upper_is_the_whole_model(tiny_hf):
    tok, net = load_hf(tiny_hf, 64)
    enc = tok.pairs([["Alice", "met", "Bob", "in", "Paris"], ["news"]], ["a man holds a trophy on a stage", None], 4)
    with torch.no_grad():
        own = net.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
        whole = net(enc.input_ids, enc.attention_mask, enc.token_type_ids)
        for m in range(net.num_layers + 1):
            split = net.upper(
                net.lower(enc.input_ids, enc.attention_mask, enc.token_type_ids, stop=m), enc.attention_mask, start=m
            )
            assert torch.allclose(split, whole, atol=1e-6), m
    keep = enc.attention_mask.bool()
    if net._uses_types:  # BERT: the second segment has token type 1, which the plain call above did not pass
        own = net.model(
            input_ids=enc.input_ids, attention_mask=enc.attention_mask, token_type_ids=enc.token_type_ids
        ).last_hidden_state.detach()
    assert torch.allclose(whole[keep], own[keep], atol=1e-6)
    assert not whole[~keep].any()  # padded rows are zero, as BertModel's
    assert net._blocks is net.model.encoder.layer  # the split restored the model


def test_pairs_cut_the_caption_to_caption_tokens(tiny_hf):
    tok, _ = load_hf(tiny_hf, 64)
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
