r"""DVC stage ``evaluate``: the peers' metric on one split, per-class report, confusion matrix.

Accuracy over all instances; micro P/R/F1 over the non-``None`` classes exactly as
HVPNeT/MKGformer/MORE compute it (:func:`~mmre_cli.learn.metrics.peer_scores`). Writes
``stats.json`` (the metrics), ``per_class.json``, ``predictions.jsonl`` (each instance's
distribution too: :mod:`mmre_cli.store.predictions`), ``confusion.csv`` (one row
per instance, DVC's confusion template) and ``confusion.png`` to ``--out``; ``--plots`` gets the
CSV and PNG too, ``--metrics`` the few numbers to compare across experiments
(:func:`summary_metrics`).

**Ensembles.** Given several model folders (``mmre evaluate --model A --model B ...``, e.g. seeds or
captioners), or one trained with ``train_gnn.ensemble: k`` (whose members it lists), each scores the split as it
would alone (its own caption pair) and the ensemble
predicts :math:`\hat y = \arg\max_c \frac1M \sum_m p_m(c \mid x)`
(:func:`mmre_cli.predict.scoring.ensemble_scores`);
``stats.json`` lists every member's own scores under ``members``.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmre_cli.errors import MmreError
from mmre_cli.params import declared, stage_view
from mmre_cli.pipeline.chunks import require_artifact
from mmre_cli.pipeline.devices import cpu_threads
from mmre_cli.pipeline.records import finish, write_json, write_plots
from mmre_cli.plots import confusion_png
from mmre_cli.predict.folder import ensemble_folders
from mmre_cli.predict.scoring import ensemble_scores, score_split
from mmre_cli.reporting import Reporter, reporter_or_null
from mmre_cli.store.predictions import PREDICTIONS_FILE, write_predictions

#: the params this stage reads (dvc.yaml lists the same; tests/test_params_declared.py)
PARAMS = declared("evaluate.split")


def run(
    *,
    model: Path | list[Path],
    graphs: Path,
    out: Path,
    params: dict,
    stats: Path | None = None,
    reporter: Reporter | None = None,
    plots: Path | None = None,
    metrics: Path | None = None,
    caption_cache: Path | None = None,
) -> dict:
    """Run the stage; returns (and writes) its metrics, with ``per_class`` added for display.

    ``model``: one train-gnn folder, or several for a mean-probability ensemble (module docstring).
    ``caption_cache``: the caption state store a caption-pass model reads and adds to
    (:mod:`mmre_cli.learn.caption_store`).
    """
    reporter = reporter_or_null(reporter)
    params = stage_view(params, PARAMS)
    given = [Path(m) for m in (model if isinstance(model, (list, tuple)) else [model])]
    if not given:
        raise MmreError("evaluate needs at least one --model")
    models = [folder for m in given for folder in ensemble_folders(m)]  # a train_gnn.ensemble model: its members
    graphs, out = Path(graphs), Path(out)
    require_artifact(graphs, "diffuse")
    cpu_threads()
    split = params["evaluate"]["split"]
    members = [score_split(m, graphs, split, reporter, caption_cache) for m in models]
    scored = members[0] if len(members) == 1 else ensemble_scores(members)
    m, labels = scored["metrics"], scored["labels"]
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "per_class.json", {"split": split, "classes": scored["per_class"]})
    write_json(out / "confusion_matrix.json", {"labels": labels, "rows_gold_cols_pred": scored["confusion"]})
    write_predictions(out / PREDICTIONS_FILE, scored["ids"], scored["gold"], scored["pred"], scored["prob"], labels)
    rows = [{"actual": labels[int(g)], "predicted": labels[int(p)]} for p, g in zip(scored["pred"], scored["gold"])]

    def draw(_rows, path: Path) -> Path:
        return confusion_png(
            labels, scored["confusion"], path, f"{split}: gold x predicted (F1 {m['micro_f1']:.3f}, n={m['n']})"
        )

    write_plots([out, plots], "confusion", rows, draw)
    result = {
        "split": split,
        "acc": m["acc"],
        "micro_p": m["micro_p"],
        "micro_r": m["micro_r"],
        "micro_f1": m["micro_f1"],
        "n": m["n"],
    }
    if len(members) > 1:
        result["members"] = [
            {"model": str(path), **{k: s["metrics"][k] for k in ("acc", "micro_p", "micro_r", "micro_f1")}}
            for path, s in zip(models, members)
        ]
    stats_out = finish(out, params, PARAMS, result, stats, upstream=(models[0],))  # the first member's lineage
    if metrics is not None:
        write_json(metrics, summary_metrics(result, given, scored["sizes"]))
    return {**stats_out, "per_class": scored["per_class"]}


def summary_metrics(result: dict, model: Path | list[Path], sizes: dict) -> dict:
    """The few numbers a user compares across experiments (``--metrics``, DVC's one metrics file),
    flat and short so ``dvc metrics show`` stays one narrow row: the split's ``acc``, ``micro_p``,
    ``micro_r``, ``micro_f1`` and ``n``, the classifier's ``train_s`` (seconds) and ``best_epoch``
    (from the model's stats; an ensemble: the members' summed seconds, no epoch), and the scored
    graphs' mean ``nodes`` and ``edges``."""
    models = [Path(m) for m in (model if isinstance(model, (list, tuple)) else [model])]
    trained = [
        json.loads((m / "stats.json").read_text(encoding="utf-8")) if (m / "stats.json").is_file() else {}
        for m in models
    ]
    seconds = [t.get("train_seconds") for t in trained]
    return {
        **{k: round(float(result[k]), 4) for k in ("acc", "micro_p", "micro_r", "micro_f1")},
        "n": result["n"],
        "train_s": round(sum(seconds), 1) if None not in seconds else None,
        "best_epoch": trained[0].get("best_epoch") if len(trained) == 1 else None,
        "nodes": sizes["nodes_mean"],
        "edges": sizes["edges_mean"],
    }
