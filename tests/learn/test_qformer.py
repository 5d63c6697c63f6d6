"""Graph4MM's MM-QFormer: shapes, what it reads, and no leakage across a batch."""

import torch
from torch_geometric.data import Batch

from mmre_cli.learn.gnn import RelationGNN
from mmre_cli.learn.qformer import MMQFormer
from tests.learn.test_gnn import F_IN, make_data


def _graph(n_text: int, n_image: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_text + n_image, 16, generator=g), torch.tensor([0] * n_text + [2] * n_image)


def test_batch_equals_each_graph_alone_including_a_graph_without_image_nodes():
    torch.manual_seed(0)
    qf = MMQFormer(16, num_queries=4, heads=2).eval()
    graphs = [_graph(5, 3, 1), _graph(2, 0, 2), _graph(4, 6, 3)]
    alone = torch.cat([qf(h, m, torch.zeros(len(m), dtype=torch.long), 1) for h, m in graphs])
    h = torch.cat([g[0] for g in graphs])
    mod = torch.cat([g[1] for g in graphs])
    batch = torch.cat([torch.full((len(g[1]),), i) for i, g in enumerate(graphs)])
    out = qf(h, mod, batch, 3)
    assert out.shape == (3, 16) and torch.isfinite(out).all()
    torch.testing.assert_close(out, alone, atol=1e-5, rtol=1e-5)


def test_reads_the_image_view_and_the_text_nodes():
    torch.manual_seed(0)
    qf = MMQFormer(16, num_queries=4, heads=2).eval()
    h, mod = _graph(4, 3, 5)
    batch = torch.zeros(7, dtype=torch.long)
    base = qf(h, mod, batch, 1)
    for rows in (slice(0, 4), slice(4, 7)):  # change only the text rows, then only the image rows
        h2 = h.clone()
        h2[rows] += 1.0
        assert not torch.allclose(qf(h2, mod, batch, 1), base)


def test_relation_gnn_with_qformer_batches_like_single_graphs_and_trains():
    torch.manual_seed(0)
    model = RelationGNN(F_IN, 4, hidden=16, heads=2, fusion="mm_qformer", queries=3).eval()
    assert model.z_dim == 5 * 16 and model.classifier[0].in_features == 5 * 16
    datas = [make_data(5, 8, seed=s) for s in range(3)]
    torch.testing.assert_close(
        model(Batch.from_data_list(datas)), torch.cat([model(d) for d in datas]), atol=1e-5, rtol=1e-5
    )
    model.train()
    model(Batch.from_data_list(datas)).sum().backward()
    assert model.qformer.queries.grad is not None and model.qformer.queries.grad.abs().sum() > 0
