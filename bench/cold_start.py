"""Cold start of ``mmre predict`` and ``mmre serve`` as a ratio to ``python -c "import torch"``.

Issue 24's measure: in one run of this script, on this machine and its load of the moment,

* ``torch`` — wall of ``python -c "import torch"`` (the unit);
* ``predict`` — wall of ``mmre predict IMAGE TEXT --head --tail --image-caption --model M --json -q``
  from process start to exit (one sample line);
* ``serve`` — from starting ``mmre serve --model M --port P`` to the first ``POST /predict``
  answered 200 (time to first answer);

and, to say where the time goes, the floors a prediction cannot go under with this stack:

* ``torch+spacy`` — ``import torch`` plus loading the spaCy pipeline the text graph is parsed with;
* ``torch+spacy+pyg`` — the same plus ``import torch_geometric`` (its ``__init__`` imports every
  subpackage, ``torch._dynamo`` and ``sympy`` among them).

Each is the best of ``--runs`` fresh processes, taken in turns so that load drifts hit all alike.
Ratios are best ÷ best of ``torch``. Writes ``bench/results/cold_start_<date>.json``.

Usage::

    python bench/cold_start.py --model out/model [--runs 3] [--port 8765]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from predict_latency import sample_queries
from serve_load import _connect

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
ENV = dict(os.environ, MMRE_OFFLINE="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")

FLOORS = {
    "torch": "import torch",
    "torch+spacy": "import torch; from mmre_cli.graphs.nlp import load_spacy; load_spacy()",
    "torch+spacy+pyg": "import torch; from mmre_cli.graphs.nlp import load_spacy; load_spacy(); import torch_geometric",
}


def _wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} … failed ({proc.returncode}): {proc.stderr[-400:]}")
    return wall


def predict_cmd(model: Path) -> list[str]:
    q = sample_queries(1)[0]
    return [
        PY,
        "-m",
        "mmre_cli",
        "predict",
        q["image"],
        q["text"],
        "--head",
        q["head"],
        "--tail",
        q["tail"],
        "--image-caption",
        q["caption"],
        "--model",
        str(model),
        "--json",
        "-q",
    ]


def serve_first_answer(model: Path, port: int, limit: float = 300.0) -> float:
    """Seconds from starting ``mmre serve`` to its first ``POST /predict`` answered 200."""
    q = sample_queries(1)[0]
    body = json.dumps(
        {
            "text": q["text"],
            "head": q["head"],
            "tail": q["tail"],
            "caption": q["caption"],
            "image": Path(q["image"]).name,
        }
    ).encode()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [PY, "-m", "mmre_cli", "serve", "--model", str(model), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
        cwd=REPO,
    )
    try:
        while time.perf_counter() - t0 < limit:
            if proc.poll() is not None:
                raise SystemExit(f"mmre serve exited with {proc.returncode}: {proc.stderr.read().decode()[-400:]}")
            try:
                conn = _connect(f"http://127.0.0.1:{port}", 30)
                conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    return time.perf_counter() - t0
                raise SystemExit(f"POST /predict answered {resp.status}")
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"mmre serve gave no answer within {limit:g} s")
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model",
        type=Path,
        required=True,
        help="a model folder (the sample model: `mmre run params.yaml --out DIR` → DIR/model)",
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    times: dict[str, list[float]] = {k: [] for k in [*FLOORS, "predict", "serve"]}
    for _ in range(args.runs):
        for name, code in FLOORS.items():
            times[name].append(_wall([PY, "-c", code]))
        times["predict"].append(_wall(predict_cmd(args.model)))
        times["serve"].append(serve_first_answer(args.model, args.port))
    best = {k: round(min(v), 2) for k, v in times.items()}
    out = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/cold_start.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "loadavg_after": Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None,
        "best_s": best,
        "all_s": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "ratio_to_import_torch": {k: round(v / best["torch"], 2) for k, v in best.items()},
    }
    path = args.out or REPO / "bench" / "results" / f"cold_start_{out['date'][:10]}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    for k in best:
        print(f"{k:18s} {best[k]:6.2f} s  {out['ratio_to_import_torch'][k]:5.2f}x")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
