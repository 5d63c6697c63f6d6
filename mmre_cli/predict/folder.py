"""The model folder train-gnn writes and predict/evaluate read: its one owner.

A model folder holds ``model.safetensors`` + ``model.json`` (the classifier), the editor
(``agent.safetensors`` + ``agent.json``) when ``train_agent.enabled``, and ``pipeline.json``: the
effective params of every stage, the encoder fingerprint, the labels, mmre's and the artifact
schema's versions, and for a ``train_gnn.ensemble`` model the member folders
(``members/seed<S>``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from mmre_cli.errors import MmreError
from mmre_cli.pipeline.records import write_json

PIPELINE_FILE = "pipeline.json"
#: Files every model folder needs (the editor's files too when ``train_agent.enabled``).
MODEL_FILES = ("pipeline.json", "model.safetensors", "model.json")
AGENT_FILES = ("agent.safetensors", "agent.json")
#: where a ``train_gnn.ensemble`` model keeps its other members (``members/seed<S>``)
MEMBERS_DIR = "members"
#: Stage sections ``pipeline.json: params`` must hold.
REQUIRED_SECTIONS = ("data", "extract_features", "build_graphs", "merge_cmg", "train_agent", "diffuse")


def _major(version: str | None) -> str:
    return str(version).split(".", 1)[0]


def read_pipeline(model: Path) -> dict:
    """Read and check ``model/pipeline.json`` (files present, versions compatible).

    Raises:
        MmreError: the folder or a file is missing, the JSON is unreadable, or the model was
            written by an mmre of another major version or artifact schema.
    """
    from mmre_cli import SCHEMA_VERSION, __version__

    model = Path(model)
    if not model.is_dir():
        raise MmreError(
            f"{model}: no model folder here; train one with `mmre train-gnn` (or `dvc repro`) or pass --model DIR"
        )
    missing = [name for name in MODEL_FILES if not (model / name).is_file()]
    if missing:
        raise MmreError(
            f"{model}: not a complete model folder (missing {', '.join(missing)}); rerun `mmre train-gnn --out` into it"
        )
    try:
        pipeline = json.loads((model / PIPELINE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MmreError(f"{model / PIPELINE_FILE}: unreadable ({str(err).splitlines()[0]})") from None
    if not isinstance(pipeline, dict):
        raise MmreError(f"{model / PIPELINE_FILE}: not a JSON object")
    version, schema = pipeline.get("mmre_version"), pipeline.get("schema_version")
    if version is None or _major(version) != _major(__version__) or schema != SCHEMA_VERSION:
        raise MmreError(
            f"{model}: incompatible model (written by mmre {version}, schema {schema}; this is mmre "
            f"{__version__}, schema {SCHEMA_VERSION}); retrain it with this mmre"
        )
    params = pipeline.get("params")
    if not isinstance(params, dict):
        raise MmreError(f"{model / PIPELINE_FILE}: no 'params' recorded; retrain with `mmre train-gnn`")
    lacking = [s for s in REQUIRED_SECTIONS if not isinstance(params.get(s), dict)]
    if lacking:
        raise MmreError(
            f"{model / PIPELINE_FILE}: params of {', '.join(lacking)} not recorded; retrain with `mmre train-gnn`"
        )
    for key in ("labels", "none_id", "encoder"):
        if key not in pipeline:
            raise MmreError(f"{model / PIPELINE_FILE}: lacks {key!r}; retrain with `mmre train-gnn`")
    if params["train_agent"].get("enabled"):
        gone = [name for name in AGENT_FILES if not (model / name).is_file()]
        if gone:
            raise MmreError(
                f"{model}: the model uses the RL editor but {', '.join(gone)} is missing; "
                "rerun `mmre train-gnn --agent DIR --out` into it"
            )
    return pipeline


def ensemble_folders(model: Path) -> list[Path]:
    """``[model, *members]``: the model folder and, for one trained with ``train_gnn.ensemble > 1``,
    the member folders its ``pipeline.json`` lists (``members/seed<S>``, each checked by
    :func:`read_pipeline`).

    Raises:
        MmreError: as :func:`read_pipeline`, for the folder or a member.
    """
    model = Path(model)
    if not (model / PIPELINE_FILE).is_file():  # a bare checkpoint (evaluate scores it as it is)
        return [model]
    listed = read_pipeline(model).get("ensemble") or []
    members = [model / rel for rel in listed]
    for member in members:
        read_pipeline(member)
    return [model, *members]


def model_params(pipeline: dict) -> dict:
    """The stages' params recorded in ``pipeline.json``, keys missing there filled from the defaults.

    A folder written before ``pair_captions`` moved from ``data`` to ``train_gnn`` (its
    ``train_gnn`` section has no ``pair_captions``) is read as it was meant: the key moved here, and
    its ``graph_encoder: gat`` (which then named GATv2) read as ``gatv2``."""
    from mmre_cli.params import DEFAULTS

    params = copy.deepcopy(DEFAULTS)
    for section, values in pipeline["params"].items():
        if section in params and isinstance(values, dict):
            params[section].update(values)
    legacy = params["data"].pop("pair_captions", None)
    if "pair_captions" not in (pipeline["params"].get("train_gnn") or {}):
        params["train_gnn"]["pair_captions"] = legacy
        if params["train_gnn"].get("graph_encoder") == "gat":
            params["train_gnn"]["graph_encoder"] = "gatv2"
    return params


def write_pipeline(
    model: Path, *, manifest: dict, labels: list[str], none_id: int, params: dict, finetune_encoder: str | None = None
) -> Path:
    """Write ``model/pipeline.json`` (what :func:`read_pipeline` checks): this mmre's and the
    schema's versions, the encoder of the features the model was trained on (``manifest``: that
    artifact's manifest), the labels, every stage's ``params`` and, for a fine-tuned encoder, its
    fingerprint (``finetune_encoder``: its vocabulary and architecture, which predict checks)."""
    from mmre_cli import SCHEMA_VERSION, __version__

    pipeline = {
        "mmre_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "encoder": manifest["encoder"],
        "encoder_name": manifest.get("info", {}).get("encoder"),
        "dim": manifest["dim"],
        "labels": labels,
        "none_id": none_id,
        "params": params,
    }
    if finetune_encoder is not None:
        pipeline["finetune_encoder"] = finetune_encoder
    return write_json(Path(model) / PIPELINE_FILE, pipeline)


def list_members(model: Path, members: list[str], train_gnn: dict) -> Path:
    """Record a ``train_gnn.ensemble`` model's member folders (relative to it, under
    :data:`MEMBERS_DIR`) and its ``train_gnn`` params (with ``ensemble: k``) in its ``pipeline.json``,
    which :func:`ensemble_folders` reads back."""
    path = Path(model) / PIPELINE_FILE
    pipeline = json.loads(path.read_text(encoding="utf-8"))
    pipeline["params"]["train_gnn"] = dict(train_gnn)
    pipeline["ensemble"] = list(members)
    return write_json(path, pipeline)
