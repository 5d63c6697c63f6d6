"""Do the CogVLM captions carry relation signal a linear probe can find? (issue 4)

Frozen all-MiniLM-L6-v2 (``TextNodeEncoder``, special markers initialised from ``@``/``#``), one
feature row per MNRE-2 instance, a logistic-regression probe fitted on train and scored on val
with the peer metric (Acc over all; micro P/R/F1 over non-``None``). Three views:

* ``plain``:  ``[h_marker ; t_marker]`` hidden states of the marked sentence (768-d);
* ``cap``:    the same, with the first ``--cap-words`` caption words appended after ``[SEP]``
              in the *same* sequence (the caption as a second segment);
* ``capemb``: ``plain`` concatenated with the caption's sentence embedding
              (``MiniLMEncoder.encode_texts``, mean pooled, 384-d).

Features are cached as ``<out>/<view>.npz``; the probe is fitted for each ``--C``.

    python bench/caption_probe.py --views plain cap capemb     # ~25 min on 2 cores

Needs scikit-learn (``pip install scikit-learn``; not a dependency of mmre) and ``../shared``.
Last run: ``bench/results/caption_probe.txt``.
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path("../shared/data/mnre")


def load(split: str):
    rows = [ast.literal_eval(line) for line in open(ROOT / f"v2_text/ours_{split}.txt")]
    caps = {}
    for line in open(ROOT / f"v2_captions/cogvlm_{split}.txt"):
        d = ast.literal_eval(line)
        caps[d["img_id"]] = d["text"]
    return rows, caps


def marker_features(view: str, cap_words: int, rel2id: dict) -> dict:
    from mmre_cli.learn.text_encoder import TextNodeEncoder

    enc = TextNodeEncoder(markers="special", max_length=128 + cap_words if view == "cap" else 128).eval()
    out = {}
    for split, key in (("train", "tr"), ("val", "va")):
        rows, caps = load(split)
        feats, t0 = [], time.time()
        for i in range(0, len(rows), 64):
            toks, hs, ts = [], [], []
            for r in rows[i : i + 64]:
                words = list(r["token"])
                if view == "cap":
                    words = words + ["[SEP]"] + caps.get(r["img_id"], "").split()[:cap_words]
                toks.append(words)
                hs.append(tuple(r["h"]["pos"]))
                ts.append(tuple(r["t"]["pos"]))
            with torch.no_grad():
                feats.append(enc.encode(toks, hs, ts)[2].reshape(len(toks), -1))
        out["X" + key] = torch.cat(feats).numpy()
        out["y" + key] = np.array([rel2id[r["relation"]] for r in rows])
        print(f"{view} {split}: {out['X' + key].shape} in {time.time() - t0:.0f} s", flush=True)
    return out


def caption_embeddings(plain: dict) -> dict:
    from mmre_cli.features.minilm import MiniLMEncoder

    enc = MiniLMEncoder()
    out = dict(plain)
    for split, key in (("train", "tr"), ("val", "va")):
        rows, caps = load(split)
        ids = sorted(caps)
        emb = enc.encode_texts([caps[i] for i in ids])
        at = {i: k for k, i in enumerate(ids)}
        c = np.stack([emb[at[r["img_id"]]] if r["img_id"] in at else np.zeros(emb.shape[1]) for r in rows])
        out["X" + key] = np.concatenate([plain["X" + key], c], 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--views", nargs="+", default=["plain", "cap", "capemb"])
    ap.add_argument("--cap-words", type=int, default=64)
    ap.add_argument("--C", nargs="+", type=float, default=[0.005, 0.01, 0.02, 0.05, 0.2, 1.0])
    ap.add_argument("--out", default="/tmp/caption_probe")
    args = ap.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from mmre_cli.learn.metrics import peer_scores

    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rel2id = json.loads((ROOT / "v2_text/ours_rel2id.json").read_text())
    best = {}
    for view in args.views:
        path = out / f"{view}.npz"
        if not path.exists():
            if view == "capemb":
                base = out / "plain.npz"
                if not base.exists():
                    np.savez(base, **marker_features("plain", args.cap_words, rel2id))
                np.savez(path, **caption_embeddings(dict(np.load(base))))
            else:
                np.savez(path, **marker_features(view, args.cap_words, rel2id))
        d = np.load(path)
        scaler = StandardScaler().fit(d["Xtr"])
        for c in args.C:
            clf = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(d["Xtr"]), d["ytr"])
            m = peer_scores(clf.predict(scaler.transform(d["Xva"])), d["yva"], rel2id["None"])
            best[view] = max(best.get(view, 0.0), m["micro_f1"])
            print(
                f"{view:7s} C={c:<6} Acc {m['acc']:.4f} P {m['micro_p']:.4f} R {m['micro_r']:.4f} "
                f"F1 {m['micro_f1']:.4f}",
                flush=True,
            )
    print(json.dumps(best))  # best val micro-F1 over C, per view


if __name__ == "__main__":
    main()
