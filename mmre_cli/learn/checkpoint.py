"""Model checkpoints: ``<name>.safetensors`` weights plus a ``<name>.json`` sidecar.

The sidecar says how to rebuild the model without unpickling anything:

.. code-block:: json

    {"checkpoint_format": 1, "mmre_version": "0.1.0", "model_class": "RelationGNN",
     "model_kwargs": {"in_dim": 512, "num_classes": 23, ...},
     "weights_file": "best.safetensors", "weights_sha256": "…",
     "label_map": {...}, "encoder": "…", "metrics": {...}, ...}

Everything the caller puts in ``meta`` (label map, encoder name, metrics, params hash, …) is kept
as is. Both files are written atomically (temp file + rename), the weights first, so a sidecar
on disk always points at complete weights. Loading checks the file exists, the sidecar's mmre
major version and format, the model class and the weights' SHA-256, and raises
:class:`~mmre_cli.errors.MmreError` on any mismatch. Nothing is ever read with ``torch.load``;
should a ``.pt`` ever need reading, use ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

import mmre_cli
from mmre_cli.errors import MmreError
from mmre_cli.hashing import sha256_file

__all__ = ["save_checkpoint", "load_checkpoint", "read_sidecar", "shared_aliases", "CHECKPOINT_FORMAT"]

#: Version of the sidecar layout. Bump when a key changes meaning.
CHECKPOINT_FORMAT = 1

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name) or name.endswith((".json", ".safetensors")):
        raise MmreError(f"bad checkpoint name {name!r}: use letters, digits, '.', '_', '-' and no extension")


def _major(version: str) -> str:
    return str(version).split(".", 1)[0]


def _json_default(obj: Any):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _atomic_target(final: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    return Path(tmp)


def shared_aliases(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """``{name: earlier name}`` for every state entry that is the same tensor (storage, offset,
    shape, strides) as an earlier one — e.g. a wrapper's second path to the same layers.
    safetensors refuses shared memory, so each is written once, under its first name."""
    first: dict[tuple, str] = {}
    out: dict[str, str] = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if key in first:
            out[name] = first[key]
        else:
            first[key] = name
    return out


def save_checkpoint(dir: str | os.PathLike, name: str, model: nn.Module, meta: dict) -> tuple[Path, Path]:
    """Write ``dir/name.safetensors`` and its ``dir/name.json`` sidecar.

    Args:
        dir: output folder (created if missing).
        name: file stem, e.g. ``"best"``.
        model: the module to save. Its constructor kwargs come from ``model.config`` (set by
            :class:`~mmre_cli.learn.gnn.RelationGNN` / :class:`~mmre_cli.learn.gnn.PooledMLP`)
            or else from ``meta["model_kwargs"]``.
        meta: extra JSON-serialisable information kept verbatim in the sidecar: label map,
            encoder name, metrics, params hash, …

    Returns:
        ``(weights_path, sidecar_path)``.
    """
    _check_name(name)
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = getattr(model, "config", None)
    if kwargs is None:
        kwargs = meta.get("model_kwargs")
    if kwargs is None:
        raise ValueError(f"{type(model).__name__} has no .config; pass meta['model_kwargs']")
    weights = out / f"{name}.safetensors"
    sidecar = out / f"{name}.json"

    from safetensors.torch import save_file

    tmp = _atomic_target(weights)
    try:
        # shared tensors once, and one metadata key: safetensors writes a multi-key metadata map in
        # hash order, which would make two saves of the same weights differ in bytes
        state = model.state_dict()
        aliases = shared_aliases(state)
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if k not in aliases}
        info = {"mmre_version": mmre_cli.__version__, "model_class": type(model).__name__, "aliases": aliases}
        save_file(tensors, str(tmp), metadata={"mmre": json.dumps(info, sort_keys=True)})
        digest = sha256_file(tmp)
        os.replace(tmp, weights)
    finally:
        if tmp.exists():
            tmp.unlink()

    record = dict(meta)
    record.update(
        checkpoint_format=CHECKPOINT_FORMAT,
        mmre_version=mmre_cli.__version__,
        model_class=type(model).__name__,
        model_kwargs=dict(kwargs),
        weights_file=weights.name,
        weights_sha256=digest,
        num_parameters=int(sum(p.numel() for p in model.parameters())),
    )
    tmp = _atomic_target(sidecar)
    try:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=_json_default) + "\n")
        os.replace(tmp, sidecar)
    finally:
        if tmp.exists():
            tmp.unlink()
    return weights, sidecar


def read_sidecar(dir: str | os.PathLike, name: str) -> dict:
    """Read and validate ``dir/name.json`` (no weights are touched).

    Raises:
        MmreError: the sidecar is missing or unreadable, or was written by an incompatible mmre
            major version or checkpoint format.
    """
    _check_name(name)
    sidecar = Path(dir) / f"{name}.json"
    if not sidecar.is_file():
        raise MmreError(f"{sidecar}: checkpoint sidecar not found")
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MmreError(f"{sidecar}: unreadable checkpoint sidecar ({err})") from err
    if not isinstance(meta, dict):
        raise MmreError(f"{sidecar}: checkpoint sidecar is not a JSON object")
    version = meta.get("mmre_version")
    if version is None or _major(version) != _major(mmre_cli.__version__):
        raise MmreError(
            f"{sidecar}: written by mmre {version}, incompatible with mmre {mmre_cli.__version__} "
            f"(major version differs); retrain or use a matching mmre"
        )
    fmt = meta.get("checkpoint_format")
    if fmt != CHECKPOINT_FORMAT:
        raise MmreError(f"{sidecar}: checkpoint format {fmt!r}, this mmre reads format {CHECKPOINT_FORMAT}")
    for key in ("model_class", "model_kwargs"):
        if key not in meta:
            raise MmreError(f"{sidecar}: checkpoint sidecar lacks {key!r}")
    return meta


#: model classes registered (``register_model``) by modules the loader imports only when a
#: checkpoint names them, so every caller can load any model without importing its module first
_REGISTERED_IN = {"FinetunedRelationModel": "mmre_cli.learn.finetune", "GraphEditAgent": "mmre_cli.learn.policy"}


def load_checkpoint(
    dir: str | os.PathLike, name: str, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild a model saved by :func:`save_checkpoint` and load its weights.

    Args:
        dir: folder holding ``name.safetensors`` and ``name.json``.
        name: file stem.
        map_location: device to place the weights on (``"cpu"``, ``"cuda:0"``, …).

    Returns:
        ``(model, meta)``: the model in ``eval()`` mode on ``map_location``, and the sidecar dict.

    Raises:
        MmreError: a missing file, an incompatible version, an unknown model class, weights that
            do not match the sidecar (checksum) or the architecture (missing/unexpected keys).
    """
    from safetensors.torch import load_model

    from mmre_cli.learn.gnn import MODEL_REGISTRY

    meta = read_sidecar(dir, name)
    weights = Path(dir) / meta.get("weights_file", f"{name}.safetensors")
    if not weights.is_file():
        raise MmreError(f"{weights}: checkpoint weights not found")
    expected = meta.get("weights_sha256")
    if expected and sha256_file(weights) != expected:
        raise MmreError(f"{weights}: weights do not match the checksum in {name}.json")
    if meta.get("model_class") not in MODEL_REGISTRY and meta.get("model_class") in _REGISTERED_IN:
        import importlib

        importlib.import_module(_REGISTERED_IN[meta["model_class"]])  # registers it (heavy: imported on demand)
    cls = MODEL_REGISTRY.get(meta["model_class"])
    if cls is None:
        raise MmreError(f"{name}.json: unknown model class {meta['model_class']!r}")
    try:
        model = cls(**meta["model_kwargs"])
    except TypeError as err:
        raise MmreError(f"{name}.json: model_kwargs do not fit {cls.__name__} ({err})") from err
    device = str(map_location) if isinstance(map_location, torch.device) else map_location
    try:
        load_model(model, str(weights), strict=True, device=device)
    except RuntimeError as err:
        raise MmreError(f"{weights}: weights do not fit {cls.__name__}: {err}") from err
    model.to(device)
    model.eval()
    return model, meta
