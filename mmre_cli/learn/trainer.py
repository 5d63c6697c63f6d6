r"""Training loop for the relation classifiers, with peer-metric model selection.

:func:`fit_classifier` trains with AdamW and a class-weighted cross entropy

.. math::
    \mathcal{L} = -\frac{1}{\sum_n w_{y_n}} \sum_n w_{y_n} \log \mathrm{softmax}(\mathbf{z}_n)_{y_n}

and keeps the epoch with the best **validation micro-F1 over non-``None`` classes** (the peers'
metric, :func:`~mmre_cli.learn.metrics.peer_scores`); ties go to the lower validation loss. The
test split is never seen here.

**Class imbalance.** About 62 % of MNRE instances carry the ``None`` label. With plain cross
entropy a model can reach 62 % accuracy by always saying ``None`` — which scores micro-F1 = 0.
``class_weights`` picks :math:`w_c` from the training label counts :math:`n_c`:

* ``"none"``: :math:`w_c = 1`.
* ``"inverse_sqrt"`` (**default**): :math:`w_c \propto n_c^{-1/2}`. It lifts rare relations and
  damps ``None`` without the extreme weights of ``"balanced"`` (MNRE has relations with a few
  dozen training instances, which ``"balanced"`` would weight ~100x ``None``). Extreme weights
  buy recall with many false positives on gold-``None`` instances, and the peer metric charges
  those to precision; the square root is the usual compromise, and the checkpoint is then chosen
  on val micro-F1 anyway.
* ``"balanced"``: :math:`w_c \propto n_c^{-1}` (scikit-learn's ``n / (C n_c)``).

Weights are scaled so that the mean weight over training *instances* is 1
(:math:`\sum_c n_c w_c = N`), keeping the loss on the same scale as the unweighted one. A class
absent from the training set is counted as 1 (its weight never applies).

**R-Drop** (``rdrop`` :math:`\alpha > 0`; Liang et al. 2021). Each batch runs through the model
twice in training mode, so the two passes see different dropout masks, giving logits
:math:`\mathbf{z}^{(1)}, \mathbf{z}^{(2)}` (the fusion logits when the model returns branches),
and the loss is the paper's halved, so that its cross-entropy part stays on one pass's scale:

.. math::
    \mathcal{L} = \tfrac12\bigl(\mathcal{L}^{(1)} + \mathcal{L}^{(2)}\bigr)
      + \tfrac{\alpha}{4}\bigl(\mathrm{KL}(P^{(1)} \Vert P^{(2)}) + \mathrm{KL}(P^{(2)} \Vert P^{(1)})\bigr)

with :math:`\mathcal{L}^{(k)}` the loss above (or the branch loss) of pass :math:`k` and the KL
terms batch means. It costs a second forward and backward per step; :math:`\alpha = 0` (default)
is the plain one-pass loss. With negative learning each pass's branch loss updates the teacher's
stability gate, so its window fills with both passes' batch means.

**Devices.** With a Lightning ``Fabric`` the model and optimiser go through ``fabric.setup``,
batches through ``fabric.to_device`` and the loss through ``fabric.backward`` (precision and
device as configured on the Fabric). Without one, training runs on the device of the model's
parameters (CPU by default). Runs are deterministic for a given ``seed`` on CPU (the seed is set
before the first epoch, so the loaders' shuffling is covered); GPU scatter kernels are not.

Shapes:
    batches: PyG ``Batch`` with ``y [B]`` plus the model's inputs; model output ``[B, C]``
"""

from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmre_cli.learn.ema import WeightEMA
from mmre_cli.learn.gnn import classification_loss
from mmre_cli.learn.metrics import peer_scores
from mmre_cli.reporting import NullReporter, Reporter

__all__ = [
    "fit_classifier",
    "distillation_loss",
    "predict",
    "evaluate",
    "label_counts",
    "compute_class_weights",
    "seed_everything",
    "CLASS_WEIGHT_MODES",
]

CLASS_WEIGHT_MODES = ("none", "inverse_sqrt", "balanced")
ClassWeightMode = Literal["none", "inverse_sqrt", "balanced"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def label_counts(loader: Iterable, num_classes: int) -> np.ndarray:
    """Count the gold labels ``batch.y`` over one pass of ``loader``.

    Shapes:
        -> ``[C]`` int64
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    for batch in loader:
        y = batch.y.reshape(-1).cpu().numpy()
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"label outside [0, {num_classes}) in the training data")
        counts += np.bincount(y, minlength=num_classes)
    return counts


def compute_class_weights(counts: np.ndarray | list[int], mode: ClassWeightMode = "inverse_sqrt") -> Tensor:
    r"""Per-class loss weights from training label counts (see the module docstring).

    Args:
        counts: :math:`n_c`, training instances per class.
        mode: ``"none"``, ``"inverse_sqrt"`` (default) or ``"balanced"``.

    Returns:
        float32 weights with :math:`\sum_c n_c w_c = \sum_c n_c`.

    Shapes:
        counts: ``[C]`` -> ``[C]``
    """
    n = np.asarray(counts, dtype=np.float64)
    if mode not in CLASS_WEIGHT_MODES:
        raise ValueError(f"class_weights must be one of {CLASS_WEIGHT_MODES}, not {mode!r}")
    if mode == "none" or n.sum() == 0:
        return torch.ones(n.shape[0], dtype=torch.float32)
    safe = np.maximum(n, 1.0)
    w = safe**-0.5 if mode == "inverse_sqrt" else 1.0 / safe
    w = w * n.sum() / float((n * w).sum())
    return torch.tensor(w, dtype=torch.float32)


def _model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _to_device(batch, device, fabric):
    if fabric is not None:
        return fabric.to_device(batch)
    return batch.to(device)


@torch.no_grad()
def _run_eval(
    model: nn.Module, loader: Iterable, fabric=None, task=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(pred [N], prob [N, C], gold [N] or empty, mean CE loss or nan)``; ``task`` (a progress
    task) advances by each batch's graphs."""
    was_training = model.training
    model.eval()
    device = _model_device(model)
    probs, golds = [], []
    loss_sum, count = 0.0, 0
    for batch in loader:
        batch = _to_device(batch, device, fabric)
        logits = model(batch).float()
        probs.append(torch.softmax(logits, dim=-1).cpu())
        if task is not None:
            task.advance(int(logits.size(0)))
        y = getattr(batch, "y", None)
        if y is not None and bool((y >= 0).all()):  # unlabelled graphs (y = -1) get no loss
            y = y.reshape(-1).long()
            golds.append(y.cpu())
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            count += int(y.numel())
    model.train(was_training)
    if not probs:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32), np.zeros(0, np.int64), math.nan
    prob = torch.cat(probs).numpy()
    pred = prob.argmax(-1).astype(np.int64)
    gold = torch.cat(golds).numpy().astype(np.int64) if golds else np.zeros(0, np.int64)
    return pred, prob, gold, (loss_sum / count if count else math.nan)


def predict(model: nn.Module, loader: Iterable, *, fabric=None, task=None) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels and class probabilities for every graph ``loader`` yields, in order.

    The model is put in ``eval()`` mode for the pass and restored afterwards.

    Args:
        model: a classifier returning logits ``[B, C]``.
        loader: yields PyG batches (``y`` not needed).
        fabric: optional Lightning ``Fabric`` whose device the batches go to.
        task: optional progress task, advanced by the graphs of each batch.

    Returns:
        ``(pred, prob)``: int64 argmax labels and float32 softmax probabilities.

    Shapes:
        -> pred ``[N]``, prob ``[N, C]``
    """
    pred, prob, _, _ = _run_eval(model, loader, fabric, task)
    return pred, prob


def evaluate(model: nn.Module, loader: Iterable, none_id: int, *, fabric=None) -> dict:
    """Peer scores (:func:`~mmre_cli.learn.metrics.peer_scores`) plus ``loss`` on a labelled loader.

    Returns:
        ``{"acc", "micro_p", "micro_r", "micro_f1", "loss", ...counts}``
    """
    pred, _, gold, loss = _run_eval(model, loader, fabric)
    scores = peer_scores(pred, gold, none_id)
    scores["loss"] = loss
    return scores


def _num_classes(model: nn.Module, counts_hint: int | None) -> int:
    cfg = getattr(model, "config", None)
    if isinstance(cfg, dict) and "num_classes" in cfg:
        return int(cfg["num_classes"])
    if counts_hint is None:
        raise ValueError("model has no config['num_classes']; pass num_classes")
    return counts_hint


def _length(loader) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _logits(out) -> Tensor:
    return (out["logits"] if isinstance(out, dict) else out).float()


def distillation_loss(logits: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    r"""Knowledge distillation's term: :math:`T^2\,\mathrm{KL}(q_T \Vert p_T)`, batch mean.

    :math:`p_T = \mathrm{softmax}(\mathbf{z}/T)` and :math:`q_T \propto q^{1/T}` (the teacher's
    probabilities softened alike); the :math:`T^2` keeps its gradient on the gold loss's scale.

    Shapes:
        ``logits [B, C]``, ``teacher [B, C]`` (probabilities) -> scalar
    """
    t = float(temperature)
    soft = torch.softmax(torch.log(teacher.float().clamp_min(1e-8)) / t, dim=-1)
    return F.kl_div(F.log_softmax(logits.float() / t, dim=-1), soft, reduction="batchmean") * t * t


def training_loss(
    model: nn.Module,
    run_model,
    batch,
    y: Tensor,
    weight: Tensor | None,
    rdrop: float = 0.0,
    distill: tuple[float, float] | None = None,
) -> Tensor:
    r"""One batch's training loss: :func:`~mmre_cli.learn.gnn.classification_loss` of one forward
    pass, or with ``rdrop`` :math:`\alpha > 0` the R-Drop loss of two (module docstring). With
    ``distill`` :math:`(\alpha, T)` and a batch carrying ``teacher`` probabilities it is
    :math:`(1-\alpha)\,\mathcal{L} + \alpha\,T^2\,\mathrm{KL}(q_T \Vert p_T)`
    (:func:`distillation_loss`, on the first pass's logits).

    Shapes:
        ``y [B]``, ``batch.teacher [B, C]`` -> scalar
    """
    out = run_model(batch)
    loss = classification_loss(model, out, y, weight)
    teacher = getattr(batch, "teacher", None)
    if distill is not None and teacher is not None:
        alpha, temperature = distill
        loss = (1.0 - alpha) * loss + alpha * distillation_loss(_logits(out), teacher, temperature)
    if not rdrop:
        return loss
    out2 = run_model(batch)
    loss = 0.5 * (loss + classification_loss(model, out2, y, weight))
    logp, logq = F.log_softmax(_logits(out), dim=-1), F.log_softmax(_logits(out2), dim=-1)
    kl = F.kl_div(logq, logp, log_target=True, reduction="batchmean") + F.kl_div(
        logp, logq, log_target=True, reduction="batchmean"
    )  # KL(P||Q) + KL(Q||P)
    return loss + 0.25 * rdrop * kl


def fit_classifier(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    class_weights: ClassWeightMode = "inverse_sqrt",
    none_id: int = 0,
    seed: int = 0,
    patience: int | None = None,
    reporter: Reporter | None = None,
    fabric=None,
    grad_clip: float | None = 5.0,
    num_classes: int | None = None,
    param_groups: list[dict] | None = None,
    warmup: float | None = None,
    state_dir: str | Path | None = None,
    resume: bool = False,
    fingerprint: str = "",
    rdrop: float = 0.0,
    ema: float = 0.0,
    distill: tuple[float, float] | None = None,
) -> tuple[dict[str, Tensor], list[dict]]:
    """Train ``model`` and keep the epoch with the best validation micro-F1.

    Args:
        model: classifier mapping a PyG batch to logits ``[B, C]``.
        train_loader: PyG ``DataLoader`` over labelled training graphs (``y [B]``).
        val_loader: loader over labelled validation graphs (never the test split).
        epochs: maximum number of epochs.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        class_weights: ``"inverse_sqrt"`` (default), ``"balanced"`` or ``"none"``; computed from
            the training label counts (see the module docstring for why the default).
        none_id: id of the ``None`` label for the peer metric.
        seed: seeds Python, numpy and torch before anything random happens.
        patience: stop after this many epochs without a better val micro-F1; ``None``/0 never.
        reporter: progress and per-epoch messages (default: a :class:`NullReporter`).
        fabric: optional Lightning ``Fabric`` (device, precision, ``backward``).
        param_groups: AdamW parameter groups with their own ``lr`` (e.g. a fine-tuned encoder
            at 3e-5 beside a head at 1e-3); default: all parameters at ``lr``.
        warmup: if set, a linear schedule: warm-up over this fraction of all steps, then linear
            decay to 0 at the last step (every group's lr scaled alike); default: constant lr.
        grad_clip: max global gradient norm, ``None`` for no clipping.
        num_classes: C, when ``model.config`` does not say.
        state_dir: if set, the training state is saved there after every epoch
            (:mod:`mmre_cli.learn.resume`: weights, optimizer, scheduler, random states, history).
        resume: continue from the state in ``state_dir`` (if any) instead of epoch 1; on CPU the
            result equals an uninterrupted run's.
        fingerprint: what the state must have been written with (e.g. the params hash).
        rdrop: R-Drop's :math:`\alpha` (module docstring); 0 = one pass per batch.
        ema: decay :math:`d` of an exponential moving average of the trainable weights
            (:mod:`mmre_cli.learn.ema`), updated after every step; validation and the kept
            checkpoint then use the averaged weights. 0 = off (the live weights).
        distill: ``(alpha, T)`` of knowledge distillation from the ``teacher`` probabilities the
            training batches carry (:func:`training_loss`); ``None`` = off.

    Returns:
        ``(best_state, history)``: ``best_state`` is a CPU copy of the best epoch's
        ``state_dict`` (also loaded back into ``model`` before returning); ``history`` has one
        dict per epoch — ``epoch`` (1-based), ``loss`` (mean train loss), ``val_loss``,
        ``val_acc``, ``val_micro_p``, ``val_micro_r``, ``val_micro_f1``, ``best`` (this epoch is
        the best so far), ``seconds`` — ready for a DVC plots file.
    """
    reporter = reporter or NullReporter()
    if fabric is not None:
        fabric.seed_everything(seed)
    seed_everything(seed)

    c = _num_classes(model, num_classes)
    counts = label_counts(train_loader, c)
    weights = compute_class_weights(counts, class_weights)
    reporter.info(
        f"train labels: {int(counts.sum())} instances, {int(counts[none_id]) if none_id < c else 0} None; "
        f"class weights={class_weights}"
    )

    optimizer = torch.optim.AdamW(param_groups or model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = None
    if warmup is not None:
        total = max(1, epochs * len(train_loader))  # type: ignore[arg-type]
        warm = int(round(warmup * total))

        def factor(step: int) -> float:
            if warm and step < warm:
                return (step + 1) / warm
            return max(0.0, (total - step) / max(1, total - warm))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    base_model = model
    if fabric is not None:
        run_model, optimizer = fabric.setup(model, optimizer)
        device = fabric.device
    else:
        run_model = model
        device = _model_device(model)
    weights = weights.to(device)

    history: list[dict] = []
    best_key: tuple[float, float] | None = None
    best_state: dict[str, Tensor] = {k: v.detach().cpu().clone() for k, v in base_model.state_dict().items()}
    since_best = 0
    first = 1
    averaged = WeightEMA(base_model, ema) if ema else None
    if resume and state_dir is not None:
        from mmre_cli.learn.resume import load_state

        restored = load_state(
            state_dir,
            fingerprint=fingerprint,
            modules={"model": base_model},
            tensors=("best", "ema"),
            optimizers={"optim": optimizer},
            schedulers={"sched": scheduler},
            loader=train_loader,
        )
        if restored is not None:
            meta, extra = restored
            history, since_best, best_state, first = (
                meta["history"],
                meta["since_best"],
                extra["best"],
                meta["epoch"] + 1,
            )
            best_key = tuple(meta["best_key"]) if meta["best_key"] is not None else None
            if averaged is not None:
                averaged.load_state_dict(extra["ema"])
            reporter.info(f"resuming after epoch {meta['epoch']} (training state in {state_dir})")
            if patience and since_best >= patience:
                first = epochs + 1  # it had stopped early already
    with reporter.progress("training", total=epochs) as task:
        task.advance(first - 1)
        for epoch in range(first, epochs + 1):
            t0 = time.perf_counter()
            run_model.train()
            loss_sum, n_seen = 0.0, 0
            with reporter.progress(f"epoch {epoch}/{epochs} steps", total=_length(train_loader)) as step_task:
                for batch in train_loader:
                    batch = _to_device(batch, device, fabric)
                    y = batch.y.reshape(-1).long()
                    loss = training_loss(base_model, run_model, batch, y, weights, rdrop, distill)
                    optimizer.zero_grad(set_to_none=True)
                    if fabric is not None:
                        fabric.backward(loss)
                    else:
                        loss.backward()
                    if grad_clip:
                        if fabric is not None:
                            fabric.clip_gradients(run_model, optimizer, max_norm=grad_clip)
                        else:
                            nn.utils.clip_grad_norm_(run_model.parameters(), grad_clip)
                    optimizer.step()
                    if scheduler is not None:
                        scheduler.step()
                    if averaged is not None:
                        averaged.update()
                    loss_sum += float(loss.detach()) * int(y.numel())
                    n_seen += int(y.numel())
                    step_task.advance()
            train_seconds = time.perf_counter() - t0
            with averaged.applied() if averaged is not None else nullcontext():
                val = evaluate(run_model, val_loader, none_id, fabric=fabric)
                key = (val["micro_f1"], -val["loss"] if not math.isnan(val["loss"]) else -math.inf)
                improved = best_key is None or key > best_key
                if improved:
                    best_state = {k: v.detach().cpu().clone() for k, v in base_model.state_dict().items()}
            if improved:
                best_key = key
                since_best = 0
            else:
                since_best += 1
            row = {
                "epoch": epoch,
                "loss": loss_sum / n_seen if n_seen else math.nan,
                "val_loss": val["loss"],
                "val_acc": val["acc"],
                "val_micro_p": val["micro_p"],
                "val_micro_r": val["micro_r"],
                "val_micro_f1": val["micro_f1"],
                "best": bool(improved),
                "seconds": time.perf_counter() - t0,
                "train_seconds": train_seconds,
            }
            history.append(row)
            reporter.info(
                f"epoch {epoch}: loss {row['loss']:.4f} val_f1 {row['val_micro_f1']:.4f} "
                f"val_acc {row['val_acc']:.4f}{' *' if improved else ''}"
            )
            if state_dir is not None and (fabric is None or fabric.is_global_zero):
                from mmre_cli.learn.resume import save_state

                save_state(
                    state_dir,
                    fingerprint=fingerprint,
                    modules={"model": base_model},
                    tensors={"best": best_state, **({"ema": averaged.state_dict()} if averaged is not None else {})},
                    optimizers={"optim": optimizer},
                    schedulers={"sched": scheduler},
                    loader=train_loader,
                    meta={
                        "epoch": epoch,
                        "history": history,
                        "since_best": since_best,
                        "best_key": list(best_key) if best_key is not None else None,
                    },
                )
            task.advance()
            if patience and since_best >= patience:
                reporter.info(f"early stop after epoch {epoch}: no val micro-F1 gain in {patience} epochs")
                break

    base_model.load_state_dict(best_state)
    return best_state, history
