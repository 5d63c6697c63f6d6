"""Random ring graphs for the editor's tests: what ``test_policy``'s ``ring_batch`` and
``test_editing``'s ``make_batch`` draw, from one seeded generator (their draws, in order: the
node count, the clustered features, the node order that picks head and tail, edge types, edge
features, the label)."""

from __future__ import annotations

import torch
from torch_geometric.data import Batch, Data

from mmre_cli.graphs.graph import EDGE_ATTR_DIM
from mmre_cli.learn.editing import ADDED_EDGE_TYPE


def ring_graphs(
    num_graphs: int,
    *,
    dim: int,
    seed: int,
    n_range: tuple[int, int],
    spread: float,
    num_classes: int,
    chords: bool = False,
    noise: bool = False,
) -> Batch:
    """Bidirectional rings of ``n_range`` nodes (with ``chords``: one more edge 0 → n/2), features
    around 3 random centres (± ``spread``), head and tail at random nodes, a random label.

    With ``noise`` one non-head/tail node per graph gets ``x[:, 0] = 3`` (the others 0) and the
    label is 1: the node a good editor deletes."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(3, dim, generator=g)
    data = []
    for _ in range(num_graphs):
        n = int(torch.randint(n_range[0], n_range[1], (1,), generator=g))
        x = centers[torch.randint(0, 3, (n,), generator=g)] + spread * torch.randn(n, dim, generator=g)
        perm = torch.randperm(n, generator=g)
        if noise:
            x[:, 0] = 0.0
            x[perm[2], 0] = 3.0
        src = torch.arange(n)
        dst = (src + 1) % n
        ei = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)
        if chords:
            ei = torch.cat([ei, torch.tensor([[0], [n // 2]])], 1)
        role = torch.zeros(n, dtype=torch.long)
        role[perm[0]], role[perm[1]] = 1, 2
        e = ei.size(1)
        data.append(
            Data(
                x=x,
                edge_index=ei,
                edge_type=torch.randint(0, ADDED_EDGE_TYPE, (e,), generator=g),
                edge_attr=torch.rand(e, EDGE_ATTR_DIM, generator=g),
                node_role=role,
                y=torch.tensor([1]) if noise else torch.randint(0, num_classes, (1,), generator=g),
                head_index=perm[:1].clone(),
                tail_index=perm[1:2].clone(),
            )
        )
    return Batch.from_data_list(data)
