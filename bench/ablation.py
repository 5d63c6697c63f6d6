"""The paper's ablations on one split, every variant over several seeds, from existing pipeline outputs.

Given a finished run (features → cmg → agent → diffused, e.g. of `configs/mnre_captions.yaml`),
this reruns only what each variant changes, with the same params file:

* full            — diffuse with the editor (``--agent``) and diffusion, RelationGNN
* w/o RL          — diffuse with train_agent.enabled=false (diffusion only), RelationGNN
* w/o diffusion   — diffuse with diffuse.enabled=false (editor only), RelationGNN
* w/o RL, w/o diffusion — the merged CMGs as they are, RelationGNN
* w/o GNN         — the full variant's graphs, PooledMLP (train_gnn.model=pooled)
* full, learned relevance — diffuse with diffuse.relevance=editor (the editor's deletion scores as
  the prior instead of the cosine to the entity pair), RelationGNN (not in the default set)

Each variant trains the classifier with seeds S, S+1, …, S+n-1 (``--seeds``; the editor is the
one in ``--agent``, trained once) and is scored on ``--split`` (default val) with
``mmre evaluate`` (peer metric: micro-F1 over non-None). Rows already scored are reused, so a
killed run resumes where it stopped. The table (mean ± population std per variant) goes to stdout
and to ``--out`` (JSON).

    python bench/ablation.py --params configs/mnre_captions.yaml --run runs/mnre --epochs 15
    # another editor, e.g. trained with rounds=2: only the variants that read the editor
    python bench/ablation.py --params configs/mnre_captions.yaml --run runs/mnre \\
        --agent runs/mnre/agent_rounds --tag rounds --variants full no_diffusion
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

VARIANTS = {  # name: (label, graphs, classifier)
    "full": ("full", "full", "gnn"),
    "no_rl": ("w/o RL", "no_rl", "gnn"),
    "no_diffusion": ("w/o diffusion", "no_diffusion", "gnn"),
    "no_both": ("w/o RL, w/o diffusion", "cmg", "gnn"),
    "no_gnn": ("w/o GNN (pooled MLP)", "full", "pooled"),
    "editor_relevance": ("full, learned relevance", "editor_relevance", "gnn"),
}
#: the diffuse switch that makes each derived graph set from the merged CMGs
DIFFUSE_FLAGS = {
    "full": [],
    "no_rl": ["-S", "train_agent.enabled=false"],
    "no_diffusion": ["-S", "diffuse.enabled=false"],
    "editor_relevance": ["-S", "diffuse.relevance=editor"],
}


def mmre(*args: str) -> None:
    subprocess.run(["mmre", *args, "-q"], check=True, stdout=subprocess.DEVNULL)  # tables: we print our own


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", required=True)
    ap.add_argument("--run", type=Path, required=True, help="folder holding cmg/ and agent/")
    ap.add_argument("--agent", type=Path, default=None, help="editor folder (default RUN/agent)")
    ap.add_argument("--tag", default="", help="suffix of this editor's folders under RUN (default: none)")
    ap.add_argument(
        "--variants", nargs="+", default=[v for v in VARIANTS if v != "editor_relevance"], choices=list(VARIANTS)
    )
    ap.add_argument("--split", default="val")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--seeds", type=int, default=3, help="classifier seeds per variant")
    ap.add_argument("-S", "--set", action="append", default=[], help="extra train-gnn param, key=value")
    ap.add_argument("--out", type=Path, default=Path("bench/results/ablation.json"))
    a = ap.parse_args()
    run, p = a.run, ["--params", a.params]
    agent = a.agent or run / "agent"
    tag = f"_{a.tag}" if a.tag else ""
    train = ["-S", f"train_gnn.epochs={a.epochs}", "-S", f"train_gnn.patience={a.patience}"]
    for kv in a.set:
        train += ["-S", kv]

    needed = {VARIANTS[v][1] for v in a.variants}
    graphs = {"cmg": run / "cmg"}
    for source in sorted(needed - {"cmg"}):
        graphs[source] = run / f"ablation{tag}_{source}"
        if not (graphs[source] / "manifest.json").exists():
            mmre(
                "diffuse",
                *p,
                "--cmg",
                str(run / "cmg"),
                "--agent",
                str(agent),
                "--out",
                str(graphs[source]),
                *DIFFUSE_FLAGS[source],
            )

    rows = []
    for name in a.variants:
        label, source, model = VARIANTS[name]
        for seed in range(a.seed, a.seed + a.seeds):
            stem = f"{source if source == 'cmg' else source + tag}_{model}_{seed}"
            model_dir, ev = run / f"ablation_model_{stem}", run / f"ablation_eval_{stem}"
            seconds = None
            if not (ev / "stats.json").exists():
                t0 = time.time()
                mmre(
                    "train-gnn",
                    *p,
                    "--graphs",
                    str(graphs[source]),
                    "--agent",
                    str(agent),
                    "--out",
                    str(model_dir),
                    *train,
                    "-S",
                    f"train_gnn.model={model}",
                    "-S",
                    f"train_gnn.seed={seed}",
                )
                seconds = round(time.time() - t0, 1)
                mmre(
                    "evaluate",
                    *p,
                    "--model",
                    str(model_dir),
                    "--graphs",
                    str(graphs[source]),
                    "--out",
                    str(ev),
                    "--split",
                    a.split,
                )
            m = json.loads((ev / "stats.json").read_text())
            rows.append(
                {
                    "variant": label,
                    "key": name,
                    "graphs": str(graphs[source]),
                    "model": model,
                    "seed": seed,
                    "acc": m["acc"],
                    "p": m["micro_p"],
                    "r": m["micro_r"],
                    "f1": m["micro_f1"],
                    "train_seconds": seconds,
                }
            )
            print(
                f"{label:24s} seed {seed}  Acc {m['acc']:.4f}  P {m['micro_p']:.4f}  R {m['micro_r']:.4f}  "
                f"F1 {m['micro_f1']:.4f}  ({seconds if seconds is not None else 'cached'} s)",
                flush=True,
            )

    summary = {
        "split": a.split,
        "params": a.params,
        "agent": str(agent),
        "extra": a.set,
        "epochs": a.epochs,
        "patience": a.patience,
        "rows": rows,
        "variants": {},
    }
    print(f"\n{'variant':24s} micro-F1 mean ± std over {a.seeds} seeds")
    for name in a.variants:
        f1s = [r["f1"] for r in rows if r["key"] == name]
        mean, std = statistics.mean(f1s), statistics.pstdev(f1s)
        summary["variants"][name] = {"label": VARIANTS[name][0], "f1_mean": mean, "f1_std": std, "f1": f1s}
        print(f"{VARIANTS[name][0]:24s} {mean:.4f} ± {std:.4f}   ({' / '.join(f'{f:.4f}' for f in f1s)})")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
