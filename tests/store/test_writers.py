"""ArtifactWriter (tables plus manifest.json, written only on success) and GraphWriter (aligned graph shards)."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmre_cli.errors import InputError
from mmre_cli.store import ArtifactWriter, iter_batches, iter_graphs, num_rows, table_schema, validate
from mmre_cli.store.manifest import list_shard_files
from mmre_cli.store.writers import GraphWriter

from .conftest import assert_graphs_equal, digests, feats, make_graphs, write_feats


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


def test_byte_identical_graphs(tmp_path):
    for name in "ab":
        with ArtifactWriter(tmp_path / name, stage="graphs", dim=8) as art:
            art.graph_writer(max_graphs_per_shard=4).write(make_graphs(10))
    assert digests(tmp_path / "a") == digests(tmp_path / "b")


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


def test_graph_writer_direct(tmp_path):
    schemas = {t: table_schema(t, dim=8) for t in ("graphs", "nodes", "edges")}
    gw = GraphWriter(tmp_path, schemas, dim=8, max_graphs_per_shard=100)
    gw.write(make_graphs(3))
    entries = gw.close()
    assert {k: v["num_rows"] for k, v in entries.items()}["graphs"] == 4
