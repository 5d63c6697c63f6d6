"""Integrated-Gradients attributions: completeness, edges through PyG's masks, word pieces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmre_cli.attribution import Attribution, attribute, graph_attribution, piece_attribution
from mmre_cli.graphs.pyg import graph_to_data
from mmre_cli.learn.gnn import RelationGNN
from tests.learn.test_finetune import _hf_model, make_graph


def _graph(seed: int = 0, dim: int = 16):
    return make_graph(
        "g",
        ["Alice", "met", "Bob", "in", "Paris", "."],
        (0, 1),
        (2, 3),
        1,
        np.random.default_rng(seed),
        n_caption=2,
        dim=dim,
        caption="a man on a stage",
    )


def test_node_attributions_add_up_to_the_logit_change_from_the_zero_input():
    """Completeness: with only node features attributed (hop attention: no message-passing edge
    mask), the IG attributions sum to f(x) - f(0) for the explained logit."""
    torch.manual_seed(0)
    model = RelationGNN(16, 3, hidden=16, heads=2, conv="hop_attention", dropout=0.0).eval()
    data = graph_to_data(_graph())
    target, node, edge = graph_attribution(model, data, target=2, steps=128)
    assert target == 2 and edge is None and node.shape == (data.num_nodes,)
    with torch.no_grad():
        full = model(data)[0, 2]
        zero = data.clone()
        zero.x = torch.zeros_like(data.x)
        base = model(zero)[0, 2]
    assert abs(float(node.sum()) - float(full - base)) < 0.02 * max(1e-3, abs(float(full - base))) + 1e-4


def test_gat_gets_edge_importances_and_the_same_answer_twice():
    torch.manual_seed(0)
    model = RelationGNN(16, 3, hidden=16, heads=2).eval()
    data = graph_to_data(_graph(1))
    t1, n1, e1 = graph_attribution(model, data)
    t2, n2, e2 = graph_attribution(model, data)
    with torch.no_grad():
        assert t1 == int(model(data).argmax())  # default target: the predicted class
    assert e1 is not None and e1.shape == (data.edge_index.size(1),) and bool(e1.abs().sum() > 0)
    assert torch.equal(n1, n2) and torch.equal(e1, e2)


def test_word_pieces_of_a_finetuned_encoder(tiny_bert):
    model = _hf_model(tiny_bert, in_dim=16, train_layers=1).eval()
    graph = _graph(2)
    a = attribute(model, graph, target=1, steps=8)
    assert isinstance(a, Attribution) and len(a.node) == graph.num_nodes
    pieces = [p for p, _ in a.pieces]
    assert pieces[0] == "[CLS]" and "<h>" in pieces and "<t>" in pieces  # the marked sentence, first segment only
    assert all(np.isfinite(v) for _, v in a.pieces) and any(v != 0 for _, v in a.pieces)
    # the model is left as it was: lower layers frozen and cached, no gradients kept
    assert model.encoder.frozen_below == 2 and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    "kw",
    [dict(markers="typed"), dict(caption_pass=8, caption_tokens=0), dict(relation_descriptions=["none", "a b", "c d"])],
    ids=["typed", "caption_pass", "relation_text"],
)
def test_word_pieces_for_typed_markers_a_caption_pass_and_relations_as_text(tiny_bert, kw):
    """The pieces attributed are the ones the model reads: with typed markers the type words are
    there too (they were left out, and the IG shapes then did not match)."""
    model = _hf_model(tiny_bert, in_dim=16, train_layers=1, **kw).eval()
    a = attribute(model, _graph(2), target=1, steps=4)
    pieces = [p for p, _ in a.pieces]
    assert "<h>" in pieces and all(np.isfinite(v) for _, v in a.pieces)
    if kw.get("markers") == "typed":
        assert len(pieces) > pieces.index("<h>") + 1


def test_piece_attribution_is_none_without_an_encoder():
    model = RelationGNN(16, 3, hidden=16, heads=2).eval()
    assert piece_attribution(model, graph_to_data(_graph()), 0) is None


def test_the_picture_shows_the_evidence_and_the_pieces(tmp_path, tiny_bert):
    import matplotlib

    from mmre_cli.explain.draw import draw_explanation

    model = _hf_model(tiny_bert, in_dim=16, train_layers=1).eval()
    graph = _graph(3)
    a = attribute(model, graph, target=1, steps=4)
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text in the SVG
        out = draw_explanation(
            tmp_path / "x.svg",
            cmg=graph,
            refined=graph,
            image=None,
            relation="rel",
            probability=0.5,
            top3=[("rel", 0.5)],
            attribution=a,
        )
    svg = out.read_text()
    assert "evidence (IG for the prediction)" in svg and "node for the prediction (IG)" in svg
    assert "word pieces (IG" in svg and "&lt;h&gt;" in svg
    top = max(range(graph.num_nodes), key=lambda i: a.node[i])
    assert graph.node_text[top] in svg.split("evidence (IG for the prediction):", 1)[1][:400]
