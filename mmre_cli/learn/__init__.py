"""Learning: peer metrics, relevance diffusion (Alg. 3), the relation GNN, checkpoints, training.

Submodules:

* :mod:`~mmre_cli.learn.metrics` — ``peer_scores``, ``per_class_report``, ``confusion_matrix``
  (numpy only).
* :mod:`~mmre_cli.learn.diffusion` — ``node_relevance``, ``diffuse``, ``diffuse_and_prune``.
* :mod:`~mmre_cli.learn.gnn` — ``RelationGNN``, ``PooledMLP`` (the "w/o GNN" ablation).
* :mod:`~mmre_cli.learn.checkpoint` — ``save_checkpoint``, ``load_checkpoint`` (safetensors +
  JSON sidecar).
* :mod:`~mmre_cli.learn.trainer` — ``fit_classifier``, ``predict``, ``evaluate``.

Names are re-exported lazily: ``from mmre_cli.learn import peer_scores`` does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "peer_scores": "metrics",
    "per_class_report": "metrics",
    "confusion_matrix": "metrics",
    "node_relevance": "diffusion",
    "diffuse": "diffusion",
    "diffuse_and_prune": "diffusion",
    "endpoint_edge_mask": "diffusion",
    "RelationGNN": "gnn",
    "PooledMLP": "gnn",
    "register_model": "gnn",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "fit_classifier": "trainer",
    "predict": "trainer",
    "evaluate": "trainer",
    "compute_class_weights": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
