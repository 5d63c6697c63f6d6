"""The stages' curves and confusion matrix as PNG pictures (matplotlib, no network).

DVC's own plots page draws CSV plots with vega-lite loaded from a CDN, so offline they stay
blank; these PNGs are declared as image plots in ``dvc.yaml`` and show on that page (and in any
file viewer) with no network. Every function writes ``path`` atomically and returns it.

* :func:`curves_png` — one panel per group of columns against ``x`` (e.g. train/val loss, then
  val F1 and accuracy per epoch); noisy per-step columns may be smoothed with a rolling mean. A
  column on another scale than the panel's first (largest values more than :data:`OWN_AXIS`× apart,
  e.g. a train loss of 12 beside a val loss of 2) gets its own y axis on the right, while columns
  of one unit at nearby scales (two ratios of 0.03 and 0.12) share one; an ``x`` of whole
  numbers (epochs, steps) gets whole-number ticks; the kept row (``keep_by``: by default the
  highest ``val_f1``, ties to the lowest ``val_loss``, as train-gnn keeps its checkpoint) is
  marked in every panel.
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


#: how :func:`curves_png` finds the kept row by default: the highest ``val_f1``, then the lowest
#: ``val_loss`` (train-gnn's checkpoint rule, ``stages/train_gnn.py``); a ``-`` asks for the lowest
KEEP_BY = ("val_f1", "-val_loss")
#: a column whose largest value is this many times above or below the panel's first column's
#: goes on a right-hand axis (its curve would be a flat line on the shared one)
OWN_AXIS = 5.0


def _scale(values: list[float]) -> float:
    return max((abs(v) for v in values if v == v), default=0.0)


def _kept(rows: Sequence[Mapping[str, float]], keep_by: Sequence[str] | None) -> int | None:
    """Index of the kept row by ``keep_by`` (lexicographic), or ``None`` without its first column."""
    if not rows or not keep_by or keep_by[0].lstrip("-") not in rows[0]:
        return None

    def key(i: int):
        out = []
        for col in keep_by:
            name = col.lstrip("-")
            if name in rows[i]:
                v = float(rows[i][name])
                out.append(-v if col.startswith("-") else v)
        return tuple(out)

    return max(range(len(rows)), key=key)


def curves_png(
    rows: Sequence[Mapping[str, float]],
    x: str,
    panels: Sequence[Sequence[str]],
    path: str | Path,
    title: str,
    ylabels: Sequence[str] | None = None,
    smooth: int = 1,
    keep_by: Sequence[str] | None = KEEP_BY,
) -> Path:
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
        keep_by: columns that pick the kept row, marked in every panel (lexicographic maximum;
            ``-col`` = lowest); nothing is marked when the first is absent or ``keep_by`` is None.
    """
    from matplotlib.ticker import MaxNLocator

    plt, fig = _figure(6.4, 2.6 * len(panels) + 0.4)
    xs = [float(r[x]) for r in rows]
    whole = bool(xs) and all(v == int(v) for v in xs)
    kept = _kept(rows, keep_by)
    for k, cols in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, k + 1)
        present = [col for col in cols if rows and col in rows[0]]
        base = _scale([float(r[present[0]]) for r in rows]) if present else 0.0
        right = None
        handles = []
        for n, col in enumerate(present):
            ys = [float(r[col]) for r in rows]
            scale = _scale(ys)
            other = n > 0 and base > 0 and scale > 0 and not (base / OWN_AXIS <= scale <= base * OWN_AXIS)
            if other and right is None:
                right = ax.twinx()
            target = right if other else ax
            colour = f"C{n}"
            label = f"{col} (right axis)" if other else col
            if smooth > 1:
                (line,) = target.plot(xs, _rolling(ys, smooth), color=colour, label=f"{label}, mean of {smooth}")
                target.plot(xs, ys, color=colour, alpha=0.2, linewidth=0.8)
            else:
                (line,) = target.plot(
                    xs, ys, color=colour, marker="o" if len(xs) <= 30 else None, markersize=3, label=label
                )
            handles.append(line)
            if other:
                target.set_ylabel(col, color=colour)
                target.tick_params(axis="y", colors=colour)
        if kept is not None:
            handles.append(
                ax.axvline(
                    xs[kept], color="#333333", linestyle="--", linewidth=1, label=f"kept ({x} {rows[kept][x]:g})"
                )
            )
        if whole:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(handles=handles, fontsize=8, loc="best")
        if ylabels and k < len(ylabels):
            ax.set_ylabel(ylabels[k] if right is None or ylabels[k] == present[0] else f"{ylabels[k]} ({present[0]})")
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
                ax.text(
                    j,
                    i,
                    str(int(m[i, j])),
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white" if norm[i, j] > 0.6 else "black",
                )
    ax.set_xticks(range(len(short)), short, rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(len(short)), short, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    fig.colorbar(im, ax=ax, fraction=0.04, label="share of the gold row")
    ax.set_title(title, fontsize=10)
    return _save(fig, plt, path)
