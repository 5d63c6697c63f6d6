r"""Training a :class:`~mmre_cli.learn.finetune.FinetunedRelationModel`: two learning rates.

:func:`param_groups` splits the parameters into AdamW groups (the encoder at ``enc_lr``, optionally
layer-wise decayed, no weight decay on biases and LayerNorms; the GNN and head at ``head_lr``);
:func:`fit_finetuned` runs :func:`~mmre_cli.learn.trainer.fit_classifier` with them and a linear
warm-up then linear decay.
"""

from __future__ import annotations

from typing import Iterable

from torch import Tensor, nn

from mmre_cli.learn.finetune import FinetunedRelationModel

__all__ = ["param_groups", "fit_finetuned"]


def param_groups(
    model: FinetunedRelationModel, enc_lr: float, head_lr: float, weight_decay: float = 0.01, layer_decay: float = 1.0
) -> list[dict]:
    r"""AdamW parameter groups: encoder (``enc_lr``; no decay on biases / LayerNorms) and the rest.

    With ``layer_decay`` :math:`\xi < 1` (layer-wise learning-rate decay, LLRD), transformer
    layer :math:`l` of :math:`L` learns at :math:`\text{enc\_lr} \cdot \xi^{L-1-l}` and the
    embeddings at :math:`\text{enc\_lr} \cdot \xi^{L}`: the top layer at ``enc_lr``, lower,
    more general layers slower.

    Returns:
        groups ``{"params", "lr", "weight_decay", "name"}``: ``encoder``, ``encoder_no_decay``
        (one pair per depth, named ``encoder.l{l}`` / ``encoder_no_decay.l{l}``, under LLRD),
        ``head``.
    """
    depth_of: dict[int, int] = {}
    n_layers = 0
    if layer_decay != 1.0 and hasattr(model, "encoder"):
        layers = list(model.encoder.transformer.layers)
        n_layers = len(layers)
        for depth, layer in enumerate(layers):
            for p in layer.parameters():
                depth_of[id(p)] = depth
    groups: dict[tuple[str, int], dict] = {}
    head = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if not name.startswith("encoder."):
            head.append(p)
            continue
        plain = p.ndim < 2 or "LayerNorm" in name or "norm" in name.lower()
        depth = depth_of.get(id(p), -1 if n_layers else 0)  # -1: embeddings (and markers) under LLRD
        key = ("encoder_no_decay" if plain else "encoder", depth)
        if key not in groups:
            lr = enc_lr * (layer_decay ** (n_layers - 1 - depth) if n_layers else 1.0)
            suffix = f".l{depth}" if n_layers else ""
            groups[key] = {
                "params": [],
                "lr": lr,
                "weight_decay": 0.0 if plain else weight_decay,
                "name": key[0] + suffix,
            }
        groups[key]["params"].append(p)
    out = [groups[k] for k in sorted(groups, key=lambda k: (k[0] != "encoder", k[1]))]
    out.append({"params": head, "lr": head_lr, "weight_decay": weight_decay, "name": "head"})
    return [g for g in out if g["params"]]


def fit_finetuned(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    *,
    epochs: int,
    enc_lr: float = 3e-5,
    head_lr: float = 1e-3,
    weight_decay: float = 0.01,
    class_weights: str = "inverse_sqrt",
    none_id: int = 0,
    seed: int = 0,
    patience: int | None = None,
    reporter=None,
    grad_clip: float | None = 1.0,
    warmup: float = 0.1,
    num_classes: int | None = None,
    fabric=None,
    layer_decay: float = 1.0,
    **resume,
) -> tuple[dict[str, Tensor], list[dict]]:
    """Train a :class:`FinetunedRelationModel` with two learning rates; keep the best val micro-F1 epoch.

    Like :func:`~mmre_cli.learn.trainer.fit_classifier` (same class weights, same selection —
    val micro-F1, ties to the lower val loss —, same ``history`` keys), but with
    :func:`param_groups` and a schedule: linear warm-up over the first ``warmup`` fraction of all
    steps, then linear decay to 0 at the end of ``epochs`` (both groups). Runs on the device of
    the model's parameters, or on ``fabric``'s devices (Lightning Fabric, as ``fit_classifier``).

    ``resume`` passes ``state_dir`` / ``resume`` / ``fingerprint`` through (per-epoch training
    state, :mod:`mmre_cli.learn.resume`).

    Returns:
        ``(best_state, history)`` as :func:`fit_classifier`.
    """
    from mmre_cli.learn.trainer import fit_classifier

    groups = param_groups(model, enc_lr, head_lr, weight_decay, layer_decay) if hasattr(model, "encoder") else None
    return fit_classifier(
        model,
        train_loader,
        val_loader,
        epochs=epochs,
        lr=head_lr,
        weight_decay=weight_decay,
        class_weights=class_weights,
        none_id=none_id,
        seed=seed,
        patience=patience,
        reporter=reporter,
        grad_clip=grad_clip,
        num_classes=num_classes,
        param_groups=groups,
        warmup=warmup,
        fabric=fabric,
        **resume,
    )
