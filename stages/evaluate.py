r"""DVC stage ``evaluate``: the peers' metric on one split, per-class report, confusion matrix.

Accuracy over all instances; micro P/R/F1 over the non-``None`` classes exactly as
HVPNeT/MKGformer/MORE compute it (:func:`~mmre_cli.learn.metrics.peer_scores`). Writes
``stats.json`` (the metrics), ``per_class.json``, ``predictions.jsonl``, ``confusion.csv`` (one row
per instance, DVC's confusion template) and ``confusion.png`` to ``--out``; ``--plots`` gets the
CSV and PNG too, ``--metrics`` the few numbers to compare across experiments
(:func:`summary_metrics`).

**Ensembles.** Given several model folders (``mmre evaluate --model A --model B ...``, e.g. seeds or
captioners), or one trained with ``train_gnn.ensemble: k`` (whose members it lists), each scores the split as it would alone (its own caption pair) and the ensemble
predicts :math:`\hat y = \arg\max_c \frac1M \sum_m p_m(c \mid x)` (:func:`ensemble_scores`);
``stats.json`` lists every member's own scores under ``members``.
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


def ensemble_scores(scored: list[dict]) -> dict:
    """The mean-probability ensemble of several :func:`score_split` results on one split, as one
    result of the same shape (instances matched by id: each model orders them its own way).

    Shapes:
        each ``scored[m]["prob"] [N, C]`` -> ``prob [N, C]`` (the mean), ``pred [N]``, ``gold [N]``
    """
    import numpy as np

    from mmre_cli.errors import MmreError
    from mmre_cli.learn.metrics import confusion_matrix, peer_scores, per_class_report

    first = scored[0]
    labels, none_id = first["labels"], first["none_id"]
    order = {sid: i for i, sid in enumerate(first["ids"])}
    prob = np.zeros(np.asarray(first["prob"]).shape, dtype=np.float64)
    for s in scored:
        if s["labels"] != labels:
            raise MmreError("the ensemble's models were trained on different label maps; "
                            "train them on the same data (their model.json lists the labels)")
        if len(s["ids"]) != len(order) or any(sid not in order for sid in s["ids"]):
            raise MmreError("the ensemble's models scored different instances")
        prob[[order[sid] for sid in s["ids"]]] += np.asarray(s["prob"], dtype=np.float64)
    prob /= len(scored)
    pred, gold = prob.argmax(axis=1), np.asarray(first["gold"])
    return {**first, "metrics": peer_scores(pred, gold, none_id), "per_class": per_class_report(pred, gold, labels),
            "confusion": confusion_matrix(pred, gold, len(labels)).tolist(), "pred": pred, "prob": prob}


def run(*, model: Path | list[Path], graphs: Path, out: Path, params: dict, stats: Path | None = None,
        reporter: Reporter | None = None, plots: Path | None = None, metrics: Path | None = None) -> dict:
    """Run the stage; returns (and writes) its metrics, with ``per_class`` added for display.

    ``model``: one train-gnn folder, or several for a mean-probability ensemble (module docstring).
    """
    from stages.predict import ensemble_folders

    reporter = reporter_or_null(reporter)
    given = [Path(m) for m in (model if isinstance(model, (list, tuple)) else [model])]
    if not given:
        from mmre_cli.errors import MmreError

        raise MmreError("evaluate needs at least one --model")
    models = [folder for m in given for folder in ensemble_folders(m)]  # a train_gnn.ensemble model: its members
    graphs, out = Path(graphs), Path(out)
    require_artifact(graphs, "diffuse")
    cpu_threads()
    split = params["evaluate"]["split"]
    members = [score_split(m, graphs, split, reporter) for m in models]
    scored = members[0] if len(members) == 1 else ensemble_scores(members)
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
    if len(members) > 1:
        result["members"] = [{"model": str(path), **{k: s["metrics"][k] for k in ("acc", "micro_p", "micro_r", "micro_f1")}}
                             for path, s in zip(models, members)]
    stats_out = finish(out, params, SECTIONS, result, stats, upstream=(models[0],))  # the first member's lineage
    if metrics is not None:
        write_json(metrics, summary_metrics(result, given, scored["sizes"]))
    return {**stats_out, "per_class": scored["per_class"]}


def summary_metrics(result: dict, model: Path | list[Path], sizes: dict) -> dict:
    """The few numbers a user compares across experiments (``--metrics``, DVC's one metrics file),
    flat and short so ``dvc metrics show`` stays one narrow row: the split's ``acc``, ``micro_p``,
    ``micro_r``, ``micro_f1`` and ``n``, the classifier's ``train_s`` (seconds) and ``best_epoch``
    (from the model's stats; an ensemble: the members' summed seconds, no epoch), and the scored
    graphs' mean ``nodes`` and ``edges``."""
    import json

    models = [Path(m) for m in (model if isinstance(model, (list, tuple)) else [model])]
    trained = [json.loads((m / "stats.json").read_text(encoding="utf-8")) if (m / "stats.json").is_file() else {}
               for m in models]
    seconds = [t.get("train_seconds") for t in trained]
    return {**{k: round(float(result[k]), 4) for k in ("acc", "micro_p", "micro_r", "micro_f1")}, "n": result["n"],
            "train_s": round(sum(seconds), 1) if None not in seconds else None,
            "best_epoch": trained[0].get("best_epoch") if len(trained) == 1 else None,
            "nodes": sizes["nodes_mean"], "edges": sizes["edges_mean"]}
