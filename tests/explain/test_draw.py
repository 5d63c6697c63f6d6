"""The explanation picture (mmre_cli/explain/draw.py): one meaning per colour, labels that can be read."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mmre_cli.graphs.graph import EDGE_ATTR_COLUMNS, EDGE_ATTR_DIM, EDGE_TYPES, MODALITIES, NODE_KINDS, Graph


def _cmg() -> Graph:
    """Six tokens, HEAD and TAIL entities, two caption phrases; dependency edges along the tokens
    and two cross-modal edges from one caption phrase to neighbouring tokens (their labels,
    ``same word`` and ``cos 0.46``, want nearly the same place)."""
    tokens = ["Alice", "met", "Bob", "in", "Paris", "."]
    k, m = {n: i for i, n in enumerate(NODE_KINDS)}, {n: i for i, n in enumerate(MODALITIES)}
    kinds = [k["token"]] * 6 + [k["entity"], k["entity"]] + [k["caption_phrase"]] * 2
    mods = [m["text"]] * 8 + [m["caption"]] * 2
    roles = [0] * 6 + [1, 2, 0, 0]
    spans = [[i, i + 1] for i in range(6)] + [[0, 1], [2, 3], [-1, -1], [-1, -1]]
    edges = [
        (1, 0, "dep", "nsubj"),
        (1, 2, "dep", "dobj"),
        (1, 3, "dep", "prep"),
        (3, 4, "dep", "pobj"),
        (0, 6, "member", ""),
        (2, 7, "member", ""),
        (8, 3, "cooccur", ""),
        (8, 4, "similar", ""),
        (9, 4, "similar", ""),
        (9, 2, "cooccur", ""),
    ]
    attr = np.zeros((len(edges), EDGE_ATTR_DIM), np.float32)
    attr[:, 0] = 0.5
    attr[:, EDGE_ATTR_COLUMNS.index("cosine")] = 0.46
    g = Graph(
        graph_id="g",
        node_kind=np.asarray(kinds, np.int8),
        node_modality=np.asarray(mods, np.int8),
        node_role=np.asarray(roles, np.int8),
        node_text=tokens + ["Alice", "Bob", "a city in", "Paris"],
        box=np.full((10, 4), np.nan, np.float32),
        edge_index=np.asarray([[a for a, *_ in edges], [b for _, b, *_ in edges]], np.int64),
        edge_type=np.asarray([EDGE_TYPES.index(t) for _, _, t, _ in edges], np.int8),
        edge_label=[lab for *_, lab in edges],
        edge_attr=attr,
        x=np.eye(10, 8, dtype=np.float32),
        label=1,
        meta={"spans": spans, "relevance": [0.5] * 10},
    )
    g.validate()
    return g


@pytest.fixture
def drawn(tmp_path, monkeypatch):
    """The figure :func:`draw_explanation` saved, laid out as saved, and its renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mmre_cli.attribution import Attribution
    from mmre_cli.explain.draw import draw_explanation

    figures = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figures.append(self), save(self, *a, **k))[1])
    g = _cmg()
    node = [0.3, -0.1, 0.05, 0.0, 0.02, 0.0, 0.6, -0.4, 0.1, -0.2]
    draw_explanation(
        tmp_path / "x.png",
        cmg=g,
        refined=g,
        image=None,
        relation="/per/loc/place_lived",
        probability=0.4321,
        top3=[("/per/loc/place_lived", 0.4321), ("None", 0.3), ("/per/org/x", 0.1)],
        attribution=Attribution(target=1, node=node, edge=None),
    )
    (fig,) = figures
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw_without_rendering()
    return fig, fig.axes[-1], renderer


def test_edge_labels_overlap_no_node_and_no_other_label(drawn):
    fig, ax, renderer = drawn
    texts = [t for t in ax.texts if t.get_visible() and t.get_text().strip()]
    edge_labels = [t for t in texts if t.get_bbox_patch() is not None]
    assert {"nsubj", "dobj"} <= {t.get_text() for t in edge_labels}  # labels are drawn where there is room
    for a, b in itertools.combinations(texts, 2):
        if a in edge_labels or b in edge_labels:
            assert not a.get_window_extent(renderer).overlaps(b.get_window_extent(renderer)), (
                a.get_text(),
                b.get_text(),
            )


def test_red_and_blue_mean_for_and_against_only(drawn):
    from matplotlib.colors import to_rgb

    fig, ax, _ = drawn
    rings = [c for c in ax.collections if len(c.get_linewidths()) and max(c.get_linewidths()) >= 3]
    assert len(rings) == 2  # HEAD and TAIL
    for ring in rings:
        r, g, b = to_rgb(ring.get_edgecolor()[0])
        assert max(r, g, b) - min(r, g, b) < 0.05, (r, g, b)  # a grey/black ring: no hue of the IG scale
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "node for the prediction (IG)" in legend and not {"HEAD", "TAIL"} & set(legend)


def test_row_names_sit_in_the_margin(drawn):
    fig, ax, _ = drawn
    assert [t.get_text() for t in ax.get_yticklabels()] == ["tokens", "entities /\nphrases", "caption"]
    assert not {"tokens", "caption"} & {t.get_text() for t in ax.texts}


def test_scores_carry_their_unit(drawn):
    fig, ax, _ = drawn
    assert "p = 43.2 %" in fig.get_suptitle()
    title = ax.get_title()
    assert "None 30.0 %" in title and "logits of the predicted class" in title
