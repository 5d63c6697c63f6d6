r"""Graph4MM's Hop-Diffused Attention (Ning et al., 2025) as a graph layer (issue 12).

For one graph with node states :math:`\mathbf{H} \in \mathbb{R}^{n \times d}`, per head
:math:`h` (of :math:`M`, :math:`d_k = d / M`):

.. math::
    S^{(h)}_{ij} &= \frac{(\mathbf{W}_Q \mathbf{h}_i)^{(h)} \cdot (\mathbf{W}_K \mathbf{h}_j)^{(h)}}
        {\sqrt{d_k}} + b^{(h)}_{ij}, \qquad
    b^{(h)}_{ij} = (\mathbf{w}_b \mathbf{e}_{ji})^{(h)} \ \text{(edge } j \to i\text{)} \\
    T^{(h)}_{ij} &= \frac{\mathbb{1}[j \in \mathcal{N}(i) \cup \{i\}]\, \exp S^{(h)}_{ij}}
        {\sum_{j'} \mathbb{1}[j' \in \mathcal{N}(i) \cup \{i\}]\, \exp S^{(h)}_{ij'}}
        \qquad \text{(attention masked to the graph's edges, row-normalised)} \\
    \mathcal{A}^{(h)} &= \sum_{k=0}^{K-1} \alpha (1-\alpha)^k \bigl(T^{(h)}\bigr)^k
        \qquad \text{(hop diffusion; } \alpha = 0.1,\ K = 4 \text{ by default)} \\
    \mathbf{O} &= \mathbf{W}_O \bigl[\mathcal{A}^{(1)} \mathbf{V}^{(1)} \,\|\, \dots \,\|\,
        \mathcal{A}^{(M)} \mathbf{V}^{(M)}\bigr], \qquad \mathbf{V} = \mathbf{W}_V \mathbf{H}

:math:`\mathcal{N}(i)` are the sources of the edges into :math:`i` (PyG's ``edge_index[0] ->
edge_index[1]``), and every node attends to itself (the self loop), so no row of :math:`T` is
empty. The series is truncated as written, so the weights sum to :math:`1 - (1-\alpha)^K`
(0.344 at the defaults), not to 1: the output projection :math:`\mathbf{W}_O` and the layer norm
of :class:`~mmre_cli.learn.gnn.RelationGNN` (``h ← LayerNorm(h + Dropout(ELU(O)))``, the same
residual as its GAT layers) absorb the scale. Choices this project made, with why:

* **Value projection**: a separate linear :math:`\mathbf{W}_V` per layer, as in standard
  attention — the diffused mixing :math:`\mathcal{A}` then acts on a learned view of the states.
* **Residual**: outside the layer, in the GNN's stack (the :math:`k=0` term already keeps
  :math:`\alpha` of each node's own value inside :math:`\mathcal{A}`).
* **Edge bias** :math:`b_{ij}`: the GNN's edge embedding (edge type, ``edge_attr``, diffusion
  weight) mapped to one scalar per head, so the edge features shape the attention as they do in
  the GATv2 layers. Several edges ``j → i`` add their biases.

**No cross-graph leakage.** The public Graph4MM code averages attention over heads and broadcasts
its mask with ``graph.unsqueeze(1)``, which mixes batch items. Here every graph is its own block:
nodes are padded per graph with :func:`torch_geometric.utils.to_dense_batch`, the mask is the
dense adjacency of that graph only (``[B, n_max, n_max]``, broadcast over heads as
``[B, 1, n_max, n_max]``), and padded keys get zero attention — a batch of graphs gives each graph
exactly its output alone (tested).

Shapes:
    input: ``x [N, d]``, ``edge_index [2, E]``, optional ``edge_feat [E, d_e]``, ``batch [N]``
    output: ``[N, d]``; :func:`hop_diffusion`: ``T [..., n, n]`` -> ``[..., n, n]``
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["HopDiffusedAttention", "hop_diffusion", "dense_attention_mask"]


def hop_diffusion(t: Tensor, alpha: float = 0.1, hops: int = 4) -> Tensor:
    r""":math:`\sum_{k=0}^{K-1} \alpha (1-\alpha)^k T^k` for a (batched) square matrix ``t``.

    Shapes:
        ``[..., n, n]`` -> ``[..., n, n]``
    """
    if hops < 1:
        raise ValueError(f"hops must be >= 1, not {hops}")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], not {alpha}")
    eye = torch.eye(t.size(-1), dtype=t.dtype, device=t.device).expand_as(t)
    power, out = eye, alpha * eye
    for k in range(1, hops):
        power = power @ t
        out = out + alpha * (1.0 - alpha) ** k * power
    return out


def dense_attention_mask(edge_index: Tensor, batch: Tensor, num_graphs: int, n_max: int, node_mask: Tensor) -> Tensor:
    """Boolean ``[B, n_max, n_max]``: entry ``[b, i, j]`` is true when node ``i`` of graph ``b`` may
    attend to node ``j`` of the same graph (an edge ``j -> i``, or ``i == j`` for a real node).

    Shapes:
        ``edge_index [2, E]``, ``batch [N]``, ``node_mask [B, n_max]`` -> ``[B, n_max, n_max]``
    """
    from torch_geometric.utils import to_dense_adj

    adj = to_dense_adj(edge_index, batch, batch_size=num_graphs, max_num_nodes=n_max)  # [B, src, dst]
    allowed = adj.transpose(1, 2) > 0  # [b, i(dst), j(src)]
    eye = torch.eye(n_max, dtype=torch.bool, device=allowed.device).unsqueeze(0)
    return (allowed | eye) & node_mask.unsqueeze(1) & node_mask.unsqueeze(2)


class HopDiffusedAttention(nn.Module):
    r"""One Hop-Diffused Attention layer (module docstring for the formulas).

    Args:
        dim (int): node state size :math:`d`, divisible by ``heads``.
        heads (int, optional): attention heads :math:`M`. (default: ``4``)
        alpha (float, optional): teleport weight :math:`\alpha` of the hop series. (default: ``0.1``)
        hops (int, optional): number of terms :math:`K` (powers :math:`T^0 \dots T^{K-1}`).
            (default: ``4``)
        edge_dim (int, optional): width of the edge features for the per-head bias; ``None`` for
            no bias. (default: ``None``)
        dropout (float, optional): dropout on the diffused attention. (default: ``0.0``)

    Shapes:
        - **input:** ``x [N, d]``, ``edge_index [2, E]``, ``edge_feat [E, edge_dim]`` (optional),
          ``batch [N]`` (optional: one graph)
        - **output:** ``[N, d]``
    """

    def __init__(
        self,
        dim: int,
        heads: int = 4,
        alpha: float = 0.1,
        hops: int = 4,
        edge_dim: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.heads, self.dk, self.alpha, self.hops = heads, dim // heads, float(alpha), int(hops)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.edge_bias = nn.Linear(edge_dim, heads) if edge_dim else None
        self.dropout = nn.Dropout(dropout)
        #: the last forward's diffused attention ``[B, M, n_max, n_max]`` (for inspection)
        self.last_attention: Tensor | None = None

    def attention(
        self, x: Tensor, edge_index: Tensor, batch: Tensor | None = None, edge_feat: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(T, node_mask)``: the masked, row-normalised attention per graph and head.

        Shapes:
            ``T [B, M, n_max, n_max]``, ``node_mask [B, n_max]``
        """
        from torch_geometric.utils import to_dense_adj, to_dense_batch

        if batch is None:
            batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
        dense, node_mask = to_dense_batch(x, batch)  # [B, n, d]
        b, n, _ = dense.shape
        q = self.q(dense).view(b, n, self.heads, self.dk).transpose(1, 2)  # [B, M, n, dk]
        k = self.k(dense).view(b, n, self.heads, self.dk).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.dk)  # [B, M, n(i), n(j)]
        if self.edge_bias is not None and edge_feat is not None and edge_index.numel():
            bias = to_dense_adj(
                edge_index, batch, edge_attr=self.edge_bias(edge_feat), batch_size=b, max_num_nodes=n
            )  # [B, src j, dst i, M]
            scores = scores + bias.permute(0, 3, 2, 1)
        mask = dense_attention_mask(edge_index, batch, b, n, node_mask).unsqueeze(1)  # [B, 1, n, n]
        scores = scores.masked_fill(~mask, float("-inf"))
        t = torch.softmax(scores, dim=-1)
        t = torch.nan_to_num(t, nan=0.0)  # padded rows (no allowed key) -> 0
        return t, node_mask

    def forward(
        self, x: Tensor, edge_index: Tensor, batch: Tensor | None = None, edge_feat: Tensor | None = None
    ) -> Tensor:
        """Diffused attention output per node (see the class docstring for shapes)."""
        from torch_geometric.utils import to_dense_batch

        if batch is None:
            batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
        t, node_mask = self.attention(x, edge_index, batch, edge_feat)
        a = self.dropout(hop_diffusion(t, self.alpha, self.hops))  # [B, M, n, n]
        self.last_attention = a.detach()
        dense, _ = to_dense_batch(x, batch)
        b, n, d = dense.shape
        v = self.v(dense).view(b, n, self.heads, self.dk).transpose(1, 2)  # [B, M, n, dk]
        out = (a @ v).transpose(1, 2).reshape(b, n, d)  # [B, n, d]
        return self.o(out[node_mask])
