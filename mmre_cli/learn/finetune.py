r"""End-to-end fine-tuning of a text encoder together with the relation GNN (issues 4 and 10).

The pipeline's CMG node features are *frozen* vectors. :class:`FinetunedRelationModel`
recomputes the features of the *text-modality* nodes of every batch with a trainable
:class:`~mmre_cli.learn.text_encoder.TextNodeEncoder` (the marked sentence through MiniLM, MPNet or
any BERT-like Hugging Face encoder; markers: :mod:`mmre_cli.learn.markers`), so the relation
loss reaches the encoder's weights. Caption (and visual) nodes keep their frozen features, mapped
by a learned ``Linear`` when their width differs from the encoder's.

**Node features.** With :math:`\mathbf{u}_i` the L2-normalised vector of word :math:`i` and a
text node :math:`n` spanning words :math:`[s_n, e_n)` (``meta["spans"]``: tokens, entities, noun
phrases),

.. math::
    \mathbf{x}_n = \frac{\bar{\mathbf{u}}_n}{\lVert \bar{\mathbf{u}}_n \rVert},\qquad
    \bar{\mathbf{u}}_n = \mathrm{mean}_{i \in [s_n, e_n),\ i \text{ has pieces}}\ \mathbf{u}_i

exactly how the frozen features were made (``encode_words`` normalises each word,
:func:`~mmre_cli.graphs.cmg.pool_span_features` means over the span and normalises again); these
rows replace the text nodes' rows in a copy of ``batch.x`` and the
:class:`~mmre_cli.learn.gnn.RelationGNN` runs on the result.

**Readouts** (``readout``): ``"gnn"`` — the GNN's own readout and classifier;
``"gnn_markers"`` — the GNN readout :math:`\mathbf{z}_g` concatenated with the encoder's
(layer-normalised) hidden states at the ``<h>`` and ``<t>`` opening markers (entity-start pooling,
Baldini Soares et al. 2019; the mean of the entity's words where there is no marker), then a
two-layer MLP; ``"markers"`` — the marker states alone and the same MLP, no graph at all (the
plain fine-tuned baseline: what the graph adds is ``gnn_markers`` minus ``markers``). With
``caption_pass`` the caption's own-pass features (:mod:`mmre_cli.learn.caption_fusion`) join the
marker states; with ``relation_descriptions`` the MLP's last layer scores the pair against the
encoded relation descriptions (:mod:`mmre_cli.learn.relation_text`).

**Data.** The model reads ``node_span [N, 2]``, ``ent_span [1, 4]`` and ``words`` from its
batches: :func:`~mmre_cli.graphs.pyg.graph_to_data` adds them with ``words=True`` (from what
merge-cmg records in each graph's meta), and every stage asks for them when the model's
``needs_words`` is true.

**Training** (:mod:`mmre_cli.learn.finetune_training`). :func:`fit_finetuned` is
:func:`~mmre_cli.learn.trainer.fit_classifier` with two learning rates (``enc_lr`` for the
transformer, no weight decay on its biases and LayerNorms; ``head_lr`` for the GNN and
classifier), linear warm-up then linear decay, the same class weights, the same val micro-F1 model
selection and the same history keys.

Shapes:
    FinetunedRelationModel: a batch of ``graph_to_data(g, words=True)`` -> logits ``[B, C]``
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmre_cli.graphs.graph import EDGE_ATTR_DIM, EDGE_TYPES, MODALITIES
from mmre_cli.learn.gnn import RelationGNN, register_model
from mmre_cli.learn.markers import Span
from mmre_cli.learn.text_encoder import TextNodeEncoder

__all__ = ["READOUTS", "FinetunedRelationModel"]

#: what the classifier reads: the GNN alone, the GNN + the entity-start marker states, the markers alone
READOUTS = ("gnn", "gnn_markers", "markers")
_TEXT = MODALITIES.index("text")


# --------------------------------------------------------------------------------------------
# data


def _batch_deleted(data, words: list[list[str]]) -> list[list[int]] | None:
    """Per graph, the sentence token indices the editor deleted (``data.word_keep`` false), or
    ``None`` when the batch carries no such mask or nothing was deleted."""
    keep = getattr(data, "word_keep", None)
    if keep is None or bool(keep.all()):
        return None
    out, at = [], 0
    for w in words:
        part = keep[at : at + len(w)]
        out.append((~part).nonzero().reshape(-1).tolist())
        at += len(w)
    return out


def _batch_words(data) -> tuple[list[list[str]], list[Span], list[Span], list[str | None]]:
    words = data.words
    single = words and isinstance(words[0], str) or len(words) == 0
    if single:
        words = [words]  # a single Data, not a Batch
    ent = data.ent_span.reshape(-1, 4).tolist()
    heads = [(h0, h1) if h0 >= 0 else None for h0, h1, _, _ in ent]
    tails = [(t0, t1) if t0 >= 0 else None for _, _, t0, t1 in ent]
    captions = getattr(data, "caption", None)
    if captions is None:
        captions = [None] * len(words)
    elif single or isinstance(captions, str):
        captions = [captions]
    captions = [c or None for c in captions]
    return words, heads, tails, captions


# --------------------------------------------------------------------------------------------
# model


@register_model
class FinetunedRelationModel(nn.Module):
    r""":class:`TextNodeEncoder` + :class:`~mmre_cli.learn.gnn.RelationGNN`, trained end to end.

    Args:
        in_dim (int): node feature size F of the frozen features; when it differs from the
            encoder's hidden size D (frozen MiniLM features, MPNet fine-tuned), a learned
            ``Linear(F, D)`` maps every node's frozen row first and the text rows are then replaced.
        num_classes (int): number of relation labels C.
        markers (str, optional): entity marker style of the encoder. (default: ``"special"``)
        readout (str, optional): ``"gnn"``, ``"gnn_markers"`` or ``"markers"`` (module docstring).
            (default: ``"gnn"``)
        encoder_weights (str, optional): the encoder's model folder; ``None`` resolves it. (default: ``None``)
        encoder (str, optional): ``minilm``, ``mpnet`` or ``hf``. (default: ``"minilm"``)
        caption_tokens (int, optional): caption word pieces in the second segment (0: none).
            (default: ``0``)
        precision (str, optional): ``"32"`` or ``"bf16"`` for the encoder (:class:`TextNodeEncoder`).
            (default: ``"32"``)
        max_length (int, optional): word-piece limit. (default: ``128``)
        train_layers (int, optional): top transformer layers to fine-tune, ``None`` all.
            (default: ``None``)
        hidden, layers, heads, edge_dim, num_edge_types, conv, dropout, gnn_readout,
            use_node_types, hop_alpha, hop_k, fusion, queries: passed to :class:`RelationGNN`
            (``gnn_readout`` as its ``readout``).
        loss, nl_weight: ``"ce+negative_learning"`` adds the branches of
            :mod:`mmre_cli.learn.negative`, the text view being the marker states (the
            ``"markers"`` readout has no graph branches: it trains with cross-entropy).
        caption_pass (int, optional): word pieces of the caption read in its own pass and fused
            with the marker states (:mod:`mmre_cli.learn.caption_fusion`; needs a marker readout);
            ``0``: off. (default: ``0``)
        caption_parts (str, optional): ``"joined"``, ``"separate"`` or ``"weighted"``: several
            captioners' captions (joined by ``" ; "``) read in one pass, in one pass each, or in one
            pass each attended apart and weighed (:mod:`mmre_cli.learn.caption_fusion`).
            (default: ``"joined"``)
        caption_pool (int, optional): P > 0 also appends the mean-pooled sentence embeddings of the
            first P caption parts (P = the number of captioners; 1 for ``joined``), projected to D
            (:mod:`mmre_cli.learn.caption_fusion`, 4); ``0``: off. (default: ``0``)
        caption_dropout (float, optional): in training, drop an instance's whole caption with this
            probability (:mod:`mmre_cli.learn.caption_fusion`, 5). (default: ``0``)
        relation_descriptions (list of str, optional): one description per label; the last
            layer becomes :class:`~mmre_cli.learn.relation_text.RelationTextHead` (relations as
            text). ``None``: a linear last layer. (default: ``None``)

    Shapes:
        - **input:** a ``Batch`` of ``graph_to_data(g, words=True)`` graphs
        - **output:** logits ``[B, C]``
    """

    #: batches must carry the sentence words and spans (``graph_to_data(..., words=True)``)
    needs_words = True

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        markers: str = "special",
        readout: str = "gnn",
        encoder_weights: str | None = None,
        max_length: int = 128,
        train_layers: int | None = None,
        encoder: str = "minilm",
        caption_tokens: int = 0,
        precision: str = "32",
        hidden: int = 256,
        layers: int = 2,
        heads: int = 4,
        edge_dim: int = EDGE_ATTR_DIM,
        num_edge_types: int = len(EDGE_TYPES),
        conv: str = "gatv2",
        dropout: float = 0.2,
        gnn_readout: str = "head_tail_pool",
        use_node_types: bool = True,
        hop_alpha: float = 0.1,
        hop_k: int = 4,
        fusion: str = "none",
        queries: int = 8,
        loss: str = "ce",
        nl_weight: float = 0.5,
        caption_pass: int = 0,
        caption_parts: str = "joined",
        caption_pool: int = 0,
        caption_dropout: float = 0.0,
        relation_descriptions: Sequence[str] | None = None,
    ):
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, not {readout!r}")
        caption_pass = max(0, int(caption_pass or 0))
        if caption_pass and readout == "gnn":
            raise ValueError("caption_pass needs a readout that reads the marker states (gnn_markers or markers)")
        if readout == "markers":
            loss = "ce"  # no graph: no structure/visual branches to teach each other
        if relation_descriptions is not None:
            from mmre_cli.learn.relation_text import check_descriptions

            relation_descriptions = check_descriptions(relation_descriptions, num_classes)
        self.config = dict(
            in_dim=in_dim,
            num_classes=num_classes,
            markers=markers,
            readout=readout,
            encoder_weights=None if encoder_weights is None else str(encoder_weights),
            max_length=max_length,
            train_layers=train_layers,
            encoder=encoder,
            caption_tokens=caption_tokens,
            precision=precision,
            hidden=hidden,
            layers=layers,
            heads=heads,
            edge_dim=edge_dim,
            num_edge_types=num_edge_types,
            conv=conv,
            dropout=dropout,
            gnn_readout=gnn_readout,
            use_node_types=use_node_types,
            hop_alpha=hop_alpha,
            hop_k=hop_k,
            fusion=fusion,
            queries=queries,
            loss=loss,
            nl_weight=nl_weight,
            caption_pass=caption_pass,
            caption_parts=caption_parts,
            caption_pool=caption_pool,
            caption_dropout=caption_dropout,
            relation_descriptions=relation_descriptions,
        )
        self.encoder = TextNodeEncoder(
            encoder_weights,
            markers=markers,
            max_length=max_length,
            train_layers=train_layers,
            encoder=encoder,
            caption_tokens=caption_tokens,
            precision=precision,
        )
        dim = self.encoder.dim
        self.readout = readout
        self.project = self.gnn = None
        if readout != "markers":
            # frozen rows of another width (e.g. MiniLM features under a fine-tuned MPNet) are mapped in
            self.project = nn.Linear(in_dim, dim) if in_dim != dim else None
            self.gnn = RelationGNN(
                dim,
                num_classes,
                hidden=hidden,
                layers=layers,
                heads=heads,
                edge_dim=edge_dim,
                num_edge_types=num_edge_types,
                conv=conv,
                dropout=dropout,
                readout=gnn_readout,
                use_node_types=use_node_types,
                hop_alpha=hop_alpha,
                hop_k=hop_k,
                fusion=fusion,
                queries=queries,
            )
        self.caption_reader = self.caption_fusion = None
        if caption_pass:
            from mmre_cli.learn.caption_fusion import CaptionFusion, CaptionReader

            self.caption_reader = CaptionReader(
                self.encoder.tokenizer,
                self.encoder.transformer,
                caption_pass,
                bf16=self.encoder.precision == "bf16",
                parts=caption_parts,
            )
            self.caption_fusion = CaptionFusion(
                dim, per_part=caption_parts == "weighted", pool_parts=caption_pool, drop=caption_dropout
            )
        self.descriptions = relation_descriptions
        self._desc_cache: tuple[tuple[str, ...], Tensor] | None = None  # eval only: see description_vectors
        last = None
        if relation_descriptions is not None:
            from mmre_cli.learn.relation_text import RelationTextHead

            last = RelationTextHead(hidden, dim, num_classes)
        if readout != "gnn":
            z_dim = self.gnn.z_dim if self.gnn is not None else 0
            if self.gnn is not None:
                self.gnn.classifier = nn.Identity()  # the GNN's readout z goes to self.classifier with the markers
            self.marker_norm = nn.LayerNorm(dim)
            extra = self.caption_fusion.out_dim if self.caption_fusion is not None else 0
            self.classifier = nn.Sequential(
                nn.Linear(z_dim + 2 * dim + extra, hidden),
                nn.GELU(),
                nn.Dropout(dropout),
                last or nn.Linear(hidden, num_classes),
            )
        elif last is not None:
            head = self.gnn.classifier  # RelationGNN's MLP: swap its last Linear for the text head
            head[-1] = RelationTextHead(head[-1].in_features, dim, num_classes)
        self.branch_heads = None
        if loss == "ce+negative_learning":  # text view: the marker states (gnn_markers) or the GNN's
            from mmre_cli.learn.negative import BranchHeads

            text_dim = 2 * dim if readout != "gnn" else 4 * hidden
            self.branch_heads = BranchHeads(
                text_dim, 3 * hidden, self.gnn.z_dim, num_classes, hidden, dropout, nl_weight=nl_weight
            )

    def text_features(self, data, vectors: list[Tensor], has: list[Tensor]) -> Tensor:
        """``data.x`` with the text nodes' rows replaced by span means of the fresh word vectors.

        Shapes:
            ``[N, F]``
        """
        x = data.x if self.project is None else self.project(data.x.to(self.project.weight.device))
        dev = vectors[0].device if vectors else x.device
        flat = torch.cat(vectors) if vectors else x.new_zeros(0, x.size(1))
        flat = F.normalize(flat, p=2, dim=-1, eps=1e-12)
        has_flat = torch.cat(has) if has else torch.zeros(0, dtype=torch.bool, device=dev)
        lengths = torch.tensor([v.size(0) for v in vectors], dtype=torch.long, device=dev)
        offsets = torch.cumsum(lengths, 0) - lengths
        ns = data.node_span.to(dev).reshape(-1, 2)
        batch = getattr(data, "batch", None)
        batch = torch.zeros(x.size(0), dtype=torch.long, device=dev) if batch is None else batch.to(dev)
        mod = data.node_modality.to(dev)
        s = ns[:, 0]
        e = torch.minimum(ns[:, 1], lengths[batch])
        valid = (mod == _TEXT) & (s >= 0) & (e > s)
        nodes = valid.nonzero().reshape(-1)
        if nodes.numel() == 0:
            return x
        s, e = s[nodes], e[nodes]
        span_len = e - s
        rep = torch.repeat_interleave(torch.arange(nodes.numel(), device=dev), span_len)
        start_of = torch.cumsum(span_len, 0) - span_len
        pos = s[rep] + torch.arange(rep.numel(), device=dev) - start_of[rep]
        word = offsets[batch[nodes]][rep] + pos
        w = has_flat[word].to(flat.dtype)
        sums = flat.new_zeros(nodes.numel(), flat.size(1)).index_add(0, rep, flat[word] * w.unsqueeze(-1))
        cnt = flat.new_zeros(nodes.numel()).index_add(0, rep, w)
        fresh = F.normalize(sums / cnt.clamp(min=1.0).unsqueeze(-1), p=2, dim=-1, eps=1e-12)
        ok = cnt > 0
        out = x.to(dev, flat.dtype).clone()
        out[nodes[ok]] = fresh[ok]
        return out

    def marker_states(self, ents: Tensor) -> Tensor | None:
        """The layer-normalised ``<h>``/``<t>`` states ``[B, 2D]`` the marker readouts read
        (``None`` for the ``gnn`` readout)."""
        return None if self.readout == "gnn" else self.marker_norm(ents).reshape(ents.size(0), -1)

    def caption_features(self, ents: Tensor, words, heads, tails, captions) -> Tensor:
        """:class:`~mmre_cli.learn.caption_fusion.CaptionFusion` of each graph's caption, ``[B, 2D + 2]``."""
        from mmre_cli.learn.caption_fusion import entity_words

        if self.caption_reader.device != ents.device:
            self.caption_reader.to(ents.device)
        read = self.caption_reader.read(
            captions,
            [entity_words(w, h) for w, h in zip(words, heads)],
            [entity_words(w, t) for w, t in zip(words, tails)],
            with_parts=self.caption_fusion.needs_parts,
        )
        return self.caption_fusion(self.marker_norm(ents), *read)

    def description_vectors(self) -> Tensor:
        """The relation descriptions through the (fine-tuned) encoder, mean of their pieces' last
        hidden states, ``[C, D]`` (:mod:`mmre_cli.learn.relation_text`). In eval mode without
        gradients they are computed once per description list and kept until the next ``train()``
        (evaluation and prediction would otherwise re-encode the same C texts for every batch)."""
        key = tuple(self.descriptions)
        frozen = not self.training and not torch.is_grad_enabled()
        if frozen and self._desc_cache is not None and self._desc_cache[0] == key:
            return self._desc_cache[1]
        enc = self.encoder
        marked = [d.split() for d in self.descriptions]
        tok = enc.tokenizer.pairs(marked, [None] * len(marked), 0)
        hidden = enc._hidden(tok, marked, [None] * len(marked))
        keep = torch.tensor([[w is not None for w in row] for row in tok.word_ids], device=hidden.device)
        keep = keep.to(hidden.dtype).unsqueeze(-1)
        vectors = (hidden * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        self._desc_cache = (key, vectors) if frozen else None
        return vectors

    def train(self, mode: bool = True):
        """As ``nn.Module.train``; also forgets the description vectors kept for evaluation."""
        self._desc_cache = None
        return super().train(mode)

    def _last_layers(self, seq: nn.Module, x: Tensor) -> Tensor:
        if self.descriptions is None:
            return seq(x)
        return seq[-1](seq[:-1](x), self.description_vectors())

    def readout_inputs(self, data):
        """``(run, markers)``: a copy of the batch whose text rows are re-encoded (``run.x``; the
        batch itself for the ``markers`` readout), and the marker features the classifier reads
        (marker states, plus the caption pass's features when on; ``None`` for ``gnn``)."""
        words, heads, tails, captions = _batch_words(data)
        pair = captions if self.encoder.caption_tokens else [None] * len(words)
        vectors, has, ents = self.encoder.encode(words, heads, tails, pair, deleted=_batch_deleted(data, words))
        run = copy.copy(data)
        if self.gnn is not None:
            run.x = self.text_features(data, vectors, has)
        markers = self.marker_states(ents)
        if self.caption_fusion is not None:
            markers = torch.cat([markers, self.caption_features(ents, words, heads, tails, captions)], dim=-1)
        return run, markers

    def classify(self, run, markers: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``(logits [B, C], h0 [N, H], z [B, z_dim])`` of a batch whose text rows are already
        re-encoded (``run.x``), given the marker features (``h0``/``z`` are ``None`` without a graph)."""
        if self.gnn is None:
            return self._last_layers(self.classifier, markers), None, None
        h0, h = self.gnn.encode(run)
        z = self.gnn.readout_vector(run, h)
        if markers is None:
            return self._last_layers(self.gnn.classifier, z), h0, z
        return self._last_layers(self.classifier, torch.cat([z, markers.expand(z.size(0), -1)], dim=-1)), h0, z

    def forward(self, data) -> Tensor:
        """Relation logits, one row per graph.

        Shapes:
            data (``N`` nodes, ``B`` graphs) -> ``[B, C]``
        """
        run, markers = self.readout_inputs(data)
        logits, h0, z = self.classify(run, markers)
        if self.branch_heads is None or not self.training:
            return logits
        views, has_image = self.gnn.views(run, h0, z)
        if markers is not None:
            views["text"] = markers[:, : 2 * self.encoder.dim]
        return self.branch_heads(logits, views, has_image)
