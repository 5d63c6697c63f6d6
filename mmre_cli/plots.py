"""The stages' curves and confusion matrix as PNG pictures (matplotlib, no network).

DVC's own plots page draws CSV plots with vega-lite loaded from a CDN, so offline they stay
blank; these PNGs are declared as image plots in ``dvc.yaml`` and show on that page (and in any
file viewer) with no network. Every function writes ``path`` atomically and returns it.

* :func:`curves_png` — one panel per group of columns against ``x`` (e.g. train/val loss, then
  val F1 and accuracy per epoch); noisy per-step columns may be smoothed with a rolling mean.
* :func:`confusion_png` — the gold × predicted count matrix, each row normalised to 1 (colour)
  with the counts written in the cells that are not 0.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["curves_png", "confusion_png"]


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height))


def _save(fig, plt, path: Path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _rolling(values: list[float], window: int) -> list[float]:
    if window <= 1:
        return values
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def curves_png(rows: Sequence[Mapping[str, float]], x: str, panels: Sequence[Sequence[str]], path: str | Path,
               title: str, ylabels: Sequence[str] | None = None, smooth: int = 1) -> Path:
    """Line plots of ``rows`` (dicts with ``x`` and the panels' columns), one panel per column group.

    Args:
        rows: e.g. the train-gnn history, one dict per epoch.
        x: the column on the x axis.
        panels: column names per panel, e.g. ``[["loss", "val_loss"], ["val_f1", "val_acc"]]``;
            a column absent from the rows is skipped.
        path: the ``.png`` to write.
        title: the figure's title.
        ylabels: one y-axis label per panel (default: none).
        smooth: rolling-mean window for every curve (1 = raw); the raw values are drawn faintly
            behind a smoothed curve.
    """
    plt, fig = _figure(6.4, 2.6 * len(panels) + 0.4)
    xs = [float(r[x]) for r in rows]
    for k, cols in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, k + 1)
        for col in cols:
            if not rows or col not in rows[0]:
                continue
            ys = [float(r[col]) for r in rows]
            if smooth > 1:
                line, = ax.plot(xs, _rolling(ys, smooth), label=f"{col} (mean of {smooth})")
                ax.plot(xs, ys, color=line.get_color(), alpha=0.2, linewidth=0.8)
            else:
                ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, label=col)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        if ylabels and k < len(ylabels):
            ax.set_ylabel(ylabels[k])
        if k == len(panels) - 1:
            ax.set_xlabel(x)
    fig.suptitle(title, fontsize=10)
    return _save(fig, plt, path)


def confusion_png(labels: Sequence[str], matrix: Sequence[Sequence[int]], path: str | Path, title: str) -> Path:
    """The confusion matrix ``matrix[gold][pred]`` as a row-normalised heat map with counts.

    Labels are shortened to their last path part (``/per/org/member_of`` → ``member_of``) unless
    two would then read the same (``per/per/alternate_names`` and ``org/org/alternate_names`` stay).
    """
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    short = [str(lab).rstrip("/").rsplit("/", 1)[-1] or str(lab) for lab in labels]
    clash = {name for name in short if short.count(name) > 1}  # /per/per/alternate_names vs /org/org/...
    short = [str(lab).strip("/") if name in clash else name for lab, name in zip(labels, short)]
    size = max(4.0, 0.36 * len(labels) + 2.0)
    plt, fig = _figure(size + 1.0, size)
    ax = fig.add_subplot(1, 1, 1)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j]:
                ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=6.5,
                        color="white" if norm[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(short)), short, rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(len(short)), short, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    fig.colorbar(im, ax=ax, fraction=0.04, label="share of the gold row")
    ax.set_title(title, fontsize=10)
    return _save(fig, plt, path)
