"""RelationGNN / PooledMLP: shapes, readout, edge features, batching."""

import pytest
import torch
from torch_geometric.data import Batch, Data

from mmre_cli.graphs.graph import EDGE_ATTR_DIM, EDGE_TYPES, ROLE_HEAD, ROLE_TAIL
from mmre_cli.learn.gnn import MODEL_REGISTRY, PooledMLP, RelationGNN

F_IN = 12


def make_data(n: int, e: int, head: int = 0, tail: int = 1, seed: int = 0, y: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    role = torch.zeros(n, dtype=torch.long)
    role[head], role[tail] = ROLE_HEAD, ROLE_TAIL
    return Data(
        x=torch.randn(n, F_IN, generator=g),
        edge_index=torch.randint(0, n, (2, e), generator=g),
        edge_type=torch.randint(0, len(EDGE_TYPES), (e,), generator=g),
        edge_attr=torch.randn(e, EDGE_ATTR_DIM, generator=g),
        node_kind=torch.randint(0, 6, (n,), generator=g),
        node_modality=torch.randint(0, 3, (n,), generator=g),
        node_role=role,
        y=torch.tensor([y]),
        head_index=torch.tensor([head]),
        tail_index=torch.tensor([tail]),
        num_nodes=n,
    )


@pytest.mark.parametrize("conv", ["gatv2", "gat"])
@pytest.mark.parametrize("readout", ["head_tail_pool", "head_tail"])
def test_output_shape_and_backward(conv, readout):
    model = RelationGNN(F_IN, 5, hidden=32, layers=2, heads=4, conv=conv, readout=readout)
    b = Batch.from_data_list([make_data(6, 10, seed=1), make_data(4, 0, seed=2), make_data(9, 20, 3, 7, seed=3)])
    assert b.head_index.tolist() == [0, 6, 13] and b.tail_index.tolist() == [1, 7, 17]
    out = model(b)
    assert out.shape == (3, 5)
    out.sum().backward()
    assert model.in_proj.weight.grad is not None


def test_batch_equals_single_graphs_in_eval():
    torch.manual_seed(0)
    model = RelationGNN(F_IN, 4, hidden=16, heads=2).eval()
    datas = [make_data(5, 8, seed=s) for s in range(3)]
    batched = model(Batch.from_data_list(datas))
    single = torch.cat([model(d) for d in datas])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_edge_weight_changes_output_and_is_optional():
    torch.manual_seed(0)
    model = RelationGNN(F_IN, 3, hidden=16, heads=2).eval()
    d = make_data(6, 12, seed=4)
    base = model(d)
    d.edge_weight = torch.ones(12)
    torch.testing.assert_close(model(d), base)  # missing weight == all ones
    d.edge_weight = torch.linspace(0, 1, 12)
    assert not torch.allclose(model(d), base)


def test_minimal_data_without_optional_fields():
    model = RelationGNN(F_IN, 3, hidden=16, heads=2)
    d = Data(
        x=torch.randn(4, F_IN),
        edge_index=torch.tensor([[0, 1], [1, 2]]),
        head_index=torch.tensor([0]),
        tail_index=torch.tensor([3]),
    )
    assert model(d).shape == (1, 3)


def test_bad_edge_attr_and_hidden():
    model = RelationGNN(F_IN, 3, hidden=16, heads=2)
    d = make_data(4, 3)
    d.edge_attr = torch.randn(3, EDGE_ATTR_DIM + 1)
    with pytest.raises(ValueError):
        model(d)
    with pytest.raises(ValueError):
        RelationGNN(F_IN, 3, hidden=10, heads=4)
    with pytest.raises(ValueError):
        RelationGNN(F_IN, 3, conv="gcn")


def test_pooled_mlp_ignores_edges():
    torch.manual_seed(0)
    model = PooledMLP(F_IN, 4, hidden=16).eval()
    d = make_data(6, 10, seed=5)
    out = model(d)
    assert out.shape == (1, 4)
    d2 = d.clone()
    d2.edge_index = torch.zeros((2, 0), dtype=torch.long)
    torch.testing.assert_close(model(d2), out)
    assert model(Batch.from_data_list([d, d2])).shape == (2, 4)


def test_registry_and_config():
    m = RelationGNN(F_IN, 3, hidden=16, heads=2)
    assert MODEL_REGISTRY["RelationGNN"](**m.config).config == m.config
    p = PooledMLP(F_IN, 3, hidden=8)
    assert MODEL_REGISTRY["PooledMLP"](**p.config).config == p.config


def test_diffused_graph_feeds_the_gnn():
    from mmre_cli.learn.diffusion import diffuse_and_prune

    model = RelationGNN(F_IN, 3, hidden=16, heads=2).eval()
    b = Batch.from_data_list([make_data(6, 12, seed=s) for s in range(2)])
    pruned = diffuse_and_prune(b, tau=0.5)
    assert pruned.edge_weight.shape == (pruned.edge_index.size(1),)
    assert model(pruned).shape == (2, 3)
