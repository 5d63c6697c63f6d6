"""Apply the RL editor's edits and the diffusion's pruning to a :class:`Graph` (numpy).

The learning code decides *what* to change on PyG batches (:func:`mmre_cli.learn.agent.edit_graphs`
returns per-graph records, :func:`mmre_cli.learn.diffusion.diffuse` a relevance ``v`` and a keep
mask); these functions make that change on the stored graph, so node texts, boxes and meta
survive for evaluation and ``mmre predict --explain``. What changed is recorded in ``meta``:

* ``meta["edits"]``: ``{"deleted_nodes": [...], "deleted_edges": [[src, dst, type], ...],
  "added_edges": [[i, j], ...]}`` in the *unedited* graph's numbering, plus the texts of deleted
  nodes (``deleted_texts``);
* ``meta["deleted_words"]``: sorted sentence token indices (positions in ``meta["words"]``) whose
  *token* nodes the editor deleted — what a classifier that re-encodes the sentence should mask;
  a deleted noun phrase or entity node does not list its tokens (their token nodes, if kept,
  still carry them). ``[]`` when no token node was deleted;
* ``meta["deleted_caption_spans"]``: ``[[start, end), ...]`` of the deleted caption-phrase nodes,
  in the token positions of the parsed caption (the caption graph's ``meta["spans"]``);
* ``meta["deleted_caption_texts"]``: those phrases' texts, which :func:`edited_caption` cuts out
  of ``meta["caption"]`` so a model that reads the caption's words (``caption_pass``,
  ``caption_tokens``) does not read what the editor deleted;
* ``meta["relevance"]``: the diffused node relevance ``v`` (per node, in [0, 1]);
* ``meta["pruned_edges"]``: ``[[src, dst, type, weight], ...]`` removed by diffusion.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .cmg import subgraph
from .graph import EDGE_ATTR_COLUMNS, EDGE_ATTR_DIM, EDGE_TYPES, MODALITIES, NODE_KINDS, Graph

_W = EDGE_ATTR_COLUMNS.index("weight")
_COS = EDGE_ATTR_COLUMNS.index("cosine")
_ADDED = EDGE_TYPES.index("added")


def keep_edges(graph: Graph, mask: np.ndarray) -> Graph:
    """A copy of ``graph`` with only the edges where ``mask`` is true."""
    mask = np.asarray(mask, bool).reshape(-1)
    idx = np.flatnonzero(mask)
    return replace(
        graph,
        edge_index=graph.edge_index[:, mask].reshape(2, -1),
        edge_type=graph.edge_type[mask],
        edge_label=[graph.edge_label[i] for i in idx],
        edge_attr=graph.edge_attr[mask],
        meta=dict(graph.meta),
    )


def apply_edit_record(graph: Graph, record: dict) -> Graph:
    """Apply one editor record (``deleted_nodes``, ``deleted_edges`` positions, ``added_edges``).

    Added pairs become two directed ``added`` edges whose weight and cosine columns hold the
    cosine of the two nodes' ``x``. Deleted nodes go last (with :func:`subgraph`), so the
    record's numbering is the unedited graph's throughout.
    """
    deleted_edges = sorted({int(e) for e in record.get("deleted_edges", [])})
    deleted_nodes = sorted({int(n) for n in record.get("deleted_nodes", [])})
    added = [(int(i), int(j)) for i, j in record.get("added_edges", [])]
    mask = np.ones(graph.num_edges, bool)
    mask[deleted_edges] = False
    edits = {
        "deleted_nodes": deleted_nodes,
        "deleted_texts": [graph.node_text[n] for n in deleted_nodes],
        "deleted_edges": [
            [int(graph.edge_index[0, e]), int(graph.edge_index[1, e]), EDGE_TYPES[int(graph.edge_type[e])]]
            for e in deleted_edges
        ],
        "added_edges": [list(p) for p in added],
    }
    out = keep_edges(graph, mask)
    (out.meta["deleted_words"], out.meta["deleted_caption_spans"], out.meta["deleted_caption_texts"]) = _deleted_text(
        graph, deleted_nodes
    )
    if added:
        src = np.asarray([a for a, b in added] + [b for a, b in added], np.int64)
        dst = np.asarray([b for a, b in added] + [a for a, b in added], np.int64)
        attr = np.zeros((src.size, EDGE_ATTR_DIM), np.float32)
        if graph.x is not None:
            x = graph.x / np.maximum(np.linalg.norm(graph.x, axis=1, keepdims=True), 1e-12)
            cos = np.einsum("ij,ij->i", x[src], x[dst])
            attr[:, _W] = cos
            attr[:, _COS] = cos
        out = replace(
            out,
            edge_index=np.concatenate([out.edge_index, np.stack([src, dst])], 1),
            edge_type=np.concatenate([out.edge_type, np.full(src.size, _ADDED, np.int8)]),
            edge_label=out.edge_label + ["added"] * src.size,
            edge_attr=np.concatenate([out.edge_attr, attr], 0),
        )
    out.meta["edits"] = edits
    if deleted_nodes:
        keep = np.ones(graph.num_nodes, bool)
        keep[deleted_nodes] = False
        out = subgraph(out, keep)
    out.validate()
    return out


def edited_caption(meta: dict) -> str:
    """``meta["caption"]`` without the caption phrases the editor deleted (``""`` when none).

    Each text in ``meta["deleted_caption_texts"]`` is cut once, where it first occurs (a caption
    phrase node's text is a span of the parsed caption, so it is a substring of it), and the
    whitespace is collapsed when something was cut: ``"a man on a stage"`` minus ``["a stage"]`` gives
    ``"a man on"``. A text not found (another captioner's caption, see
    :func:`mmre_cli.pipeline.learning.apply_pair_captions`) cuts nothing.
    """
    caption = str(meta.get("caption") or "")
    cut = False
    for phrase in meta.get("deleted_caption_texts") or ():
        at = caption.find(phrase) if phrase else -1
        if at >= 0:
            caption, cut = caption[:at] + " " + caption[at + len(phrase) :], True
    return " ".join(caption.split()) if cut else caption


def _deleted_text(graph: Graph, deleted_nodes: list[int]) -> tuple[list[int], list[list[int]], list[str]]:
    """``(deleted_words, deleted_caption_spans, deleted_caption_texts)`` of the deleted nodes
    (module docstring); the texts need no spans."""
    token, text, caption = NODE_KINDS.index("token"), MODALITIES.index("text"), MODALITIES.index("caption")
    texts = [
        graph.node_text[n]
        for n in deleted_nodes
        if int(graph.node_modality[n]) == caption and graph.node_text[n].strip()
    ]
    spans = graph.meta.get("spans")
    if not deleted_nodes or spans is None or len(spans) != graph.num_nodes:
        return [], [], texts
    words, caps = set(), []
    for n in deleted_nodes:
        s, e = int(spans[n][0]), int(spans[n][1])
        if e <= s or s < 0:
            continue
        if int(graph.node_modality[n]) == text and int(graph.node_kind[n]) == token:
            words.update(range(s, e))
        elif int(graph.node_modality[n]) == caption:
            caps.append([s, e])
    return sorted(words), sorted(caps), texts


def apply_diffusion(graph: Graph, relevance: np.ndarray, edge_weight: np.ndarray, keep: np.ndarray) -> Graph:
    """Store the diffused relevance, set each kept edge's weight to ``w_ij``, drop the rest.

    Shapes:
        relevance: ``[N]``; edge_weight, keep: ``[E]`` (aligned with ``graph.edge_index``).
    """
    keep = np.asarray(keep, bool).reshape(-1)
    weight = np.asarray(edge_weight, np.float32).reshape(-1)
    pruned = [
        [
            int(graph.edge_index[0, e]),
            int(graph.edge_index[1, e]),
            EDGE_TYPES[int(graph.edge_type[e])],
            float(weight[e]),
        ]
        for e in np.flatnonzero(~keep)
    ]
    attr = graph.edge_attr.copy()
    attr[:, _W] = weight
    out = keep_edges(replace(graph, edge_attr=attr), keep)
    out.meta["relevance"] = [float(v) for v in np.asarray(relevance).reshape(-1)]
    out.meta["pruned_edges"] = pruned
    out.validate()
    return out
