"""Latency of ``mmre predict`` on CPU: warm per-instance time and cold start.

* **warm** — one :class:`mmre_cli.predict.predictor.Predictor` (models loaded once, as ``--batch`` does),
  one untimed warm-up pass, then ``--repeats`` timed passes over N instances (sample val+train
  lines, with captions) for each chunk size in ``--chunks``: per instance = pass time / N
  (load excluded; the image check, tokenising, features, graphs, edits, diffusion and the GNN
  included), and per chunk = the median time of one chunk.
* **cold** — wall time of ``mmre predict IMAGE TEXT --head --tail --image-caption --json -q``
  in a fresh process (process start to first result), median of ``--cold-runs`` runs.

Targets (MiniLM + spaCy sm sample model): warm ≤ 150 ms/instance, cold ≤ 12 s.

Usage::

    python bench/predict_latency.py --model out/model [--n 64] [--repeats 3] [--cold-runs 3]

Writes ``bench/results/predict_latency.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def sample_queries(n: int) -> list[dict]:
    """``n`` instances from the sample (val then train, cycled): image, text, head, tail, caption."""
    items = []
    for split in ("val", "train"):
        caps = {
            d["img_id"]: d["text"]
            for d in map(ast.literal_eval, (SAMPLE / f"captions_{split}.txt").read_text().splitlines())
        }
        for line in (SAMPLE / f"ours_{split}.txt").read_text().splitlines():
            rec = ast.literal_eval(line)
            items.append(
                {
                    "image": str(SAMPLE / "img_org" / split / rec["img_id"]),
                    "text": " ".join(rec["token"]),
                    "head": rec["h"]["name"],
                    "tail": rec["t"]["name"],
                    "caption": caps.get(rec["img_id"]),
                }
            )
    return [items[i % len(items)] for i in range(n)]


def warm(model: Path, n: int, repeats: int, chunks: list[int]) -> dict:
    warnings.filterwarnings("ignore")
    from mmre_cli.predict.predictor import Predictor
    from mmre_cli.predict.queries import Query

    records = sample_queries(n)
    t0 = time.perf_counter()
    predictor = Predictor(model)
    load_s = time.perf_counter() - t0

    def queries():
        return [
            Query(text=r["text"], image=Path(r["image"]), head=r["head"], tail=r["tail"], caption=r["caption"])
            for r in records
        ]

    predictor.predict(queries())  # warm-up (lazy inits), not timed
    out = {"load_s": round(load_s, 3), "n": n, "repeats": repeats, "by_chunk": {}}
    for size in chunks:
        predictor.chunk_size = size
        per_instance, per_chunk = [], []
        for _ in range(repeats):
            qs = queries()
            t = time.perf_counter()
            items = []
            for i, q in enumerate(qs):
                items.extend(predictor.instances(q, i))
            starts = []
            for start in range(0, len(items), size):
                c0 = time.perf_counter()
                list(predictor.predict_instances(items[start : start + size]))
                starts.append(time.perf_counter() - c0)
            total = time.perf_counter() - t
            per_instance.append(total / n)
            per_chunk.extend(starts)
        out["by_chunk"][str(size)] = {
            "median_ms_per_instance": round(1000 * statistics.median(per_instance), 2),
            "median_ms_per_chunk": round(1000 * statistics.median(per_chunk), 2),
            "chunks_per_pass": len(per_chunk) // repeats,
        }
    return out


def cold(model: Path, runs: int) -> dict:
    rec = sample_queries(1)[0]
    exe = Path(sys.executable).with_name("mmre")
    cmd = [
        str(exe) if exe.exists() else "mmre",
        "predict",
        rec["image"],
        rec["text"],
        "--head",
        rec["head"],
        "--tail",
        rec["tail"],
        "--image-caption",
        rec["caption"],
        "--model",
        str(model),
        "--json",
        "-q",
    ]
    env = dict(os.environ, MMRE_OFFLINE="1", HF_HUB_OFFLINE="1")
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise SystemExit(f"cold run failed ({proc.returncode}): {proc.stderr[-500:]}")
    return {
        "runs": runs,
        "median_s": round(statistics.median(times), 2),
        "all_s": [round(x, 2) for x in times],
        "command": " ".join(cmd[1:]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=REPO / "out" / "model")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunks", default="64,16,1", help="chunk sizes for the warm passes (comma separated)")
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "predict_latency.json")
    args = ap.parse_args()
    if not (args.model / "pipeline.json").exists():
        raise SystemExit(f"{args.model}: no trained model; run `dvc repro` (or the stage commands) first")
    os.chdir(REPO)
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg_before": _loadavg(),
        "model": str(args.model),
        "torch_threads": os.environ.get("MMRE_TORCH_THREADS", "1"),
    }
    result["cold"] = cold(args.model, args.cold_runs)
    result["warm"] = warm(args.model, args.n, args.repeats, [int(c) for c in args.chunks.split(",")])
    result["loadavg_after"] = _loadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
