"""mmre_cli.features.bert: BERT on torch's encoder layers == transformers' BertModel, same tokens."""

from __future__ import annotations

import pytest
import torch

from mmre_cli.features.minilm import resolve_minilm_dir

MINILM = resolve_minilm_dir()
pytestmark = pytest.mark.skipif(MINILM is None, reason="all-MiniLM-L6-v2 weights not installed")

SENTENCES = [
    ["RT", "@user", ":", "Obama", "met", "Putin", "in", "#Paris", "today", "."],
    ["solo"],
    ["Ünïcödé", "😀", "", "\u200b", "naïve", "café"],
    ("antidisestablishmentarianism " * 40).split(),  # cut at max_length
]


@pytest.fixture(scope="module")
def ours():
    from mmre_cli.features.bert import WordPieces, load_bert

    return WordPieces(MINILM, max_length=64), load_bert(MINILM)


def test_same_word_pieces_and_hidden_states_as_transformers(ours):
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(MINILM))
    ref = transformers.AutoModel.from_pretrained(str(MINILM)).eval()
    wp, bert = ours
    enc = tok(SENTENCES, is_split_into_words=True, truncation=True, max_length=64, padding=True, return_tensors="pt")
    got = wp(SENTENCES, pretokenized=True)
    assert torch.equal(enc["input_ids"], got.input_ids) and torch.equal(enc["attention_mask"], got.attention_mask)
    assert [enc.word_ids(i) for i in range(len(SENTENCES))] == got.word_ids
    with torch.no_grad():
        want = ref(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        have = bert(got.input_ids, got.attention_mask)
    keep = got.attention_mask.bool()
    assert torch.allclose(have[keep], want[keep], atol=2e-5)
    assert (have[~keep] == 0).all()  # padding rows zeroed
    texts = ["A man holding a dog in a park.", "sunset"]
    assert torch.equal(tok(texts, padding=True, return_tensors="pt")["input_ids"], wp(texts).input_ids)


def test_train_mode_matches_eval_without_dropout(ours):
    """The fast (eval, no grad) and the autograd paths of nn.TransformerEncoderLayer agree."""
    from mmre_cli.features.bert import load_bert

    wp, bert = ours
    enc = wp(SENTENCES[:3], pretokenized=True)
    with torch.no_grad():
        fast = bert(enc.input_ids, enc.attention_mask)
    slow_model = load_bert(MINILM)
    slow_model.train()
    for m in slow_model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    for layer in slow_model.layers:
        layer.dropout.p = layer.dropout1.p = layer.dropout2.p = 0.0
        layer.self_attn.dropout = 0.0
    slow = slow_model(enc.input_ids, enc.attention_mask)
    keep = enc.attention_mask.bool()
    assert slow.requires_grad and torch.allclose(slow[keep], fast[keep], atol=2e-5)


def test_added_special_tokens_and_resize(ours):
    from mmre_cli.features.bert import WordPieces, load_bert

    wp = WordPieces(MINILM, max_length=32)
    n = len(wp)
    wp.add_special_tokens(["<h>", "</h>"])
    assert len(wp) == n + 2 and wp.token_to_id("<h>") == n
    enc = wp([["<h>", "Obama", "</h>", "spoke"]], pretokenized=True)
    assert enc.input_ids[0, 1].item() == n and enc.input_ids[0, 3].item() == n + 1
    bert = load_bert(MINILM)
    old = bert.word_embeddings.weight.detach().clone()
    bert.resize_token_embeddings(len(wp))
    assert bert.word_embeddings.weight.shape[0] == n + 2
    assert torch.equal(bert.word_embeddings.weight[:n], old) and (bert.word_embeddings.weight[n:] == 0).all()
    assert bert(enc.input_ids, enc.attention_mask).shape == (1, enc.input_ids.shape[1], 384)
