"""Peer-compatible relation-extraction metrics (numpy only).

The main score is the one HVPNeT / MKGformer / MORE / TMR all copy (``eval_result`` in
``modules/metrics.py``): a *micro* precision / recall / F1 over the non-``None`` classes, plus
plain accuracy over every instance. With ``neg`` the id of the ``None`` label:

.. math::
    \\mathrm{cp} = \\#\\{i : \\hat y_i = y_i \\wedge y_i \\ne neg\\}, \\quad
    P = \\frac{\\mathrm{cp}}{\\#\\{i : \\hat y_i \\ne neg\\}}, \\quad
    R = \\frac{\\mathrm{cp}}{\\#\\{i : y_i \\ne neg\\}}, \\quad
    F_1 = \\frac{2PR}{P + R}

Any division by zero gives 0. A wrong positive prediction on a gold-``None`` instance counts
against P only; a ``None`` prediction on a gold-positive instance counts against R only; a wrong
positive on a gold-positive instance counts against both.

Shapes:
    pred, gold: ``[N]`` integer label ids (any sequence / array convertible by numpy)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["peer_scores", "per_class_report", "confusion_matrix"]


def _as_ids(values: Sequence[int], name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{name} must hold integer label ids")
    return arr.astype(np.int64, copy=False)


def _pair(pred: Sequence[int], gold: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    p, g = _as_ids(pred, "pred"), _as_ids(gold, "gold")
    if p.shape != g.shape:
        raise ValueError(f"pred has {p.shape[0]} items, gold has {g.shape[0]}")
    return p, g


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def _f1(p: float, r: float) -> float:
    return 2.0 * p * r / (p + r) if (p + r) else 0.0


def peer_scores(pred: Sequence[int], gold: Sequence[int], none_id: int) -> dict:
    """Accuracy and micro P/R/F1 over non-``None`` classes, exactly as the peers compute them.

    Args:
        pred: predicted label ids.
        gold: gold label ids.
        none_id: id of the ``None`` / no-relation label (the peers' ``neg``).

    Returns:
        ``{"acc", "micro_p", "micro_r", "micro_f1"}`` as floats in [0, 1] plus the integer
        counts ``n`` (instances), ``correct`` (all correct, ``None`` included),
        ``correct_positive``, ``pred_positive`` and ``gold_positive``. An empty input gives all
        zeros.

    Shapes:
        pred, gold: ``[N]``
    """
    p, g = _pair(pred, gold)
    n = int(p.shape[0])
    correct = int(np.sum(p == g))
    correct_positive = int(np.sum((p == g) & (g != none_id)))
    pred_positive = int(np.sum(p != none_id))
    gold_positive = int(np.sum(g != none_id))
    micro_p = _div(correct_positive, pred_positive)
    micro_r = _div(correct_positive, gold_positive)
    return {
        "acc": _div(correct, n),
        "micro_p": micro_p,
        "micro_r": micro_r,
        "micro_f1": _f1(micro_p, micro_r),
        "n": n,
        "correct": correct,
        "correct_positive": correct_positive,
        "pred_positive": pred_positive,
        "gold_positive": gold_positive,
    }


def confusion_matrix(pred: Sequence[int], gold: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts ``M[g, p]`` of instances with gold ``g`` predicted as ``p`` (rows are gold).

    Args:
        pred: predicted label ids in ``[0, num_classes)``.
        gold: gold label ids in ``[0, num_classes)``.
        num_classes: C.

    Returns:
        ``int64`` array; ``M.sum() == N``, ``M.sum(1)`` is the gold support per class.

    Shapes:
        pred, gold: ``[N]`` -> ``[C, C]``
    """
    p, g = _pair(pred, gold)
    if p.size and (min(p.min(), g.min()) < 0 or max(p.max(), g.max()) >= num_classes):
        raise ValueError(f"label id outside [0, {num_classes})")
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (g, p), 1)
    return m


def per_class_report(pred: Sequence[int], gold: Sequence[int], labels: list[str]) -> list[dict]:
    """Per-class precision / recall / F1 (one-vs-rest), one dict per label in id order.

    Args:
        pred: predicted label ids.
        gold: gold label ids.
        labels: label names; ``labels[i]`` names id ``i`` (so C = ``len(labels)``).

    Returns:
        ``[{"label", "id", "support", "predicted", "p", "r", "f1"}, ...]`` with ``support`` the
        number of gold instances of the class; zero divisions give 0.

    Shapes:
        pred, gold: ``[N]`` -> list of C dicts
    """
    m = confusion_matrix(pred, gold, len(labels))
    tp = np.diag(m)
    support = m.sum(axis=1)
    predicted = m.sum(axis=0)
    rows = []
    for i, name in enumerate(labels):
        p = _div(tp[i], predicted[i])
        r = _div(tp[i], support[i])
        rows.append(
            {
                "label": name,
                "id": i,
                "support": int(support[i]),
                "predicted": int(predicted[i]),
                "p": p,
                "r": r,
                "f1": _f1(p, r),
            }
        )
    return rows
