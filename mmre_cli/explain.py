"""The picture ``mmre predict --explain`` draws: why a relation was predicted.

One matplotlib figure, two panels:

* **left** — the image (when there is one) with the visual nodes' boxes, each labelled ``o<k>``
  plus its class, as in the graph; boxes of objects the RL editor deleted are dashed and faded;
* **right** — the cross-modal graph (CMG) of the instance as built, drawn with networkx on a
  fixed layered layout (no randomness: sentence tokens on the bottom row in sentence order,
  entities and noun phrases above their tokens, caption phrases above them, visual nodes on
  top), showing what the editor and diffusion did to it:

  - node fill = modality (text / caption / visual), or, with an attribution, its sign and
    size only (red for the prediction, blue against); node size grows with the diffused
    relevance ``v`` (``meta["relevance"]``), nodes the editor deleted are faded and crossed;
  - the head and the tail have a thick black outline and are labelled HEAD / TAIL (red and blue
    mean for/against only, never head/tail);
  - kept edges are solid, their width is the final edge weight ``w_ij = (v_i + v_j)/2``;
    edges the editor added are green; edges diffusion pruned are dashed grey; edges the editor
    deleted are dotted and faint; an edge label that would overlap a node or another label
    is left out;
  - rows are named in the margin (tokens, entities / phrases, caption, visual), never among
    the nodes;
  - title: the predicted relation and its probability in %, the runners-up below it; IG
    importances are in logits of the predicted class, edge similarities are cosines.

A long sentence is cut down: beyond ``max_tokens`` token nodes only the tokens adjacent to the
head/tail (and to their tokens) are drawn, and the legend says how many were left out. Node
labels longer than ``max_label`` characters are truncated with "…".

Mapping the refined graph back: :func:`mmre_cli.graphs.refine.apply_edit_record` records its
edits in the CMG's numbering and keeps the CMG's node order minus the deleted nodes, so refined
node ``k`` is the ``k``-th surviving CMG node; diffusion's ``pruned_edges`` are in the refined
numbering.

Only matplotlib (no pyplot state) and networkx are used; importing this module is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mmre_cli.graphs.graph import EDGE_ATTR_COLUMNS, EDGE_TYPES, MODALITIES, NODE_KINDS, ROLE_HEAD, ROLE_TAIL, Graph

MODALITY_COLOURS = {"text": "#9ecae1", "visual": "#fdae6b", "caption": "#c9b3e6"}
#: the outline of the HEAD and TAIL nodes and boxes: black, so that red and blue keep one meaning
#: (an attribution's for / against); the labels HEAD / TAIL say which is which
HEAD_COLOUR = TAIL_COLOUR = ROLE_COLOUR = "#111111"
#: the cross over a node the editor deleted (grey: not a colour of the attribution scale)
CROSS_COLOUR = "#555555"
ADDED_COLOUR, KEPT_COLOUR, PRUNED_COLOUR, DELETED_COLOUR = "#2ca02c", "#4a4a4a", "#9a9a9a", "#c8c8c8"
_TOKEN, _ENTITY, _NP, _IMAGE, _OBJECT, _CAPTION = (NODE_KINDS.index(k) for k in NODE_KINDS)


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


class _Explained:
    """The CMG's nodes and edges with what became of each (kept, deleted, added, pruned)."""

    def __init__(self, cmg: Graph, refined: Graph | None) -> None:
        n = cmg.num_nodes
        refined = refined if refined is not None else cmg
        edits = refined.meta.get("edits", {}) or {}
        deleted = sorted({int(i) for i in edits.get("deleted_nodes", [])})
        alive = [i for i in range(n) if i not in set(deleted)]
        if len(alive) != refined.num_nodes:
            raise ValueError(f"{cmg.graph_id}: {refined.num_nodes} refined nodes, but {len(alive)} CMG nodes survive the edits")
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
                self.edges[key] = {"status": status if cur is None else ("added" if "added" in (status, cur["status"]) else "kept"),
                                   "weight": max(w, cur["weight"]) if cur else w, "type": EDGE_TYPES[int(refined.edge_type[e])],
                                   "cosine": cos}
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


def _attribution_in_cmg(ex: _Explained, attribution) -> tuple[np.ndarray | None, dict | None]:
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


def _importance_colour(value: float, scale: float):
    """Red for evidence for the prediction, blue against, white for none (``RdBu_r`` at ``value/scale``)."""
    from matplotlib import colormaps

    t = 0.0 if scale <= 0 or not np.isfinite(value) else float(np.clip(value / scale, -1.0, 1.0))
    return colormaps["RdBu_r"](0.5 + 0.33 * t)  # at most a middle red / blue: black text stays readable on it


def _draw_pieces(fig, pieces: list[tuple[str, float]], width: float = 0.96) -> None:
    """The sentence's word pieces along the bottom of ``fig``, each on a background coloured by its
    importance (the same red/blue scale), wrapped to ``width`` of the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    engine = fig.get_layout_engine()
    if engine is not None and hasattr(engine, "set"):
        engine.set(rect=(0.0, 0.1, 1.0, 0.9))  # room for the pieces below the panels
    renderer = FigureCanvasAgg(fig).get_renderer()
    scale = max((abs(v) for _, v in pieces), default=0.0)
    x0, x, y = 0.02, 0.02, 0.035
    fig.text(x0, y + 0.035, "word pieces (IG of the encoder's input embeddings for the prediction, in logits; red for, blue against):", fontsize=8,
             color="#555555")
    fw = fig.bbox.width
    for piece, value in pieces:
        label = piece[2:] if piece.startswith("##") else piece.replace("\u2581", "").replace("\u0120", "") or piece
        t = fig.text(x, y, label, fontsize=9, family="monospace",
                     bbox={"facecolor": _importance_colour(value, scale), "edgecolor": "none", "pad": 1.2})
        w = t.get_window_extent(renderer).width / fw
        if x + w > width and x > x0:  # wrap
            y -= 0.03
            x = x0
            t.set_position((x, y))
        x += w + (0.0 if piece.startswith("##") else 0.004)


def _select(ex: _Explained, max_tokens: int) -> tuple[list[int], int]:
    """Nodes to draw and how many token nodes were left out."""
    g = ex.cmg
    tokens = [i for i in range(g.num_nodes) if g.node_kind[i] == _TOKEN]
    if len(tokens) <= max_tokens:
        return list(range(g.num_nodes)), 0
    anchors = {i for i in range(g.num_nodes) if g.node_role[i] in (ROLE_HEAD, ROLE_TAIL)}
    near = ex.neighbours(anchors)
    wanted = {i for i in near if g.node_kind[i] == _TOKEN}
    wider = {i for i in ex.neighbours(wanted) if g.node_kind[i] == _TOKEN} | wanted
    if len(wider) <= max_tokens:
        wanted = wider
    keep = [i for i in range(g.num_nodes) if g.node_kind[i] != _TOKEN or i in wanted]
    return keep, len(tokens) - sum(1 for i in keep if g.node_kind[i] == _TOKEN)


def _layout(g: Graph, nodes: list[int]) -> dict[int, tuple[float, float]]:
    """Fixed layered positions: tokens (y=0), entities/phrases (1), caption (2), visual (3)."""
    spans = g.meta.get("spans") or [[-1, -1]] * g.num_nodes
    mod = [MODALITIES[int(m)] for m in g.node_modality]
    tokens = [i for i in nodes if g.node_kind[i] == _TOKEN]
    tokens.sort(key=lambda i: spans[i][0])
    pos: dict[int, tuple[float, float]] = {}
    width = max(len(tokens), 4)
    for k, i in enumerate(tokens):
        pos[i] = (k * width / max(len(tokens), 1) + 0.5, 0.0)
    # entities / noun phrases: above the mean x of their (drawn) tokens, spread where they collide
    token_x = {spans[i][0]: pos[i][0] for i in tokens}
    phrases = [i for i in nodes if mod[i] == "text" and g.node_kind[i] != _TOKEN]
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


def _bend(pa: tuple[float, float], pb: tuple[float, float]) -> float:
    """Curvature of an edge: edges along one row arc over the nodes between their ends."""
    if abs(pa[1] - pb[1]) < 0.3 and abs(pa[0] - pb[0]) > 1.2:
        return -0.3 if pa[0] < pb[0] else 0.3  # arcs bow upwards, away from the labels under tokens
    return 0.0


def _edge_label(info: dict, g: Graph, a: int, b: int) -> str:
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
                return _short(g.edge_label[e], 14)
    if etype == "spatial":
        for e in range(g.num_edges):
            if {int(g.edge_index[0, e]), int(g.edge_index[1, e])} == {a, b} and g.edge_label[e]:
                return _short(g.edge_label[e], 14)
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


def _place_edge_labels(fig, ax, pos: dict, edge_labels: list, nodes: list[tuple[tuple[float, float], float]],
                       texts: list) -> None:
    """Draw each edge label at its edge's middle unless its box would overlap a node, a node's
    label or an edge label already drawn (then it is left out: a hidden label beats two that
    cannot be read). Positions are taken after the layout is final (``draw_without_rendering``);
    the labels stay out of the layout so it does not move again."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw_without_rendering()
    px_per_pt = fig.dpi / 72.0
    taken = [t.get_window_extent(renderer).expanded(1.02, 1.05) for t in texts]
    for (x, y), size in nodes:  # a node's marker: a square of its diameter (size is in points²)
        cx, cy = ax.transData.transform((x, y))
        r = np.sqrt(size) * px_per_pt / 2
        taken.append(Bbox.from_extents(cx - r, cy - r, cx + r, cy + r))
    for (a, b, rad), label, colour in edge_labels:
        pa, pb = ax.transData.transform(pos[a]), ax.transData.transform(pos[b])
        d = pb - pa
        if rad != 0.0:  # the arc's midpoint: halfway between the chord's midpoint and arc3's control point
            spots = [(pa + pb) / 2 + rad * np.array([d[1], -d[0]]) / 2]
        else:  # straight edges: a little nearer the upper end, where fewer labels sit; else the middle,
            upper, lower = (pa, pb) if pa[1] > pb[1] else (pb, pa)  # else just above or below it
            mid = lower + 0.5 * (upper - lower)
            spots = [lower + 0.62 * (upper - lower), mid, lower + 0.38 * (upper - lower)]
            if abs(d[1]) < 1.0:  # along a row: above the line, clear of the labels under the nodes
                spots += [mid + np.array([0.0, dy * px_per_pt]) for dy in (15.0, -15.0)]
        t = ax.text(0, 0, label, fontsize=7, color=colour, ha="center", va="center", zorder=5,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5})
        t.set_in_layout(False)
        for at in spots:
            t.set_position(ax.transData.inverted().transform(at))
            box = t.get_window_extent(renderer).expanded(1.04, 1.1)
            if not any(box.overlaps(other) for other in taken):
                taken.append(box)
                break
        else:
            t.remove()


def draw_explanation(path: str | Path, *, cmg: Graph, refined: Graph | None, image: str | Path | None,
                     relation: str, probability: float, top3: Sequence[tuple[str, float]] = (),
                     head: str | None = None, tail: str | None = None, image_note: str | None = None,
                     max_tokens: int = 14, max_label: int = 18, dpi: int = 130, attribution=None,
                     image_name: str | None = None) -> Path:
    """Draw the explanation of one prediction to ``path`` (``.png`` or ``.svg``).

    Args:
        path: output file; its suffix picks the format.
        cmg: the unedited cross-modal graph of the instance (merge-cmg's output).
        refined: the same graph after the editor and diffusion (diffuse's output); ``None``
            draws the CMG as is.
        image: the image file, or ``None`` (the left panel is then left out).
        relation, probability: the prediction (title).
        top3: the most probable labels with probabilities (the runners-up go under the title).
        head, tail: entity names for the title (default: the HEAD/TAIL nodes' texts).
        image_note: a line under the image (e.g. that the model does not use its pixels).
        max_tokens: most token nodes drawn before the sentence is cut to the head/tail context.
        max_label: node labels are truncated to this many characters.
        dpi: resolution of a PNG.
        attribution: an :class:`~mmre_cli.attribution.Attribution` of the refined graph for the
            predicted class; then node fill = its sign and size (red for, blue against the
            prediction), kept/added edge width = its magnitude, the top-5 evidence nodes are
            listed under the title, and word-piece importances (fine-tuned encoder) are drawn as a
            highlighted line of text at the bottom.
        image_name: how the image is titled (default: its file name; ``mmre serve`` gives the
            upload's own name, never its temp file's).

    Returns:
        ``Path(path)``.
    """
    import networkx as nx
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    path = Path(path)
    ex = _Explained(cmg, refined)
    g = cmg
    node_imp, edge_imp = _attribution_in_cmg(ex, attribution)
    nodes, hidden = _select(ex, max_tokens)
    pos = _layout(g, nodes)
    mod = [MODALITIES[int(m)] for m in g.node_modality]
    objects = [i for i in range(g.num_nodes) if g.node_kind[i] in (_OBJECT, _IMAGE)]
    tag = {i: f"o{k}" for k, i in enumerate([j for j in objects if g.node_kind[j] == _OBJECT], 1)}
    tag.update({i: "image" for i in objects if g.node_kind[i] == _IMAGE})
    heads = [i for i in range(g.num_nodes) if g.node_role[i] == ROLE_HEAD]
    tails = [i for i in range(g.num_nodes) if g.node_role[i] == ROLE_TAIL]
    head = head or (g.node_text[heads[0]] if heads else "?")
    tail = tail or (g.node_text[tails[0]] if tails else "?")

    has_image = image is not None and Path(image).is_file()
    fig = Figure(figsize=(15 if has_image else 11, 7.2), layout="constrained")
    if has_image:
        ax_img, ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.9]})
    else:
        ax_img, ax = None, fig.subplots(1, 1)

    # -- left: the image and its boxes ---------------------------------------------------------
    if ax_img is not None:
        from mmre_cli.features.imageio import open_image

        im = open_image(image)  # the pixel limit holds here too
        w, h = im.size
        ax_img.imshow(np.asarray(im))
        for i in objects:
            if g.node_kind[i] != _OBJECT or not np.isfinite(g.box[i]).all():
                continue
            x1, y1, x2, y2 = (float(v) for v in g.box[i])
            gone = i in ex.deleted
            role = g.node_role[i]
            colour = ROLE_COLOUR if role in (ROLE_HEAD, ROLE_TAIL) else "#e6550d"
            ax_img.add_patch(Rectangle((x1 * w, y1 * h), (x2 - x1) * w, (y2 - y1) * h, fill=False, edgecolor=colour,
                                       linewidth=3.5 if role else 2, linestyle="--" if gone else "-",
                                       alpha=0.4 if gone else 1.0))
            ax_img.text(x1 * w + 2, y1 * h + 2, f"{tag[i]} {_short(g.node_text[i], 14)}" + (" (deleted)" if gone else ""),
                        fontsize=8, va="top", color="white", bbox={"facecolor": colour, "alpha": 0.4 if gone else 0.85,
                                                                     "pad": 1.5, "linewidth": 0})
        n_obj = sum(1 for i in objects if g.node_kind[i] == _OBJECT)
        # two lines, the name cut to 44 characters: one line overflowed the image panel and the
        # figure's left edge cut its first letters
        ax_img.set_title(f"{_short(image_name or Path(image).name, 44)}\n({n_obj} object box{'es' if n_obj != 1 else ''})",
                         fontsize=10)
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        if image_note:
            ax_img.set_xlabel(image_note, fontsize=9, color="#555555")

    # -- right: the graph ------------------------------------------------------------------------
    G = nx.Graph()
    G.add_nodes_from(nodes)
    shown = set(nodes)
    groups: dict[str, list[tuple[int, int]]] = {"deleted": [], "pruned": [], "kept": [], "added": []}
    widths: dict[str, list[float]] = {"kept": [], "added": []}
    for (a, b), info in sorted(ex.edges.items()):
        if a not in shown or b not in shown:
            continue
        G.add_edge(a, b)
        groups[info["status"]].append((a, b))
        if info["status"] in widths:
            if edge_imp is not None:
                widths[info["status"]].append(0.6 + 5.0 * edge_imp.get((a, b), 0.0))
            else:
                widths[info["status"]].append(0.6 + 4.0 * float(np.clip(info["weight"], 0.0, 1.0)))
    xs = [p[0] for p in pos.values()] or [0.0]
    ax.set_xlim(min(xs) - 1.0, max(xs) + 1.0)
    ax.set_ylim(-0.75, 3.55)
    edge_labels: list[tuple[tuple[float, float], str, str]] = []  # (data position, text, colour): placed last
    for status, colour, style, alpha in (("deleted", DELETED_COLOUR, ":", 0.9), ("pruned", PRUNED_COLOUR, "--", 1.0),
                                         ("kept", KEPT_COLOUR, "-", 0.8), ("added", ADDED_COLOUR, "-", 1.0)):
        for k, (a, b) in enumerate(groups[status]):
            width = widths[status][k] if status in widths else (1.0 if status == "deleted" else 1.4)
            rad = _bend(pos[a], pos[b])
            nx.draw_networkx_edges(G, pos, ax=ax, edgelist=[(a, b)], edge_color=colour, style=style, width=width,
                                   alpha=alpha, arrows=True, arrowstyle="-", connectionstyle=f"arc3,rad={rad}",
                                   node_size=0)
            label = _edge_label(ex.edges[(a, b)], g, a, b) if status in ("kept", "added") else ""
            if not label:
                continue
            edge_labels.append(((a, b, rad), label, ADDED_COLOUR if status == "added" else "#555555"))

    rel = ex.relevance
    finite = rel[np.isfinite(rel)]
    node_scale = max((abs(node_imp[i]) for i in nodes if np.isfinite(node_imp[i])), default=0.0) \
        if node_imp is not None else 0.0
    sizes: dict[int, float] = {}
    for i in nodes:
        kind = int(g.node_kind[i])
        base = 380 if kind == _TOKEN else 1500
        r = rel[i] if np.isfinite(rel[i]) else (float(finite.mean()) if finite.size else 0.5)
        size = sizes[i] = base * (0.55 + 0.9 * float(np.clip(r, 0, 1)))
        gone = i in ex.deleted
        role = int(g.node_role[i])
        edge = ROLE_COLOUR if role in (ROLE_HEAD, ROLE_TAIL) else "#666666"
        fill = MODALITY_COLOURS[mod[i]]
        if node_imp is not None and not gone:
            fill = _importance_colour(node_imp[i], node_scale)
        nx.draw_networkx_nodes(G, pos, ax=ax, nodelist=[i], node_size=size,
                               node_color=["#eeeeee" if gone else fill],
                               edgecolors=edge if not gone else "#bbbbbb", linewidths=4.0 if role else 0.8,
                               alpha=0.45 if gone else 1.0, node_shape="o" if kind == _TOKEN else "s" if mod[i] == "visual" else "o")
        if gone:
            ax.scatter([pos[i][0]], [pos[i][1]], marker="x", s=size * 0.55, c=CROSS_COLOUR, linewidths=2.0, alpha=0.8, zorder=3)
    labels = {}
    for i in nodes:
        text = _short(g.node_text[i] or NODE_KINDS[int(g.node_kind[i])], max_label)
        if g.node_kind[i] != _TOKEN and len(text) > 11:  # two short lines read better than one wide one
            import textwrap

            text = "\n".join(textwrap.wrap(text, 11, break_long_words=False)[:2])
        if i in tag:
            text = f"{tag[i]} {text}" if g.node_kind[i] == _OBJECT else "image"
        role = int(g.node_role[i])
        if role == ROLE_HEAD:
            text = "HEAD\n" + text
        elif role == ROLE_TAIL:
            text = "TAIL\n" + text
        labels[i] = text
    labels_drawn = []
    for i, text in labels.items():
        gone = i in ex.deleted
        role = int(g.node_role[i])
        labels_drawn.append(ax.text(pos[i][0], pos[i][1] - (0.2 if g.node_kind[i] == _TOKEN else 0.0), text, ha="center",
                va="top" if g.node_kind[i] == _TOKEN else "center", fontsize=8.5 if g.node_kind[i] != _TOKEN else 8,
                fontweight="bold" if role else "normal", color="#999999" if gone else "#111111", zorder=4))
    rows = [(0.0, "tokens"), (1.0, "entities /\nphrases"), (2.0, "caption"), (3.0, "visual")]
    used = {round(p[1]) for p in pos.values()}
    shown_rows = [(y, name) for y, name in rows if int(y) in used]
    # the row names as the y axis' labels: in the margin left of the graph, never on a node
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_xticks([])
    ax.set_yticks([y for y, _ in shown_rows], [name for _, name in shown_rows], fontsize=8, color="#888888",
                  style="italic")
    ax.tick_params(axis="y", length=0, left=False, labelleft=True)  # networkx turned the labels off

    # -- title and legend ----------------------------------------------------------------------
    runners = ", ".join(f"{lab} {100 * p:.1f} %" for lab, p in list(top3)[1:3])
    fig.suptitle(f"{relation}{' (no relation)' if relation.lower() == 'none' else ''}  (p = {100 * probability:.1f} %)",
                 fontsize=15, fontweight="bold")
    evidence = ""
    if node_imp is not None:
        ranked = sorted((i for i in range(g.num_nodes) if np.isfinite(node_imp[i])), key=lambda i: -node_imp[i])[:5]
        import textwrap

        evidence = "\n" + textwrap.fill("evidence (IG for the prediction): " + ", ".join(
            f"{_short(g.node_text[i] or NODE_KINDS[int(g.node_kind[i])], 16)} {node_imp[i]:+.3f}" for i in ranked)
            + " (logits of the predicted class)", 100 if has_image else 80)  # within the graph panel's width
    ax.set_title(f"HEAD {_short(head, 30)}  →  TAIL {_short(tail, 30)}" + (f"\nrunners-up: {runners}" if runners else "")
                 + evidence, fontsize=10)
    n_del = len(ex.deleted)
    handles = [Patch(facecolor=MODALITY_COLOURS[m], edgecolor="#666666", label=f"{m} node") for m in MODALITIES
               if any(mod[i] == m for i in nodes)]
    handles += [
        Line2D([], [], marker="o", linestyle="", markersize=11, markerfacecolor="white", markeredgecolor=ROLE_COLOUR,
               markeredgewidth=3, label="HEAD / TAIL entity (as labelled)"),
        Line2D([], [], marker="x", linestyle="", markersize=10, color=CROSS_COLOUR, markeredgewidth=2,
               label=f"node deleted by the RL editor ({n_del})"),
        Line2D([], [], color=KEPT_COLOUR, linewidth=3,
               label="kept edge (width = |IG importance|)" if edge_imp is not None else "kept edge (width = final weight)"),
        Line2D([], [], color=ADDED_COLOUR, linewidth=3, label=f"edge added by the editor ({len(groups['added'])})"),
        Line2D([], [], color=PRUNED_COLOUR, linestyle="--", linewidth=1.5,
               label=f"edge pruned by diffusion ({len(groups['pruned'])})"),
        Line2D([], [], color=DELETED_COLOUR, linestyle=":", linewidth=1.5,
               label=f"edge deleted by the editor ({len(groups['deleted'])})"),
        Line2D([], [], marker="o", linestyle="", markersize=8, color="#bbbbbb",
               label="node size = diffused relevance v (0 to 1)"),
    ]
    if hidden:
        handles.append(Line2D([], [], linestyle="", label=f"{hidden} token node(s) away from HEAD/TAIL not drawn"))
    if node_imp is not None:
        handles[:0] = [Patch(facecolor=_importance_colour(1.0, 1.0), edgecolor="#666666", label="node for the prediction (IG)"),
                       Patch(facecolor=_importance_colour(-1.0, 1.0), edgecolor="#666666", label="node against it (IG)")]
        handles = [h for h in handles if not str(h.get_label()).endswith(" node")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8.5, frameon=False)
    if attribution is not None and getattr(attribution, "pieces", None):
        _draw_pieces(fig, attribution.pieces)
    _place_edge_labels(fig, ax, pos, edge_labels, [(pos[i], sizes[i]) for i in nodes], labels_drawn)
    fig.savefig(path, dpi=dpi, format=path.suffix.lower().lstrip(".") or "png")
    return path
