"""The paper's ablations and the seed spread on one split, from existing pipeline outputs.

Given a finished run (features → cmg → agent → diffused, e.g. of `configs/mnre_captions.yaml`),
this reruns only what each variant changes, with the same params file:

* full            — diffused graphs (editor + diffusion), RelationGNN, seeds S, S+1, S+2
* w/o RL          — diffuse with train_agent.enabled=false, RelationGNN
* w/o diffusion   — diffuse with diffuse.enabled=false (editor only), RelationGNN
* w/o RL, w/o diffusion — the merged CMGs as they are, RelationGNN
* w/o GNN         — diffused graphs, PooledMLP (train_gnn.model=pooled)

Each variant is scored on `--split` (default val) with `mmre evaluate` (peer metric). The table
goes to stdout and `bench/results/ablation.json`.

    python bench/ablation.py --params configs/mnre_captions.yaml --run /tmp/mnre --epochs 15
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path


def mmre(*args: str) -> None:
    subprocess.run(["mmre", *args, "-q"], check=True, stdout=subprocess.DEVNULL)  # tables: we print our own


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", required=True)
    ap.add_argument("--run", type=Path, required=True, help="folder holding cmg/, agent/, diffused/")
    ap.add_argument("--split", default="val")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", type=Path, default=Path("bench/results/ablation.json"))
    a = ap.parse_args()
    run, p = a.run, ["--params", a.params]
    train = ["-S", f"train_gnn.epochs={a.epochs}", "-S", f"train_gnn.patience={a.patience}"]

    graphs = {"full": run / "diffused", "cmg": run / "cmg"}
    for name, flag in (("no_rl", "train_agent.enabled=false"), ("no_diffusion", "diffuse.enabled=false")):
        graphs[name] = run / f"ablation_{name}"
        if not (graphs[name] / "manifest.json").exists():
            mmre("diffuse", *p, "--cmg", str(run / "cmg"), "--agent", str(run / "agent"), "--out", str(graphs[name]), "-S", flag)

    variants = [(f"full (seed {a.seed + k})", "full", "gnn", a.seed + k) for k in range(3)]
    variants += [("w/o RL", "no_rl", "gnn", a.seed), ("w/o diffusion", "no_diffusion", "gnn", a.seed),
                 ("w/o RL, w/o diffusion", "cmg", "gnn", a.seed), ("w/o GNN (pooled MLP)", "full", "pooled", a.seed)]
    rows = []
    for label, source, model, seed in variants:
        model_dir = run / f"ablation_model_{source}_{model}_{seed}"
        t0 = time.time()
        mmre("train-gnn", *p, "--graphs", str(graphs[source]), "--agent", str(run / "agent"), "--out", str(model_dir),
             *train, "-S", f"train_gnn.model={model}", "-S", f"train_gnn.seed={seed}")
        seconds = time.time() - t0
        ev = run / f"ablation_eval_{source}_{model}_{seed}"
        mmre("evaluate", *p, "--model", str(model_dir), "--graphs", str(graphs[source]), "--out", str(ev), "--split", a.split)
        m = json.loads((ev / "stats.json").read_text())
        rows.append({"variant": label, "graphs": source, "model": model, "seed": seed, "acc": m["acc"], "p": m["micro_p"],
                     "r": m["micro_r"], "f1": m["micro_f1"], "train_seconds": round(seconds, 1)})
        print(f"{label:28s} Acc {m['acc']:.4f}  P {m['micro_p']:.4f}  R {m['micro_r']:.4f}  F1 {m['micro_f1']:.4f}  ({seconds:.0f} s)", flush=True)
    f1s = [r["f1"] for r in rows if r["graphs"] == "full" and r["model"] == "gnn"]
    summary = {"split": a.split, "params": a.params, "rows": rows,
               "full_f1_mean": statistics.mean(f1s), "full_f1_std": statistics.pstdev(f1s)}
    print(f"full over 3 seeds: F1 {summary['full_f1_mean']:.4f} ± {summary['full_f1_std']:.4f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
