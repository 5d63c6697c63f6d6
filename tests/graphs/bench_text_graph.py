"""Throughput of parse + text_graph on synthetic tweet-like sentences (a measurement, not a test).

Run: ``python tests/graphs/bench_text_graph.py [N] [batch_size]`` — prints samples/s as JSON.
(Not collected by pytest: the file name does not start with ``test_``; move to ``bench/`` if wanted.)
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from mmre_cli.data.instance import Entity, Instance
from mmre_cli.graphs.nlp import load_spacy, parse_pretokenized
from mmre_cli.graphs.textual import text_graph

WORDS = (
    "the",
    "a",
    "new",
    "game",
    "with",
    "in",
    "at",
    "is",
    "was",
    "great",
    "today",
    "team",
    "match",
    "visited",
    "city",
    "president",
    "won",
    "my",
    "love",
    "photo",
    "this",
    "of",
    "and",
    "for",
)
NAMES = ("Obama", "Paris", "Messi", "Barcelona", "Taylor", "Swift", "NASA", "London", "Apple", "Trump")
SPECIAL = ("RT", "@user", ":", "#NBA", "https://t.co/xyz", "!", "...", "😀", "#tbt")


def synthetic(n: int, seed: int = 0) -> list[Instance]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        length = int(rng.integers(12, 30))
        toks = [str(rng.choice(WORDS)) for _ in range(length)]
        for _ in range(2):
            toks[int(rng.integers(length))] = str(rng.choice(SPECIAL))
        h, t = rng.choice(length - 1, 2, replace=False)
        toks[h], toks[t] = str(rng.choice(NAMES)), str(rng.choice(NAMES))
        out.append(
            Instance(
                f"b-{k:06d}",
                "bench",
                tuple(toks),
                Entity(toks[h], int(h), int(h) + 1),
                Entity(toks[t], int(t), int(t) + 1),
                "None",
            )
        )
    return out


def main(n: int = 2000, batch_size: int = 256) -> dict:
    insts = synthetic(n)
    t0 = time.perf_counter()
    nlp = load_spacy()
    t_load = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    nodes = edges = 0
    for inst, doc in zip(insts, parse_pretokenized(nlp, (i.tokens for i in insts), batch_size=batch_size)):
        g = text_graph(inst.sample_id, inst, doc)
        nodes += g.num_nodes
        edges += g.num_edges
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    tokens = sum(len(i.tokens) for i in insts)
    return {
        "samples": n,
        "tokens": tokens,
        "seconds": round(dt, 2),
        "samples_per_s": round(n / dt, 1),
        "cpu_s": round(cpu, 2),
        "samples_per_cpu_s": round(n / cpu, 1),
        "tokens_per_s": round(tokens / dt),
        "load_s": round(t_load, 2),
        "mean_nodes": nodes / n,
        "mean_edges": edges / n,
        "model": nlp.meta.get("name"),
        "batch_size": batch_size,
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    print(json.dumps(main(*args)))
