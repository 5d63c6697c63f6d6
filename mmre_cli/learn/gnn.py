r"""Relation classifiers over (refined) cross-modal graphs.

:class:`RelationGNN` — step 6 of the pipeline. With :math:`\mathbf{x}_i` the node feature and
:math:`k_i, m_i, r_i` its kind / modality / role ids,

.. math::
    \mathbf{h}^{(0)}_i &= \mathbf{W}_{in}\mathbf{x}_i + \mathbf{E}_{kind}[k_i]
        + \mathbf{E}_{mod}[m_i] + \mathbf{E}_{role}[r_i] \\
    \mathbf{e}_{ij} &= \mathbf{E}_{type}[t_{ij}] + \mathbf{W}_e\,[\mathbf{a}_{ij} \,\|\, w_{ij}] \\
    \mathbf{h}^{(l)}_i &= \mathrm{LayerNorm}\Bigl(\mathbf{h}^{(l-1)}_i + \mathrm{Dropout}\bigl(
        \mathrm{ELU}(\mathrm{GATv2}(\mathbf{h}^{(l-1)}, \mathbf{e})_i)\bigr)\Bigr),
        \quad l = 1..L

where GATv2 attends over the edges with :math:`\alpha_{ij} \propto \exp\bigl(\mathbf{a}^\top
\mathrm{LeakyReLU}(\mathbf{W}[\mathbf{h}_i \| \mathbf{h}_j] + \mathbf{W}_e'\mathbf{e}_{ij})\bigr)`
(self loops added, their edge features the mean of the incoming ones). :math:`\mathbf{a}_{ij}` is
``edge_attr`` (:data:`~mmre_cli.graphs.graph.EDGE_ATTR_COLUMNS`) and :math:`w_{ij}` the diffusion
edge weight (``data.edge_weight``, 1 when absent), appended as one extra column so the attention
sees it. The readout for graph :math:`g` with head node :math:`h_g` and tail node :math:`t_g` is

.. math::
    \mathbf{z}_g = [\mathbf{h}_{h_g} \,\|\, \mathbf{h}_{t_g} \,\|\,
        \mathbf{h}_{h_g} \odot \mathbf{h}_{t_g} \,\|\, \mathrm{mean}_{i \in g}\mathbf{h}_i],
    \qquad \hat{\mathbf{y}}_g = \mathrm{MLP}(\mathbf{z}_g)

Switches (issue 12): ``conv="hop_attention"`` replaces each GATv2 layer by Graph4MM's
:class:`~mmre_cli.learn.hop_attention.HopDiffusedAttention` (same residual and norm);
``fusion="mm_qformer"`` appends Graph4MM's :class:`~mmre_cli.learn.qformer.MMQFormer` readout
:math:`\mathbf{q}_g` to :math:`\mathbf{z}_g`; ``loss="ce+negative_learning"`` adds GraphMNL-style
text / image-view / structure branches (:mod:`mmre_cli.learn.negative`): in training mode the
forward then returns a dict with every branch's logits, and :meth:`RelationGNN.loss` turns it
into the loss; in eval mode it returns the fusion logits as always.

:class:`PooledMLP` — the "w/o GNN" ablation: the same readout on the *input* features, no edges.

Both take a PyG ``Data``/``Batch`` as produced by ``mmre_cli.graphs.pyg.graph_to_data`` and
batched with ``Batch.from_data_list`` (``head_index``/``tail_index`` are incremented per graph by
PyG since their names contain ``index``).

Shapes:
    input: ``x [N, F]``, ``edge_index [2, E]``, ``edge_type [E]``, ``edge_attr [E, edge_dim]``,
    optional ``edge_weight [E]``, ``node_kind/node_modality/node_role [N]``, ``batch [N]``,
    ``head_index [B]``, ``tail_index [B]``
    output: logits ``[B, C]``
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmre_cli.graphs.graph import EDGE_ATTR_DIM, EDGE_TYPES, MODALITIES, NODE_KINDS

__all__ = ["RelationGNN", "PooledMLP", "MODEL_REGISTRY", "register_model", "CONVS", "FUSIONS", "classification_loss"]

_NUM_ROLES = 3
#: graph layers of :class:`RelationGNN` (``train_gnn.graph_encoder`` names one of them)
CONVS = ("gatv2", "gat", "hop_attention")
#: readout fusions (``train_gnn.fusion``)
FUSIONS = ("none", "mm_qformer")
_TEXT = MODALITIES.index("text")


def classification_loss(model: nn.Module, out, y: Tensor, weight: Tensor | None) -> Tensor:
    """The training loss for a model's forward output: class-weighted cross-entropy on logits, or
    the branch loss of :mod:`mmre_cli.learn.negative` when the forward returned branches (a dict).

    Shapes:
        ``out [B, C]`` (or the branch dict), ``y [B]`` -> scalar
    """
    if isinstance(out, dict):
        from mmre_cli.learn.negative import branch_loss

        return branch_loss(out, y, weight, model.branch_heads)
    return F.cross_entropy(out.float(), y, weight=weight)


def _graph_context(data) -> tuple[Tensor, int, Tensor, Tensor]:
    """``(batch [N], B, head [B], tail [B])`` for a ``Data`` or ``Batch``."""
    x = data.x
    head = data.head_index.reshape(-1).long()
    tail = data.tail_index.reshape(-1).long()
    batch = getattr(data, "batch", None)
    if batch is None:
        batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
    return batch, int(head.numel()), head, tail


def _mean_pool(h: Tensor, batch: Tensor, size: int) -> Tensor:
    from torch_geometric.nn import global_mean_pool

    return global_mean_pool(h, batch, size=size)


def _modality(data, like: Tensor) -> Tensor:
    """``node_modality [N]`` (all text when the data carries none)."""
    mod = getattr(data, "node_modality", None)
    if not isinstance(mod, Tensor) or mod.numel() != like.size(0):
        return torch.full((like.size(0),), _TEXT, dtype=torch.long, device=like.device)
    return mod.long().to(like.device)


def _masked_mean(h: Tensor, batch: Tensor, size: int, mask: Tensor) -> Tensor:
    """Per-graph mean of the rows of ``h`` where ``mask``; zeros for a graph with none.

    Shapes:
        ``h [N, H]``, ``batch [N]``, ``mask [N]`` -> ``[size, H]``
    """
    sums = h.new_zeros(size, h.size(1)).index_add(0, batch[mask], h[mask])
    cnt = h.new_zeros(size).index_add(0, batch[mask], torch.ones_like(batch[mask], dtype=h.dtype))
    return sums / cnt.clamp(min=1.0).unsqueeze(-1)


def _classifier(in_dim: int, hidden: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))


def _node_type_embedding(
    data, emb_kind: nn.Embedding, emb_mod: nn.Embedding, emb_role: nn.Embedding, n: int, device
) -> Tensor | float:
    out: Tensor | float = 0.0
    for key, emb in (("node_kind", emb_kind), ("node_modality", emb_mod), ("node_role", emb_role)):
        val = getattr(data, key, None)
        if isinstance(val, Tensor) and val.numel() == n:
            out = out + emb(val.long().clamp(0, emb.num_embeddings - 1).to(device))
    return out


class RelationGNN(nn.Module):
    r"""GATv2 relation classifier with edge types, edge features and diffusion weights.

    See the module docstring for the formulas.

    Args:
        in_dim (int): node feature size F.
        num_classes (int): number of relation labels C (``None`` included).
        hidden (int, optional): hidden size H, divisible by ``heads``. (default: ``256``)
        layers (int, optional): number of attention layers L. (default: ``2``)
        heads (int, optional): attention heads; each outputs ``H / heads`` (concatenated).
            (default: ``4``)
        edge_dim (int, optional): ``edge_attr`` width. (default: ``EDGE_ATTR_DIM`` = 7)
        num_edge_types (int, optional): size of the edge-type vocabulary.
            (default: ``len(EDGE_TYPES)``)
        conv (str, optional): ``"gatv2"`` (:class:`~torch_geometric.nn.GATv2Conv`), ``"gat"``
            (:class:`~torch_geometric.nn.GATConv`) or ``"hop_attention"``
            (:class:`~mmre_cli.learn.hop_attention.HopDiffusedAttention`). (default: ``"gatv2"``)
        dropout (float, optional): dropout on features, attention and the classifier.
            (default: ``0.2``)
        readout (str, optional): ``"head_tail_pool"`` (:math:`[h_h, h_t, h_h \odot h_t,
            \mathrm{mean}(h)]`) or ``"head_tail"`` (without the pooled term).
            (default: ``"head_tail_pool"``)
        use_node_types (bool, optional): add kind / modality / role embeddings to the input
            projection when the data carries them. (default: ``True``)
        hop_alpha, hop_k (optional): :math:`\alpha` and :math:`K` of hop attention. (default: ``0.1``, ``4``)
        fusion (str, optional): ``"none"`` or ``"mm_qformer"``. (default: ``"none"``)
        queries (int, optional): MM-QFormer queries. (default: ``8``)
        loss (str, optional): ``"ce"`` or ``"ce+negative_learning"``. (default: ``"ce"``)
        nl_weight (float, optional): :math:`\lambda` of negative learning. (default: ``0.5``)

    Shapes:
        - **input:** a ``Data``/``Batch`` with ``x [N, F]``, ``edge_index [2, E]``,
          ``edge_type [E]`` (optional), ``edge_attr [E, edge_dim]`` (optional),
          ``edge_weight [E]`` (optional), ``head_index [B]``, ``tail_index [B]``,
          ``batch [N]`` (absent for a single graph)
        - **output:** logits ``[B, C]``
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        hidden: int = 256,
        layers: int = 2,
        heads: int = 4,
        edge_dim: int = EDGE_ATTR_DIM,
        num_edge_types: int = len(EDGE_TYPES),
        conv: Literal["gatv2", "gat"] = "gatv2",
        dropout: float = 0.2,
        readout: Literal["head_tail_pool", "head_tail"] = "head_tail_pool",
        use_node_types: bool = True,
        hop_alpha: float = 0.1,
        hop_k: int = 4,
        fusion: Literal["none", "mm_qformer"] = "none",
        queries: int = 8,
        loss: Literal["ce", "ce+negative_learning"] = "ce",
        nl_weight: float = 0.5,
    ):
        super().__init__()
        from torch_geometric.nn import GATConv, GATv2Conv

        from mmre_cli.learn.negative import LOSSES

        if hidden % heads:
            raise ValueError(f"hidden={hidden} must be divisible by heads={heads}")
        if readout not in ("head_tail_pool", "head_tail"):
            raise ValueError(f"unknown readout {readout!r}")
        if conv not in CONVS:
            raise ValueError(f"conv must be one of {', '.join(CONVS)}, not {conv!r}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {fusion!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
        #: constructor kwargs, written to the checkpoint sidecar
        self.config = dict(
            in_dim=in_dim,
            num_classes=num_classes,
            hidden=hidden,
            layers=layers,
            heads=heads,
            edge_dim=edge_dim,
            num_edge_types=num_edge_types,
            conv=conv,
            dropout=dropout,
            readout=readout,
            use_node_types=use_node_types,
            hop_alpha=hop_alpha,
            hop_k=hop_k,
            fusion=fusion,
            queries=queries,
            loss=loss,
            nl_weight=nl_weight,
        )
        self.conv = conv
        self.edge_dim = edge_dim
        self.readout = readout
        self.dropout = nn.Dropout(dropout)
        self.in_proj = nn.Linear(in_dim, hidden)
        self.use_node_types = use_node_types
        if use_node_types:
            self.kind_emb = nn.Embedding(len(NODE_KINDS), hidden)
            self.mod_emb = nn.Embedding(len(MODALITIES), hidden)
            self.role_emb = nn.Embedding(_NUM_ROLES, hidden)
        self.edge_type_emb = nn.Embedding(num_edge_types, hidden)
        self.edge_proj = nn.Linear(edge_dim + 1, hidden)  # +1: diffusion edge weight column
        if conv == "hop_attention":
            from mmre_cli.learn.hop_attention import HopDiffusedAttention

            self.convs = nn.ModuleList(
                HopDiffusedAttention(hidden, heads=heads, alpha=hop_alpha, hops=hop_k, edge_dim=hidden, dropout=dropout)
                for _ in range(layers)
            )
        else:
            conv_cls = {"gatv2": GATv2Conv, "gat": GATConv}[conv]
            self.convs = nn.ModuleList(
                conv_cls(
                    hidden,
                    hidden // heads,
                    heads=heads,
                    concat=True,
                    dropout=dropout,
                    edge_dim=hidden,
                    add_self_loops=True,
                    fill_value="mean",
                )
                for _ in range(layers)
            )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        # N(0, 1) embeddings (PyTorch's default) are ~16x the norm of a projected unit-length
        # feature at H=256 and drown it: the GNN then learns nothing (measured: val F1 stuck at 0).
        for emb in (self.edge_type_emb, *((self.kind_emb, self.mod_emb, self.role_emb) if use_node_types else ())):
            nn.init.normal_(emb.weight, std=0.02)
        struct_dim = hidden * (4 if readout == "head_tail_pool" else 3)
        self.qformer = None
        if fusion == "mm_qformer":
            from mmre_cli.learn.qformer import MMQFormer

            self.qformer = MMQFormer(hidden, num_queries=queries, heads=heads, dropout=dropout)
        #: width of :meth:`readout`'s output z (the classifier's input)
        self.z_dim = struct_dim + (hidden if self.qformer is not None else 0)
        self.classifier = _classifier(self.z_dim, hidden, num_classes, dropout)
        self.branch_heads = None
        if loss == "ce+negative_learning":
            from mmre_cli.learn.negative import BranchHeads

            self.branch_heads = BranchHeads(
                4 * hidden, 3 * hidden, self.z_dim, num_classes, hidden, dropout, nl_weight=nl_weight
            )

    def edge_features(self, data) -> Tensor:
        """Edge embeddings ``E_type[t] + W_e [edge_attr || edge_weight]``.

        Shapes:
            ``[E, H]``
        """
        ei = data.edge_index
        e = ei.size(1)
        dev = self.edge_proj.weight.device
        dtype = self.edge_proj.weight.dtype
        attr = getattr(data, "edge_attr", None)
        if attr is None:
            attr = torch.zeros(e, self.edge_dim, device=dev, dtype=dtype)
        attr = attr.to(dev, dtype)
        if attr.dim() == 1:
            attr = attr.unsqueeze(-1)
        if tuple(attr.shape) != (e, self.edge_dim):
            raise ValueError(f"edge_attr has shape {tuple(attr.shape)}, model expects ({e}, {self.edge_dim})")
        w = getattr(data, "edge_weight", None)
        w = torch.ones(e, 1, device=dev, dtype=dtype) if w is None else w.to(dev, dtype).reshape(e, 1)
        out = self.edge_proj(torch.cat([attr, w], dim=1))
        et = getattr(data, "edge_type", None)
        if et is not None:
            out = out + self.edge_type_emb(et.long().to(dev).clamp(0, self.edge_type_emb.num_embeddings - 1))
        return out

    def encode(self, data) -> tuple[Tensor, Tensor]:
        """``(h0, h)``: the projected input states and the node states after the last layer.

        Shapes:
            ``[N, H]``, ``[N, H]``
        """
        x = data.x.to(self.in_proj.weight.dtype)
        h0 = self.in_proj(x)
        if self.use_node_types:
            h0 = h0 + _node_type_embedding(data, self.kind_emb, self.mod_emb, self.role_emb, x.size(0), h0.device)
        h = self.dropout(h0)
        e = self.edge_features(data)
        batch = getattr(data, "batch", None)
        for conv, norm in zip(self.convs, self.norms):
            out = conv(h, data.edge_index, batch, e) if self.conv == "hop_attention" else conv(h, data.edge_index, e)
            h = norm(h + self.dropout(nn.functional.elu(out)))
        return h0, h

    def node_embeddings(self, data) -> Tensor:
        """Node states after the last attention layer.

        Shapes:
            ``[N, H]``
        """
        return self.encode(data)[1]

    def readout_vector(self, data, h: Tensor) -> Tensor:
        r""":math:`\mathbf{z}_g` (with the MM-QFormer's :math:`\mathbf{q}_g` appended when on).

        Shapes:
            ``h [N, H]`` -> ``[B, z_dim]``
        """
        batch, b, head, tail = _graph_context(data)
        hh, ht = h[head], h[tail]
        parts = [hh, ht, hh * ht]
        if self.readout == "head_tail_pool":
            parts.append(_mean_pool(h, batch, b))
        if self.qformer is not None:
            parts.append(self.qformer(h, _modality(data, h), batch, b))
        return torch.cat(parts, dim=-1)

    def views(self, data, h0: Tensor, z: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The branch views of :mod:`mmre_cli.learn.negative` and ``has_image [B]``.

        Shapes:
            ``text [B, 4H]``, ``image [B, 3H]``, ``structure [B, z_dim]``
        """
        batch, b, head, tail = _graph_context(data)
        text = _modality(data, h0) == _TEXT
        uh, ut = h0[head], h0[tail]
        t_mean = _masked_mean(h0, batch, b, text)
        v_mean = _masked_mean(h0, batch, b, ~text)
        has_image = torch.bincount(batch[~text], minlength=b) > 0
        views = {
            "text": torch.cat([uh, ut, uh * ut, t_mean], dim=-1),
            "image": torch.cat([v_mean, v_mean * uh, v_mean * ut], dim=-1),
            "structure": z,
        }
        return views, has_image

    def forward(self, data):
        """Relation logits, one row per graph (with negative learning, in training mode: the
        branch dict of :class:`~mmre_cli.learn.negative.BranchHeads`).

        Shapes:
            data (``N`` nodes, ``B`` graphs) -> ``[B, C]``
        """
        h0, h = self.encode(data)
        z = self.readout_vector(data, h)
        logits = self.classifier(z)
        if self.branch_heads is not None and self.training:
            views, has_image = self.views(data, h0, z)
            return self.branch_heads(logits, views, has_image)
        return logits


class PooledMLP(nn.Module):
    r"""The "w/o GNN" ablation: a classifier on raw head / tail / pooled features, edges ignored.

    .. math::
        \hat{\mathbf{y}}_g = \mathrm{MLP}\bigl([\mathbf{u}_{h_g} \,\|\, \mathbf{u}_{t_g} \,\|\,
            \mathbf{u}_{h_g} \odot \mathbf{u}_{t_g} \,\|\, \mathrm{mean}_{i\in g}\mathbf{u}_i]\bigr),
        \qquad \mathbf{u}_i = \mathrm{LayerNorm}(\mathbf{W}\mathbf{x}_i)

    Args:
        in_dim (int): node feature size F.
        num_classes (int): number of labels C.
        hidden (int, optional): hidden size H. (default: ``256``)
        dropout (float, optional): dropout in the classifier. (default: ``0.2``)

    Shapes:
        - **input:** ``x [N, F]``, ``head_index [B]``, ``tail_index [B]``, ``batch [N]``
        - **output:** logits ``[B, C]``
    """

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 256, dropout: float = 0.2):
        super().__init__()
        self.config = dict(in_dim=in_dim, num_classes=num_classes, hidden=hidden, dropout=dropout)
        self.proj = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden))
        self.classifier = _classifier(4 * hidden, hidden, num_classes, dropout)

    def forward(self, data) -> Tensor:
        """Relation logits, one row per graph.

        Shapes:
            data (``N`` nodes, ``B`` graphs) -> ``[B, C]``
        """
        u = self.proj(data.x.to(self.proj[0].weight.dtype))
        batch, b, head, tail = _graph_context(data)
        uh, ut = u[head], u[tail]
        return self.classifier(torch.cat([uh, ut, uh * ut, _mean_pool(u, batch, b)], dim=-1))


#: Classes :func:`mmre_cli.learn.checkpoint.load_checkpoint` can rebuild, by class name.
MODEL_REGISTRY: dict[str, type[nn.Module]] = {"RelationGNN": RelationGNN, "PooledMLP": PooledMLP}


def register_model(cls: type[nn.Module]) -> type[nn.Module]:
    """Make ``cls`` loadable from checkpoints (usable as a class decorator).

    The class must take its ``config`` dict as keyword arguments.
    """
    MODEL_REGISTRY[cls.__name__] = cls
    return cls
