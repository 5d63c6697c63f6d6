"""The classifier switches of issue 12 compared on one split: graph_encoder × fusion × loss.

Trains `mmre train-gnn` once per combination and seed on existing refined graphs (e.g. the
`diffused/` of a `configs/mnre_captions.yaml` chain), in `--jobs` parallel processes (one torch
thread each: frozen-feature GNNs run fastest that way on a small CPU), and reads the best epoch's
val scores from each run's stats (the peer metric, the same numbers `mmre evaluate --split val`
prints for that model). Writes `bench/results/classifier_switches.json` and prints a Markdown
table with mean ± population std over the seeds.

    python bench/classifier_switches.py --params configs/mnre_captions.yaml \\
        --graphs runs/mnre/diffused --agent runs/mnre/agent --out runs/switches --jobs 2

Extra `-S key=value` are passed to every run (e.g. `-S train_gnn.model=finetune`); `--only`
restricts the combinations (`--only hop_attention/mm_qformer/ce+negative_learning`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ENCODERS = ("gatv2", "hop_attention")
FUSIONS = ("none", "mm_qformer")
LOSSES = ("ce", "ce+negative_learning")


def combo_name(enc: str, fusion: str, loss: str) -> str:
    return f"{enc}/{fusion}/{loss}"


def run_one(a, enc: str, fusion: str, loss: str, seed: int) -> dict:
    tag = f"{enc}-{fusion}-{loss.replace('+', '_')}-s{seed}"
    out = a.out / tag
    stats = a.out / f"{tag}.stats.json"
    if not stats.exists():  # resumable: a finished run is not redone
        cmd = [
            "mmre",
            "train-gnn",
            "--params",
            a.params,
            "--graphs",
            str(a.graphs),
            "--out",
            str(out),
            "--stats",
            str(stats),
            "-q",
            "-S",
            f"train_gnn.graph_encoder={enc}",
            "-S",
            f"train_gnn.fusion={fusion}",
            "-S",
            f"train_gnn.loss={loss}",
            "-S",
            f"train_gnn.seed={seed}",
        ]
        if a.agent:
            cmd += ["--agent", str(a.agent)]
        for s in a.set or []:
            cmd += ["-S", s]
        env = {**os.environ, "MMRE_TORCH_THREADS": str(a.threads)}
        t0 = time.time()
        with open(a.out / f"{tag}.log", "w") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
        m = json.loads(stats.read_text())
        m["wall_seconds"] = round(time.time() - t0, 1)
        stats.write_text(json.dumps(m, indent=2) + "\n")
    m = json.loads(stats.read_text())
    row = {
        "combination": combo_name(enc, fusion, loss),
        "graph_encoder": enc,
        "fusion": fusion,
        "loss": loss,
        "seed": seed,
        "acc": m["val_acc"],
        "p": m["val_micro_p"],
        "r": m["val_micro_r"],
        "f1": m["val_micro_f1"],
        "best_epoch": m["best_epoch"],
        "epochs_run": m["epochs_run"],
        "wall_seconds": m.get("wall_seconds"),
    }
    print(f"{row['combination']:45s} seed {seed}  F1 {row['f1']:.4f}  ({row['wall_seconds']} s)", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", required=True)
    ap.add_argument("--graphs", type=Path, required=True, help="refined graphs (diffuse's output)")
    ap.add_argument("--agent", type=Path, default=None)
    ap.add_argument("--out", type=Path, required=True, help="folder for the models, logs and stats")
    ap.add_argument("--seeds", type=int, nargs="+", default=[13, 14, 15])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--only", nargs="*", help="combinations enc/fusion/loss to run (default: all 8)")
    ap.add_argument("-S", "--set", action="append", help="extra key=value for every run")
    ap.add_argument("--results", type=Path, default=Path("bench/results/classifier_switches.json"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    combos = [c for c in itertools.product(ENCODERS, FUSIONS, LOSSES) if not a.only or combo_name(*c) in a.only]
    jobs = [(c, s) for c in combos for s in a.seeds]
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        rows = list(pool.map(lambda j: run_one(a, *j[0], j[1]), jobs))

    table = []
    for c in combos:
        rs = [r for r in rows if r["combination"] == combo_name(*c)]
        f1 = [r["f1"] for r in rs]
        table.append(
            {
                "combination": combo_name(*c),
                "seeds": [r["seed"] for r in rs],
                "f1": f1,
                "f1_mean": statistics.mean(f1),
                "f1_std": statistics.pstdev(f1),
                "acc_mean": statistics.mean(r["acc"] for r in rs),
                "p_mean": statistics.mean(r["p"] for r in rs),
                "r_mean": statistics.mean(r["r"] for r in rs),
                "wall_mean": statistics.mean(r["wall_seconds"] or 0 for r in rs),
            }
        )
    print(
        "\n| graph_encoder / fusion / loss | Acc | micro P | micro R | micro F1 (mean ± std) | per seed | wall / run |"
    )
    print("|---|---|---|---|---|---|---|")
    for t in sorted(table, key=lambda t: -t["f1_mean"]):
        seeds = " / ".join(f"{f:.4f}" for f in t["f1"])
        print(
            f"| {t['combination']} | {t['acc_mean']:.4f} | {t['p_mean']:.4f} | {t['r_mean']:.4f} | "
            f"**{t['f1_mean']:.4f} ± {t['f1_std']:.4f}** | {seeds} | {t['wall_mean']:.0f} s |"
        )
    a.results.parent.mkdir(parents=True, exist_ok=True)
    a.results.write_text(
        json.dumps(
            {
                "params": a.params,
                "graphs": str(a.graphs),
                "set": a.set,
                "seeds": a.seeds,
                "rows": rows,
                "table": table,
                "argv": sys.argv[1:],
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
