"""Benchmarks of the first three stages (issue 3): extract-features, build-graphs, merge-cmg.

Run from the repository root::

    python bench/first_stages.py            # full: 2048 instances, merge-cmg at 10k and 100k (~20 min on 2 busy cores)
    python bench/first_stages.py --quick    # 256 instances, merge-cmg at 2k and 20k

Prints a table and writes ``bench/results/first_stages.json``. Never run by pytest.

1. **extract-features overhead.** ``FeatureExtractor.chunk_rows`` (the stage's per-chunk work:
   encode the chunk's unique sentences, parse + encode + pool the captions, build the rows) over
   N instances, against the bare encoder on the same batches: ``encoder.encode_words`` on the
   chunk's unique token sequences plus on the caption words (parsed beforehand, outside the
   clock). Ratio = bare time / stage time (1.0 = no overhead; target >= 0.85).
2. **build-graphs throughput.** ``mmre_cli.pipeline.scene.chunk_graphs`` (spaCy parse of sentences
   and captions + graph building) over N >= 2000 instances: instances per second (target >= 200/s
   on 2 cores).
3. **merge-cmg peak memory.** Synthetic features/graphs artifacts of 10k and 100k instances
   (dim 32; sentences, captions and their parsed graphs replicated from ``data/sample`` with
   unique sample ids, token sequences and images, so owners are not shared), then
   ``stages.merge_cmg.run`` in a fresh subprocess per size; peak RSS from
   ``resource.getrusage(RUSAGE_SELF).ru_maxrss``. Target: the larger within 1.3x of the smaller.

Data for 1 and 2: the MNRE v2 val split, then train, up to N (``../shared/data/mnre``, with the
BLIP captions as the image's text view), else ``data/sample`` repeated with fresh ids.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mmre_cli.params import apply_overrides, load_params  # noqa: E402
from mmre_cli.reporting import NullReporter  # noqa: E402

SAMPLE = REPO / "data" / "sample"
SHARED_MNRE = REPO.parent / "shared" / "data" / "mnre"
RESULTS = REPO / "bench" / "results" / "first_stages.json"


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def base_params() -> dict:
    return load_params(REPO / "params.yaml")


# ---------------------------------------------------------------------------------------------
# data


def load_instances(n: int) -> tuple[list, str, dict]:
    """``(instances, description, params)``: n instances for benchmarks 1 and 2."""
    from mmre_cli.data.load import load_split

    params = base_params()
    text = SHARED_MNRE / "v2_text"
    if text.exists():
        captions = SHARED_MNRE / "v2_captions" / "BLIP_{split}.txt"
        params = apply_overrides(
            params, {"data.root": str(text), "data.captions": str(captions), "data.image_root": None}
        )
        out = []
        for split in ("val", "train"):
            insts, _ = load_split(text, split, captions=str(captions), image_policy="text-only")
            out.extend(insts)
            if len(out) >= n:
                break
        return out[:n], f"MNRE v2 val+train (first {n}), BLIP captions, no pixels", params
    params = apply_overrides(params, {"data.root": str(SAMPLE), "data.captions": str(SAMPLE / "captions_{split}.txt")})
    base = []
    for split in ("train", "val"):
        insts, _ = load_split(SAMPLE, split, captions=str(SAMPLE / "captions_{split}.txt"))
        base.extend(insts)
    out = [dataclasses.replace(base[i % len(base)], sample_id=f"rep-{i:06d}") for i in range(n)]
    return out, f"data/sample repeated to {n} (no ../shared)", params


def chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------------------------------------
# 1. extract-features vs the bare encoder


def bench_extract(instances: list, params: dict, repeats: int) -> dict:
    from mmre_cli.graphs.nlp import doc_words, parse_texts
    from mmre_cli.pipeline.features import FeatureExtractor
    from mmre_cli.pipeline.owners import caption_owner, text_owner

    params = apply_overrides(params, {"extract_features.encoder": "minilm", "extract_features.detector": "none"})
    cfg = params["extract_features"]
    size = int(cfg["shard_instances"])
    ex = FeatureExtractor(params, 0, NullReporter())
    enc = ex.encoder
    ex.chunk_rows(instances[:32])  # warm-up (threads, tokenizer caches)

    # the bare encoder's inputs, prepared outside the clock: the same dedup as the stage
    batches = []
    for chunk in chunks(instances, size):
        sents: dict[str, list[str]] = {}
        caps: dict[str, str] = {}
        for inst in chunk:
            sents.setdefault(text_owner(inst.tokens), list(inst.tokens))
            key = caption_owner(inst)
            if key is not None:
                caps.setdefault(key, inst.caption)
        words = [doc_words(d) for d in parse_texts(ex.nlp, list(caps.values()), batch_size=cfg["batch_size"])]
        batches.append((list(sents.values()), words))

    def cold() -> None:  # MiniLM caches context-free vectors of words it had to cut off or could not piece
        if isinstance(getattr(enc, "_alone_cache", None), dict):
            enc._alone_cache.clear()

    def stage_once() -> tuple[float, int]:
        cold()
        t0 = time.perf_counter()
        rows = 0
        for chunk in chunks(instances, size):
            rows += len(ex.chunk_rows(chunk).owner)
        return time.perf_counter() - t0, rows

    def bare_once() -> float:
        cold()
        t0 = time.perf_counter()
        for sents, words in batches:
            enc.encode_words(sents)
            if words:
                enc.encode_words(words)
        return time.perf_counter() - t0

    stage_t, bare_t, rows = [], [], 0
    for _ in range(repeats):  # alternate, keep the best of each (other jobs share the CPU)
        t, rows = stage_once()
        stage_t.append(t)
        bare_t.append(bare_once())
    n = len(instances)
    best_stage, best_bare = min(stage_t), min(bare_t)
    return {
        "instances": n,
        "chunk_instances": size,
        "encoder": enc.name,
        "dim": enc.dim,
        "feature_rows": rows,
        "unique_sentences": sum(len(s) for s, _ in batches),
        "captions": sum(len(w) for _, w in batches),
        "stage_seconds": stage_t,
        "bare_encoder_seconds": bare_t,
        "stage_instances_per_s": n / best_stage,
        "bare_instances_per_s": n / best_bare,
        "ratio_bare_over_stage": best_bare / best_stage,
        "target_ratio": 0.85,
        # each repeat times the stage then the bare encoder back to back: the median of those
        # paired ratios is less sensitive to other jobs than best-of-each
        "paired_ratios": [b / t for t, b in zip(stage_t, bare_t)],
        "median_paired_ratio": float(np.median([b / t for t, b in zip(stage_t, bare_t)])),
    }


# ---------------------------------------------------------------------------------------------
# 2. build-graphs


class _NoFeatures:
    """``OwnerFeatures`` without rows: text and caption graphs only (no pixels in this bench)."""

    dim = 0

    def units(self, owner, prefix):  # noqa: ANN001
        return []

    def get(self, owner, unit):  # noqa: ANN001
        return None


def bench_build_graphs(instances: list, params: dict, repeats: int) -> dict:
    """Instances/s of chunk_graphs, text graphs only (the target's "for text") and with captions."""
    from mmre_cli.graphs.nlp import load_spacy
    from mmre_cli.pipeline.scene import chunk_graphs

    size = int(params["extract_features"]["shard_instances"])
    nlp = load_spacy(params["build_graphs"]["spacy_model"])
    out = {}
    for label, with_captions in (("text_only", False), ("text_and_captions", True)):
        cfg = {**params["build_graphs"], "caption_graph": with_captions}
        chunk_graphs(instances[:32], _NoFeatures(), nlp, cfg)  # warm-up
        times, graphs = [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            graphs = sum(len(chunk_graphs(c, _NoFeatures(), nlp, cfg)) for c in chunks(instances, size))
            times.append(time.perf_counter() - t0)
        out[label] = {"graphs": graphs, "seconds": times, "instances_per_s": len(instances) / min(times)}
    n = len(instances)
    return {
        "instances": n,
        **out,
        "instances_per_s": out["text_only"]["instances_per_s"],
        "spacy_model": nlp.meta.get("name", "?"),
        "target_per_s": 200,
    }


# ---------------------------------------------------------------------------------------------
# 3. merge-cmg peak memory on synthetic artifacts


def make_synthetic(root: Path, n: int, dim: int = 32, chunk: int = 2048, seed: int = 0) -> tuple[Path, Path]:
    """Features + graphs artifacts of n instances, shaped as extract-features/build-graphs write them."""
    from mmre_cli.data.load import load_split
    from mmre_cli.data.locate import resolve_label_map
    from mmre_cli.graphs.nlp import load_spacy
    from mmre_cli.pipeline.owners import caption_owner, text_owner
    from mmre_cli.pipeline.scene import chunk_graphs
    from mmre_cli.store.tables import features_to_table, instances_to_table
    from mmre_cli.store.writers import ArtifactWriter

    params = base_params()
    templates = []
    for split in ("train", "val"):
        insts, _ = load_split(SAMPLE, split, captions=str(SAMPLE / "captions_{split}.txt"))
        templates.extend(insts)
    nlp = load_spacy(params["build_graphs"]["spacy_model"])
    # one chunk per template: its text graph first, then its caption graph
    tgraphs = [chunk_graphs([t], _NoFeatures(), nlp, params["build_graphs"]) for t in templates]
    labels, _ = resolve_label_map(SAMPLE, None, None)
    rng = np.random.default_rng(seed)
    fdir, gdir = root / "features", root / "graphs"
    fw = ArtifactWriter(
        fdir,
        stage="extract_features",
        encoder="synthetic",
        dim=dim,
        params_hash="synthetic",
        max_rows_per_shard=None,
        max_bytes_per_shard=None,
        info={"encoder": "synthetic", "labels": list(labels.labels), "none_label": labels.none_label},
    )
    gw_art = ArtifactWriter(gdir, stage="build_graphs", dim=0, params_hash="synthetic-graphs")
    with fw, gw_art:
        samples, features = fw.table("samples"), fw.table("features")
        gw = gw_art.graph_writer(max_graphs_per_shard=1 << 30, max_nodes_per_shard=1 << 40, max_edges_per_shard=1 << 40)
        for start in range(0, n, chunk):
            insts, texts, caps = [], [], []
            owner, unit, kind, text = [], [], [], []
            for i in range(start, min(n, start + chunk)):
                j = i % len(templates)
                t = templates[j]
                sid = f"syn-{i:07d}"
                tokens = t.tokens[:-1] + (f"{t.tokens[-1]}~{i}",)  # a unique sentence: its own owner
                inst = dataclasses.replace(t, sample_id=sid, tokens=tokens, img_id=f"syn_{i:07d}.png", image_path=None)
                insts.append(inst)
                tg, cg = tgraphs[j][0], tgraphs[j][1:]
                texts.append(dataclasses.replace(tg, graph_id=f"{sid}:text", meta={**tg.meta, "sample_id": sid}))
                to = text_owner(tokens)
                for k, w in enumerate(tokens):
                    owner.append(to), unit.append(f"token:{k}"), kind.append("token"), text.append(w)
                for role, ent in (("head", inst.head), ("tail", inst.tail)):
                    owner.append(sid), unit.append(f"entity:{role}"), kind.append("entity"), text.append(ent.name)
                co = caption_owner(inst)
                if co is not None and cg:
                    g = cg[0]
                    caps.append(dataclasses.replace(g, graph_id=co))
                    for k, w in enumerate(g.node_text):
                        owner.append(co), unit.append(f"caption:{k}"), kind.append("caption_phrase"), text.append(w)
            emb = rng.standard_normal((len(owner), dim)).astype(np.float32)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            samples.write(instances_to_table(insts, lambda rel: labels.id(rel) if rel is not None else -1))
            features.write(
                features_to_table(
                    owner, unit, kind, emb, texts=text, boxes=np.full((len(owner), 4), np.nan, np.float32)
                )
            )
            samples.roll(allow_empty=True)
            features.roll(allow_empty=True)
            gw.write(texts + caps)
            gw.roll()
    return fdir, gdir


MERGE_CHILD = """
import json, resource, sys, time

def vm_hwm_kib():  # this process's own peak RSS (new mm after exec; ru_maxrss also counts the forking parent)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1

from pathlib import Path
sys.path.insert(0, sys.argv[4])
from mmre_cli.params import load_params
from stages import merge_cmg
params = load_params(Path(sys.argv[4]) / "params.yaml")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
stats = merge_cmg.run(features=Path(sys.argv[1]), graphs=Path(sys.argv[2]), out=Path(sys.argv[3]), params=params)
secs = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"maxrss_kib": peak, "maxrss_after_imports_kib": before, "vmhwm_kib": vm_hwm_kib(), "seconds": secs,
                  "graphs": stats["graphs"], "mean_nodes": stats.get("mean_nodes"),
                  "mean_edges": stats.get("mean_edges")}))
"""


def bench_merge_memory(sizes: list[int], workdir: Path) -> dict:
    out = {}
    for n in sizes:
        root = workdir / f"syn-{n}"
        t0 = time.perf_counter()  # generated in a child too, so this process stays small
        subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--generate", str(root), str(n)], check=True, cwd=str(REPO)
        )
        fdir, gdir = root / "features", root / "graphs"
        gen = time.perf_counter() - t0
        res = subprocess.run(
            [sys.executable, "-c", MERGE_CHILD, str(fdir), str(gdir), str(root / "cmg"), str(REPO)],
            capture_output=True,
            text=True,
            cwd=str(REPO),
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"merge-cmg child failed for n={n}:\n{res.stderr[-3000:]}")
        rec = json.loads(res.stdout.strip().splitlines()[-1])
        rec.update(
            instances=n,
            generate_seconds=gen,
            instances_per_s=n / rec["seconds"],
            maxrss_mib=rec["maxrss_kib"] / 1024,
            vmhwm_mib=rec["vmhwm_kib"] / 1024,
            loadavg_after=loadavg(),
        )
        out[str(n)] = rec
        print(
            f"  merge-cmg n={n}: peak RSS {rec['maxrss_mib']:.0f} MiB (VmHWM {rec['vmhwm_mib']:.0f}), "
            f"{rec['seconds']:.1f} s "
            f"({rec['instances_per_s']:.0f}/s), generated in {gen:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    small, large = str(sizes[0]), str(sizes[-1])
    return {
        "sizes": out,
        "ratio_large_over_small": out[large]["maxrss_kib"] / out[small]["maxrss_kib"],
        "vmhwm_ratio_large_over_small": out[large]["vmhwm_kib"] / out[small]["vmhwm_kib"],
        "target_ratio": 1.3,
        "dim": 32,
    }


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run, not for the README)")
    ap.add_argument("--n", type=int, default=None, help="instances for benchmarks 1 and 2 (default 2048; quick 256)")
    ap.add_argument("--sizes", type=int, nargs=2, default=None, help="merge-cmg sizes (default 10000 100000)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["extract", "graphs", "merge"])
    ap.add_argument("--workdir", type=Path, default=None, help="where synthetic artifacts go (default: a temp dir)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of 1 and 2, best kept (default 3)")
    ap.add_argument("--generate", nargs=2, metavar=("DIR", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.generate:  # internal: the synthetic artifacts, in a child process
        make_synthetic(Path(args.generate[0]), int(args.generate[1]))
        return 0
    n = args.n or (256 if args.quick else 2048)
    sizes = args.sizes or ([2000, 20000] if args.quick else [10000, 100000])
    repeats = args.repeats

    result: dict = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python bench/first_stages.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "loadavg_start": loadavg(),
    }
    # merge-cmg first, while this process is small: a child's ru_maxrss includes the RSS of the
    # process it was forked from (Linux keeps the old mm's high-water mark across execve)
    if "merge" not in args.skip:
        print(f"[3] merge-cmg peak RSS at {sizes} synthetic instances ...", file=sys.stderr, flush=True)
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
            result["merge_cmg"] = bench_merge_memory(sizes, args.workdir)
        else:
            with tempfile.TemporaryDirectory(prefix="mmre-bench-") as tmp:
                result["merge_cmg"] = bench_merge_memory(sizes, Path(tmp))
    import torch

    result["machine"].update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    instances, desc, params = load_instances(n) if {"extract", "graphs"} - set(args.skip) else ([], "", {})
    result["data"] = desc
    if "extract" not in args.skip:
        print(f"[1] extract-features vs bare encoder on {len(instances)} instances ...", file=sys.stderr, flush=True)
        result["extract_features"] = bench_extract(instances, params, repeats)
        result["extract_features"]["loadavg_after"] = loadavg()
    if "graphs" not in args.skip:
        print(f"[2] build-graphs chunk_graphs on {len(instances)} instances ...", file=sys.stderr, flush=True)
        result["build_graphs"] = bench_build_graphs(instances, params, repeats)
        result["build_graphs"]["loadavg_after"] = loadavg()
    result["loadavg_end"] = loadavg()

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")

    rows = [("benchmark", "measured", "target")]
    if "extract_features" in result:
        e = result["extract_features"]
        rows.append(
            (
                f"extract-features: stage {e['stage_instances_per_s']:.1f}/s, bare encoder "
                f"{e['bare_instances_per_s']:.1f}/s ({e['instances']} inst)",
                f"ratio {e['ratio_bare_over_stage']:.3f} (median paired {e['median_paired_ratio']:.3f})",
                ">= 0.85",
            )
        )
    if "build_graphs" in result:
        b = result["build_graphs"]
        rows.append(
            (
                f"build-graphs text graphs, parse+build ({b['instances']} inst)",
                f"{b['text_only']['instances_per_s']:.0f}/s",
                ">= 200/s",
            )
        )
        rows.append(
            (
                f"build-graphs text + caption graphs ({b['instances']} inst)",
                f"{b['text_and_captions']['instances_per_s']:.0f}/s",
                "",
            )
        )
    if "merge_cmg" in result:
        m = result["merge_cmg"]
        for k, v in m["sizes"].items():
            rows.append(
                (
                    f"merge-cmg peak RSS at {int(k):,} instances ({v['seconds']:.0f} s, {v['instances_per_s']:.0f}/s)",
                    f"{v['maxrss_mib']:.0f} MiB (VmHWM {v['vmhwm_mib']:.0f})",
                    "",
                )
            )
        rows.append(
            (
                "merge-cmg peak RSS large / small",
                f"{m['ratio_large_over_small']:.3f} (VmHWM {m['vmhwm_ratio_large_over_small']:.3f})",
                "<= 1.3",
            )
        )
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, width)))
        if i == 0:
            print("  ".join("-" * w for w in width))
    print(f"load average: start {result['loadavg_start']} / end {result['loadavg_end']}")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
