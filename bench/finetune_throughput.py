"""Fine-tuning throughput: mmre's text encoder path against the bare encoder's forward+backward.

On the same MNRE-2 train sentences (entity-marked, the caption as second segment) it times:

* **bare** — the whole pretrained encoder, forward + backward, on shuffled batches padded to the
  longest row (what a plain fine-tuning loop does every epoch);
* **mmre** — :class:`mmre_cli.learn.text_encoder.TextNodeEncoder` as train-gnn runs it: length
  buckets (:class:`mmre_cli.graphs.pyg.LengthBuckets`), only the top ``--train-layers`` trained,
  the frozen lower layers' states cached — timed on the *second* epoch (the first fills the
  cache; its time is reported too).

Both compute the same marker-state loss (a linear probe on the head/tail marker states) so that
backward runs through the same layers.

    python bench/finetune_throughput.py --encoder minilm --n 512 --train-layers 2
    python bench/finetune_throughput.py --encoder mpnet --n 256 --train-layers 2 --caption cogvlm

Needs ../shared/data/mnre (MNRE-2 text + captions). Prints one JSON line; ``--out`` appends it.
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MNRE = ROOT.parent / "shared" / "data" / "mnre"


def load(n: int, captioner: str | None):
    rows = [ast.literal_eval(line) for line in (MNRE / "v2_text" / "ours_train.txt").open(encoding="utf-8")][:n]
    caps = {}
    if captioner:
        for line in (MNRE / "v2_captions" / f"{captioner}_train.txt").open(encoding="utf-8"):
            rec = ast.literal_eval(line)
            caps[rec["img_id"]] = rec["text"]
    words = [r["token"] for r in rows]
    heads = [tuple(r["h"]["pos"]) for r in rows]
    tails = [tuple(r["t"]["pos"]) for r in rows]
    captions = [caps.get(r["img_id"]) for r in rows]
    return words, heads, tails, captions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train-layers", type=int, default=2)
    ap.add_argument("--caption", default="cogvlm", help="captioner; '' for none")
    ap.add_argument("--caption-tokens", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="32", choices=["32", "bf16"], help="mmre path's precision")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from mmre_cli.graphs.pyg import LengthBuckets
    from mmre_cli.learn.text_encoder import TextNodeEncoder

    words, heads, tails, captions = load(args.n, args.caption or None)
    k = args.caption_tokens if args.caption else 0

    def epoch(enc, batches, probe):
        t = time.perf_counter()
        for idx in batches:
            _, _, ents = enc.encode(
                [words[i] for i in idx], [heads[i] for i in idx], [tails[i] for i in idx], [captions[i] for i in idx]
            )
            loss = probe(ents.reshape(len(idx), -1)).logsumexp(-1).mean()
            loss.backward()
        return time.perf_counter() - t

    bare = TextNodeEncoder(encoder=args.encoder, caption_tokens=k, train_layers=None).train()  # fp32, all layers
    probe = torch.nn.Linear(2 * bare.dim, 23)
    rng = np.random.default_rng(0)
    perm = rng.permutation(args.n)
    plain = [perm[i : i + args.batch].tolist() for i in range(0, args.n, args.batch)]
    t_bare = epoch(bare, plain, probe)
    del bare

    mine = TextNodeEncoder(
        encoder=args.encoder, caption_tokens=k, train_layers=args.train_layers, precision=args.precision
    ).train()
    lengths = [len(w) + (len(str(c).split()) if c else 0) for w, c in zip(words, captions)]
    sampler = LengthBuckets(lengths, args.batch, shuffle=True, seed=0)
    t_first = epoch(mine, list(iter(sampler)), probe)
    t_second = epoch(mine, list(iter(sampler)), probe)
    res = {
        "encoder": args.encoder,
        "n": args.n,
        "batch": args.batch,
        "train_layers": args.train_layers,
        "captioner": args.caption or None,
        "caption_tokens": k,
        "threads": args.threads,
        "precision": args.precision,
        "bare_fwd_bwd_per_s": round(args.n / t_bare, 2),
        "mmre_first_epoch_per_s": round(args.n / t_first, 2),
        "mmre_cached_epoch_per_s": round(args.n / t_second, 2),
        "speedup": round(t_bare / t_second, 2),
    }
    print(json.dumps(res))
    if args.out:
        with args.out.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
