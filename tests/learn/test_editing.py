"""Tests for mmre_cli.learn.editing: candidates, masks, apply_edits, complexity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: E402
import torch_geometric  # noqa: F401 - a hard dependency: a broken install fails, never skips
from torch_geometric.data import Batch, Data  # noqa: E402

from mmre_cli.graphs.graph import EDGE_ATTR_COLUMNS, EDGE_ATTR_DIM, EDGE_TYPES  # noqa: E402
from mmre_cli.learn.editing import (  # noqa: E402
    ADDED_EDGE_TYPE,
    action_masks,
    apply_edits,
    candidate_additions,
    complexity,
    protected_nodes,
)
from tests.learn.ring_graphs import ring_graphs  # noqa: E402

W_COL = EDGE_ATTR_COLUMNS.index("weight")
COS_COL = EDGE_ATTR_COLUMNS.index("cosine")


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_batch(num_graphs: int = 6, dim: int = 8, seed: int = 0, chords: bool = True) -> Batch:
    """Ring graphs (both directions) + a few chords, clustered features (± 0.4), head/tail anywhere."""
    return ring_graphs(num_graphs, dim=dim, seed=seed, n_range=(5, 10), spread=0.4, num_classes=4, chords=chords)


def brute_candidates(batch: Batch, k: int, threshold: float) -> set[tuple[int, int]]:
    out = set()
    for b, d in enumerate(batch.to_data_list()):
        off = int(batch.ptr[b])
        n = d.num_nodes
        adj = {(int(i), int(j)) for i, j in d.edge_index.t().tolist()}
        sims = F.cosine_similarity(d.x.unsqueeze(1), d.x.unsqueeze(0), dim=-1)
        for i in range(n):
            cands = [
                (float(sims[i, j]), j)
                for j in range(n)
                if j != i and (i, j) not in adj and (j, i) not in adj and float(sims[i, j]) >= threshold
            ]
            cands.sort(reverse=True)
            for _, j in cands[:k]:
                out.add((off + min(i, j), off + max(i, j)))
    return out


@pytest.mark.parametrize("k,threshold", [(1, 0.5), (2, 0.5), (3, 0.0), (2, 0.9)])
def test_candidate_additions_match_bruteforce(k, threshold):
    batch = make_batch(seed=k)
    cand, cgraph = candidate_additions(batch, k=k, threshold=threshold)
    assert cand.dtype == torch.long and cand.shape[0] == 2 and cgraph.shape == (cand.shape[1],)
    pairs = [tuple(p) for p in cand.t().tolist()]
    assert len(pairs) == len(set(pairs))  # no duplicates
    assert all(i < j for i, j in pairs)
    assert pairs == sorted(pairs)
    assert torch.equal(cgraph, batch.batch[cand[0]])
    assert torch.equal(batch.batch[cand[0]], batch.batch[cand[1]])  # same graph only
    assert set(pairs) == brute_candidates(batch, k, threshold)


def test_candidate_additions_empty():
    batch = make_batch()
    cand, cgraph = candidate_additions(batch, k=2, threshold=1.5)
    assert cand.shape == (2, 0) and cgraph.shape == (0,)
    cand, _ = candidate_additions(batch, k=0)
    assert cand.shape == (2, 0)


def tiny_batch() -> Batch:
    """4 nodes: 0 head, 1 tail; path 0-1-2-3 both directions (6 edges); x chosen by hand."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.1]])
    ei = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    d = Data(
        x=x,
        edge_index=ei,
        edge_type=torch.zeros(6, dtype=torch.long),
        edge_attr=torch.ones(6, EDGE_ATTR_DIM),
        node_role=torch.tensor([1, 2, 0, 0]),
        y=torch.tensor([1]),
        head_index=torch.tensor([0]),
        tail_index=torch.tensor([1]),
    )
    return Batch.from_data_list([d])


def test_action_masks_by_hand():
    batch = tiny_batch()
    cand = torch.tensor([[0, 0], [2, 3]])  # (0,2) and (0,3)
    node_alive = torch.tensor([True, True, False, True])  # node 2 deleted
    edge_alive = torch.ones(6, dtype=torch.bool)
    edge_alive[0] = False  # edge 0->1 deleted
    cand_used = torch.tensor([False, True])
    node_mask, edge_mask, add_mask = action_masks(batch, node_alive, edge_alive, cand_used, cand)
    assert node_mask.tolist() == [False, False, False, True]  # head, tail, dead never
    assert edge_mask.tolist() == [False, True, False, False, False, False]
    assert add_mask.tolist() == [False, False]  # touches dead node / already added
    node_mask, edge_mask, add_mask = action_masks(
        batch, torch.ones(4, dtype=torch.bool), torch.ones(6, dtype=torch.bool), torch.zeros(2, dtype=torch.bool), cand
    )
    assert node_mask.tolist() == [False, False, True, True]
    assert edge_mask.all() and add_mask.all()
    _, _, add_mask = action_masks(batch, node_alive, edge_alive, torch.zeros(0, dtype=torch.bool), None)
    assert add_mask.shape == (0,)


def test_protected_nodes_uses_role_and_indices():
    batch = tiny_batch()
    assert protected_nodes(batch).tolist() == [True, True, False, False]
    batch.node_role = torch.zeros(4, dtype=torch.long)
    assert protected_nodes(batch).tolist() == [True, True, False, False]


def test_apply_edits_by_hand():
    batch = tiny_batch()
    node_alive = torch.tensor([True, True, False, True])
    edge_alive = torch.ones(6, dtype=torch.bool)
    edge_alive[1] = False  # 1->0
    added = torch.tensor([[0], [3]])
    out = apply_edits(batch, node_alive, edge_alive, added)
    # node 3 becomes 2; surviving original edges: 0->1 only; added 0<->3 -> 0<->2
    assert out.num_nodes == 3 and out.num_graphs == 1
    assert out.edge_index.tolist() == [[0, 0, 2], [1, 2, 0]]
    assert out.edge_type.tolist() == [0, ADDED_EDGE_TYPE, ADDED_EDGE_TYPE]
    cos = float(F.cosine_similarity(batch.x[0], batch.x[3], dim=0))
    assert out.edge_attr[1, W_COL].item() == pytest.approx(cos)
    assert out.edge_attr[2, COS_COL].item() == pytest.approx(cos)
    others = [c for c in range(EDGE_ATTR_DIM) if c not in (W_COL, COS_COL)]
    assert out.edge_attr[1:, others].abs().sum() == 0
    assert out.head_index.tolist() == [0] and out.tail_index.tolist() == [1]
    assert torch.equal(out.x, batch.x[[0, 1, 3]])
    assert out.ptr.tolist() == [0, 3]
    # input untouched
    assert batch.num_nodes == 4 and batch.edge_index.size(1) == 6


def test_apply_edits_rejects_dead_head():
    batch = tiny_batch()
    with pytest.raises(ValueError):
        apply_edits(batch, torch.tensor([False, True, True, True]), torch.ones(6, dtype=torch.bool), torch.zeros(2, 0))


def test_apply_edits_no_edit_is_identity():
    batch = make_batch()
    out = apply_edits(
        batch,
        torch.ones(batch.num_nodes, dtype=torch.bool),
        torch.ones(batch.edge_index.size(1), dtype=torch.bool),
        torch.zeros(2, 0, dtype=torch.long),
    )
    for key in (
        "x",
        "edge_index",
        "edge_type",
        "edge_attr",
        "node_role",
        "y",
        "head_index",
        "tail_index",
        "batch",
        "ptr",
    ):
        assert torch.equal(out[key], batch[key]), key
    assert torch.allclose(complexity(out, batch), torch.ones(batch.num_graphs))


@pytest.mark.parametrize("seed", range(5))
def test_apply_edits_random_keeps_head_tail_and_structure(seed):
    batch = make_batch(num_graphs=7, seed=seed)
    g = torch.Generator().manual_seed(100 + seed)
    prot = protected_nodes(batch)
    node_alive = (torch.rand(batch.num_nodes, generator=g) > 0.3) | prot
    edge_alive = torch.rand(batch.edge_index.size(1), generator=g) > 0.3
    cand, _ = candidate_additions(batch, k=2, threshold=0.0)
    use = torch.rand(cand.size(1), generator=g) > 0.5
    added = cand[:, use]
    out = apply_edits(batch, node_alive, edge_alive, added)

    old_ids = node_alive.nonzero().view(-1)  # new id -> old id
    # head/tail still point at the same original nodes
    assert torch.equal(old_ids[out.head_index], batch.head_index)
    assert torch.equal(old_ids[out.tail_index], batch.tail_index)
    assert (out.node_role[out.head_index] == 1).all() and (out.node_role[out.tail_index] == 2).all()
    assert torch.equal(out.x[out.head_index], batch.x[batch.head_index])

    # every edited edge is an alive original edge or one direction of an alive added pair
    src, dst = batch.edge_index
    alive_orig = {(int(s), int(d)) for s, d, a in zip(src, dst, edge_alive) if a and node_alive[s] and node_alive[d]}
    alive_add = {(int(i), int(j)) for i, j in added.t().tolist() if node_alive[i] and node_alive[j]}
    got_orig, got_add = [], []
    for (s, d), t in zip(out.edge_index.t().tolist(), out.edge_type.tolist()):
        pair = (int(old_ids[s]), int(old_ids[d]))
        (got_add if t == ADDED_EDGE_TYPE else got_orig).append(pair)
    assert sorted(got_orig) == sorted(alive_orig)
    expect_add = sorted([p for p in alive_add] + [(j, i) for i, j in alive_add])
    assert sorted(got_add) == expect_add

    # per-graph separation still works and edges stay inside their graph
    parts = out.to_data_list()
    assert len(parts) == batch.num_graphs
    for b, d in enumerate(parts):
        n_alive = int(node_alive[batch.batch == b].sum())
        assert d.num_nodes == n_alive
        if d.edge_index.numel():
            assert 0 <= int(d.edge_index.min()) and int(d.edge_index.max()) < n_alive
        assert 0 <= int(d.head_index) < n_alive and int(d.node_role[d.head_index]) == 1
        assert int(d.node_role[d.tail_index]) == 2

    c = complexity(out, batch)
    assert c.shape == (batch.num_graphs,) and (c >= 0).all()


def test_complexity_by_hand():
    batch = tiny_batch()  # 4 nodes, 6 edges
    # delete node 3 (kills 2 edges): (3/4 + 4/6) / 2
    out = apply_edits(
        batch, torch.tensor([True, True, True, False]), torch.ones(6, dtype=torch.bool), torch.zeros(2, 0)
    )
    assert complexity(out, batch).item() == pytest.approx((3 / 4 + 4 / 6) / 2)
    # add one pair (two directed edges): (4/4 + 8/6) / 2 > 1
    out = apply_edits(batch, torch.ones(4, dtype=torch.bool), torch.ones(6, dtype=torch.bool), torch.tensor([[0], [3]]))
    assert complexity(out, batch).item() == pytest.approx((1 + 8 / 6) / 2)
    # node_weight=1: nodes only
    out = apply_edits(
        batch, torch.tensor([True, True, False, False]), torch.ones(6, dtype=torch.bool), torch.zeros(2, 0)
    )
    assert complexity(out, batch, node_weight=1.0).item() == pytest.approx(0.5)


def test_complexity_edgeless_graph():
    d = Data(
        x=torch.eye(3),
        edge_index=torch.zeros(2, 0, dtype=torch.long),
        edge_type=torch.zeros(0, dtype=torch.long),
        edge_attr=torch.zeros(0, EDGE_ATTR_DIM),
        node_role=torch.tensor([1, 2, 0]),
        y=torch.tensor([0]),
        head_index=torch.tensor([0]),
        tail_index=torch.tensor([1]),
    )
    batch = Batch.from_data_list([d])
    same = apply_edits(batch, torch.ones(3, dtype=torch.bool), torch.zeros(0, dtype=torch.bool), torch.zeros(2, 0))
    assert complexity(same, batch).item() == pytest.approx(1.0)
    added = apply_edits(
        batch, torch.ones(3, dtype=torch.bool), torch.zeros(0, dtype=torch.bool), torch.tensor([[0], [2]])
    )
    assert complexity(added, batch).item() == pytest.approx(0.5 * 1 + 0.5 * (1 + 2))
    assert EDGE_TYPES[ADDED_EDGE_TYPE] == "added"


def test_apply_edits_carries_extra_fields():
    """node_kind / graph_id / has_head from collation and an edge_weight set after batching."""
    data = []
    for k in range(3):
        n = 5 + k
        src = torch.arange(n)
        ei = torch.stack([src, (src + 1) % n])
        data.append(
            Data(
                x=torch.randn(n, 4),
                edge_index=ei,
                edge_type=torch.zeros(n, dtype=torch.long),
                edge_attr=torch.rand(n, EDGE_ATTR_DIM),
                node_role=torch.tensor([0, 1, 2] + [0] * (n - 3)),
                node_kind=torch.arange(n) + 10 * k,
                y=torch.tensor([k]),
                head_index=torch.tensor([1]),
                tail_index=torch.tensor([2]),
                has_head=torch.tensor([True]),
                graph_id=f"g{k}",
                num_nodes=n,
            )
        )
    batch = Batch.from_data_list(data)
    batch.edge_weight = torch.rand(batch.edge_index.size(1))
    node_alive = torch.ones(batch.num_nodes, dtype=torch.bool)
    node_alive[[0, 5 + 3]] = False  # node 0 of graph 0 and node 3 of graph 1
    edge_alive = torch.ones(batch.edge_index.size(1), dtype=torch.bool)
    added = torch.tensor([[int(batch.ptr[2]) + 0], [int(batch.ptr[2]) + 4]])  # graph 2: 0 <-> 4
    out = apply_edits(batch, node_alive, edge_alive, added)
    assert out.num_nodes == batch.num_nodes - 2
    assert torch.equal(out.node_kind, batch.node_kind[node_alive])
    assert out.graph_id == ["g0", "g1", "g2"] and out.has_head.tolist() == [True] * 3
    assert out.edge_weight.shape == (out.edge_index.size(1),)
    is_added = out.edge_type == ADDED_EDGE_TYPE
    assert int(is_added.sum()) == 2
    assert torch.allclose(out.edge_weight[is_added], out.edge_attr[is_added, W_COL])
    parts = out.to_data_list()
    assert [d.num_nodes for d in parts] == [4, 5, 7]
    assert [d.graph_id for d in parts] == ["g0", "g1", "g2"]
    assert torch.equal(parts[2].node_kind, torch.arange(7) + 20)
    assert [int(d.head_index) for d in parts] == [0, 1, 1]


# -------------------------------------------------------------------------------------------------
# issue 26: a deleted token's words leave the sentence a re-encoding reward classifier reads


def test_apply_edits_masks_the_words_of_deleted_tokens_as_the_stored_edit_records_them():
    import numpy as np

    from mmre_cli.graphs.graph import NODE_KINDS
    from mmre_cli.graphs.pyg import graph_to_data
    from mmre_cli.graphs.refine import apply_edit_record
    from tests.learn.test_finetune import make_graph

    rng = np.random.default_rng(0)
    g0 = make_graph("a", ["Alice", "met", "Bob", "."], (0, 1), (2, 3), 1, rng, dim=8)
    g1 = make_graph("b", ["Carol", "saw", "a", "cat", "in", "Rome"], (0, 1), (5, 6), 2, rng, dim=8)
    batch = Batch.from_data_list([graph_to_data(g0, words=True), graph_to_data(g1, words=True)])
    n0 = g0.num_nodes
    alive = torch.ones(batch.num_nodes, dtype=torch.bool)
    # graph b: delete the tokens "a" (2) and "in" (4) and one caption-phrase node (words untouched)
    cap = n0 + int(np.flatnonzero(g1.node_kind == NODE_KINDS.index("caption_phrase"))[0])
    for node in (n0 + 2, n0 + 4, cap):
        alive[node] = False
    edges = torch.ones(batch.edge_index.size(1), dtype=torch.bool)
    out = apply_edits(batch, alive, edges, torch.zeros(2, 0, dtype=torch.long))
    expected = [True] * 4 + [True, True, False, True, False, True]
    assert out.word_keep.tolist() == expected
    # the same words apply_edit_record stores for the stored graph (what the final classifier reads)
    stored = apply_edit_record(g1, {"deleted_nodes": [2, 4, cap - n0]})
    assert stored.meta["deleted_words"] == [2, 4]
    assert graph_to_data(stored, words=True).word_keep.tolist() == expected[4:]
    # no deletion: the mask is the input's; a batch without words gets none
    same = apply_edits(batch, torch.ones_like(alive), edges, torch.zeros(2, 0, dtype=torch.long))
    assert same.word_keep.tolist() == [True] * 10
    assert getattr(apply_edits(make_batch(), *_all_alive(make_batch())), "word_keep", None) is None


def _all_alive(batch: Batch):
    return (
        torch.ones(batch.num_nodes, dtype=torch.bool),
        torch.ones(batch.edge_index.size(1), dtype=torch.bool),
        torch.zeros(2, 0, dtype=torch.long),
    )
