"""``mmre run``: the seven stages in order, as one command over one params file (a recipe).

``dvc repro`` runs the chain from ``params.yaml``; a recipe (``configs/mnre_cpu.yaml``,
``configs/mnre_base.yaml``) is a params file that holds only what differs from the built-in
defaults, and ``mmre run RECIPE --out DIR`` runs every stage into ``DIR/<stage>`` with it. A
stage is skipped when its output already holds ``stats.json`` and the ``params.effective.yaml``
it would write now equals the recorded one, and no stage before it ran — so a killed or extended
recipe resumes where it stopped. A stage records only the keys it declares (its module's
``PARAMS``, which ``dvc.yaml`` lists for DVC too), so a changed key reruns the first stage that
reads it and what follows, as ``dvc repro`` does: ``train_gnn.lr`` reruns ``train_agent`` (its
reward classifier is trained with it), ``train_gnn.epochs`` only ``train_gnn`` and ``evaluate``.
:func:`plan` says which stages would run (``mmre run --dry``). Each stage's wall time goes to
``DIR/recipe.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mmre_cli.pipeline.records import effective_params, write_json
from mmre_cli.reporting import Reporter, reporter_or_null
from stages import build_graphs, diffuse, evaluate, extract_features, merge_cmg, train_agent, train_gnn

#: (stage, output folder, the outputs whose recorded params it records as upstream — as each
#: stage's ``finish(upstream=...)`` does): the order dvc.yaml chains them in. Each stage's own
#: keys are its module's ``PARAMS``.
STAGES: list[tuple[str, str, tuple[str, ...]]] = [
    ("extract_features", "features", ()),
    ("build_graphs", "graphs", ("features",)),
    ("merge_cmg", "cmg", ("features", "graphs")),
    ("train_agent", "agent", ("cmg",)),
    ("diffuse", "diffused", ("cmg", "agent")),
    ("train_gnn", "model", ("diffused",)),
    ("evaluate", "eval", ("model",)),
]
STAGE_NAMES = [s[0] for s in STAGES]


MODULES = {
    "extract_features": extract_features,
    "build_graphs": build_graphs,
    "merge_cmg": merge_cmg,
    "train_agent": train_agent,
    "diffuse": diffuse,
    "train_gnn": train_gnn,
    "evaluate": evaluate,
}


def _expected(out: Path, keys: tuple[str, ...], records_from: tuple[str, ...], params: dict) -> dict:
    import yaml

    merged = effective_params(params, keys, tuple(out / i for i in records_from))
    return yaml.safe_load(yaml.safe_dump(merged, sort_keys=True))  # as it reads back from the file


def _done(folder: Path, expected: dict) -> bool:
    import yaml

    eff = folder / "params.effective.yaml"
    if not (folder / "stats.json").is_file() or not eff.is_file():
        return False
    return yaml.safe_load(eff.read_text(encoding="utf-8")) == expected


def plan(*, params: dict, out: Path, rerun_from: str | None = None) -> list[str]:
    """The stages :func:`run` would run into ``out`` now, in order: the first whose recorded
    params differ from ``params`` (or that has no output yet, or is ``rerun_from``) and every one
    after it.

    Raises:
        MmreError: ``rerun_from`` is not a stage.
    """
    if rerun_from is not None and rerun_from not in STAGE_NAMES:
        from mmre_cli.errors import MmreError

        raise MmreError(f"--from {rerun_from!r}: not a stage ({', '.join(STAGE_NAMES)})")
    out = Path(out)
    for i, (name, folder, records_from) in enumerate(STAGES):
        if name == rerun_from or not _done(out / folder, _expected(out, MODULES[name].PARAMS, records_from, params)):
            return STAGE_NAMES[i:]
    return []


def _check_teacher(params: dict, todo: list[str]) -> None:
    """A recipe that distils (``train_gnn.distill_from``) needs its teacher's file before it starts."""
    from mmre_cli.errors import MmreError
    from mmre_cli.store.predictions import predictions_path

    teacher = params["train_gnn"].get("distill_from")
    if teacher and "train_gnn" in todo and not predictions_path(teacher).is_file():
        raise MmreError(
            f"train_gnn.distill_from: {predictions_path(teacher)} not found; score the train split with the "
            "teacher models first: mmre evaluate --model TEACHER --graphs TEACHER_RUN/diffused --out "
            f"{teacher} -S evaluate.split=train"
        )


def run(
    *,
    params: dict,
    out: Path,
    gpus: int = 0,
    rerun_from: str | None = None,
    reporter: Reporter | None = None,
    caption_cache: Path | None = None,
) -> dict[str, Any]:
    """Run (or resume) the chain into ``out``; ``caption_cache`` goes to train_gnn and evaluate
    (the caption state store, :mod:`mmre_cli.learn.caption_store`).

    Returns (and writes to ``out/recipe.json``): ``{"order", "stages": {name: {"seconds",
    "skipped"}}, "seconds": {name: wall seconds of its last real run}, "seconds_total", "metrics"}``.
    """
    reporter = reporter_or_null(reporter)
    out = Path(out)
    todo = plan(params=params, out=out, rerun_from=rerun_from)
    _check_teacher(params, todo)  # before any stage runs, not after an hour of them
    out.mkdir(parents=True, exist_ok=True)
    d = {folder: out / folder for _, folder, _ in STAGES}
    calls = {
        "extract_features": lambda: extract_features.run(
            out=d["features"], params=params, gpus=gpus, reporter=reporter
        ),
        "build_graphs": lambda: build_graphs.run(
            features=d["features"], out=d["graphs"], params=params, reporter=reporter
        ),
        "merge_cmg": lambda: merge_cmg.run(
            features=d["features"], graphs=d["graphs"], out=d["cmg"], params=params, reporter=reporter
        ),
        "train_agent": lambda: train_agent.run(
            cmg=d["cmg"], out=d["agent"], params=params, gpus=gpus, reporter=reporter
        ),
        "diffuse": lambda: diffuse.run(
            cmg=d["cmg"], agent=d["agent"], out=d["diffused"], params=params, reporter=reporter
        ),
        "train_gnn": lambda: train_gnn.run(
            graphs=d["diffused"],
            agent=d["agent"],
            out=d["model"],
            params=params,
            gpus=gpus,
            reporter=reporter,
            caption_cache=caption_cache,
        ),
        "evaluate": lambda: evaluate.run(
            model=d["model"],
            graphs=d["diffused"],
            out=d["eval"],
            params=params,
            reporter=reporter,
            caption_cache=caption_cache,
        ),
    }
    log_file = out / "recipe.json"
    seconds = json.loads(log_file.read_text(encoding="utf-8")).get("seconds", {}) if log_file.is_file() else {}
    log: dict[str, Any] = {"order": STAGE_NAMES, "stages": {}, "seconds": seconds}
    for name, folder, _ in STAGES:
        if name not in todo:
            reporter.info(f"{name}: up to date in {d[folder]}, skipped")
            log["stages"][name] = {"seconds": seconds.get(name), "skipped": True}
            continue
        reporter.info(f"{name} → {d[folder]}")
        t0 = time.perf_counter()
        calls[name]()
        seconds[name] = round(time.perf_counter() - t0, 1)
        log["stages"][name] = {"seconds": seconds[name], "skipped": False}
        write_json(log_file, log)
    metrics = json.loads((d["eval"] / "stats.json").read_text(encoding="utf-8"))
    log["metrics"] = metrics
    log["seconds_total"] = round(sum(seconds.get(n) or 0.0 for n in STAGE_NAMES), 1)  # the last run of each
    write_json(log_file, log)
    return log
