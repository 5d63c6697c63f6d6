"""Score trained models alone and as an ensemble (the mean of their class probabilities) on one split.

Every model must have been trained on the same label map; each is scored on ``--graphs`` the way
``mmre evaluate`` scores it (:func:`stages.evaluate.score_split`: its own caption pair, the
peers' metric), and the ensemble predicts

.. math::
    \\hat y = \\arg\\max_c \\frac{1}{M} \\sum_{m=1}^{M} p_m(c \\mid x)

for each instance. Prints one row per model and one for the ensemble (micro P/R/F1 over the
non-``None`` classes, Acc), and writes them to ``--out`` (JSON).

    python bench/ensemble.py --graphs runs/cpu/diffused --out bench/results/ensemble_cpu.json \\
        runs/typed_e4_s13 runs/typed_e4_s14 runs/typed_e4_s15
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def ensemble(scored: list[dict]) -> dict:
    """The mean-probability ensemble of :func:`stages.evaluate.score_split` results of one split.

    Instances are matched by id (each model sorts them its own way).

    Shapes:
        each ``scored[m]["prob"] [N, C]`` -> ``{"metrics", "pred" [N], "gold" [N]}``
    """
    import numpy as np

    from mmre_cli.learn.metrics import peer_scores

    first = scored[0]
    labels, none_id = first["labels"], first["none_id"]
    order = {sid: i for i, sid in enumerate(first["ids"])}
    prob = np.zeros_like(np.asarray(first["prob"], dtype=np.float64))
    for s in scored:
        if s["labels"] != labels:
            raise SystemExit("the models were trained on different label maps")
        if sorted(s["ids"]) != sorted(first["ids"]):
            raise SystemExit("the models scored different instances")
        rows = [order[sid] for sid in s["ids"]]
        prob[rows] += np.asarray(s["prob"], dtype=np.float64)
    prob /= len(scored)
    pred, gold = prob.argmax(axis=1), np.asarray(first["gold"])
    return {"metrics": peer_scores(pred, gold, none_id), "pred": pred, "gold": gold}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path, help="train-gnn output folders")
    ap.add_argument("--graphs", type=Path, required=True, help="diffuse output holding the split")
    ap.add_argument("--split", default="val")
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the rows")
    args = ap.parse_args()
    if len(args.models) < 2:
        ap.error("an ensemble needs at least two models")

    from stages.evaluate import score_split

    scored, rows = [], []
    for path in args.models:
        s = score_split(path, args.graphs, args.split)
        scored.append(s)
        rows.append({"model": str(path), **{k: round(float(v), 4) for k, v in s["metrics"].items() if k != "n"}})
    ens = ensemble(scored)
    rows.append({"model": f"ensemble of {len(scored)} (mean probability)",
                 **{k: round(float(v), 4) for k, v in ens["metrics"].items() if k != "n"}})
    width = max(len(r["model"]) for r in rows)
    print(f"{'model':<{width}}  {'acc':>6} {'P':>6} {'R':>6} {'F1':>6}")
    for r in rows:
        print(f"{r['model']:<{width}}  {r['acc']:.4f} {r['micro_p']:.4f} {r['micro_r']:.4f} {r['micro_f1']:.4f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"split": args.split, "graphs": str(args.graphs), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
