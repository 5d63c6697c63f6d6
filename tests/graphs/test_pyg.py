"""PyG conversion: dtypes, and head/tail indices that survive batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: E402
import torch_geometric  # noqa: F401 - a hard dependency: a broken install fails, never skips
from torch_geometric.data import Batch  # noqa: E402
from torch_geometric.loader import DataLoader  # noqa: E402

from mmre_cli.graphs.graph import EDGE_ATTR_DIM, ROLE_HEAD, ROLE_TAIL, Graph  # noqa: E402
from mmre_cli.graphs.pyg import graph_to_data, graphs_to_batches  # noqa: E402


def toy(gid, n, head, tail, label, seed):
    rng = np.random.default_rng(seed)
    role = np.zeros(n, np.int8)
    role[head], role[tail] = ROLE_HEAD, ROLE_TAIL
    e = n - 1
    return Graph(
        graph_id=gid,
        node_kind=np.zeros(n, np.int8),
        node_modality=np.zeros(n, np.int8),
        node_role=role,
        node_text=[f"n{i}" for i in range(n)],
        box=np.full((n, 4), np.nan, np.float32),
        edge_index=np.stack([np.arange(e), np.arange(1, n)]).astype(np.int64),
        edge_type=np.ones(e, np.int8),
        edge_label=[""] * e,
        edge_attr=np.ones((e, EDGE_ATTR_DIM), np.float32),
        x=rng.normal(size=(n, 8)).astype(np.float32),
        label=label,
    )


GRAPHS = [
    toy("g0", 4, 2, 3, 1, 0),
    toy("g1", 3, 1, 0, 0, 1),
    toy("g2", 5, 0, 4, 2, 2),
    toy("g3", 2, 1, 0, -1, 3),
    toy("g4", 6, 5, 3, 3, 4),
]


def test_graph_to_data_dtypes():
    d = graph_to_data(GRAPHS[0])
    assert d.x.dtype == torch.float32 and d.x.shape == (4, 8)
    assert d.edge_index.dtype == torch.long and d.edge_index.shape == (2, 3)
    for name in ("edge_type", "node_kind", "node_modality", "node_role", "y", "head_index", "tail_index"):
        assert getattr(d, name).dtype == torch.long, name
    assert d.edge_attr.dtype == torch.float32 and d.edge_attr.shape == (3, EDGE_ATTR_DIM)
    assert d.y.tolist() == [1] and d.head_index.tolist() == [2] and d.tail_index.tolist() == [3]
    assert bool(d.has_head) and bool(d.has_tail)
    g = GRAPHS[0]
    with pytest.raises(ValueError, match="no node features"):
        graph_to_data(Graph(**{**g.__dict__, "x": None}))


def check_batch(batch, graphs):
    assert batch.num_graphs == len(graphs)
    offs = np.cumsum([0] + [g.num_nodes for g in graphs])
    assert batch.head_index.tolist() == [
        int(o + np.flatnonzero(g.node_role == ROLE_HEAD)[0]) for o, g in zip(offs, graphs)
    ]
    for i, g in enumerate(graphs):
        h, t = int(batch.head_index[i]), int(batch.tail_index[i])
        assert int(batch.batch[h]) == i and int(batch.batch[t]) == i
        assert int(batch.node_role[h]) == ROLE_HEAD and int(batch.node_role[t]) == ROLE_TAIL
        np.testing.assert_array_equal(batch.x[h].numpy(), g.x[g.node_role == ROLE_HEAD][0])
    assert batch.y.tolist() == [g.label for g in graphs]
    assert batch.graph_id == [g.graph_id for g in graphs]
    assert batch.edge_index.max() < batch.num_nodes


def test_batch_head_tail_index():
    check_batch(Batch.from_data_list([graph_to_data(g) for g in GRAPHS]), GRAPHS)
    # a PyG DataLoader collates the same way
    loader = DataLoader([graph_to_data(g) for g in GRAPHS], batch_size=3)
    check_batch(next(iter(loader)), GRAPHS[:3])


def test_graphs_to_batches_sizes():
    batches = list(graphs_to_batches(GRAPHS, 2))
    assert [b.num_graphs for b in batches] == [2, 2, 1]
    check_batch(batches[1], GRAPHS[2:4])
    with pytest.raises(ValueError):
        list(graphs_to_batches(GRAPHS, 0))


def test_words_spans_and_batching():
    """words=True: text nodes get their sentence spans, other modalities -1; one word list per graph."""
    import dataclasses

    a = dataclasses.replace(
        GRAPHS[0],
        node_modality=np.asarray([0, 0, 0, 1], np.int8),
        meta={
            "spans": [[0, 1], [1, 3], [3, 4], [0, 2]],
            "words": ["w0", "w1", "w2", "w3"],
            "entity_spans": [1, 3, 3, 4],
        },
    )
    b = dataclasses.replace(
        GRAPHS[1], meta={"spans": [[0, 1], [1, 2], [2, 3]], "words": ["x", "y", "z"], "entity_spans": [0, 1, -1, -1]}
    )  # a visual tail
    d = graph_to_data(a, words=True)
    assert d.node_span.tolist() == [[0, 1], [1, 3], [3, 4], [-1, -1]]  # node 3 is a caption node
    assert d.ent_span.tolist() == [[1, 3, 3, 4]] and d.words == ["w0", "w1", "w2", "w3"]
    assert not hasattr(graph_to_data(a), "words")
    batch = next(graphs_to_batches([a, b], 2, words=True))
    assert batch.words == [["w0", "w1", "w2", "w3"], ["x", "y", "z"]]
    assert batch.ent_span.tolist() == [[1, 3, 3, 4], [0, 1, -1, -1]]
    assert batch.node_span.shape == (7, 2)
    with pytest.raises(ValueError, match="rerun merge-cmg"):
        graph_to_data(GRAPHS[2], words=True)


def test_rank_shards_split_one_seeded_permutation_per_epoch():
    from mmre_cli.graphs.pyg import RankShards
    from mmre_cli.learn.resume import _loader_state, _set_loader_state

    ranks = [RankShards(11, 2, r, shuffle=True, seed=13) for r in (0, 1)]
    first = [list(s) for s in ranks]
    assert [len(f) for f in first] == [6, 6]  # padded to a multiple of the world size by wrapping
    assert set(first[0]) | set(first[1]) == set(range(11)) and len(set(first[0]) & set(first[1])) == 1
    second = [list(s) for s in ranks]
    assert second != first  # a new order each epoch (Fabric's own sampler needs set_epoch for that)
    assert list(RankShards(11, 2, 0, shuffle=True, seed=14)) != first[0]  # the seed picks the order
    assert list(RankShards(5, 2, 1, shuffle=False)) == [1, 3, 0]
    # resume: the epoch travels with the training state, as LengthBuckets' does
    loader = DataLoader(list(range(11)), batch_size=3, sampler=RankShards(11, 2, 0, shuffle=True, seed=13))
    next(iter(loader))
    _, plain = _loader_state(loader)
    fresh = DataLoader(list(range(11)), batch_size=3, sampler=RankShards(11, 2, 0, shuffle=True, seed=13))
    _set_loader_state(fresh, {}, plain)
    assert plain == {"loader_epoch": 1} and list(fresh.sampler) == second[0]
