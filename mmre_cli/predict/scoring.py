"""A trained model (or several) scored on one split of a refined-graphs artifact: the peers'
metric, per-class report, confusion matrix, and the mean-probability ensemble (``mmre evaluate``)."""

from __future__ import annotations

from pathlib import Path

from mmre_cli.pipeline.devices import cpu_threads
from mmre_cli.pipeline.learning import apply_pair_captions, graphs_by_split, loader, needs_words, require_split
from mmre_cli.predict.folder import model_params, read_pipeline
from mmre_cli.reporting import Reporter, reporter_or_null


def score_split(
    model_dir: Path, graphs: Path, split: str, reporter: Reporter | None = None, caption_cache: Path | None = None
) -> dict:
    """``{"metrics", "per_class", "pred", "gold", "prob", "ids", "labels"}`` for one split; a model
    with a caption pass reads (and adds to) the caption state store at ``caption_cache`` when given."""
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
        pair = model_params(read_pipeline(model_dir))["train_gnn"]["pair_captions"]
        apply_pair_captions({split: items}, pair)  # the captioner the model was trained to read
        items.sort(key=text_length)  # similar lengths together: less padding (ids/gold follow)
    reader = getattr(model, "caption_reader", None)
    if reader is not None and caption_cache is not None:
        reader.use_store(caption_cache)
    with reporter_or_null(reporter).progress(f"evaluate {split}", total=len(items)) as task:
        pred, prob = predict(model, loader(items, 64 if words else 256, False, words=words), task=task)
    if reader is not None and reader.store is not None:
        reader.store.flush()
    gold = np.asarray([g.label for g in items])
    return {
        "metrics": peer_scores(pred, gold, none_id),
        "per_class": per_class_report(pred, gold, labels),
        "confusion": confusion_matrix(pred, gold, len(labels)).tolist(),
        "pred": pred,
        "gold": gold,
        "prob": prob,
        "ids": [g.meta.get("sample_id", g.graph_id) for g in items],
        "labels": labels,
        "none_id": none_id,
        "sizes": {
            "nodes_mean": round(float(np.mean([g.x.shape[0] for g in items])), 1),
            "edges_mean": round(float(np.mean([g.edge_index.shape[1] for g in items])), 1),
        },
    }


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
            raise MmreError(
                "the ensemble's models were trained on different label maps; "
                "train them on the same data (their model.json lists the labels)"
            )
        if len(s["ids"]) != len(order) or any(sid not in order for sid in s["ids"]):
            raise MmreError("the ensemble's models scored different instances")
        prob[[order[sid] for sid in s["ids"]]] += np.asarray(s["prob"], dtype=np.float64)
    prob /= len(scored)
    pred, gold = prob.argmax(axis=1), np.asarray(first["gold"])
    return {
        **first,
        "metrics": peer_scores(pred, gold, none_id),
        "per_class": per_class_report(pred, gold, labels),
        "confusion": confusion_matrix(pred, gold, len(labels)).tolist(),
        "pred": pred,
        "prob": prob,
    }
