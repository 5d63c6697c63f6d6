"""The cross-modal graph (CMG): the union of the scene graphs plus inter-modal edges, cut to the
k-hop context of the head and tail entities (DESIGN step 3). numpy only.

:func:`merge_cmg` does, in order:

1. **Union.** Node ids: the text graph first, then the visual graph, then the caption graph
   (each offset by the sizes before it); ``x`` is concatenated (every non-empty part must have
   ``x`` of the same width).
2. **Co-occurrence** (``cooccur``, both directions, weight 1, cosine column = cosine of the two
   nodes' ``x``): a text node (token, entity or noun phrase) whose lemma equals a caption node's
   lemma or a visual object's label (the whole lower-cased label or its last word, so
   ``"cell phone"`` matches ``phone``). With ``cross_cooccur=True`` caption nodes are likewise
   linked to visual objects. ``edge_label`` is the shared lemma. Lemmas that are stop words (:data:`COOCCUR_STOP`),
   shorter than two
   characters, or not alphanumeric never match.
3. **Similarity** (``similar``, both directions, weight = cosine column = cosine): for each text
   entity / noun-phrase node, the ``top_k`` visual nodes and, separately, the ``top_k`` caption
   nodes by cosine of ``x`` that reach ``threshold`` (:func:`similarity_edges`). With
   ``anchor`` (default), a head or tail node left without such an edge into a view gets its
   top-1 match there anyway (``edge_label`` "anchor").
4. **Context.** Only nodes within ``hops`` undirected hops of a head or tail node are kept
   (:func:`k_hop_nodes`, :func:`subgraph`); the head and tail nodes always survive. A graph with
   no head/tail node is kept whole.

``meta`` of the CMG: ``lemmas``, ``spans`` (``[-1, -1]`` for visual nodes; caption spans are in
caption token positions), ``source_index`` (node index in its scene graph), ``counts_before`` /
``counts_after`` (``{"nodes_by_kind", "nodes_by_modality", "edges_by_type"}``), ``modalities``
(per-node modality name) and ``params``.

A MORE-style visual tail (no text tail node) must be marked on the visual graph first with
:func:`mmre_cli.graphs.visual.mark_visual_tail`.
"""

from __future__ import annotations

import numpy as np

from .graph import EDGE_ATTR_COLUMNS, EDGE_ATTR_DIM, EDGE_TYPES, MODALITIES, NODE_KINDS, ROLE_HEAD, ROLE_TAIL, Graph
from .visual import mark_visual_tail  # noqa: F401  (re-exported: part of the CMG recipe)

#: ``Graph.meta`` keys that hold one entry per node; :func:`subgraph` re-indexes them.
NODE_META_KEYS = ("spans", "lemmas", "scores", "object_index", "source_index", "modalities", "relevance")
#: Lemmas never used for co-occurrence (pronouns, determiners, very generic words).
COOCCUR_STOP = frozenset(
    "i me my you your he him his she her it its we us our they them their this that these those "
    "who whom what which one ones there here thing something someone -pron- a an the".split()
)

_K = {k: i for i, k in enumerate(NODE_KINDS)}
_E = {e: i for i, e in enumerate(EDGE_TYPES)}
_COS = EDGE_ATTR_COLUMNS.index("cosine")
_W = EDGE_ATTR_COLUMNS.index("weight")


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def pool_span_features(graph: Graph, word_emb: np.ndarray) -> np.ndarray:
    """Node features of a text/caption graph: mean word vector over each node's span, L2-normalised.

    Args:
        graph: a graph whose ``meta["spans"]`` gives each node's ``[start, end)`` token span.
        word_emb: ``[T, D]`` one vector per token of the parsed doc.

    Returns:
        ``[N, D]`` float32; a node with an empty span gets a zero row.
    """
    spans = graph.meta.get("spans")
    if spans is None or len(spans) != graph.num_nodes:
        raise ValueError(f"{graph.graph_id}: meta['spans'] missing or not one per node")
    return pool_spans(spans, word_emb)


def pool_spans(spans, word_emb: np.ndarray) -> np.ndarray:
    """Mean word vector over each ``[start, end)`` span, L2-normalised (a zero row for an empty span).

    Shapes:
        spans: N pairs; word_emb: ``[T, D]`` -> ``[N, D]`` float32
    """
    word_emb = np.asarray(word_emb, np.float32)
    t = word_emb.shape[0]
    out = np.zeros((len(spans), word_emb.shape[1]), np.float32)
    for k, (s, e) in enumerate(spans):
        s, e = max(0, int(s)), min(t, int(e))
        if e > s:
            out[k] = word_emb[s:e].mean(0)
    return _l2(out)


def similarity_edges(
    xa: np.ndarray, xb: np.ndarray, *, top_k: int, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k cosine neighbours in ``xb`` of every row of ``xa``, kept if cosine >= ``threshold``.

    Args:
        xa: ``[Na, D]``; xb: ``[Nb, D]`` (need not be normalised; zero rows have cosine 0).
        top_k: neighbours per row of ``xa`` (before the threshold).
        threshold: minimum cosine.

    Returns:
        ``(src, dst, cos)``: int64 row indices into ``xa``, int64 indices into ``xb``, float32
        cosines; ordered by ``src`` then by decreasing cosine, ties broken by lowest ``dst``.
    """
    xa, xb = np.asarray(xa, np.float32), np.asarray(xb, np.float32)
    na, nb = xa.shape[0], xb.shape[0]
    if na == 0 or nb == 0 or top_k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    cos = _l2(xa) @ _l2(xb).T
    k = min(int(top_k), nb)
    order = np.argsort(-cos, axis=1, kind="stable")[:, :k]  # stable: equal cosines keep index order
    src = np.repeat(np.arange(na, dtype=np.int64), k)
    dst = order.reshape(-1).astype(np.int64)
    val = cos[src, dst].astype(np.float32)
    keep = val >= threshold
    return src[keep], dst[keep], val[keep]


def k_hop_nodes(edge_index: np.ndarray, num_nodes: int, seeds, hops: int) -> np.ndarray:
    """Nodes within ``hops`` undirected hops of any seed (seeds included), as a bool mask ``[N]``."""
    mask = np.zeros(num_nodes, bool)
    seeds = np.asarray(seeds, np.int64).reshape(-1)
    mask[seeds] = True
    ei = np.asarray(edge_index, np.int64).reshape(2, -1)
    src, dst = ei[0], ei[1]
    for _ in range(max(0, int(hops))):
        new = mask.copy()
        new[dst[mask[src]]] = True
        new[src[mask[dst]]] = True
        if (new == mask).all():
            break
        mask = new
    return mask


def subgraph(graph: Graph, keep_mask: np.ndarray) -> Graph:
    """The graph induced by ``keep_mask`` (nodes renumbered in order; edges with both ends kept).

    Per-node ``meta`` entries (:data:`NODE_META_KEYS`) are filtered the same way; other meta
    entries are copied as they are.
    """
    keep = np.asarray(keep_mask, bool).reshape(-1)
    if keep.shape[0] != graph.num_nodes:
        raise ValueError(f"{graph.graph_id}: keep_mask has {keep.shape[0]} entries for {graph.num_nodes} nodes")
    new_id = np.full(graph.num_nodes, -1, np.int64)
    new_id[keep] = np.arange(int(keep.sum()))
    ei = graph.edge_index
    ekeep = keep[ei[0]] & keep[ei[1]] if graph.num_edges else np.zeros(0, bool)
    idx = np.flatnonzero(keep)
    eidx = np.flatnonzero(ekeep)
    meta = dict(graph.meta)
    for key in NODE_META_KEYS:
        val = meta.get(key)
        if isinstance(val, (list, tuple, np.ndarray)) and len(val) == graph.num_nodes:
            meta[key] = [val[i] for i in idx]
    out = Graph(
        graph_id=graph.graph_id,
        node_kind=graph.node_kind[keep],
        node_modality=graph.node_modality[keep],
        node_role=graph.node_role[keep],
        node_text=[graph.node_text[i] for i in idx],
        box=graph.box[keep],
        edge_index=new_id[ei[:, ekeep]].reshape(2, -1),
        edge_type=graph.edge_type[ekeep],
        edge_label=[graph.edge_label[i] for i in eidx],
        edge_attr=graph.edge_attr[ekeep],
        x=None if graph.x is None else graph.x[keep],
        label=graph.label,
        meta=meta,
    )
    out.validate()
    return out


def graph_counts(g: Graph) -> dict:
    """``{"nodes_by_kind", "nodes_by_modality", "edges_by_type"}`` — name -> count (non-zero)."""

    def count(ids, names):
        c = np.bincount(np.asarray(ids, np.int64), minlength=len(names)) if len(ids) else np.zeros(len(names), int)
        return {names[i]: int(c[i]) for i in range(len(names)) if c[i]}

    return {
        "nodes": g.num_nodes,
        "edges": g.num_edges,
        "nodes_by_kind": count(g.node_kind, NODE_KINDS),
        "nodes_by_modality": count(g.node_modality, MODALITIES),
        "edges_by_type": count(g.edge_type, EDGE_TYPES),
    }


def _match_keys(lemma: str, is_label: bool) -> set[str]:
    lemma = (lemma or "").strip().lower()
    keys = {lemma}
    if is_label and " " in lemma:
        keys.add(lemma.split()[-1])
    return {k for k in keys if len(k) >= 2 and k not in COOCCUR_STOP and k.replace("-", "").replace("_", "").isalnum()}


def _cooccur_pairs(lemmas: list[str], idx_a: np.ndarray, idx_b: np.ndarray, b_is_label: bool):
    """``(i, j, key)`` for nodes ``i`` in ``idx_a`` and ``j`` in ``idx_b`` sharing a lemma ``key``."""
    index: dict[str, list[int]] = {}
    for j in idx_b:
        for key in _match_keys(lemmas[j], b_is_label):
            index.setdefault(key, []).append(int(j))
    out = []
    for i in idx_a:
        hits: dict[int, str] = {}
        for key in sorted(_match_keys(lemmas[i], False)):
            for j in index.get(key, ()):
                hits.setdefault(j, key)
        out.extend((int(i), j, hits[j]) for j in sorted(hits))
    return out


def merge_cmg(
    graph_id: str,
    text: Graph,
    visual: Graph | None,
    caption: Graph | None,
    *,
    top_k: int = 3,
    threshold: float = 0.3,
    hops: int | None = 2,
    label: int = -1,
    cross_cooccur: bool = True,
    anchor: bool = True,
) -> Graph:
    """Build the cross-modal graph of one instance (recipe in the module docstring).

    Args:
        graph_id: id of the CMG.
        text: the sentence graph (:func:`~mmre_cli.graphs.textual.text_graph`) with ``x`` set.
        visual: the visual graph with ``x`` set (tail marked for MORE), or ``None``/empty.
        caption: the caption graph with ``x`` set, or ``None``/empty.
        top_k: similarity neighbours per text entity / noun phrase and per modality (default 3).
        threshold: minimum cosine of a ``similar`` edge (default 0.3).
        hops: context radius around head/tail (default 2); ``None`` or negative keeps all nodes.
        label: gold relation id stored in ``Graph.label`` (default -1).
        cross_cooccur: also link caption nodes and visual objects by co-occurrence (default True).
        anchor: give the head and the tail text node at least one ``similar`` edge into each other
            non-empty view (their top-1 match, whatever its cosine; ``edge_label`` "anchor"), so
            every CMG with a caption or an image is really cross-modal (default True).

    Returns:
        The CMG, validated.
    """
    parts = [
        (name, g)
        for name, g in (("text", text), ("visual", visual), ("caption", caption))
        if g is not None and g.num_nodes
    ]
    if not parts:
        raise ValueError(f"{graph_id}: all scene graphs are empty")
    dims = set()
    for name, g in parts:
        if g.x is None:
            raise ValueError(f"{graph_id}: the {name} graph has no features (x is None)")
        dims.add(int(g.x.shape[1]))
    if len(dims) != 1:
        raise ValueError(f"{graph_id}: scene graphs have different feature widths {sorted(dims)}")

    offsets, n = {}, 0
    for name, g in parts:
        offsets[name] = n
        n += g.num_nodes
    lemmas, spans, source_index, modalities = [], [], [], []
    for _name, g in parts:
        lem = g.meta.get("lemmas") or [""] * g.num_nodes
        lemmas.extend(str(v) for v in lem)
        sp = g.meta.get("spans") or [[-1, -1]] * g.num_nodes
        spans.extend([int(a), int(b)] for a, b in sp)
        source_index.extend(range(g.num_nodes))
        modalities.extend(MODALITIES[int(m)] for m in g.node_modality)
    x = np.concatenate([g.x.astype(np.float32) for _, g in parts], 0)
    xn = _l2(x)
    kind = np.concatenate([g.node_kind for _, g in parts]).astype(np.int8)
    modality = np.concatenate([g.node_modality for _, g in parts]).astype(np.int8)

    ei = [g.edge_index + offsets[name] for name, g in parts]
    etype = [g.edge_type.astype(np.int8) for _, g in parts]
    elabel = [lab for _, g in parts for lab in g.edge_label]
    eattr = [g.edge_attr.astype(np.float32) for _, g in parts]

    def add(src: np.ndarray, dst: np.ndarray, name: str, labels: list[str], weight_is_cos: bool):
        """Append edges src->dst and dst->src of type ``name``."""
        if len(src) == 0:
            return
        s = np.concatenate([src, dst]).astype(np.int64)
        d = np.concatenate([dst, src]).astype(np.int64)
        cos = np.einsum("ij,ij->i", xn[s], xn[d]).astype(np.float32)
        attr = np.zeros((s.size, EDGE_ATTR_DIM), np.float32)
        attr[:, _COS] = cos
        attr[:, _W] = cos if weight_is_cos else 1.0
        ei.append(np.stack([s, d]))
        etype.append(np.full(s.size, _E[name], np.int8))
        elabel.extend(list(labels) * 2)
        eattr.append(attr)

    node_ids = np.arange(n)
    sel = {name: node_ids[offsets[name] : offsets[name] + g.num_nodes] for name, g in parts}
    text_nodes = sel.get("text", np.zeros(0, np.int64))
    text_ents = text_nodes[np.isin(kind[text_nodes], [_K["entity"], _K["noun_phrase"]])]
    vis_nodes = sel.get("visual", np.zeros(0, np.int64))
    vis_objects = vis_nodes[kind[vis_nodes] == _K["object"]]
    cap_nodes = sel.get("caption", np.zeros(0, np.int64))

    # co-occurrence (edge_label = the shared lemma)
    co = _cooccur_pairs(lemmas, text_nodes, cap_nodes, False)
    co += _cooccur_pairs(lemmas, text_nodes, vis_objects, True)
    if cross_cooccur:
        co += _cooccur_pairs(lemmas, cap_nodes, vis_objects, True)
    if co:
        add(np.asarray([c[0] for c in co]), np.asarray([c[1] for c in co]), "cooccur", [c[2] for c in co], False)

    # similarity (weight = cosine)
    role_all = np.concatenate([g.node_role for _, g in parts]).astype(np.int8)
    anchors_ = text_nodes[(role_all[text_nodes] == ROLE_HEAD) | (role_all[text_nodes] == ROLE_TAIL)]
    for other in (vis_nodes, cap_nodes):
        if text_ents.size and other.size:
            s, d, _ = similarity_edges(x[text_ents], x[other], top_k=top_k, threshold=threshold)
            add(text_ents[s], other[d], "similar", [""] * len(s), True)
            if anchor:
                # the head and tail always reach the other view: their best match, whatever its cosine
                linked = set(text_ents[s].tolist())
                lonely = np.asarray([a for a in anchors_.tolist() if a not in linked], np.int64)
                if lonely.size:
                    s2, d2, _ = similarity_edges(x[lonely], x[other], top_k=1, threshold=-1.0)
                    add(lonely[s2], other[d2], "similar", ["anchor"] * len(s2), True)

    role = np.concatenate([g.node_role for _, g in parts]).astype(np.int8)
    merged = Graph(
        graph_id=graph_id,
        node_kind=kind,
        node_modality=modality,
        node_role=role,
        node_text=[t for _, g in parts for t in g.node_text],
        box=np.concatenate([g.box.astype(np.float32) for _, g in parts], 0),
        edge_index=np.concatenate(ei, 1).astype(np.int64) if ei else np.zeros((2, 0), np.int64),
        edge_type=np.concatenate(etype).astype(np.int8),
        edge_label=elabel,
        edge_attr=np.concatenate(eattr, 0),
        x=x,
        label=int(label),
        meta={"lemmas": lemmas, "spans": spans, "source_index": source_index, "modalities": modalities},
    )
    merged.validate()
    before = graph_counts(merged)
    seeds = np.flatnonzero((role == ROLE_HEAD) | (role == ROLE_TAIL))
    if hops is not None and hops >= 0 and seeds.size:
        merged = subgraph(merged, k_hop_nodes(merged.edge_index, n, seeds, hops))
    merged.meta["counts_before"] = before
    merged.meta["counts_after"] = graph_counts(merged)
    merged.meta["params"] = {
        "top_k": int(top_k),
        "threshold": float(threshold),
        "hops": None if hops is None else int(hops),
        "cross_cooccur": bool(cross_cooccur),
        "anchor": bool(anchor),
    }
    return merged


__all__ = [
    "NODE_META_KEYS",
    "graph_counts",
    "k_hop_nodes",
    "mark_visual_tail",
    "merge_cmg",
    "pool_span_features",
    "pool_spans",
    "similarity_edges",
    "subgraph",
]
