r"""Training state saved as it goes, so a killed training run continues where it stopped (``--resume``).

:func:`save_state` writes one folder holding everything the rest of a run depends on:

* ``state.safetensors`` — tensors only: each named module's weights (``<module>.<key>``; tensors
  a module shares between two names are written once, see
  :func:`~mmre_cli.learn.checkpoint.shared_aliases`), extra tensor dicts such as the best epoch's
  weights (``<name>.<key>``), each optimizer's per-parameter state (``<optim>.<param id>.<key>``:
  AdamW's ``step``, ``exp_avg``, ``exp_avg_sq``), torch's CPU (and CUDA) random generator states
  (``rng.torch``, ``rng.cuda.<i>``) and the train loader's own generator (``rng.loader``);
* ``state.json`` — everything else: the caller's ``meta`` (epoch, history, counters…), the
  optimizers' param groups, the LR schedulers' states, Python's and numpy's random states, the
  length buckets' epoch counter, the ``resume_state()`` of every sub-module that keeps state
  outside its ``state_dict`` (e.g. the negative-learning gate's recent means), the aliases, and
  the ``fingerprint`` (the effective params and inputs: a resume with others is refused).

Both files go to a temporary folder that replaces the previous one with a rename, so a kill at any
moment leaves either the previous state or the new one, never half of each. Nothing is
unpickled: safetensors and JSON only.

Restoring every random state makes the rest of a run the same as an uninterrupted one on CPU:
dropout and sampling draw from torch's global generator, the train loader's shuffle from its own
seeded generator (or, for length buckets and DDP's per-process shares, from its seed and epoch
counter, which is saved and restored). Under DDP the rest also depends on the collective
operations' summation order, so resuming there is not guaranteed to be bit-identical.
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

__all__ = ["save_state", "load_state", "STATE_DIR"]

#: the folder name under a stage's output
STATE_DIR = "checkpoint"


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, inner, gauss_py = random.getstate()
    return tensors, {
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(inner), gauss_py],
    }


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
    sampler = _epoch_sampler(loader)
    if sampler is not None:
        plain["loader_epoch"] = int(sampler.epoch)
    return tensors, plain


def _epoch_sampler(loader):
    """The loader's sampler that counts its own epochs (LengthBuckets, RankShards), if any."""
    for name in ("batch_sampler", "sampler"):
        sampler = getattr(loader, name, None)
        if hasattr(sampler, "epoch") and hasattr(sampler, "seed"):
            return sampler
    return None


def _set_loader_state(loader, tensors: dict[str, torch.Tensor], plain: dict) -> None:
    gen = getattr(loader, "generator", None)
    if isinstance(gen, torch.Generator) and "rng.loader" in tensors:
        gen.set_state(tensors["rng.loader"])
    sampler = _epoch_sampler(loader)
    if "loader_epoch" in plain and sampler is not None:
        sampler.epoch = int(plain["loader_epoch"])


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def save_state(
    folder: str | os.PathLike,
    *,
    fingerprint: str,
    modules: dict[str, torch.nn.Module] | None = None,
    tensors: dict[str, dict[str, torch.Tensor]] | None = None,
    optimizers: dict | None = None,
    schedulers: dict | None = None,
    loader=None,
    meta: dict | None = None,
) -> Path:
    """Write the state to ``folder``, replacing the previous one atomically.

    Args:
        fingerprint: what a resume must match (e.g. params hash + inputs).
        modules: modules whose ``state_dict`` (and ``resume_state()`` hooks) are saved.
        tensors: extra tensor dicts (e.g. ``{"best": best_state}``).
        optimizers, schedulers: by name; a ``None`` value is skipped.
        loader: the train loader whose shuffle state is saved too.
        meta: JSON-ready counters and logs, returned by :func:`load_state`.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    out: dict[str, torch.Tensor] = {}
    doc: dict[str, Any] = {
        "fingerprint": fingerprint,
        "meta": meta or {},
        "aliases": {},
        "hooks": {},
        "optimizers": {},
        "schedulers": {},
    }
    for name, module in (modules or {}).items():
        state = module.state_dict()
        aliases = shared_aliases(state)
        doc["aliases"][name] = aliases
        out.update({f"{name}.{k}": v.detach().cpu().contiguous() for k, v in state.items() if k not in aliases})
        doc["hooks"][name] = {sub: m.resume_state() for sub, m in module.named_modules() if hasattr(m, "resume_state")}
    for name, values in (tensors or {}).items():
        out.update({f"{name}.{k}": v.detach().cpu().contiguous() for k, v in values.items()})
    for name, opt in (optimizers or {}).items():
        if opt is None:
            continue
        sd = opt.state_dict()
        plain: dict[str, dict] = {}
        for pid, entries in sd["state"].items():
            plain[str(pid)] = {}
            for key, value in entries.items():
                if isinstance(value, torch.Tensor):
                    out[f"{name}.{pid}.{key}"] = value.detach().cpu().contiguous()
                else:
                    plain[str(pid)][key] = value
        doc["optimizers"][name] = {"groups": _plain(sd["param_groups"]), "plain": plain}
    for name, sched in (schedulers or {}).items():
        if sched is not None:
            doc["schedulers"][name] = _plain(sched.state_dict())
    rng_tensors, rng = _rng_state()
    loader_tensors, loader_plain = _loader_state(loader)
    out.update(rng_tensors)
    out.update(loader_tensors)
    doc["rng"] = {**rng, **loader_plain}

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_file(out, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps(doc))
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


def load_state(
    folder: str | os.PathLike,
    *,
    fingerprint: str,
    modules: dict[str, torch.nn.Module] | None = None,
    tensors: tuple[str, ...] = (),
    optimizers: dict | None = None,
    schedulers: dict | None = None,
    loader=None,
) -> tuple[dict, dict[str, dict[str, torch.Tensor]]] | None:
    """Restore what :func:`save_state` wrote into the given modules, optimizers, schedulers, loader
    and the random generators.

    Returns:
        ``(meta, {name: tensor dict})`` for the requested extra ``tensors``; ``None`` when
        ``folder`` holds no state (a fresh start).

    Raises:
        MmreError: the state was written with another ``fingerprint`` or is unreadable.
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
        doc = json.loads((folder / "state.json").read_text())
        saved = load_file(str(folder / "state.safetensors"))
    except (OSError, ValueError) as err:
        raise MmreError(f"cannot read the training state in {folder}: {err}; delete it to start over") from None
    if doc.get("fingerprint") != fingerprint:
        raise MmreError(f"{folder} was written by a run with other params; delete it (or drop --resume) to start over")

    def prefixed(name: str) -> dict[str, torch.Tensor]:
        return {k[len(name) + 1 :]: v for k, v in saved.items() if k.startswith(name + ".")}

    for name, module in (modules or {}).items():
        weights = prefixed(name)
        for alias, first in doc["aliases"].get(name, {}).items():
            weights[alias] = weights[first]
        module.load_state_dict(weights)
        subs = dict(module.named_modules())
        for sub, value in doc["hooks"].get(name, {}).items():
            subs[sub].restore_state(value)
    for name, opt in (optimizers or {}).items():
        if opt is None or name not in doc["optimizers"]:
            continue
        state: dict[int, dict] = {int(pid): dict(v) for pid, v in doc["optimizers"][name]["plain"].items()}
        for key, value in prefixed(name).items():
            pid, entry = key.split(".", 1)
            state.setdefault(int(pid), {})[entry] = value
        opt.load_state_dict({"state": state, "param_groups": doc["optimizers"][name]["groups"]})
    for name, sched in (schedulers or {}).items():
        if sched is not None and name in doc["schedulers"]:
            sched.load_state_dict(doc["schedulers"][name])
    _set_rng_state(saved, doc["rng"])
    _set_loader_state(loader, saved, doc["rng"])
    return doc["meta"], {name: prefixed(name) for name in tensors}
