"""Collect fine-tuning runs into one markdown table: per configuration, val micro-F1 per seed, mean ± spread.

Each run is a folder ``RUNS/<name>/`` written by one ``mmre train-gnn`` + ``mmre evaluate``
pair: ``model/`` (its ``pipeline.json`` holds the effective params), ``eval/stats.json`` (the
metrics) and ``cmd.txt`` (the code's commit and the ``-S`` overrides it was started with, then
either start and end times, ``code C start T …`` / ``end T``, or the wall seconds, ``C -S …`` /
``wall S``). Runs whose effective ``train_gnn``/``data`` params differ only in ``train_gnn.seed``
form one row; the spread is the sample standard deviation over seeds (``-`` for one seed).

    python bench/finetune_table.py /work/runs/ft            # markdown on stdout
    python bench/finetune_table.py /work/runs/ft --json out.json
    python bench/finetune_table.py /work/runs/ft --same-code 415dcf2=661e284   # one row across two commits

``--same-code NEW=OLD`` counts runs of commit NEW as OLD's (for commits whose diff does not touch
training: say which in the table's caption); the row's ``code`` then lists both.

Reads only what the runs wrote; prints nothing it did not find.
"""

from __future__ import annotations

import argparse
import json
import statistics
from datetime import datetime
from pathlib import Path

from mmre_cli.params import DEFAULTS

#: params that tell configurations apart in the table (anything else that differs is shown too)
SHOWN = (
    "readout",
    "caption_pass",
    "caption_parts",
    "caption_tokens",
    "relation_text",
    "markers",
    "train_layers",
    "epochs",
    "encoder",
    "enc_lr",
)


def _run(folder: Path, same: dict[str, str] | None = None) -> dict | None:
    stats, pipe, cmd = folder / "eval" / "stats.json", folder / "model" / "pipeline.json", folder / "cmd.txt"
    if not (stats.is_file() and pipe.is_file() and cmd.is_file()):
        return None
    metrics = json.loads(stats.read_text())
    params = json.loads(pipe.read_text()).get("params", {})
    lines = cmd.read_text().split("\n")
    head = lines[0].split()
    minutes = None
    if head[:1] == ["code"]:  # "code COMMIT start ISO [graphs=G] -S ..." and a last line "end ISO"
        code, start, rest = head[1], head[3], head[4:]
        end = next((ln.split()[1] for ln in lines if ln.startswith("end ")), None)
        if end:
            minutes = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 60
    else:  # "COMMIT [--graphs G ...] -S ..." and a last line "wall SECONDS"
        code, rest = head[0], head[1:]
        wall = next((ln.split()[1] for ln in lines if ln.startswith("wall ")), None)
        minutes = float(wall) / 60 if wall else None
    graphs, kept, words = None, [], iter(rest)
    for w in words:  # the full train-gnn command (ninth session on): keep what changes the run
        if w in ("mmre", "train-gnn"):
            continue
        if w in ("--graphs", "--agent", "--out", "--caption-cache", "--params"):
            value = next(words, "")
            if w == "--graphs":
                graphs = value
            elif w == "--params":
                kept += [w, "/".join(Path(value).parts[-2:])]
            continue
        if w.startswith("graphs="):
            graphs = w.split("=", 1)[1]
            continue
        kept.append(w)
    overrides = " ".join(kept)
    tg = dict(params.get("train_gnn", {}))
    seed = tg.pop("seed", None)
    defaults = DEFAULTS["train_gnn"]  # a key added later, at its default, is the same run as before it existed
    tg = {k: v for k, v in tg.items() if k not in defaults or defaults[k] != v}
    data = params.get("data", {})
    return {
        "name": folder.name,
        "f1": float(metrics["micro_f1"]),
        "acc": float(metrics["acc"]),
        "seed": seed,
        "code": code,
        "overrides": overrides,
        "minutes": minutes,
        "graphs": graphs,
        "key": json.dumps(
            {
                "code": (same or {}).get(code, code),
                "train_gnn": tg,
                "pair_captions": tg.get("pair_captions", data.get("pair_captions")),
                "graphs": graphs,
            },
            sort_keys=True,
        ),
    }


def collect(root: Path, same: dict[str, str] | None = None) -> list[dict]:
    runs = [r for r in (_run(f, same) for f in sorted(root.iterdir()) if f.is_dir()) if r]
    rows: dict[str, list[dict]] = {}
    for r in runs:
        rows.setdefault(r["key"], []).append(r)
    out = []
    for key, group in rows.items():
        f1 = [r["f1"] for r in sorted(group, key=lambda r: r["seed"])]
        spec = json.loads(key)
        out.append(
            {
                "runs": [r["name"] for r in group],
                "seeds": sorted(r["seed"] for r in group),
                "f1": f1,
                "mean": statistics.mean(f1),
                "sd": statistics.stdev(f1) if len(f1) > 1 else None,
                "code": "+".join(sorted({r["code"] for r in group})),
                "captions": spec["pair_captions"],
                "graphs": spec["graphs"],
                "shown": {k: spec["train_gnn"].get(k) for k in SHOWN},
                "overrides": sorted(
                    {r["overrides"].replace(f"-S train_gnn.seed={r['seed']}", "").strip() for r in group}
                ),
                "minutes": [round(r["minutes"], 1) for r in group if r["minutes"] is not None],
            }
        )
    return sorted(out, key=lambda r: r["runs"][0])


def markdown(rows: list[dict]) -> str:
    lines = [
        "| runs | seeds | val micro-F1 per seed | mean ± sd | code | overrides | graphs | minutes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sd = "-" if r["sd"] is None else f"{r['sd']:.4f}"
        lines.append(
            f"| {', '.join(r['runs'])} | {', '.join(map(str, r['seeds']))} | "
            f"{' / '.join(f'{v:.4f}' for v in r['f1'])} | {r['mean']:.4f} ± {sd} | {r['code']} | "
            f"`{'; '.join(r['overrides'])}` | {r['graphs'] or '-'} | {', '.join(map(str, r['minutes']))} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--same-code",
        action="append",
        default=[],
        metavar="NEW=OLD",
        help="count runs of commit NEW as commit OLD's (a diff that does not touch training)",
    )
    args = ap.parse_args()
    rows = collect(args.root, dict(pair.split("=", 1) for pair in args.same_code))
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
