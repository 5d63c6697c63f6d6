"""Draws the explanation picture of one prediction: :func:`draw_explanation`.

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

What each node and edge became, and the layout, come from :mod:`.content`.

Only matplotlib (no pyplot state) and networkx are used; importing this module is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mmre_cli.explain.content import (
    IMAGE,
    OBJECT,
    TOKEN,
    Explained,
    attribution_in_cmg,
    bend,
    edge_label,
    layered_layout,
    select_nodes,
    short,
)
from mmre_cli.explain.pieces import draw_pieces, importance_colour
from mmre_cli.graphs.graph import MODALITIES, NODE_KINDS, ROLE_HEAD, ROLE_TAIL, Graph

MODALITY_COLOURS = {"text": "#9ecae1", "visual": "#fdae6b", "caption": "#c9b3e6"}
#: the outline of the HEAD and TAIL nodes and boxes: black, so that red and blue keep one meaning
#: (an attribution's for / against); the labels HEAD / TAIL say which is which
HEAD_COLOUR = TAIL_COLOUR = ROLE_COLOUR = "#111111"
#: the cross over a node the editor deleted (grey: not a colour of the attribution scale)
CROSS_COLOUR = "#555555"
ADDED_COLOUR, KEPT_COLOUR, PRUNED_COLOUR, DELETED_COLOUR = "#2ca02c", "#4a4a4a", "#9a9a9a", "#c8c8c8"


def _place_edge_labels(
    fig, ax, pos: dict, edge_labels: list, nodes: list[tuple[tuple[float, float], float]], texts: list
) -> None:
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
        t = ax.text(
            0,
            0,
            label,
            fontsize=7,
            color=colour,
            ha="center",
            va="center",
            zorder=5,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5},
        )
        t.set_in_layout(False)
        for at in spots:
            t.set_position(ax.transData.inverted().transform(at))
            box = t.get_window_extent(renderer).expanded(1.04, 1.1)
            if not any(box.overlaps(other) for other in taken):
                taken.append(box)
                break
        else:
            t.remove()


def draw_explanation(
    path: str | Path,
    *,
    cmg: Graph,
    refined: Graph | None,
    image: str | Path | None,
    relation: str,
    probability: float,
    top3: Sequence[tuple[str, float]] = (),
    head: str | None = None,
    tail: str | None = None,
    image_note: str | None = None,
    max_tokens: int = 14,
    max_label: int = 18,
    dpi: int = 130,
    attribution=None,
    image_name: str | None = None,
) -> Path:
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
    ex = Explained(cmg, refined)
    g = cmg
    node_imp, edge_imp = attribution_in_cmg(ex, attribution)
    nodes, hidden = select_nodes(ex, max_tokens)
    pos = layered_layout(g, nodes)
    mod = [MODALITIES[int(m)] for m in g.node_modality]
    objects = [i for i in range(g.num_nodes) if g.node_kind[i] in (OBJECT, IMAGE)]
    tag = {i: f"o{k}" for k, i in enumerate([j for j in objects if g.node_kind[j] == OBJECT], 1)}
    tag.update({i: "image" for i in objects if g.node_kind[i] == IMAGE})
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
            if g.node_kind[i] != OBJECT or not np.isfinite(g.box[i]).all():
                continue
            x1, y1, x2, y2 = (float(v) for v in g.box[i])
            gone = i in ex.deleted
            role = g.node_role[i]
            colour = ROLE_COLOUR if role in (ROLE_HEAD, ROLE_TAIL) else "#e6550d"
            ax_img.add_patch(
                Rectangle(
                    (x1 * w, y1 * h),
                    (x2 - x1) * w,
                    (y2 - y1) * h,
                    fill=False,
                    edgecolor=colour,
                    linewidth=3.5 if role else 2,
                    linestyle="--" if gone else "-",
                    alpha=0.4 if gone else 1.0,
                )
            )
            ax_img.text(
                x1 * w + 2,
                y1 * h + 2,
                f"{tag[i]} {short(g.node_text[i], 14)}" + (" (deleted)" if gone else ""),
                fontsize=8,
                va="top",
                color="white",
                bbox={"facecolor": colour, "alpha": 0.4 if gone else 0.85, "pad": 1.5, "linewidth": 0},
            )
        n_obj = sum(1 for i in objects if g.node_kind[i] == OBJECT)
        # two lines, the name cut to 44 characters: one line overflowed the image panel and the
        # figure's left edge cut its first letters
        ax_img.set_title(
            f"{short(image_name or Path(image).name, 44)}\n({n_obj} object box{'es' if n_obj != 1 else ''})",
            fontsize=10,
        )
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
    for status, colour, style, alpha in (
        ("deleted", DELETED_COLOUR, ":", 0.9),
        ("pruned", PRUNED_COLOUR, "--", 1.0),
        ("kept", KEPT_COLOUR, "-", 0.8),
        ("added", ADDED_COLOUR, "-", 1.0),
    ):
        for k, (a, b) in enumerate(groups[status]):
            width = widths[status][k] if status in widths else (1.0 if status == "deleted" else 1.4)
            rad = bend(pos[a], pos[b])
            nx.draw_networkx_edges(
                G,
                pos,
                ax=ax,
                edgelist=[(a, b)],
                edge_color=colour,
                style=style,
                width=width,
                alpha=alpha,
                arrows=True,
                arrowstyle="-",
                connectionstyle=f"arc3,rad={rad}",
                node_size=0,
            )
            label = edge_label(ex.edges[(a, b)], g, a, b) if status in ("kept", "added") else ""
            if not label:
                continue
            edge_labels.append(((a, b, rad), label, ADDED_COLOUR if status == "added" else "#555555"))

    rel = ex.relevance
    finite = rel[np.isfinite(rel)]
    node_scale = (
        max((abs(node_imp[i]) for i in nodes if np.isfinite(node_imp[i])), default=0.0) if node_imp is not None else 0.0
    )
    sizes: dict[int, float] = {}
    for i in nodes:
        kind = int(g.node_kind[i])
        base = 380 if kind == TOKEN else 1500
        r = rel[i] if np.isfinite(rel[i]) else (float(finite.mean()) if finite.size else 0.5)
        size = sizes[i] = base * (0.55 + 0.9 * float(np.clip(r, 0, 1)))
        gone = i in ex.deleted
        role = int(g.node_role[i])
        edge = ROLE_COLOUR if role in (ROLE_HEAD, ROLE_TAIL) else "#666666"
        fill = MODALITY_COLOURS[mod[i]]
        if node_imp is not None and not gone:
            fill = importance_colour(node_imp[i], node_scale)
        nx.draw_networkx_nodes(
            G,
            pos,
            ax=ax,
            nodelist=[i],
            node_size=size,
            node_color=["#eeeeee" if gone else fill],
            edgecolors=edge if not gone else "#bbbbbb",
            linewidths=4.0 if role else 0.8,
            alpha=0.45 if gone else 1.0,
            node_shape="o" if kind == TOKEN else "s" if mod[i] == "visual" else "o",
        )
        if gone:
            ax.scatter(
                [pos[i][0]], [pos[i][1]], marker="x", s=size * 0.55, c=CROSS_COLOUR, linewidths=2.0, alpha=0.8, zorder=3
            )
    labels = {}
    for i in nodes:
        text = short(g.node_text[i] or NODE_KINDS[int(g.node_kind[i])], max_label)
        if g.node_kind[i] != TOKEN and len(text) > 11:  # two short lines read better than one wide one
            import textwrap

            text = "\n".join(textwrap.wrap(text, 11, break_long_words=False)[:2])
        if i in tag:
            text = f"{tag[i]} {text}" if g.node_kind[i] == OBJECT else "image"
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
        labels_drawn.append(
            ax.text(
                pos[i][0],
                pos[i][1] - (0.2 if g.node_kind[i] == TOKEN else 0.0),
                text,
                ha="center",
                va="top" if g.node_kind[i] == TOKEN else "center",
                fontsize=8.5 if g.node_kind[i] != TOKEN else 8,
                fontweight="bold" if role else "normal",
                color="#999999" if gone else "#111111",
                zorder=4,
            )
        )
    rows = [(0.0, "tokens"), (1.0, "entities /\nphrases"), (2.0, "caption"), (3.0, "visual")]
    used = {round(p[1]) for p in pos.values()}
    shown_rows = [(y, name) for y, name in rows if int(y) in used]
    # the row names as the y axis' labels: in the margin left of the graph, never on a node
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_xticks([])
    ax.set_yticks(
        [y for y, _ in shown_rows], [name for _, name in shown_rows], fontsize=8, color="#888888", style="italic"
    )
    ax.tick_params(axis="y", length=0, left=False, labelleft=True)  # networkx turned the labels off

    # -- title and legend ----------------------------------------------------------------------
    runners = ", ".join(f"{lab} {100 * p:.1f} %" for lab, p in list(top3)[1:3])
    fig.suptitle(
        f"{relation}{' (no relation)' if relation.lower() == 'none' else ''}  (p = {100 * probability:.1f} %)",
        fontsize=15,
        fontweight="bold",
    )
    evidence = ""
    if node_imp is not None:
        ranked = sorted((i for i in range(g.num_nodes) if np.isfinite(node_imp[i])), key=lambda i: -node_imp[i])[:5]
        import textwrap

        evidence = "\n" + textwrap.fill(
            "evidence (IG for the prediction): "
            + ", ".join(
                f"{short(g.node_text[i] or NODE_KINDS[int(g.node_kind[i])], 16)} {node_imp[i]:+.3f}" for i in ranked
            )
            + " (logits of the predicted class)",
            100 if has_image else 80,
        )  # within the graph panel's width
    ax.set_title(
        f"HEAD {short(head, 30)}  →  TAIL {short(tail, 30)}"
        + (f"\nrunners-up: {runners}" if runners else "")
        + evidence,
        fontsize=10,
    )
    n_del = len(ex.deleted)
    handles = [
        Patch(facecolor=MODALITY_COLOURS[m], edgecolor="#666666", label=f"{m} node")
        for m in MODALITIES
        if any(mod[i] == m for i in nodes)
    ]
    handles += [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markersize=11,
            markerfacecolor="white",
            markeredgecolor=ROLE_COLOUR,
            markeredgewidth=3,
            label="HEAD / TAIL entity (as labelled)",
        ),
        Line2D(
            [],
            [],
            marker="x",
            linestyle="",
            markersize=10,
            color=CROSS_COLOUR,
            markeredgewidth=2,
            label=f"node deleted by the RL editor ({n_del})",
        ),
        Line2D(
            [],
            [],
            color=KEPT_COLOUR,
            linewidth=3,
            label="kept edge (width = |IG importance|)" if edge_imp is not None else "kept edge (width = final weight)",
        ),
        Line2D([], [], color=ADDED_COLOUR, linewidth=3, label=f"edge added by the editor ({len(groups['added'])})"),
        Line2D(
            [],
            [],
            color=PRUNED_COLOUR,
            linestyle="--",
            linewidth=1.5,
            label=f"edge pruned by diffusion ({len(groups['pruned'])})",
        ),
        Line2D(
            [],
            [],
            color=DELETED_COLOUR,
            linestyle=":",
            linewidth=1.5,
            label=f"edge deleted by the editor ({len(groups['deleted'])})",
        ),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markersize=8,
            color="#bbbbbb",
            label="node size = diffused relevance v (0 to 1)",
        ),
    ]
    if hidden:
        handles.append(Line2D([], [], linestyle="", label=f"{hidden} token node(s) away from HEAD/TAIL not drawn"))
    if node_imp is not None:
        handles[:0] = [
            Patch(facecolor=importance_colour(1.0, 1.0), edgecolor="#666666", label="node for the prediction (IG)"),
            Patch(facecolor=importance_colour(-1.0, 1.0), edgecolor="#666666", label="node against it (IG)"),
        ]
        handles = [h for h in handles if not str(h.get_label()).endswith(" node")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8.5, frameon=False)
    if attribution is not None and getattr(attribution, "pieces", None):
        draw_pieces(fig, attribution.pieces)
    _place_edge_labels(fig, ax, pos, edge_labels, [(pos[i], sizes[i]) for i in nodes], labels_drawn)
    fig.savefig(path, dpi=dpi, format=path.suffix.lower().lstrip(".") or "png")
    return path
