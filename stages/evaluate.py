"""DVC stage ``evaluate``: the peers' metric on one split, per-class report, confusion matrix.

Accuracy over all instances; micro P/R/F1 over the non-``None`` classes exactly as
HVPNeT/MKGformer/MORE compute it (:func:`~mmre_cli.learn.metrics.peer_scores`). Writes
``stats.json`` (the metrics), ``per_class.json``, ``predictions.jsonl``, ``confusion.csv`` (one row
per instance, DVC's confusion template) and ``confusion.png`` to ``--out``; ``--plots`` gets the
CSV and PNG too, ``--metrics`` the few numbers to compare across experiments
(:func:`summary_metrics`).
"""

from __future__ import annotations

import json
from pathlib import Path

from mmre_cli.reporting import Reporter
from stages._chunks import require_artifact
from stages._common import finish, reporter_or_null, write_json
from stages._learning import (apply_pair_captions, cpu_threads, graphs_by_split, loader, needs_words, require_split,
                              write_plots)

SECTIONS = ["evaluate"]


def score_split(model_dir: Path, graphs: Path, split: str, reporter: Reporter | None = None) -> dict:
    """``{"metrics", "per_class", "pred", "gold", "prob", "ids", "labels"}`` for one split."""
    import numpy as np

    from mmre_cli.graphs.pyg import text_length

    from mmre_cli.learn.checkpoint import load_checkpoint
    from mmre_cli.learn.metrics import confusion_matrix, peer_scores, per_class_report
    from mmre_cli.learn.trainer import predict

    model, meta = load_checkpoint(model_dir, "model")
    labels, none_id = meta["labels"], int(meta["none_id"])
    groups = graphs_by_split(graphs, [split])
    items = [g for g in require_split(groups, split, graphs) if g.label >= 0]
    words = needs_words(model)
    if words:
        cpu_threads(0)  # a transformer runs: every core
        from stages.predict import read_pipeline

        pair = read_pipeline(model_dir).get("params", {}).get("data", {}).get("pair_captions")
        apply_pair_captions({split: items}, pair)  # the captioner the model was trained to read
        items.sort(key=text_length)  # similar lengths together: less padding (ids/gold follow)
    with reporter_or_null(reporter).progress(f"evaluate {split}", total=len(items)) as task:
        pred, prob = predict(model, loader(items, 64 if words else 256, False, words=words), task=task)
    gold = np.asarray([g.label for g in items])
    return {"metrics": peer_scores(pred, gold, none_id), "per_class": per_class_report(pred, gold, labels),
            "confusion": confusion_matrix(pred, gold, len(labels)).tolist(), "pred": pred, "gold": gold,
            "prob": prob, "ids": [g.meta.get("sample_id", g.graph_id) for g in items], "labels": labels,
            "none_id": none_id, "sizes": {"nodes_mean": round(float(np.mean([g.x.shape[0] for g in items])), 1),
                                          "edges_mean": round(float(np.mean([g.edge_index.shape[1] for g in items])), 1)}}


def run(*, model: Path, graphs: Path, out: Path, params: dict, stats: Path | None = None,
        reporter: Reporter | None = None, plots: Path | None = None, metrics: Path | None = None) -> dict:
    """Run the stage; returns (and writes) its metrics, with ``per_class`` added for display."""
    reporter = reporter_or_null(reporter)
    model, graphs, out = Path(model), Path(graphs), Path(out)
    require_artifact(graphs, "diffuse")
    cpu_threads()
    split = params["evaluate"]["split"]
    scored = score_split(model, graphs, split, reporter)
    m, labels = scored["metrics"], scored["labels"]
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "per_class.json", {"split": split, "classes": scored["per_class"]})
    write_json(out / "confusion_matrix.json", {"labels": labels, "rows_gold_cols_pred": scored["confusion"]})
    with (out / "predictions.jsonl").open("w") as fh:
        for sid, p, g, pr in zip(scored["ids"], scored["pred"], scored["gold"], scored["prob"]):
            fh.write(json.dumps({"sample_id": sid, "gold": labels[int(g)], "pred": labels[int(p)],
                                 "prob": round(float(pr[int(p)]), 6)}) + "\n")
    rows = [{"actual": labels[int(g)], "predicted": labels[int(p)]} for p, g in zip(scored["pred"], scored["gold"])]

    def draw(_rows, path: Path) -> Path:
        from mmre_cli.plots import confusion_png

        return confusion_png(labels, scored["confusion"], path,
                             f"{split}: gold x predicted (F1 {m['micro_f1']:.3f}, n={m['n']})")

    write_plots([out, plots], "confusion", rows, draw)
    result = {"split": split, "acc": m["acc"], "micro_p": m["micro_p"], "micro_r": m["micro_r"],
              "micro_f1": m["micro_f1"], "n": m["n"]}
    stats_out = finish(out, params, SECTIONS, result, stats, upstream=(model,))
    if metrics is not None:
        write_json(metrics, summary_metrics(result, model, scored["sizes"]))
    return {**stats_out, "per_class": scored["per_class"]}


def summary_metrics(result: dict, model: Path, sizes: dict) -> dict:
    """The few numbers a user compares across experiments (``--metrics``, DVC's one metrics file),
    flat and short so ``dvc metrics show`` stays one narrow row: the split's ``acc``, ``micro_p``,
    ``micro_r``, ``micro_f1`` and ``n``, the classifier's ``train_s`` (seconds) and ``best_epoch``
    (from the model's stats), and the scored graphs' mean ``nodes`` and ``edges``."""
    import json

    trained = {}
    if (Path(model) / "stats.json").is_file():
        trained = json.loads((Path(model) / "stats.json").read_text(encoding="utf-8"))
    return {**{k: round(float(result[k]), 4) for k in ("acc", "micro_p", "micro_r", "micro_f1")}, "n": result["n"],
            "train_s": trained.get("train_seconds"), "best_epoch": trained.get("best_epoch"),
            "nodes": sizes["nodes_mean"], "edges": sizes["edges_mean"]}
