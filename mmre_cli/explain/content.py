"""What the explanation picture shows, computed from the graphs (no matplotlib): what became of each
CMG node and edge (:class:`Explained`), an attribution in the CMG's numbering, which nodes are
drawn (:func:`select_nodes`) and where (:func:`layered_layout`), and the edges' labels.

A long sentence is cut down: beyond ``max_tokens`` token nodes only the tokens adjacent to the
head/tail (and to their tokens) are drawn, and the legend says how many were left out. Node
labels longer than ``max_label`` characters are truncated with "…".

Mapping the refined graph back: :func:`mmre_cli.graphs.refine.apply_edit_record` records its
edits in the CMG's numbering and keeps the CMG's node order minus the deleted nodes, so refined
node ``k`` is the ``k``-th surviving CMG node; diffusion's ``pruned_edges`` are in the refined
numbering.
"""

from __future__ import annotations

import numpy as np

from mmre_cli.graphs.graph import EDGE_ATTR_COLUMNS, EDGE_TYPES, MODALITIES, NODE_KINDS, ROLE_HEAD, ROLE_TAIL, Graph

TOKEN, ENTITY, NP, IMAGE, OBJECT, CAPTION = (NODE_KINDS.index(k) for k in NODE_KINDS)


def short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


class Explained:
    """The CMG's nodes and edges with what became of each (kept, deleted, added, pruned)."""

    def __init__(self, cmg: Graph, refined: Graph | None) -> None:
        n = cmg.num_nodes
        refined = refined if refined is not None else cmg
        edits = refined.meta.get("edits", {}) or {}
        deleted = sorted({int(i) for i in edits.get("deleted_nodes", [])})
        alive = [i for i in range(n) if i not in set(deleted)]
        if len(alive) != refined.num_nodes:
            raise ValueError(
                f"{cmg.graph_id}: {refined.num_nodes} refined nodes, but {len(alive)} CMG nodes survive the edits"
            )
        self.cmg, self.refined = cmg, refined
        self.deleted = set(deleted)
        self.back = np.asarray(alive, np.int64)  # refined node -> CMG node
        relevance = refined.meta.get("relevance")
        self.relevance = np.full(n, np.nan)
        if relevance is not None and len(relevance) == refined.num_nodes:
            self.relevance[self.back] = np.asarray(relevance, float)
        # undirected edges keyed by (min, max) in CMG numbering: status and weight
        self.edges: dict[tuple[int, int], dict] = {}
        added = {tuple(sorted((int(a), int(b)))) for a, b in edits.get("added_edges", [])}
        wcol = 0
        for e in range(refined.num_edges):
            a, b = (int(self.back[refined.edge_index[0, e]]), int(self.back[refined.edge_index[1, e]]))
            key = (min(a, b), max(a, b))
            if a == b:
                continue
            status = "added" if key in added or EDGE_TYPES[int(refined.edge_type[e])] == "added" else "kept"
            w = float(refined.edge_attr[e, wcol])
            cos = float(refined.edge_attr[e, EDGE_ATTR_COLUMNS.index("cosine")])
            cur = self.edges.get(key)
            if cur is None or (cur["status"] == "kept" and status == "added") or w > cur["weight"]:
                self.edges[key] = {
                    "status": status if cur is None else ("added" if "added" in (status, cur["status"]) else "kept"),
                    "weight": max(w, cur["weight"]) if cur else w,
                    "type": EDGE_TYPES[int(refined.edge_type[e])],
                    "cosine": cos,
                }
        for src, dst, etype, weight in refined.meta.get("pruned_edges", []) or []:
            a, b = int(self.back[int(src)]), int(self.back[int(dst)])
            key = (min(a, b), max(a, b))
            if a != b and key not in self.edges:
                self.edges[key] = {"status": "pruned", "weight": float(weight), "type": etype}
        for e in range(cmg.num_edges):  # whatever the CMG had and is gone now: the editor deleted it
            a, b = int(cmg.edge_index[0, e]), int(cmg.edge_index[1, e])
            key = (min(a, b), max(a, b))
            if a != b and key not in self.edges:
                self.edges[key] = {"status": "deleted", "weight": 0.0, "type": EDGE_TYPES[int(cmg.edge_type[e])]}

    def neighbours(self, nodes: set[int]) -> set[int]:
        out = set()
        for a, b in self.edges:
            if a in nodes:
                out.add(b)
            if b in nodes:
                out.add(a)
        return out


def attribution_in_cmg(ex: Explained, attribution) -> tuple[np.ndarray | None, dict | None]:
    """Node importances in CMG numbering (NaN for deleted nodes) and ``|edge importance|`` per
    undirected CMG edge, scaled to ``[0, 1]`` by the largest (both directions summed)."""
    if attribution is None:
        return None, None
    node = np.full(ex.cmg.num_nodes, np.nan)
    values = np.asarray(attribution.node, float)
    if values.size != ex.back.size:
        raise ValueError(f"attribution has {values.size} nodes, the refined graph {ex.back.size}")
    node[ex.back] = values
    if attribution.edge is None:
        return node, None
    edges: dict[tuple[int, int], float] = {}
    ref = ex.refined
    for e, v in enumerate(attribution.edge):
        a, b = int(ex.back[ref.edge_index[0, e]]), int(ex.back[ref.edge_index[1, e]])
        if a != b:
            key = (min(a, b), max(a, b))
            edges[key] = edges.get(key, 0.0) + abs(float(v))
    top = max(edges.values(), default=0.0)
    return node, {k: v / top for k, v in edges.items()} if top > 0 else edges


def select_nodes(ex: Explained, max_tokens: int) -> tuple[list[int], int]:
    """Nodes to draw and how many token nodes were left out."""
    g = ex.cmg
    tokens = [i for i in range(g.num_nodes) if g.node_kind[i] == TOKEN]
    if len(tokens) <= max_tokens:
        return list(range(g.num_nodes)), 0
    anchors = {i for i in range(g.num_nodes) if g.node_role[i] in (ROLE_HEAD, ROLE_TAIL)}
    near = ex.neighbours(anchors)
    wanted = {i for i in near if g.node_kind[i] == TOKEN}
    wider = {i for i in ex.neighbours(wanted) if g.node_kind[i] == TOKEN} | wanted
    if len(wider) <= max_tokens:
        wanted = wider
    keep = [i for i in range(g.num_nodes) if g.node_kind[i] != TOKEN or i in wanted]
    return keep, len(tokens) - sum(1 for i in keep if g.node_kind[i] == TOKEN)


def layered_layout(g: Graph, nodes: list[int]) -> dict[int, tuple[float, float]]:
    """Fixed layered positions: tokens (y=0), entities/phrases (1), caption (2), visual (3)."""
    spans = g.meta.get("spans") or [[-1, -1]] * g.num_nodes
    mod = [MODALITIES[int(m)] for m in g.node_modality]
    tokens = [i for i in nodes if g.node_kind[i] == TOKEN]
    tokens.sort(key=lambda i: spans[i][0])
    pos: dict[int, tuple[float, float]] = {}
    width = max(len(tokens), 4)
    for k, i in enumerate(tokens):
        pos[i] = (k * width / max(len(tokens), 1) + 0.5, 0.0)
    # entities / noun phrases: above the mean x of their (drawn) tokens, spread where they collide
    token_x = {spans[i][0]: pos[i][0] for i in tokens}
    phrases = [i for i in nodes if mod[i] == "text" and g.node_kind[i] != TOKEN]
    wanted = []
    for order, i in enumerate(phrases):
        xs = [token_x[t] for t in range(int(spans[i][0]), int(spans[i][1])) if t in token_x]
        wanted.append((float(np.mean(xs)) if xs else order * width / max(len(phrases), 1), i))
    _spread_row(pos, sorted(wanted), 1.0, width)
    for row, name in ((2.0, "caption"), (3.0, "visual")):
        members = [i for i in nodes if mod[i] == name]
        n = len(members)
        _spread_row(pos, [((k + 0.5) * width / max(n, 1), i) for k, i in enumerate(members)], row, width)
    return pos


def bend(pa: tuple[float, float], pb: tuple[float, float]) -> float:
    """Curvature of an edge: edges along one row arc over the nodes between their ends."""
    if abs(pa[1] - pb[1]) < 0.3 and abs(pa[0] - pb[0]) > 1.2:
        return -0.3 if pa[0] < pb[0] else 0.3  # arcs bow upwards, away from the labels under tokens
    return 0.0


def edge_label(info: dict, g: Graph, a: int, b: int) -> str:
    """A short label: the dependency / caption connector, or ``cos 0.42`` (the cosine similarity
    of the two nodes' embeddings) for cross-modal edges."""
    etype = info["type"]
    if etype in ("similar", "added"):
        return f"{'cos' if etype == 'similar' else 'added, cos'} {info.get('cosine', info['weight']):.2f}"
    if etype == "cooccur":
        return "same word"
    if etype == "dep":
        for e in range(g.num_edges):
            if {int(g.edge_index[0, e]), int(g.edge_index[1, e])} == {a, b} and g.edge_label[e]:
                return short(g.edge_label[e], 14)
    if etype == "spatial":
        for e in range(g.num_edges):
            if {int(g.edge_index[0, e]), int(g.edge_index[1, e])} == {a, b} and g.edge_label[e]:
                return short(g.edge_label[e], 14)
    return ""


def _spread_row(pos: dict, wanted: list[tuple[float, int]], y: float, width: float, gap: float | None = None) -> None:
    """Place nodes of one row at their wanted x, pushed apart to at least ``gap``."""
    if not wanted:
        return
    gap = gap if gap is not None else min(1.6, width / max(len(wanted), 1))
    xs = []
    for x, _ in wanted:
        xs.append(max(x, xs[-1] + gap) if xs else x)
    shift = max(0.0, xs[-1] - (width + 0.5)) / 2
    for (x, i), px in zip(wanted, xs):
        pos[i] = (px - shift, y + (0.18 if len(wanted) > 6 and wanted.index((x, i)) % 2 else 0.0))
