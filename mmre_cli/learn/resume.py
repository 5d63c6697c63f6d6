r"""Per-epoch training state, so a killed training run continues where it stopped (``--resume``).

:func:`save_training_state` writes, after every epoch, one folder holding everything the next
epoch depends on:

* ``state.safetensors`` — tensors only: the model's current weights (``model.*``), the best
  epoch's weights so far (``best.*``), the optimizer's per-parameter state
  (``optim.<param id>.<key>``: AdamW's ``step``, ``exp_avg``, ``exp_avg_sq``) and torch's CPU
  (and, on a GPU, CUDA) random generator states (``rng.torch``, ``rng.cuda.<i>``), and the train
  loader's own shuffle generator (``rng.loader``);
* ``state.json`` — everything else: the ``resume_state()`` of every sub-module that keeps state
  outside its ``state_dict`` (e.g. the negative-learning gate's recent means; restored with its
  ``restore_state``), the epoch, the history rows, the selection key and patience
  counter, the optimizer's param groups, the LR scheduler's state, Python's and numpy's random
  states, and the caller's ``fingerprint`` (the effective params: a resume with other params is
  refused).

Both files go to a temporary folder that replaces the previous one with a rename, so a kill at any
moment leaves either the previous epoch's state or this one's, never half of each. Nothing is
unpickled: safetensors and JSON only.

Restoring every random state makes the rest of the run the same as an uninterrupted one on CPU:
dropout draws from torch's global generator, the train loader's shuffle from its own seeded
generator (or, for length buckets, from its seed and epoch counter, saved as ``loader_epoch``), so
the resumed epoch ``k + 1`` sees the same batches and masks as it would have. Under DDP the
distributed sampler reshuffles from its seed and epoch; resuming there is not guaranteed to be
bit-identical.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmre_cli.errors import MmreError
from mmre_cli.learn.checkpoint import shared_aliases

__all__ = ["save_training_state", "load_training_state", "STATE_DIR"]

#: the folder name under a stage's output
STATE_DIR = "checkpoint"


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, inner, gauss_py = random.getstate()
    return tensors, {"numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
                     "python": [version, list(inner), gauss_py]}


def _set_rng_state(tensors: dict[str, torch.Tensor], states: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, inner, gauss_py = states["python"]
    random.setstate((version, tuple(inner), gauss_py))


def _loader_state(loader) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, plain = {}, {}
    gen = getattr(loader, "generator", None)
    if isinstance(gen, torch.Generator):
        tensors["rng.loader"] = gen.get_state()
    sampler = getattr(loader, "batch_sampler", None)
    if hasattr(sampler, "epoch") and hasattr(sampler, "seed"):  # LengthBuckets
        plain["loader_epoch"] = int(sampler.epoch)
    return tensors, plain


def _set_loader_state(loader, tensors: dict[str, torch.Tensor], plain: dict) -> None:
    gen = getattr(loader, "generator", None)
    if isinstance(gen, torch.Generator) and "rng.loader" in tensors:
        gen.set_state(tensors["rng.loader"])
    sampler = getattr(loader, "batch_sampler", None)
    if "loader_epoch" in plain and hasattr(sampler, "epoch"):
        sampler.epoch = int(plain["loader_epoch"])


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def save_training_state(folder: str | os.PathLike, *, epoch: int, model: torch.nn.Module,
                        best_state: dict[str, torch.Tensor], optimizer, scheduler, history: list[dict],
                        best_key, since_best: int, fingerprint: str, loader=None) -> Path:
    """Write the state after ``epoch`` (1-based) to ``folder``, replacing the previous one atomically;
    ``loader``: the train loader whose shuffle state is saved too."""
    from safetensors.torch import save_file

    folder = Path(folder)
    state = model.state_dict()
    aliases = shared_aliases(state)  # a name -> the name whose tensor it shares (saved once)
    tensors: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k not in aliases:
            tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    for k, v in best_state.items():
        if k not in aliases:
            tensors[f"best.{k}"] = v.detach().cpu().contiguous()
    opt = optimizer.state_dict()
    plain_state: dict[str, dict] = {}
    for pid, entries in opt["state"].items():
        plain_state[str(pid)] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain_state[str(pid)][key] = value
    rng_tensors, rng = _rng_state()
    tensors.update(rng_tensors)
    loader_tensors, loader_plain = _loader_state(loader)
    tensors.update(loader_tensors)
    rng.update(loader_plain)
    meta = {"epoch": int(epoch), "aliases": aliases, "history": history, "best_key": list(best_key) if best_key is not None else None,
            "since_best": int(since_best), "fingerprint": fingerprint, "rng": rng,
            "optim_groups": _plain(opt["param_groups"]), "optim_plain": plain_state,
            "modules": {name: m.resume_state() for name, m in model.named_modules() if hasattr(m, "resume_state")},
            "scheduler": None if scheduler is None else _plain(scheduler.state_dict())}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta))
        old = folder.with_name(folder.name + ".old")
        if folder.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def load_training_state(folder: str | os.PathLike, *, model: torch.nn.Module, optimizer, scheduler,
                        fingerprint: str, loader=None) -> dict | None:
    """Restore the state ``folder`` holds into ``model``, ``optimizer``, ``scheduler`` and the random
    generators; ``None`` when there is none (a fresh start).

    Returns:
        ``{"epoch", "history", "best_key", "since_best", "best_state"}``.

    Raises:
        MmreError: the state was written with other params (``fingerprint``) or is unreadable.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    for stale in folder.parent.glob(f".{folder.name}.*"):  # a save killed before its rename
        shutil.rmtree(stale, ignore_errors=True)
    if not (folder / "state.json").is_file() and folder.with_name(folder.name + ".old").is_dir():
        folder = folder.with_name(folder.name + ".old")  # killed between the two renames
    if not (folder / "state.json").is_file():
        return None
    try:
        meta = json.loads((folder / "state.json").read_text())
        tensors = load_file(str(folder / "state.safetensors"))
    except (OSError, ValueError) as err:
        raise MmreError(f"cannot read the training state in {folder}: {err}; delete it to start over") from None
    if meta.get("fingerprint") != fingerprint:
        raise MmreError(f"{folder} was written by a run with other params; delete it (or drop --resume) to start over")
    aliases = meta.get("aliases", {})
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    for alias, name in aliases.items():
        weights[alias], best_state[alias] = weights[name], best_state[name]
    model.load_state_dict(weights)
    modules = dict(model.named_modules())
    for name, value in meta.get("modules", {}).items():
        modules[name].restore_state(value)
    state: dict[int, dict] = {}
    for pid, plain in meta["optim_plain"].items():
        state[int(pid)] = dict(plain)
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, key = k.split(".", 2)
            state.setdefault(int(pid), {})[key] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["optim_groups"]})
    if scheduler is not None and meta["scheduler"] is not None:
        scheduler.load_state_dict(meta["scheduler"])
    _set_rng_state(tensors, meta["rng"])
    _set_loader_state(loader, tensors, meta["rng"])
    best_key = tuple(meta["best_key"]) if meta["best_key"] is not None else None
    return {"epoch": meta["epoch"], "history": meta["history"], "best_key": best_key,
            "since_best": meta["since_best"], "best_state": best_state}
