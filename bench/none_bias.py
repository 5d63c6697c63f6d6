r"""Would a tuned ``None`` threshold raise micro-F1? A cross-fitted answer from ``predictions.jsonl``.

The peers' metric (micro-F1 over the non-``None`` relations) rewards the balance of precision and
recall, and a model whose precision sits well above its recall might gain from predicting ``None``
less often. This bench adds a bias :math:`b` to the log-probability of ``None`` before the argmax,

.. math::
    \hat y = \arg\max_c \big(\log p(c \mid x) + b\,[c = \mathrm{None}]\big),

and reports, for each evaluate folder (or ``predictions.jsonl``) given:

- ``f1``: the file as it is (:math:`b = 0`);
- ``best_b`` / ``f1_best_b``: the bias that is best on the whole split. This number is selected and
  scored on the same instances, so it is an upper bound, never a result;
- ``f1_crossfit`` ± sd: the honest estimate. The split is halved at random; the bias chosen on one
  half predicts the other, and the other way round; the two halves' predictions are scored together.
  Repeated ``--repeats`` times.

Grid: :math:`b \in [-3, 3]` in steps of 0.1. Shapes: ``P [N, C]`` probabilities, ``gold [N]`` ids.

    python bench/none_bias.py runs/ft/kdbase6a8_s13/eval runs/ft/kdbase6a8_s14/eval \
        --out bench/results/none_bias_2026-12-07.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmre_cli.learn.metrics import peer_scores  # noqa: E402
from mmre_cli.store.predictions import iter_rows, predictions_path, read_probabilities  # noqa: E402

GRID = np.round(np.arange(-3.0, 3.0001, 0.1), 1)


def load(source: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(labels, P [N, C], gold [N])`` of one predictions file, in its line order."""
    path = predictions_path(source)
    rows = [row for _, row in iter_rows(path)]
    if not rows or not isinstance(rows[0].get("probs"), dict):
        raise SystemExit(f"{path}: no 'probs' in its lines (written by an older mmre: evaluate again)")
    labels = list(rows[0]["probs"])
    probs = read_probabilities(path, labels)
    P = np.stack([probs[str(r["sample_id"])] for r in rows])
    gold = np.array([labels.index(r["gold"]) for r in rows])
    return labels, P, gold


def predict(logp: np.ndarray, none_id: int, bias: float) -> np.ndarray:
    """Label ids after adding ``bias`` to column ``none_id`` of ``logp [N, C]``."""
    shifted = logp.copy()
    shifted[:, none_id] += bias
    return shifted.argmax(1)


def f1(logp: np.ndarray, gold: np.ndarray, none_id: int, bias: float) -> float:
    return peer_scores(predict(logp, none_id, bias).tolist(), gold.tolist(), none_id)["micro_f1"]


def best_bias(logp: np.ndarray, gold: np.ndarray, none_id: int) -> float:
    """The grid's bias with the highest micro-F1 (the one nearest 0 on ties)."""
    scores = [(f1(logp, gold, none_id, b), -abs(b), b) for b in GRID]
    return float(max(scores)[2])


def crossfit(logp: np.ndarray, gold: np.ndarray, none_id: int, repeats: int, seed: int) -> list[float]:
    """Micro-F1 of ``repeats`` random 2-fold cross-fits (module docstring)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(repeats):
        perm = rng.permutation(len(gold))
        halves = (perm[: len(gold) // 2], perm[len(gold) // 2 :])
        pred = np.empty(len(gold), dtype=int)
        for fit, score in (halves, halves[::-1]):
            pred[score] = predict(logp[score], none_id, best_bias(logp[fit], gold[fit], none_id))
        out.append(peer_scores(pred.tolist(), gold.tolist(), none_id)["micro_f1"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+", type=Path, help="evaluate output folders or predictions.jsonl files")
    ap.add_argument("--repeats", type=int, default=20, help="random 2-fold cross-fits per file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the rows")
    args = ap.parse_args()
    rows = []
    for source in args.sources:
        labels, P, gold = load(source)
        none_id = labels.index("None")
        logp = np.log(np.clip(P, 1e-9, None))
        b = best_bias(logp, gold, none_id)
        cf = crossfit(logp, gold, none_id, args.repeats, args.seed)
        rows.append(
            {
                "source": str(source),
                "n": int(len(gold)),
                "f1": round(f1(logp, gold, none_id, 0.0), 4),
                "best_b": b,
                "f1_best_b": round(f1(logp, gold, none_id, b), 4),
                "f1_crossfit": round(float(np.mean(cf)), 4),
                "f1_crossfit_sd": round(float(np.std(cf)), 4),
            }
        )
    width = max(len(r["source"]) for r in rows)
    print(f"{'predictions':<{width}}  {'F1':>6}  {'best b':>6} {'F1 (b)':>6}  F1 cross-fitted")
    for r in rows:
        print(
            f"{r['source']:<{width}}  {r['f1']:.4f}  {r['best_b']:+6.1f} {r['f1_best_b']:.4f}  "
            f"{r['f1_crossfit']:.4f} ± {r['f1_crossfit_sd']:.4f}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"repeats": args.repeats, "seed": args.seed, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
