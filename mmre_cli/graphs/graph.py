"""The in-memory graph every graph stage produces and consumes (numpy only, no torch).

A :class:`Graph` holds N nodes and E directed edges. Node features ``x`` may be absent
(``None``) until the features are joined in. Vocabularies of node kinds, modalities and edge
types are fixed here so that ids written to Parquet mean the same thing in every stage.

Shapes:
    x: ``[N, D]`` float32 (or ``None``)
    box: ``[N, 4]`` float32, normalised ``(x1, y1, x2, y2)`` in [0, 1]; NaN for non-visual nodes
    edge_index: ``[2, E]`` int64, row 0 = source, row 1 = target
    edge_attr: ``[E, EDGE_ATTR_DIM]`` float32
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Node kinds. ``entity`` nodes carry the head/tail role; ``image`` is the whole picture.
NODE_KINDS = ("token", "entity", "noun_phrase", "image", "object", "caption_phrase")
#: Modalities: the sentence, the pixels, the image's caption (a text view of the image).
MODALITIES = ("text", "visual", "caption")
#: Node roles.
ROLE_OTHER, ROLE_HEAD, ROLE_TAIL = 0, 1, 2

#: Edge type families. Fine-grained dependency labels are folded into ``dep`` with the label
#: kept in ``edge_label``; the learning stages see the family id plus ``edge_attr``.
EDGE_TYPES = (
    "dep",  # textual/caption dependency relation (head token -> dependent)
    "member",  # token -> entity / noun phrase that contains it
    "spatial",  # object <-> object spatial relation (edge_attr holds the features)
    "part_of_image",  # object -> image
    "cooccur",  # cross-modal: same lemma / label shared by a text and a visual/caption node
    "similar",  # cross-modal: embedding cosine similarity (top-k and threshold)
    "added",  # added by the RL editor
)

#: edge_attr columns: [weight, iou, containment, dx, dy, log_size_ratio, cosine]
EDGE_ATTR_COLUMNS = ("weight", "iou", "contain", "dx", "dy", "log_area_ratio", "cosine")
EDGE_ATTR_DIM = len(EDGE_ATTR_COLUMNS)


@dataclass
class Graph:
    """One graph (a scene graph, or the CMG of one instance)."""

    graph_id: str
    node_kind: np.ndarray  # [N] int8 index into NODE_KINDS
    node_modality: np.ndarray  # [N] int8 index into MODALITIES
    node_role: np.ndarray  # [N] int8 ROLE_*
    node_text: list[str]  # [N] surface text / object class name
    box: np.ndarray  # [N, 4] float32
    edge_index: np.ndarray  # [2, E] int64
    edge_type: np.ndarray  # [E] int8 index into EDGE_TYPES
    edge_label: list[str]  # [E] fine label, e.g. "nsubj", "left_of"; "" when none
    edge_attr: np.ndarray  # [E, EDGE_ATTR_DIM] float32
    x: np.ndarray | None = None  # [N, D] float32
    label: int = -1  # gold relation id, -1 when unlabelled
    meta: dict = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return int(self.node_kind.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def validate(self) -> None:
        """Raise ``ValueError`` if array shapes or indices are inconsistent."""
        n, e = self.num_nodes, self.num_edges
        for name in ("node_modality", "node_role"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{self.graph_id}: {name} has shape {getattr(self, name).shape}, want ({n},)")
        if len(self.node_text) != n or self.box.shape != (n, 4):
            raise ValueError(f"{self.graph_id}: node_text/box do not match {n} nodes")
        if self.edge_index.shape != (2, e) or self.edge_type.shape != (e,) or len(self.edge_label) != e:
            raise ValueError(f"{self.graph_id}: edge arrays do not match {e} edges")
        if self.edge_attr.shape != (e, EDGE_ATTR_DIM):
            raise ValueError(f"{self.graph_id}: edge_attr has shape {self.edge_attr.shape}")
        if e and (self.edge_index.min() < 0 or self.edge_index.max() >= n):
            raise ValueError(f"{self.graph_id}: edge_index refers to a node outside [0, {n})")
        if self.x is not None and self.x.shape[0] != n:
            raise ValueError(f"{self.graph_id}: x has {self.x.shape[0]} rows for {n} nodes")


def empty_graph(graph_id: str) -> Graph:
    """A graph with no nodes and no edges."""
    return Graph(
        graph_id=graph_id,
        node_kind=np.zeros(0, np.int8),
        node_modality=np.zeros(0, np.int8),
        node_role=np.zeros(0, np.int8),
        node_text=[],
        box=np.zeros((0, 4), np.float32),
        edge_index=np.zeros((2, 0), np.int64),
        edge_type=np.zeros(0, np.int8),
        edge_label=[],
        edge_attr=np.zeros((0, EDGE_ATTR_DIM), np.float32),
    )
