"""The PNG curves (mmre_cli/plots.py) and the plots dvc.yaml declares: nothing blank offline."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def figures(monkeypatch):
    """The figures :mod:`mmre_cli.plots` saves, captured before they are closed."""
    import mmre_cli.plots as plots

    seen = []
    save = plots._save

    def keep(fig, plt, path):
        seen.append(fig)
        fig.canvas.draw()  # the ticks as saved
        return save(fig, plt, path)

    monkeypatch.setattr(plots, "_save", keep)
    return seen


def _curve(epochs: int = 6) -> list[dict]:
    """A summed train loss (12 → 5) beside a mean val loss (2 → 0.3); val F1 tied at its best."""
    return [
        {
            "epoch": e,
            "loss": 12 - 1.4 * (e - 1),
            "val_loss": 2 / e,
            "val_f1": min(0.5, 0.15 * e),
            "val_acc": 0.3 + 0.05 * e,
        }
        for e in range(1, epochs + 1)
    ]


def test_a_loss_on_another_scale_gets_its_own_axis_and_the_kept_epoch_is_marked(tmp_path, figures):
    from mmre_cli.plots import curves_png

    curves_png(
        _curve(), "epoch", [["loss", "val_loss"], ["val_f1", "val_acc"]], tmp_path / "c.png", "t", ["loss", "val"]
    )
    (fig,) = figures
    loss, twin, scores = fig.axes  # the first panel, its right axis, the second panel
    assert [line.get_label() for line in twin.get_lines()] == ["val_loss (right axis)"]
    assert [line.get_label() for line in loss.get_lines()][0] == "loss"
    for ax in (loss, scores):  # val F1 best from epoch 4 on; the tie goes to the lowest val loss: epoch 6
        marks = [line for line in ax.get_lines() if line.get_label().startswith("kept")]
        assert [m.get_label() for m in marks] == ["kept (epoch 6)"] and list(marks[0].get_xdata()) == [6.0, 6.0]


def test_same_scale_columns_share_one_axis_and_no_mark_without_val_f1(tmp_path, figures):
    from mmre_cli.plots import curves_png

    rows = [{"step": s, "node_filter_ratio": 0.009 * s, "edge_adjust_ratio": 0.03 * s} for s in range(5)]  # 3.3x apart
    curves_png(rows, "step", [["node_filter_ratio", "edge_adjust_ratio"]], tmp_path / "s.png", "t")
    (fig,) = figures
    assert len(fig.axes) == 1 and not any(line.get_label().startswith("kept") for line in fig.axes[0].get_lines())


def test_a_whole_number_x_axis_has_whole_number_ticks(tmp_path, figures):
    from mmre_cli.plots import curves_png

    rows = [{"step": s, "node_filter_ratio": 0.1 * s, "edge_adjust_ratio": 0.05 * s} for s in (0, 1)]
    curves_png(rows, "step", [["node_filter_ratio", "edge_adjust_ratio"]], tmp_path / "s.png", "t")
    (fig,) = figures
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks == [0.0, 1.0], ticks


def test_dvc_declares_only_pictures_that_need_no_network():
    """DVC draws a CSV plot with vega-lite from a CDN: blank offline. Only the PNGs are declared."""
    import yaml

    plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    names = [next(iter(p)) if isinstance(p, dict) else p for p in plots]
    assert names and all(name.endswith(".png") for name in names), names
    assert {"plots/agent_steps.png", "plots/train_curve.png", "plots/confusion.png"} <= set(names)
