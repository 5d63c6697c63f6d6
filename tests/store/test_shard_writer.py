"""ShardWriter: bounded, byte-identical shards, schema checks, empty tables, resuming."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmre_cli.store import ArtifactWriter, ShardWriter, read_manifest, read_table, table_schema, validate

from .conftest import digests, feats, write_feats


def test_byte_identical_output(tmp_path):
    write_feats(tmp_path / "a", chunk=7)
    write_feats(tmp_path / "b", chunk=7)
    write_feats(tmp_path / "c", chunk=300)  # different write() chunking, same shards
    da, db, dc = digests(tmp_path / "a"), digests(tmp_path / "b"), digests(tmp_path / "c")
    assert da == db == dc
    assert "manifest.json" in da
    created_by = pq.ParquetFile(tmp_path / "a" / "features-00000.parquet").metadata.created_by
    assert created_by.startswith("parquet-cpp-arrow version ")  # constant per pyarrow version


def test_schema_mismatch_rejected_and_item_child_cast(tmp_path):
    schema = table_schema("features", dim=8, stage="s")
    w = ShardWriter(tmp_path, "features", schema, max_rows_per_shard=10)
    with pytest.raises(ValueError, match="does not match"):
        w.write(pa.table({"sample_id": ["a"]}))
    # a table built with default list child names ("item") is cast to the declared types
    plain = pa.table(
        {
            "sample_id": ["a"],
            "unit": ["image"],
            "kind": ["image"],
            "text": [None],
            "box": pa.array([None], pa.list_(pa.float32(), 4)),
            "emb": pa.array([[0.0] * 8], pa.list_(pa.float32(), 8)),
        }
    )
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
    with ArtifactWriter(
        out, stage="features", encoder="enc", dim=8, params_hash="h", max_rows_per_shard=128, resume=True
    ) as art:
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
    with ArtifactWriter(
        out, stage="features", encoder="enc", dim=8, params_hash="OTHER", max_rows_per_shard=100, resume=True
    ) as art:
        assert art.rows_done("features") == 0
        art.write("features", feats(0, 300))
    assert read_manifest(out)["params_hash"] == "OTHER"
    assert validate(out) == []
