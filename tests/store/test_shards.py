"""ShardWriter / ArtifactWriter / GraphWriter and the streaming readers."""

from __future__ import annotations

import gc
import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmre_cli.errors import InputError
from mmre_cli.store import (
    ArtifactWriter,
    ShardWriter,
    features_to_table,
    iter_batches,
    iter_graphs,
    num_rows,
    read_manifest,
    read_table,
    table_schema,
    validate,
)
from mmre_cli.store.shards import GraphWriter, list_shard_files

from .conftest import assert_graphs_equal, make_graphs


def feats(start: int, stop: int, dim: int = 8) -> pa.Table:
    """Deterministic features rows start..stop-1 (row i has emb = i + arange(dim)/10)."""
    idx = np.arange(start, stop)
    emb = (idx[:, None] + np.arange(dim)[None, :] / 10).astype(np.float32)
    return features_to_table(
        [f"s{i:06d}" for i in idx], [f"token:{i % 5}" for i in idx], ["token"] * len(idx), emb,
        texts=[f"t{i}" for i in idx],
    )


def digests(d) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


def write_feats(out, total=1000, chunk=7, max_rows=128, **kw):
    with ArtifactWriter(out, stage="features", encoder="enc", dim=8, params_hash="h",
                        max_rows_per_shard=max_rows, **kw) as art:
        for a in range(0, total, chunk):
            art.write("features", feats(a, min(a + chunk, total)))
    return read_manifest(out)


def test_rolls_bounded_shards_and_manifest(tmp_path):
    m = write_feats(tmp_path / "a")
    entry = m["tables"]["features"]
    assert entry["num_rows"] == 1000
    assert [s["file"] for s in entry["shards"]] == [f"features-{i:05d}.parquet" for i in range(8)]
    assert [s["num_rows"] for s in entry["shards"]] == [128] * 7 + [104]
    for s in entry["shards"]:
        p = tmp_path / "a" / s["file"]
        assert pq.ParquetFile(p).metadata.num_rows == s["num_rows"]
        assert hashlib.sha256(p.read_bytes()).hexdigest() == s["sha256"]
        assert p.stat().st_size == s["bytes"]
    assert (m["stage"], m["encoder"], m["dim"], m["params_hash"]) == ("features", "enc", 8, "h")
    assert num_rows(tmp_path / "a", "features") == 1000
    assert validate(tmp_path / "a") == []


def test_byte_identical_output(tmp_path):
    write_feats(tmp_path / "a", chunk=7)
    write_feats(tmp_path / "b", chunk=7)
    write_feats(tmp_path / "c", chunk=300)  # different write() chunking, same shards
    da, db, dc = digests(tmp_path / "a"), digests(tmp_path / "b"), digests(tmp_path / "c")
    assert da == db == dc
    assert "manifest.json" in da
    created_by = pq.ParquetFile(tmp_path / "a" / "features-00000.parquet").metadata.created_by
    assert created_by.startswith("parquet-cpp-arrow version ")  # constant per pyarrow version


def test_byte_identical_graphs(tmp_path):
    for name in "ab":
        with ArtifactWriter(tmp_path / name, stage="graphs", dim=8) as art:
            art.graph_writer(max_graphs_per_shard=4).write(make_graphs(10))
    assert digests(tmp_path / "a") == digests(tmp_path / "b")


def test_read_helpers(tmp_path):
    write_feats(tmp_path / "a", total=300, max_rows=100)
    batches = list(iter_batches(tmp_path / "a", "features", columns=["sample_id"], batch_size=64))
    assert all(b.schema.names == ["sample_id"] for b in batches)
    ids = [x for b in batches for x in b.column(0).to_pylist()]
    assert ids == [f"s{i:06d}" for i in range(300)]
    t = read_table(tmp_path / "a", "features")
    assert t.num_rows == 300 and t.schema.metadata[b"mmre.table"] == b"features"
    # a single shard file is readable on its own
    one = read_table(tmp_path / "a" / "features-00001.parquet", "features")
    assert one.column("sample_id")[0].as_py() == "s000100"
    with pytest.raises(InputError, match="no table"):
        read_table(tmp_path / "a", "samples")


def test_manifest_only_on_success(tmp_path):
    out = tmp_path / "a"
    write_feats(out, total=50)
    assert (out / "manifest.json").exists()
    with pytest.raises(RuntimeError):
        with ArtifactWriter(out, stage="features", encoder="enc", dim=8, max_rows_per_shard=10) as art:
            art.write("features", feats(0, 35))
            raise RuntimeError("boom")
    # the old manifest was removed on entry and no new one written
    assert not (out / "manifest.json").exists()
    assert not list(out.glob(".*.tmp"))
    with pytest.raises(InputError, match="no manifest.json"):
        list(iter_batches(out, "features"))
    assert any("no manifest.json" in p for p in validate(out))


def test_schema_mismatch_rejected_and_item_child_cast(tmp_path):
    schema = table_schema("features", dim=8, stage="s")
    w = ShardWriter(tmp_path, "features", schema, max_rows_per_shard=10)
    with pytest.raises(ValueError, match="does not match"):
        w.write(pa.table({"sample_id": ["a"]}))
    # a table built with default list child names ("item") is cast to the declared types
    plain = pa.table({
        "sample_id": ["a"], "unit": ["image"], "kind": ["image"], "text": [None],
        "box": pa.array([None], pa.list_(pa.float32(), 4)),
        "emb": pa.array([[0.0] * 8], pa.list_(pa.float32(), 8)),
    })
    w.write(plain)
    w.close()
    back = pq.read_table(tmp_path / "features-00000.parquet")
    assert back.schema.equals(schema, check_metadata=True)
    with pytest.raises(ValueError, match="null"):
        w2 = ShardWriter(tmp_path / "b", "features", schema)
        w2.write(plain.set_column(0, "sample_id", pa.array([None], pa.string())))


def test_max_bytes_rolls(tmp_path):
    schema = table_schema("features", dim=8)
    w = ShardWriter(tmp_path, "features", schema, max_rows_per_shard=None, max_bytes_per_shard=4096)
    w.write(feats(0, 500))
    entry = w.close()
    assert entry["num_rows"] == 500 and len(entry["shards"]) > 5
    assert all(s["num_rows"] <= 4096 // 32 for s in entry["shards"])


def test_empty_table_gets_one_empty_shard(tmp_path):
    with ArtifactWriter(tmp_path / "a", stage="x", dim=8) as art:
        art.table("features")
    m = read_manifest(tmp_path / "a")
    assert m["tables"]["features"]["num_rows"] == 0
    assert len(m["tables"]["features"]["shards"]) == 1
    assert read_table(tmp_path / "a", "features").num_rows == 0
    assert validate(tmp_path / "a") == []


def test_resume_shard_writer(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    write_feats(ref, total=1000, chunk=50, max_rows=128)
    # a "killed" run: 3 whole shards, a stray tmp file, no manifest
    schema = table_schema("features", dim=8, stage="features", encoder="enc", params_hash="h")
    w = ShardWriter(out, "features", schema, max_rows_per_shard=128)
    w.write(feats(0, 420))
    assert [s.num_rows for s in w.shards] == [128] * 3 and w.buffered_rows == 36
    (out / ".features-00003.parquet.tmp").write_bytes(b"PAR1 half a shard")
    assert ShardWriter.completed_shards(out, "features", schema)[-1].file == "features-00002.parquet"
    # resume through the ArtifactWriter, skipping the rows already in whole shards
    with ArtifactWriter(out, stage="features", encoder="enc", dim=8, params_hash="h",
                        max_rows_per_shard=128, resume=True) as art:
        done = art.rows_done("features")
        assert done == 384
        assert not list(out.glob("*.tmp"))
        for a in range(done, 1000, 50):
            art.write("features", feats(a, min(a + 50, 1000)))
    assert digests(out) == digests(ref)
    assert validate(out) == []


def test_resume_drops_shards_with_other_params(tmp_path):
    out = tmp_path / "a"
    write_feats(out, total=300, max_rows=100)
    with ArtifactWriter(out, stage="features", encoder="enc", dim=8, params_hash="OTHER",
                        max_rows_per_shard=100, resume=True) as art:
        assert art.rows_done("features") == 0
        art.write("features", feats(0, 300))
    assert read_manifest(out)["params_hash"] == "OTHER"
    assert validate(out) == []


def test_graph_writer_alignment_and_resume(tmp_path):
    gs = make_graphs(20, dim=8)
    ref, out = tmp_path / "ref", tmp_path / "out"
    with ArtifactWriter(ref, stage="graphs", dim=8) as art:
        art.graph_writer(max_graphs_per_shard=4, max_nodes_per_shard=15).write(gs)
    # aligned: shard k of every table holds the same graph ids
    for k in range(len(list(ref.glob("graphs-*.parquet")))):
        ids = pq.read_table(ref / f"graphs-{k:05d}.parquet").column("graph_id").to_pylist()
        assert len(ids) <= 4
        for t in ("nodes", "edges"):
            sub = set(pq.read_table(ref / f"{t}-{k:05d}.parquet").column("graph_id").to_pylist())
            assert sub <= set(ids)
        assert pq.read_table(ref / f"nodes-{k:05d}.parquet").num_rows <= 15 or len(ids) == 1

    # killed run: 2 aligned shards + a nodes/edges shard whose graphs shard never landed
    art = ArtifactWriter(out, stage="graphs", dim=8).open()
    gw = art.graph_writer(max_graphs_per_shard=4, max_nodes_per_shard=15)
    gw.write(gs[:9])
    n_whole = len(gw.writers["graphs"].shards)
    gw.writers["nodes"]._write_shard(pa.Table.from_batches([], gw.writers["nodes"].schema))
    del art, gw
    assert len(list_shard_files(out, "nodes")) == n_whole + 1
    with ArtifactWriter(out, stage="graphs", dim=8, resume=True) as art:
        gw = art.graph_writer(max_graphs_per_shard=4, max_nodes_per_shard=15)
        assert len(list_shard_files(out, "nodes")) == n_whole
        done = gw.graphs_done
        assert 0 < done < 9
        gw.write(gs[done:])
    assert digests(out) == digests(ref)
    for a, b in zip(gs, iter_graphs(out)):
        assert_graphs_equal(a, b)


def test_iter_batches_bounded_memory(tmp_path):
    dim, rows, n_shards = 128, 2000, 24
    shard_bytes = rows * dim * 4
    schema = table_schema("features", dim=dim)
    w = ShardWriter(tmp_path, "features", schema, max_rows_per_shard=rows)
    rng = np.random.default_rng(0)
    for k in range(n_shards):
        w.write(features_to_table([f"s{k}"] * rows, ["image"] * rows, ["image"] * rows,
                                  rng.standard_normal((rows, dim)).astype(np.float32)))
    entry = w.close()
    (tmp_path / "manifest.json").write_text(json.dumps({
        "format": "mmre-artifact", "schema_version": 1, "stage": "", "encoder": "", "dim": dim,
        "params_hash": "", "info": {}, "tables": {"features": entry}}))
    del w
    gc.collect()
    base = pa.total_allocated_bytes()
    held, seen = [], 0
    for batch in iter_batches(tmp_path, "features", batch_size=1000):
        seen += batch.num_rows
        held.append(pa.total_allocated_bytes() - base)
        del batch
    assert seen == rows * n_shards
    total = shard_bytes * n_shards
    peak = max(held)
    # streaming holds about one shard (compressed + decoded column chunk + a batch), never
    # the table, and does not grow with the number of shards read
    assert peak < 6 * shard_bytes and peak < total / 3, (held, shard_bytes)
    per_shard = rows // 1000
    assert max(held[-per_shard:]) <= max(held[:per_shard]) * 1.1, held
    full = read_table(tmp_path, "features")
    assert pa.total_allocated_bytes() - base >= 0.9 * total  # the contrast: reading all holds all
    del full


def test_graph_writer_direct(tmp_path):
    schemas = {t: table_schema(t, dim=8) for t in ("graphs", "nodes", "edges")}
    gw = GraphWriter(tmp_path, schemas, dim=8, max_graphs_per_shard=100)
    gw.write(make_graphs(3))
    entries = gw.close()
    assert {k: v["num_rows"] for k, v in entries.items()}["graphs"] == 4
