"""The attribution's colour scale and the strip of coloured word pieces under the explanation
picture (:func:`mmre_cli.explain.draw.draw_explanation` uses both)."""

from __future__ import annotations

import numpy as np


def importance_colour(value: float, scale: float):
    """Red for evidence for the prediction, blue against, white for none (``RdBu_r`` at ``value/scale``)."""
    from matplotlib import colormaps

    t = 0.0 if scale <= 0 or not np.isfinite(value) else float(np.clip(value / scale, -1.0, 1.0))
    return colormaps["RdBu_r"](0.5 + 0.33 * t)  # at most a middle red / blue: black text stays readable on it


def draw_pieces(fig, pieces: list[tuple[str, float]], width: float = 0.96) -> None:
    """The sentence's word pieces along the bottom of ``fig``, each on a background coloured by its
    importance (the same red/blue scale), wrapped to ``width`` of the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    engine = fig.get_layout_engine()
    if engine is not None and hasattr(engine, "set"):
        engine.set(rect=(0.0, 0.1, 1.0, 0.9))  # room for the pieces below the panels
    renderer = FigureCanvasAgg(fig).get_renderer()
    scale = max((abs(v) for _, v in pieces), default=0.0)
    x0, x, y = 0.02, 0.02, 0.035
    fig.text(
        x0,
        y + 0.035,
        "word pieces (IG of the encoder's input embeddings for the prediction, in logits; red for, blue against):",
        fontsize=8,
        color="#555555",
    )
    fw = fig.bbox.width
    for piece, value in pieces:
        label = piece[2:] if piece.startswith("##") else piece.replace("\u2581", "").replace("\u0120", "") or piece
        t = fig.text(
            x,
            y,
            label,
            fontsize=9,
            family="monospace",
            bbox={"facecolor": importance_colour(value, scale), "edgecolor": "none", "pad": 1.2},
        )
        w = t.get_window_extent(renderer).width / fw
        if x + w > width and x > x0:  # wrap
            y -= 0.03
            x = x0
            t.set_position((x, y))
        x += w + (0.0 if piece.startswith("##") else 0.004)
