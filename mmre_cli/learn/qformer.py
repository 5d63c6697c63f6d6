r"""Graph4MM's MM-QFormer (Ning et al., 2025) as a readout of the relation classifier (issue 12).

:math:`Q` learnable queries :math:`\mathbf{Q}^{(0)} \in \mathbb{R}^{Q \times d}` (shared by all
graphs) read graph :math:`g`'s image-view nodes :math:`\mathbf{V}_g` (caption nodes, or
image/object nodes when the features come from CLIP: every node whose modality is not ``text``)
and its text nodes :math:`\mathbf{T}_g`. One block, repeated ``layers`` times:

.. math::
    \mathbf{Q}' &= \mathrm{LN}\bigl(\mathbf{Q} + \mathrm{MHA}(\mathbf{Q}, \mathbf{Q}, \mathbf{Q})\bigr)
        && \text{queries self-attend} \\
    \mathbf{Q}'' &= \mathrm{LN}\bigl(\mathbf{Q}' + \mathrm{MHA}(\mathbf{Q}', [\mathbf{n}; \mathbf{V}_g],
        [\mathbf{n}; \mathbf{V}_g])\bigr) && \text{cross-attend to the image view} \\
    \mathbf{Q}''' &= \mathrm{LN}\bigl(\mathbf{Q}'' + \mathrm{MHA}(\mathbf{Q}'', [\mathbf{Q}''; \mathbf{T}_g],
        [\mathbf{Q}''; \mathbf{T}_g])\bigr) && \text{attend jointly with the text nodes} \\
    \mathbf{Q}^{+} &= \mathrm{LN}\bigl(\mathbf{Q}''' + \mathrm{FFN}(\mathbf{Q}''')\bigr)
        && \mathrm{FFN}(\mathbf{z}) = \mathbf{W}_2\,\mathrm{GELU}(\mathbf{W}_1 \mathbf{z})

and the readout is the mean of the final queries, :math:`\mathbf{q}_g = \frac{1}{Q}\sum_r
\mathbf{Q}^{+}_r`, which :class:`~mmre_cli.learn.gnn.RelationGNN` appends to its readout
:math:`\mathbf{z}_g`. :math:`\mathbf{n}` is one learned *null* key, always present, so a graph with no
image-view node (a sentence whose image has no caption) attends to it instead of to nothing
(a softmax over an empty set); the text side always has the queries themselves.

Graphs never mix: node sets are padded per graph with
:func:`torch_geometric.utils.to_dense_batch` and padded positions are ``key_padding_mask``-ed
out, so each graph's :math:`\mathbf{q}_g` is the same in a batch as alone (tested).

Shapes:
    input: ``h [N, d]`` node states, ``modality [N]`` (0 = text), ``batch [N]``, ``B`` graphs
    output: ``[B, d]``
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MMQFormer"]


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.joint_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4))

    def forward(self, q: Tensor, image: Tensor, image_pad: Tensor, text: Tensor, text_pad: Tensor) -> Tensor:
        q = self.norms[0](q + self.self_attn(q, q, q, need_weights=False)[0])
        q = self.norms[1](q + self.cross_attn(q, image, image, key_padding_mask=image_pad, need_weights=False)[0])
        joint = torch.cat([q, text], dim=1)
        joint_pad = torch.cat([torch.zeros(q.shape[:2], dtype=torch.bool, device=q.device), text_pad], dim=1)
        q = self.norms[2](q + self.joint_attn(q, joint, joint, key_padding_mask=joint_pad, need_weights=False)[0])
        return self.norms[3](q + self.ffn(q))


class MMQFormer(nn.Module):
    r"""Learnable queries over a graph's image-view and text nodes (module docstring).

    Args:
        dim (int): node state size :math:`d`, divisible by ``heads``.
        num_queries (int, optional): :math:`Q`. (default: ``8``)
        heads (int, optional): attention heads. (default: ``4``)
        layers (int, optional): blocks. (default: ``1``)
        dropout (float, optional): attention and FFN dropout. (default: ``0.1``)

    Shapes:
        - **input:** ``h [N, d]``, ``modality [N]``, ``batch [N]``, ``num_graphs`` B
        - **output:** ``[B, d]``
    """

    def __init__(self, dim: int, num_queries: int = 8, heads: int = 4, layers: int = 1, dropout: float = 0.1):
        super().__init__()
        if num_queries < 1:
            raise ValueError(f"num_queries must be >= 1, not {num_queries}")
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.null = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList(_Block(dim, heads, dropout) for _ in range(layers))

    def forward(self, h: Tensor, modality: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """Mean of the final queries per graph (class docstring for shapes)."""
        from torch_geometric.utils import to_dense_batch

        is_text = modality.to(h.device) == 0
        text, text_real = to_dense_batch(h[is_text], batch[is_text], batch_size=num_graphs)
        image, image_real = to_dense_batch(h[~is_text], batch[~is_text], batch_size=num_graphs)
        null = self.null.to(h.dtype).expand(num_graphs, 1, -1)
        image = torch.cat([null, image], dim=1)
        image_pad = torch.cat([torch.zeros(num_graphs, 1, dtype=torch.bool, device=h.device), ~image_real], dim=1)
        q = self.queries.to(h.dtype).unsqueeze(0).expand(num_graphs, -1, -1)
        for block in self.blocks:
            q = block(q, image, image_pad, text, ~text_real)
        return q.mean(dim=1)
