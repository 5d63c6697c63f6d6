"""Score trained models alone and as an ensemble (the mean of their class probabilities) on one split.

``mmre evaluate --model A --model B ...`` scores the same ensemble with the full report; this
bench prints the members and the ensemble side by side. Every model must have been trained on the
same label map; each is scored on ``--graphs`` the way ``mmre evaluate`` scores it
(:func:`mmre_cli.predict.scoring.score_split`: its own caption pair, the peers' metric), and the ensemble
(:func:`mmre_cli.predict.scoring.ensemble_scores`) predicts

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path, help="train-gnn output folders")
    ap.add_argument("--graphs", type=Path, required=True, help="diffuse output holding the split")
    ap.add_argument("--split", default="val")
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the rows")
    args = ap.parse_args()
    if len(args.models) < 2:
        ap.error("an ensemble needs at least two models")

    from mmre_cli.predict.scoring import ensemble_scores, score_split

    scored, rows = [], []
    for path in args.models:
        s = score_split(path, args.graphs, args.split)
        scored.append(s)
        rows.append({"model": str(path), **{k: round(float(v), 4) for k, v in s["metrics"].items() if k != "n"}})
    ens = ensemble_scores(scored)
    rows.append(
        {
            "model": f"ensemble of {len(scored)} (mean probability)",
            **{k: round(float(v), 4) for k, v in ens["metrics"].items() if k != "n"},
        }
    )
    width = max(len(r["model"]) for r in rows)
    print(f"{'model':<{width}}  {'acc':>6} {'P':>6} {'R':>6} {'F1':>6}")
    for r in rows:
        print(f"{r['model']:<{width}}  {r['acc']:.4f} {r['micro_p']:.4f} {r['micro_r']:.4f} {r['micro_f1']:.4f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"split": args.split, "graphs": str(args.graphs), "rows": rows}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
