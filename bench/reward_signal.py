"""What the RL editor's reward would see if it came from a trained classifier (issue 26, item 2).

For each of the first ``--limit`` labelled graphs of a split, every node the editor may delete
(:func:`mmre_cli.graphs.pyg.protected_span_nodes` false) is deleted alone
(:func:`mmre_cli.graphs.refine.apply_edit_record`, which also records the deleted sentence words,
so a fine-tuned encoder has them masked out of its attention) and the classifier scores the
edited graph. Per node kind the log gives the mean change of the gold label's probability
:math:`\\Delta = p(y \\mid G \\setminus v) - p(y \\mid G)`, how often :math:`\\Delta > 0`, and how
often it pays more than one edit's cost under the editor's reward, :math:`\\Delta > \\mu/(\\lambda N)`
(``docs/method.md``), plus how often the deletion turns a wrong prediction right or a right one
wrong. With ``--by-text N`` it also lists the ``N`` token texts (lower-cased, at least
``--min-count`` deletions) whose deletion raises the gold probability most, and least, on average:
an editor sees no gold label at inference, so what it can learn is such an average over a kind of
node, not the best deletion of each instance. An editor rewarded by this classifier can only learn
deletions that this table says pay.

    MMRE_TORCH_THREADS=1 python bench/reward_signal.py --model runs/cpu/model --graphs runs/cpu/diffused

writes ``bench/results/reward_signal_<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="a train-gnn model folder (one model)")
    ap.add_argument("--graphs", type=Path, required=True, help="the refined graphs it was trained on")
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=300, help="graphs scored (the split's first, stored order)")
    ap.add_argument("--lam", type=float, default=None, help="editor's lambda (default: train_agent.lam)")
    ap.add_argument("--mu", type=float, default=None, help="editor's mu (default: train_agent.mu)")
    ap.add_argument("--by-text", type=int, default=0, help="list the N token texts whose deletion pays most/least")
    ap.add_argument("--min-count", type=int, default=15, help="--by-text: deletions a token text needs")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch
    from torch_geometric.data import Batch

    from mmre_cli.graphs.graph import NODE_KINDS
    from mmre_cli.graphs.pyg import graph_to_data, protected_span_nodes
    from mmre_cli.graphs.refine import apply_edit_record
    from mmre_cli.learn.checkpoint import load_checkpoint
    from mmre_cli.params import DEFAULTS
    from mmre_cli.pipeline.devices import cpu_threads
    from mmre_cli.pipeline.learning import graphs_by_split, needs_words

    cpu_threads()
    lam = args.lam if args.lam is not None else DEFAULTS["train_agent"]["lam"]
    mu = args.mu if args.mu is not None else DEFAULTS["train_agent"]["mu"]
    model, meta = load_checkpoint(args.model, "model")
    model.eval()
    words = needs_words(model)
    graphs = [g for g in graphs_by_split(args.graphs, [args.split])[args.split] if g.label >= 0][: args.limit]
    rows: dict[str, list[tuple[float, bool, bool, bool]]] = {}
    by_text: dict[str, list[float]] = {}
    t0 = time.time()
    for n, g in enumerate(graphs):
        free = [int(i) for i in np.flatnonzero(~protected_span_nodes(g))]
        variants = [g] + [apply_edit_record(g, {"deleted_nodes": [i]}) for i in free]
        batch = Batch.from_data_list([graph_to_data(v, words=words) for v in variants])
        with torch.no_grad():
            prob = torch.softmax(model(batch).float(), dim=-1)
        gold = prob[:, g.label].numpy()
        right = (prob.argmax(-1) == g.label).numpy()
        cost = mu / (lam * g.num_nodes)
        for j, i in enumerate(free, start=1):
            d = float(gold[j] - gold[0])
            kind = NODE_KINDS[g.node_kind[i]]
            rows.setdefault(kind, []).append(
                (d, d > cost, bool(right[j] and not right[0]), bool(right[0] and not right[j]))
            )
            if kind == "token":
                by_text.setdefault(g.node_text[i].lower(), []).append(d)
        if (n + 1) % 50 == 0:
            print(f"{n + 1}/{len(graphs)} graphs, {time.time() - t0:.0f} s", flush=True)
    kinds = {}
    for kind, r in sorted(rows.items()):
        a = np.asarray(r, float)
        kinds[kind] = {
            "deletions": len(r),
            "mean_delta": round(float(a[:, 0].mean()), 5),
            "share_delta_pos": round(float((a[:, 0] > 0).mean()), 4),
            "share_pays": round(float(a[:, 1].mean()), 4),
            "share_fixes": round(float(a[:, 2].mean()), 4),
            "share_breaks": round(float(a[:, 3].mean()), 4),
        }
    ranked = sorted(
        ((float(np.mean(v)), len(v), t) for t, v in by_text.items() if len(v) >= args.min_count), reverse=True
    )
    texts = [{"text": t, "deletions": n, "mean_delta": round(m, 5)} for m, n, t in ranked]
    log = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join(sys.argv),
        "model": str(args.model),
        "graphs": str(args.graphs),
        "split": args.split,
        "scored_graphs": len(graphs),
        "reads_words": words,
        "lam": lam,
        "mu": mu,
        "by_node_kind": kinds,
        "mean_cost_of_an_edit": round(float(np.mean([mu / (lam * g.num_nodes) for g in graphs])), 5),
        "token_texts_paying_most": texts[: args.by_text],
        "token_texts_paying_least": texts[::-1][: args.by_text],
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(kinds, indent=1))
    for row in texts[: args.by_text]:
        print(f"deleting {row['text']!r}: {row['mean_delta']:+.4f} on average over {row['deletions']}")
    out = args.out or Path(__file__).resolve().parent / "results" / f"reward_signal_{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(log, indent=2) + "\n")
    print(f"log: {out}")


if __name__ == "__main__":
    main()
