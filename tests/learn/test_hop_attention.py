"""Graph4MM's hop-diffused attention: the series, the edge mask, and no leakage across a batch."""

import pytest
import torch
from torch_geometric.data import Batch

from mmre_cli.learn.gnn import RelationGNN
from mmre_cli.learn.hop_attention import HopDiffusedAttention, dense_attention_mask, hop_diffusion
from tests.learn.test_gnn import F_IN, make_data

# the 3-node path 0 - 1 - 2 (both directions), every node attending to itself: uniform attention
# over {self} ∪ neighbours gives this row-normalised T, and by hand T² and T³:
T = torch.tensor([[1 / 2, 1 / 2, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 2, 1 / 2]], dtype=torch.float64)
T2 = torch.tensor([[5 / 12, 5 / 12, 1 / 6], [5 / 18, 4 / 9, 5 / 18], [1 / 6, 5 / 12, 5 / 12]], dtype=torch.float64)
T3 = torch.tensor(
    [[25 / 72, 31 / 72, 16 / 72], [31 / 108, 46 / 108, 31 / 108], [16 / 72, 31 / 72, 25 / 72]], dtype=torch.float64
)
PATH = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])


def test_series_on_a_path_graph_equals_the_hand_computed_one():
    expected = 0.1 * torch.eye(3, dtype=torch.float64) + 0.09 * T + 0.081 * T2 + 0.0729 * T3
    torch.testing.assert_close(hop_diffusion(T, alpha=0.1, hops=4), expected, atol=1e-12, rtol=0)
    assert float(hop_diffusion(T).sum(dim=1)[0]) == pytest.approx(1 - 0.9**4)  # truncated: rows sum to 0.3439
    torch.testing.assert_close(hop_diffusion(T, alpha=0.5, hops=2), 0.5 * torch.eye(3, dtype=torch.float64) + 0.25 * T)


def test_layer_builds_that_t_from_the_edges():
    """With W_Q = W_K = 0 the scores are equal, so T is the uniform row-normalised neighbourhood."""
    layer = HopDiffusedAttention(4, heads=2).double()
    with torch.no_grad():
        layer.q.weight.zero_(), layer.q.bias.zero_(), layer.k.weight.zero_(), layer.k.bias.zero_()
    x = torch.randn(3, 4, dtype=torch.float64)
    t, mask = layer.attention(x, PATH)
    assert t.shape == (1, 2, 3, 3) and mask.all()
    for head in range(2):
        torch.testing.assert_close(t[0, head], T, atol=1e-12, rtol=0)
    # the output is W_O (A V)
    out = layer(x, PATH)
    a = hop_diffusion(T)
    v = layer.v(x).view(3, 2, 2).transpose(0, 1)
    torch.testing.assert_close(out, layer.o((a @ v).transpose(0, 1).reshape(3, 4)), atol=1e-10, rtol=0)


def test_attention_to_non_neighbours_is_exactly_zero():
    torch.manual_seed(0)
    layer = HopDiffusedAttention(8, heads=2, edge_dim=3)
    n, ei = 6, torch.tensor([[0, 1, 2, 4], [1, 2, 0, 5]])  # 0->1->2->0 and 4->5; node 3 alone
    t, _ = layer.attention(torch.randn(n, 8), ei, edge_feat=torch.randn(4, 3))
    allowed = torch.eye(n, dtype=torch.bool)
    allowed[ei[1], ei[0]] = True  # row i may read j for an edge j -> i
    assert bool((t[0][:, ~allowed] == 0).all())
    assert bool((t[0][:, allowed] > 0).all())
    torch.testing.assert_close(t.sum(-1), torch.ones(1, 2, n))
    a = hop_diffusion(t)  # diffusion never crosses to another component
    assert bool((a[0][:, :3, 3:] == 0).all()) and bool((a[0][:, 3, torch.tensor([0, 1, 2, 4, 5])] == 0).all())


def test_mask_is_per_graph():
    ei = torch.tensor([[0, 2], [1, 3]])
    batch = torch.tensor([0, 0, 1, 1])
    from torch_geometric.utils import to_dense_batch

    _, node_mask = to_dense_batch(torch.zeros(4, 1), batch)
    m = dense_attention_mask(ei, batch, 2, 2, node_mask)
    assert m.tolist() == [[[True, False], [True, True]], [[True, False], [True, True]]]


def test_a_batch_gives_each_graph_its_output_alone():
    torch.manual_seed(1)
    layer = HopDiffusedAttention(8, heads=2, edge_dim=5).eval()
    graphs = [(torch.randn(n, 8), torch.randint(0, n, (2, e)), torch.randn(e, 5)) for n, e in ((5, 7), (3, 4), (7, 12))]
    alone = torch.cat([layer(x, ei, None, ef) for x, ei, ef in graphs])
    offsets = [0, 5, 8]
    x = torch.cat([g[0] for g in graphs])
    ei = torch.cat([g[1] + o for g, o in zip(graphs, offsets)], dim=1)
    ef = torch.cat([g[2] for g in graphs])
    batch = torch.tensor([0] * 5 + [1] * 3 + [2] * 7)
    torch.testing.assert_close(layer(x, ei, batch, ef), alone, atol=1e-6, rtol=1e-5)


def test_relation_gnn_with_hop_attention_batches_like_single_graphs_and_trains():
    torch.manual_seed(0)
    model = RelationGNN(F_IN, 4, hidden=16, heads=2, conv="hop_attention").eval()
    datas = [make_data(5, 8, seed=s) for s in range(3)] + [make_data(4, 0, seed=9)]
    torch.testing.assert_close(
        model(Batch.from_data_list(datas)), torch.cat([model(d) for d in datas]), atol=1e-5, rtol=1e-5
    )
    model.train()
    model(Batch.from_data_list(datas)).sum().backward()
    assert model.convs[0].q.weight.grad is not None and model.convs[0].edge_bias.weight.grad is not None
    with pytest.raises(ValueError, match="conv must be one of"):
        RelationGNN(F_IN, 4, conv="transformer")
