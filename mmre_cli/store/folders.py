"""Validation of the stage outputs that are not Parquet artifacts: model, editor and evaluation folders.

:func:`folder_kind` names what a folder holds, from the files in it:

* ``model`` (train-gnn): ``model.json`` + ``model.safetensors`` + ``pipeline.json`` (and the
  editor's ``agent.*`` when the graphs were edited);
* ``editor`` (train-agent): ``agent.*`` and/or the reward classifier's ``classifier.*``, no
  ``model.json``;
* ``evaluation`` (evaluate): ``stats.json`` with the peer metric's keys, ``predictions.jsonl``.

Each checkpoint pair ``NAME.json`` + ``NAME.safetensors`` is checked without building the model
(which may need encoder weights): the sidecar is a JSON object with ``model_class`` and
``model_kwargs``, the weights file exists, its sha256 is the sidecar's ``weights_sha256``, and the
safetensors header parses with at least one tensor. ``pipeline.json`` must be a JSON object of
this mmre's major version and schema with ``params``, ``labels`` and ``none_id`` inside the labels.
An evaluation's metrics lie in ``[0, 1]``, ``n`` equals the number of prediction lines, and every
prediction line is a JSON object with ``sample_id``, ``gold``, ``pred`` and ``prob``.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmre_cli.errors import InputError
from mmre_cli.hashing import sha256_file
from mmre_cli.store.predictions import PREDICTIONS_FILE, ROW_KEYS, iter_rows

__all__ = ["folder_kind", "check_folder", "folder_checks", "EVAL_KEYS"]

#: keys of an evaluation's ``stats.json``
EVAL_KEYS = ("split", "acc", "micro_p", "micro_r", "micro_f1", "n")


def folder_kind(d: Path) -> str | None:
    """``"model"``, ``"editor"``, ``"evaluation"`` or ``None`` (none of these)."""
    names = {p.name for p in d.iterdir()} if d.is_dir() else set()
    if "model.json" in names or "pipeline.json" in names:
        return "model"
    if names & {"agent.json", "classifier.json"}:
        return "editor"
    if PREDICTIONS_FILE in names or ("stats.json" in names and "per_class.json" in names):
        return "evaluation"
    return None


def _json(path: Path, problems: list[str]) -> object | None:
    if not path.is_file():
        problems.append(f"{path}: missing")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problems.append(f"{path}: unreadable JSON ({str(exc).splitlines()[0]})")
        return None


def check_checkpoint(d: Path, name: str, problems: list[str]) -> None:
    """The sidecar + safetensors pair ``d/name.*`` (module docstring)."""
    from safetensors import safe_open

    meta = _json(d / f"{name}.json", problems)
    if meta is None:
        return
    if (
        not isinstance(meta, dict)
        or not isinstance(meta.get("model_class"), str)
        or not isinstance(meta.get("model_kwargs"), dict)
    ):
        problems.append(f"{d / f'{name}.json'}: not a checkpoint sidecar (no model_class / model_kwargs)")
        return
    weights = d / str(meta.get("weights_file", f"{name}.safetensors"))
    if not weights.is_file():
        problems.append(f"{weights}: missing (the sidecar {name}.json names it)")
        return
    expected = meta.get("weights_sha256")
    if not expected:
        problems.append(f"{d / f'{name}.json'}: no weights_sha256")
    elif sha256_file(weights) != expected:
        problems.append(f"{weights}: sha256 does not match {name}.json (truncated or replaced)")
        return
    try:
        with safe_open(str(weights), framework="pt") as f:
            keys = list(f.keys())
    except Exception as exc:  # noqa: BLE001 - any header error is the problem to report
        problems.append(f"{weights}: not a readable safetensors file ({str(exc).splitlines()[0]})")
        return
    if not keys:
        problems.append(f"{weights}: holds no tensors")


def _check_pipeline(d: Path, problems: list[str]) -> None:
    from mmre_cli import SCHEMA_VERSION, __version__

    pipeline = _json(d / "pipeline.json", problems)
    if pipeline is None:
        return
    if not isinstance(pipeline, dict):
        problems.append(f"{d / 'pipeline.json'}: not a JSON object")
        return
    version = str(pipeline.get("mmre_version", ""))
    if version.split(".")[0] != __version__.split(".")[0] or pipeline.get("schema_version") != SCHEMA_VERSION:
        problems.append(
            f"{d / 'pipeline.json'}: written by mmre {version or '?'} schema "
            f"{pipeline.get('schema_version')}, this is mmre {__version__} schema {SCHEMA_VERSION}"
        )
    labels = pipeline.get("labels")
    if not isinstance(pipeline.get("params"), dict):
        problems.append(f"{d / 'pipeline.json'}: no params")
    if not isinstance(labels, list) or not labels:
        problems.append(f"{d / 'pipeline.json'}: no labels")
    elif not isinstance(pipeline.get("none_id"), int) or not 0 <= pipeline["none_id"] < len(labels):
        problems.append(f"{d / 'pipeline.json'}: none_id {pipeline.get('none_id')!r} is not a label index")


def _check_evaluation(d: Path, problems: list[str]) -> None:
    stats = _json(d / "stats.json", problems)
    if not isinstance(stats, dict):
        return
    missing = [k for k in EVAL_KEYS if k not in stats]
    if missing:
        problems.append(f"{d / 'stats.json'}: missing {', '.join(missing)}")
        return
    for key in ("acc", "micro_p", "micro_r", "micro_f1"):
        if not isinstance(stats[key], (int, float)) or not 0.0 <= float(stats[key]) <= 1.0:
            problems.append(f"{d / 'stats.json'}: {key} = {stats[key]!r} is not in [0, 1]")
    preds = d / PREDICTIONS_FILE
    if not preds.is_file():
        problems.append(f"{preds}: missing")
        return
    n = 0
    try:
        for number, row in iter_rows(preds):
            if not isinstance(row, dict) or not set(ROW_KEYS) <= set(row):
                problems.append(f"{preds}:{number}: expected {', '.join(ROW_KEYS)}")
                return
            n += 1
    except InputError as err:  # a line that is not JSON
        problems.append(str(err))
        return
    if n != stats["n"]:
        problems.append(f"{preds}: {n} predictions, stats.json says n = {stats['n']}")


def check_folder(d: Path, kind: str) -> list[str]:
    """Problems of the ``kind`` folder ``d`` (empty = valid)."""
    problems: list[str] = []
    if kind == "model":
        check_checkpoint(d, "model", problems)
        _check_pipeline(d, problems)
        if (d / "agent.json").exists() or (d / "agent.safetensors").exists():
            check_checkpoint(d, "agent", problems)
        pipeline = _json(d / "pipeline.json", []) if (d / "pipeline.json").is_file() else None
        members = (pipeline.get("ensemble") or []) if isinstance(pipeline, dict) else []
        for rel in members:
            member = d / rel  # train_gnn.ensemble: every member is a whole model folder too
            if not member.is_dir():
                problems.append(f"{d / 'pipeline.json'}: ensemble member {rel} is missing")
            else:
                problems.extend(check_folder(member, "model"))
    elif kind == "editor":
        for name in ("agent", "classifier"):
            if (d / f"{name}.json").exists() or (d / f"{name}.safetensors").exists():
                check_checkpoint(d, name, problems)
    elif kind == "evaluation":
        _check_evaluation(d, problems)
    else:
        raise ValueError(f"unknown folder kind {kind!r}")
    return problems


def folder_checks(d: Path, kind: str) -> list[str]:
    """What :func:`check_folder` checks in the ``kind`` folder ``d``, one short phrase each."""

    def checkpoint(name: str) -> str:
        return (
            f"{name}.json + {name}.safetensors: the sidecar's model_class and model_kwargs, the weights' "
            "sha256, the safetensors header"
        )

    if kind == "model":
        checks = [checkpoint("model"), "pipeline.json: mmre major version, schema version, params, labels, none_id"]
        if (d / "agent.json").exists() or (d / "agent.safetensors").exists():
            checks.append(checkpoint("agent"))
        pipeline = _json(d / "pipeline.json", []) if (d / "pipeline.json").is_file() else None
        members = (pipeline.get("ensemble") or []) if isinstance(pipeline, dict) else []
        checks += [f"ensemble member {rel}: the same checks" for rel in members]
        return checks
    if kind == "editor":
        return [
            checkpoint(name)
            for name in ("agent", "classifier")
            if (d / f"{name}.json").exists() or (d / f"{name}.safetensors").exists()
        ]
    if kind == "evaluation":
        return [
            "stats.json: the metric keys, each in [0, 1]",
            "predictions.jsonl: one JSON line per scored instance (sample_id, gold, pred, prob)",
        ]
    raise ValueError(f"unknown folder kind {kind!r}")
