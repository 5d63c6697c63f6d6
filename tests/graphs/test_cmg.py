"""Cross-modal graph: span pooling, similarity edges, k-hop context, subgraph, merge."""

from __future__ import annotations

import numpy as np
import pytest

from mmre_cli.graphs.cmg import k_hop_nodes, merge_cmg, pool_span_features, similarity_edges, subgraph
from mmre_cli.graphs.graph import (
    EDGE_ATTR_COLUMNS,
    EDGE_ATTR_DIM,
    EDGE_TYPES,
    MODALITIES,
    NODE_KINDS,
    ROLE_HEAD,
    ROLE_OTHER,
    ROLE_TAIL,
    Graph,
)
from mmre_cli.graphs.visual import mark_visual_tail, visual_graph

K = {k: i for i, k in enumerate(NODE_KINDS)}
E = {e: i for i, e in enumerate(EDGE_TYPES)}
M = {m: i for i, m in enumerate(MODALITIES)}
COS = EDGE_ATTR_COLUMNS.index("cosine")


def make_graph(gid, modality, nodes, edges, x, spans=None):
    """nodes: (kind, text, lemma, role); edges: (src, dst, type, label)."""
    n, e = len(nodes), len(edges)
    attr = np.zeros((e, EDGE_ATTR_DIM), np.float32)
    attr[:, 0] = 1
    return Graph(
        graph_id=gid,
        node_kind=np.array([K[k] for k, *_ in nodes], np.int8),
        node_modality=np.full(n, M[modality], np.int8),
        node_role=np.array([r for *_, r in nodes], np.int8),
        node_text=[t for _, t, _, _ in nodes],
        box=np.full((n, 4), np.nan, np.float32),
        edge_index=np.array([[s for s, *_ in edges], [d for _, d, *_ in edges]], np.int64).reshape(2, e),
        edge_type=np.array([E[t] for _, _, t, _ in edges], np.int8),
        edge_label=[lab for *_, lab in edges],
        edge_attr=attr,
        x=np.asarray(x, np.float32),
        meta={"lemmas": [lem for _, _, lem, _ in nodes], **({"spans": spans} if spans else {})},
    )


# ---------------------------------------------------------------- pooling / similarity


def test_pool_span_features():
    g = make_graph(
        "g",
        "text",
        [("token", "a", "a", 0), ("entity", "ab", "b", 1), ("noun_phrase", "", "", 0)],
        [],
        np.zeros((3, 2)),
        spans=[[0, 1], [0, 2], [2, 2]],
    )
    emb = np.array([[3, 0], [0, 4], [1, 1]], np.float32)
    out = pool_span_features(g, emb)
    np.testing.assert_allclose(out, [[1, 0], [0.6, 0.8], [0, 0]], atol=1e-6)


XA = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
XB = np.array([[1, 0], [0, 1], [1, -1]], np.float32)
# cos rows: [1, 0, .707], [0, 1, -.707], [.707, .707, 0]


def test_similarity_edges_top1():
    src, dst, cos = similarity_edges(XA, XB, top_k=1, threshold=0.5)
    assert src.tolist() == [0, 1, 2]
    assert dst.tolist() == [0, 1, 0]  # row 2 ties between b0 and b1: lowest index wins
    np.testing.assert_allclose(cos, [1, 1, np.sqrt(0.5)], atol=1e-6)


def test_similarity_edges_top2_threshold_cuts_one():
    src, dst, cos = similarity_edges(XA, XB, top_k=2, threshold=0.5)
    # row 1's second neighbour (b0, cos 0) falls below 0.5
    assert list(zip(src.tolist(), dst.tolist())) == [(0, 0), (0, 2), (1, 1), (2, 0), (2, 1)]
    np.testing.assert_allclose(cos, [1, np.sqrt(0.5), 1, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)
    src, dst, _ = similarity_edges(XA, XB, top_k=2, threshold=-1.0)
    assert len(src) == 6
    assert similarity_edges(XA[:0], XB, top_k=2, threshold=0)[0].shape == (0,)


# ---------------------------------------------------------------- k-hop / subgraph

PATH = np.array([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])  # 0->1->2->3->4->5, directed one way


@pytest.mark.parametrize(
    "seeds,hops,want",
    [
        ([0], 2, [0, 1, 2]),
        ([2], 1, [1, 2, 3]),
        ([5], 2, [3, 4, 5]),
        ([0, 5], 1, [0, 1, 4, 5]),
        ([3], 0, [3]),
        ([0], 10, [0, 1, 2, 3, 4, 5]),
    ],
)
def test_k_hop_nodes_path(seeds, hops, want):
    mask = k_hop_nodes(PATH, 6, seeds, hops)
    assert mask.dtype == bool and np.flatnonzero(mask).tolist() == want


def test_subgraph_reindexes():
    nodes = [("token", f"t{i}", f"l{i}", 0) for i in range(6)]
    edges = [(i, i + 1, "dep", f"e{i}") for i in range(5)]
    g = make_graph("p", "text", nodes, edges, np.eye(6), spans=[[i, i + 1] for i in range(6)])
    s = subgraph(g, np.array([0, 1, 1, 0, 1, 1], bool))
    assert s.node_text == ["t1", "t2", "t4", "t5"]
    assert s.edge_index.tolist() == [[0, 2], [1, 3]] and s.edge_label == ["e1", "e4"]
    assert s.meta["lemmas"] == ["l1", "l2", "l4", "l5"] and s.meta["spans"][2] == [4, 5]
    np.testing.assert_array_equal(s.x, np.eye(6)[[1, 2, 4, 5]])


# ---------------------------------------------------------------- merge


def tiny_parts():
    text = make_graph(
        "t",
        "text",
        [
            ("token", "Alice", "alice", ROLE_OTHER),
            ("token", "walks", "walk", ROLE_OTHER),
            ("token", "dog", "dog", ROLE_OTHER),
            ("entity", "Alice", "alice", ROLE_HEAD),
            ("entity", "dog", "dog", ROLE_TAIL),
        ],
        [(1, 0, "dep", "nsubj"), (1, 2, "dep", "dobj"), (0, 3, "member", ""), (2, 4, "member", "")],
        [[1, 0], [1, 1], [0, 1], [1, 0], [0, 1]],
        spans=[[0, 1], [1, 2], [2, 3], [0, 1], [2, 3]],
    )
    visual = visual_graph("v", np.array([[0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5]]), ["dog", "person"], [0.9, 0.8])
    visual.x = np.array([[1, 1], [0, 1], [1, 0]], np.float32)  # image, dog, person
    caption = make_graph(
        "c",
        "caption",
        [("caption_phrase", "a dog", "dog", ROLE_OTHER), ("caption_phrase", "a park", "park", ROLE_OTHER)],
        [(0, 1, "dep", "in")],
        [[0, 1], [-1, 0]],
        spans=[[0, 2], [3, 5]],
    )
    return text, visual, caption


def edge_set(g, etype):
    return {(int(s), int(d)) for s, d, t in zip(*g.edge_index, g.edge_type) if t == E[etype]}


def test_merge_offsets_cooccur_similar():
    text, visual, caption = tiny_parts()
    g = merge_cmg("cmg", text, visual, caption, top_k=1, threshold=0.99, hops=None, label=4, anchor=False)
    g.validate()
    # text 0-4, visual 5-7 (image, dog, person), caption 8-9
    assert g.num_nodes == 10 and g.label == 4
    assert g.node_text == ["Alice", "walks", "dog", "Alice", "dog", "image", "dog", "person", "a dog", "a park"]
    assert g.meta["modalities"] == ["text"] * 5 + ["visual"] * 3 + ["caption"] * 2
    assert g.meta["source_index"] == [0, 1, 2, 3, 4, 0, 1, 2, 0, 1]
    assert g.node_role.tolist() == [0, 0, 0, ROLE_HEAD, ROLE_TAIL, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(g.x[5:8], visual.x)
    # scene-graph edges shifted by the offsets
    assert edge_set(g, "part_of_image") == {(6, 5), (7, 5)}
    assert edge_set(g, "spatial") == {(6, 7), (7, 6)}
    assert edge_set(g, "dep") == {(1, 0), (1, 2), (8, 9)}
    # co-occurrence on the lemma "dog": text {2, 4} x caption 8 and visual 6, caption 8 x visual 6
    pairs = {(2, 8), (4, 8), (2, 6), (4, 6), (8, 6)}
    assert edge_set(g, "cooccur") == pairs | {(b, a) for a, b in pairs}
    k = [i for i in range(g.num_edges) if g.edge_type[i] == E["cooccur"]]
    assert {g.edge_label[i] for i in k} == {"dog"}
    np.testing.assert_allclose(g.edge_attr[k, COS], 1.0)
    # similarity: head "Alice" [1,0] -> person 7; tail "dog" [0,1] -> visual dog 6 and caption dog 8
    sim = {(3, 7), (4, 6), (4, 8)}
    assert edge_set(g, "similar") == sim | {(b, a) for a, b in sim}
    before = g.meta["counts_before"]
    assert before["edges_by_type"] == {
        "dep": 3,
        "member": 2,
        "spatial": 2,
        "part_of_image": 2,
        "cooccur": 10,
        "similar": 6,
    }
    assert before["nodes_by_modality"] == {"text": 5, "visual": 3, "caption": 2}
    assert g.meta["counts_after"] == before

    no_cross = merge_cmg(
        "cmg", text, visual, caption, top_k=1, threshold=0.99, hops=None, cross_cooccur=False, anchor=False
    )
    assert len(edge_set(no_cross, "cooccur")) == 8


@pytest.mark.parametrize("hops,kept", [(0, [3, 4]), (1, [0, 2, 3, 4, 6, 7, 8]), (2, list(range(10)))])
def test_merge_context_hops(hops, kept):
    text, visual, caption = tiny_parts()
    full = merge_cmg("cmg", text, visual, caption, top_k=1, threshold=0.99, hops=None)
    g = merge_cmg("cmg", text, visual, caption, top_k=1, threshold=0.99, hops=hops)
    assert g.node_text == [full.node_text[i] for i in kept]
    # head and tail always survive
    assert (g.node_role == ROLE_HEAD).sum() == 1 and (g.node_role == ROLE_TAIL).sum() == 1
    assert g.meta["counts_after"]["nodes"] == len(kept)
    assert g.meta["counts_before"]["nodes"] == 10
    assert len(g.meta["lemmas"]) == len(g.meta["spans"]) == g.num_nodes


def test_merge_visual_tail_and_text_only():
    text, visual, caption = tiny_parts()
    text.node_role[4] = ROLE_OTHER  # MORE: tail is an image region, not a text span
    x = visual.x
    visual.x = None
    marked = mark_visual_tail(visual, (0.75, 0.25, 0.5, 0.5))  # cxcywh == person box
    marked.x = x
    g = merge_cmg("cmg", text, marked, None, top_k=1, threshold=0.99, hops=0)
    assert g.node_text == ["Alice", "person"]
    assert g.node_role.tolist() == [ROLE_HEAD, ROLE_TAIL]
    only_text = merge_cmg("cmg", tiny_parts()[0], None, None, hops=2)
    assert only_text.meta["modalities"] == ["text"] * 5


def test_merge_requires_features():
    text, visual, caption = tiny_parts()
    visual.x = None
    with pytest.raises(ValueError, match="no features"):
        merge_cmg("cmg", text, visual, caption)


def test_anchor_links_head_and_tail_into_every_view_whatever_the_threshold():
    text, visual, caption = tiny_parts()
    strict = merge_cmg("cmg", text, visual, caption, top_k=1, threshold=1.01, hops=None, anchor=False)
    assert edge_set(strict, "similar") == set()
    g = merge_cmg("cmg", text, visual, caption, top_k=1, threshold=1.01, hops=None)
    anchors = {(int(s), int(d)) for (s, d), lab in zip(g.edge_index.T, g.edge_label) if lab == "anchor"}
    head, tail = 3, 4
    mods = g.meta["modalities"]
    for node in (head, tail):
        reached = {mods[d] for s, d in anchors if s == node}
        assert reached == {"visual", "caption"}, (node, reached)
    # one edge each way per (entity, view): 2 entities x 2 views x 2 directions
    assert len(anchors) == 8
