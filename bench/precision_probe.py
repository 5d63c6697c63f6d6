"""Is bfloat16 autocast a win on this CPU? MiniLM forward+backward at float32 and under bf16 autocast.

``train_gnn.precision: auto`` picks bf16 only where oneDNN (or the GPU) runs it natively; this
times the difference on the machine at hand: one batch of ``--batch`` random word-piece rows of
``--length`` pieces through all-MiniLM-L6-v2 (``transformers.AutoModel``), loss = sum of the last
hidden states, ``--repeats`` times per precision, at ``--threads`` torch threads. Prints one JSON
line (``--out`` appends it): the CPU capability torch reports, whether bf16 is native, and the
seconds per step for each precision.

    python bench/precision_probe.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    from transformers import AutoModel

    from mmre_cli.features.minilm import resolve_minilm_dir
    from mmre_cli.learn.precision import bf16_is_native

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = AutoModel.from_pretrained(str(resolve_minilm_dir(None)))
    ids = torch.randint(1000, 20000, (a.batch, a.length))
    seconds = {}
    for precision in ("32", "bf16"):
        runs = []
        for _ in range(a.repeats):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                hidden = model(input_ids=ids).last_hidden_state
            hidden.float().sum().backward()
            runs.append(time.perf_counter() - t0)
        seconds[precision] = {"median_s": round(statistics.median(runs), 3), "runs_s": [round(r, 3) for r in runs]}
    row = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "processor": platform.processor(),
        "bf16_native": bf16_is_native("cpu"),
        "batch": a.batch,
        "length": a.length,
        "threads": a.threads,
        "seconds": seconds,
        "bf16_over_fp32": round(seconds["bf16"]["median_s"] / seconds["32"]["median_s"], 2),
    }
    print(json.dumps(row))
    if a.out:
        with a.out.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
