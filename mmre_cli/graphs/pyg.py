"""Conversion of :class:`~mmre_cli.graphs.graph.Graph` to PyTorch Geometric ``Data`` / ``Batch``.

:func:`graph_to_data` gives a :class:`GraphData` (a ``Data`` subclass) with

==================  ===========  =====================================================
attribute           dtype        shape / meaning
==================  ===========  =====================================================
``x``               float32      ``[N, D]``
``edge_index``      int64        ``[2, E]``
``edge_type``       int64        ``[E]`` index into ``EDGE_TYPES``
``edge_attr``       float32      ``[E, EDGE_ATTR_DIM]``
``node_kind``       int64        ``[N]``
``node_modality``   int64        ``[N]``
``node_role``       int64        ``[N]``
``y``               int64        ``[1]`` (``Graph.label``; -1 unlabelled)
``head_index``      int64        ``[1]`` the head node (node 0 when there is none)
``tail_index``      int64        ``[1]`` the tail node (node 0 when there is none)
``has_head``        bool         ``[1]``
``has_tail``        bool         ``[1]``
``graph_id``        str
``node_protected``  bool         ``[N]`` nodes the RL editor may not delete: the head and
                                 tail nodes and every text node whose sentence span lies
                                 inside the head or the tail span (its tokens), from
                                 ``meta["spans"]`` / ``meta["entity_spans"]`` when the
                                 graph records them (:func:`protected_span_nodes`)
``teacher``         float32      ``[1, C]`` a teacher's probabilities (``meta["teacher_probs"]``,
                                 set by train-gnn's ``distill_from``); absent otherwise
==================  ===========  =====================================================

With ``words=True`` (models that re-encode the sentence, e.g.
:class:`~mmre_cli.learn.finetune.FinetunedRelationModel`, whose ``needs_words`` is true) five
more, from what merge-cmg records in ``Graph.meta``:

==================  ===========  =====================================================
``node_span``       int64        ``[N, 2]`` ``[start, end)`` sentence-token span of each
                                 text-modality node (``meta["spans"]``); ``-1`` for the others
                                 (caption spans index the caption, not the sentence)
``ent_span``        int64        ``[1, 4]`` head start/end, tail start/end
                                 (``meta["entity_spans"]``; ``-1`` for a visual entity)
``words``           list[str]    the sentence tokens (``meta["words"]``); a ``Batch``
                                 holds one list per graph
``caption``         str          the image's caption (``meta["caption"]``, ``""`` when
                                 none), read as the second segment by a fine-tuned
                                 encoder with ``caption_tokens > 0`` or in its own pass
                                 with ``caption_pass > 0``
``word_keep``       bool         ``[T]`` false for the words the RL editor deleted
                                 (``meta["deleted_words"]``); a ``Batch`` concatenates
                                 them in graph order
==================  ===========  =====================================================

After ``Batch.from_data_list``, ``batch.head_index[i]`` / ``batch.tail_index[i]`` are the
*batch-level* node ids of graph ``i``'s head / tail: PyG increments every attribute whose name
contains ``index`` by the number of nodes before it (``Data.__inc__``); :class:`GraphData` states
this explicitly so it does not hang on a naming rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from .graph import ROLE_HEAD, ROLE_TAIL, Graph
from .refine import edited_caption

_NODE_INC = ("head_index", "tail_index")


class GraphData(Data):
    """``Data`` whose ``head_index``/``tail_index`` are node ids (incremented when batched)."""

    def __inc__(self, key, value, *args, **kwargs):
        if key in _NODE_INC:
            return self.num_nodes
        return super().__inc__(key, value, *args, **kwargs)

    def __cat_dim__(self, key, value, *args, **kwargs):
        if key in _NODE_INC:
            return 0
        return super().__cat_dim__(key, value, *args, **kwargs)


def _role_node(g: Graph, role: int) -> tuple[int, bool]:
    hits = np.flatnonzero(g.node_role == role)
    return (int(hits[0]), True) if hits.size else (0, False)


def protected_span_nodes(g: Graph) -> np.ndarray:
    """``[N]`` bool: head/tail nodes and the text nodes inside the head or tail token span.

    A text-modality node with span ``[s, e)`` (``meta["spans"]``) is inside the entity span
    ``[hs, he)`` (``meta["entity_spans"]``; ``-1`` for a visual entity) when
    ``hs <= s < e <= he``: the entity's tokens (and a noun phrase equal to the entity).
    Without those meta entries only the head/tail nodes are flagged.
    """
    from .graph import MODALITIES, ROLE_OTHER

    prot = np.asarray(g.node_role) != ROLE_OTHER
    spans, ents = g.meta.get("spans"), g.meta.get("entity_spans")
    n = g.num_nodes
    if spans is None or len(spans) != n or ents is None or len(ents) != 4 or not n:
        return prot
    sp = np.asarray(spans, np.int64).reshape(n, 2)
    text = np.asarray(g.node_modality) == MODALITIES.index("text")
    for lo, hi in ((int(ents[0]), int(ents[1])), (int(ents[2]), int(ents[3]))):
        if lo < 0 or hi <= lo:
            continue
        prot |= text & (sp[:, 0] >= lo) & (sp[:, 1] <= hi) & (sp[:, 1] > sp[:, 0])
    return prot


def graph_to_data(g: Graph, words: bool = False) -> GraphData:
    """Convert one graph (``x`` must be set) to a :class:`GraphData` (``words``: see the module docstring)."""
    if g.x is None:
        raise ValueError(f"{g.graph_id}: graph has no node features (x is None)")
    g.validate()
    head, has_head = _role_node(g, ROLE_HEAD)
    tail, has_tail = _role_node(g, ROLE_TAIL)
    data = GraphData(
        x=torch.as_tensor(np.asarray(g.x, np.float32)),
        edge_index=torch.as_tensor(np.asarray(g.edge_index, np.int64)).reshape(2, -1),
        edge_type=torch.as_tensor(np.asarray(g.edge_type, np.int64)),
        edge_attr=torch.as_tensor(np.asarray(g.edge_attr, np.float32)),
        node_kind=torch.as_tensor(np.asarray(g.node_kind, np.int64)),
        node_modality=torch.as_tensor(np.asarray(g.node_modality, np.int64)),
        node_role=torch.as_tensor(np.asarray(g.node_role, np.int64)),
        y=torch.tensor([int(g.label)], dtype=torch.long),
        head_index=torch.tensor([head], dtype=torch.long),
        tail_index=torch.tensor([tail], dtype=torch.long),
        has_head=torch.tensor([has_head]),
        has_tail=torch.tensor([has_tail]),
        graph_id=g.graph_id,
        num_nodes=g.num_nodes,
        node_protected=torch.as_tensor(protected_span_nodes(g)),
    )
    teacher = g.meta.get("teacher_probs")
    if teacher is not None:  # knowledge distillation's soft target (stages/train_gnn.py)
        data.teacher = torch.as_tensor(np.asarray(teacher, np.float32)).reshape(1, -1)
    if words:
        _add_words(data, g)
    return data


def _add_words(data: GraphData, g: Graph) -> None:
    from .graph import MODALITIES

    if "words" not in g.meta or "entity_spans" not in g.meta:
        raise ValueError(
            f"{g.graph_id}: the graph records no sentence words (meta 'words'/'entity_spans'); "
            "it was merged by an older mmre — rerun merge-cmg and the stages after it"
        )
    n = g.num_nodes
    spans = g.meta.get("spans")
    node_span = torch.full((n, 2), -1, dtype=torch.long)
    if spans is not None and len(spans) == n and n:
        sp = torch.as_tensor(np.asarray(spans, np.int64).reshape(n, 2))
        text = torch.as_tensor(np.asarray(g.node_modality) == MODALITIES.index("text"))
        node_span[text] = sp[text]
    data.node_span = node_span
    data.ent_span = torch.tensor([[int(v) for v in g.meta["entity_spans"]]], dtype=torch.long).reshape(1, 4)
    data.words = [str(w) for w in g.meta["words"]]
    # the caption minus the phrases the RL editor deleted (graphs/refine.py), as a model reads it
    data.caption = edited_caption(g.meta)
    # the words the RL editor deleted (graphs/refine.py's meta["deleted_words"]): a re-encoding
    # model masks them out of its encoder's attention (learn/finetune.py)
    keep = torch.ones(len(data.words), dtype=torch.bool)
    gone = [int(i) for i in g.meta.get("deleted_words") or () if 0 <= int(i) < len(data.words)]
    if gone:
        keep[gone] = False
    data.word_keep = keep


def graphs_to_batches(graphs: Iterable[Graph], batch_size: int, *, words: bool = False) -> Iterator[Batch]:
    """Group graphs, in order, into ``Batch`` objects of ``batch_size`` graphs (the last may be smaller)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    buf: list[GraphData] = []
    for g in graphs:
        buf.append(graph_to_data(g, words))
        if len(buf) == batch_size:
            yield Batch.from_data_list(buf)
            buf = []
    if buf:
        yield Batch.from_data_list(buf)


class LengthBuckets(torch.utils.data.Sampler):
    """Batches of similar length, so that a batch pads little (the field's bucketing).

    Each epoch (seeded by ``seed`` and the epoch number) the items are shuffled, cut into pools of
    ``pool`` batches, each pool sorted by ``lengths`` and cut into batches, and the batches
    shuffled; with ``shuffle=False`` the items are sorted once by length. Every item appears in
    exactly one batch per epoch.
    """

    def __init__(self, lengths: list[int], batch_size: int, *, shuffle: bool, seed: int = 0, pool: int = 50):
        self.lengths = np.asarray(lengths, np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.pool = int(pool)
        self.epoch = 0

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            yield from (order[i : i + bs].tolist() for i in range(0, n, bs))
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        perm = rng.permutation(n)
        batches = []
        for start in range(0, n, bs * self.pool):
            chunk = perm[start : start + bs * self.pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + bs].tolist() for i in range(0, len(chunk), bs))
        for k in rng.permutation(len(batches)):
            yield batches[k]


class RankShards(torch.utils.data.Sampler):
    r"""Process ``rank``'s share of ``n`` items under DDP: each epoch one permutation seeded by
    ``(seed, epoch)``, padded by wrapping around to a multiple of :math:`W`, of which rank
    :math:`r` of :math:`W` takes positions :math:`r, r+W, \dots` (the split of torch's
    ``DistributedSampler``).

    The epoch counts this sampler's own passes, as :class:`LengthBuckets` does (there is no
    ``set_epoch`` for Lightning Fabric to call): the run's ``seed`` picks the order (Fabric's own
    sampler would take ``PL_GLOBAL_SEED`` or 0), a loader made anew per episode gets the
    episode's seed, and a resumed run restores ``epoch``.
    """

    def __init__(self, n: int, world: int, rank: int, *, shuffle: bool, seed: int = 0):
        self.n, self.world, self.rank = int(n), int(world), int(rank)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return -(-self.n // self.world)

    def __iter__(self):
        order = (
            np.random.default_rng([self.seed, self.epoch]).permutation(self.n) if self.shuffle else np.arange(self.n)
        )
        self.epoch += 1
        order = np.resize(order, len(self) * self.world)
        return iter(order[self.rank :: self.world].tolist())


def text_length(g: Graph) -> int:
    """A graph's sentence + caption length in words (what a re-encoding model's cost grows with)."""
    return len(g.meta.get("words") or ()) + len(str(g.meta.get("caption") or "").split())


def graph_loader(
    graphs: Iterable[Graph],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    words: bool = False,
    bucket: bool = False,
    world: int = 1,
    rank: int = 0,
):
    """A PyG ``DataLoader`` over graphs: the one way the learning stages batch their graphs.

    Reshuffles every epoch (seeded by ``seed``) when ``shuffle``. ``bucket``: batches of similar
    sentence (+ caption) length (:class:`LengthBuckets`; a re-encoding model pads less) instead of
    a plain shuffle. ``world > 1``: only process ``rank``'s share (:class:`RankShards`; no
    buckets), ``batch_size`` graphs per step on each process.
    """
    from torch_geometric.loader import DataLoader

    graphs = list(graphs)
    data = [graph_to_data(g, words) for g in graphs]
    if world > 1:
        return DataLoader(
            data, batch_size=batch_size, sampler=RankShards(len(data), world, rank, shuffle=shuffle, seed=seed)
        )
    if bucket:
        sampler = LengthBuckets([text_length(g) for g in graphs], batch_size, shuffle=shuffle, seed=seed)
        return DataLoader(data, batch_sampler=sampler)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed))
