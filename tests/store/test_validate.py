"""validate(): accepts good artifacts, names each kind of damage."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mmre_cli.hashing import sha256_file
from mmre_cli.reporting import NullReporter
from mmre_cli.store import ArtifactWriter, check, graphs_to_tables, instances_to_table, table_schema, validate
from mmre_cli.store.shard_writer import PARQUET_OPTIONS

from .conftest import LABELS, make_graphs, make_instances


@pytest.fixture
def art(tmp_path):
    out = tmp_path / "art"
    with ArtifactWriter(out, stage="graphs", encoder="enc", dim=8, params_hash="h", max_rows_per_shard=4) as a:
        a.write("samples", instances_to_table(make_instances(10), LABELS))
        a.graph_writer(max_graphs_per_shard=4).write(make_graphs(10))
    return out


def _fix_manifest(art, name):
    """Make the manifest agree with a rewritten shard, so only the content checks can fail."""
    m = json.loads((art / "manifest.json").read_text())
    for entry in m["tables"].values():
        for s in entry["shards"]:
            if s["file"] == name:
                s["sha256"] = sha256_file(art / name)
                s["bytes"] = (art / name).stat().st_size
    (art / "manifest.json").write_text(json.dumps(m))


def test_good_artifact(art):
    assert validate(art) == []
    for p in art.glob("*.parquet"):
        assert validate(p) == [], p
    assert validate(art / "manifest.json") == []


def test_truncated_shard(art):
    p = art / "samples-00001.parquet"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    problems = validate(art)
    assert any("samples-00001.parquet" in x and "bytes, manifest says" in x for x in problems)
    assert any("samples-00001.parquet" in x and "not readable Parquet" in x for x in problems)
    assert validate(p)  # alone, too


def test_flipped_byte(art):
    p = art / "nodes-00000.parquet"
    data = bytearray(p.read_bytes())
    data[len(data) // 3] ^= 0xFF
    p.write_bytes(bytes(data))
    problems = validate(art)
    assert any("nodes-00000.parquet" in x and "sha256" in x for x in problems), problems
    # without a manifest to compare with, the page checksums still catch it
    (art / "manifest.json").unlink()
    assert validate(p), "flipped byte not detected in a lone shard"


def test_deleted_shard(art):
    (art / "edges-00001.parquet").unlink()
    problems = validate(art)
    assert any("edges-00001.parquet" in x and "missing" in x for x in problems), problems


def test_wrong_schema(art):
    name = "samples-00000.parquet"
    t = pq.read_table(art / name)
    bad = t.drop_columns(["caption"]).replace_schema_metadata(t.schema.metadata)
    pq.write_table(bad, art / name, **PARQUET_OPTIONS)
    _fix_manifest(art, name)
    problems = validate(art)
    assert any(name in x and "missing columns caption" in x for x in problems), problems
    # a wrong type is reported too
    t2 = t.set_column(t.schema.get_field_index("label"), "label", pc.cast(t.column("label"), pa.int64()))
    pq.write_table(t2.replace_schema_metadata(t.schema.metadata), art / name, **PARQUET_OPTIONS)
    _fix_manifest(art, name)
    assert any("column label: int64" in x for x in validate(art))


def test_wrong_schema_version_and_dim(art):
    name = "graphs-00000.parquet"
    t = pq.read_table(art / name)
    meta = dict(t.schema.metadata)
    meta[b"mmre.schema_version"] = b"999"
    pq.write_table(t.replace_schema_metadata(meta), art / name, **PARQUET_OPTIONS)
    _fix_manifest(art, name)
    assert any("schema_version" in x and "999" in x for x in validate(art))


def test_edge_endpoint_out_of_range(tmp_path):
    gs = make_graphs(5)
    g, n, e = graphs_to_tables(gs, dim=8)
    dst = e.column("dst").to_numpy().copy()
    dst[3] = 1000
    e = e.set_column(e.schema.get_field_index("dst"), "dst", pa.array(dst, pa.int32()))
    out = tmp_path / "bad"
    with ArtifactWriter(out, stage="graphs", dim=8) as a:  # bypasses GraphWriter on purpose
        a.write("graphs", g)
        a.write("nodes", n)
        a.write("edges", e)
    problems = validate(out)
    assert len(problems) == 1 and "edge endpoints outside [0, num_nodes)" in problems[0], problems
    assert "->1000" in problems[0]


def test_graph_count_and_node_id_mismatch(tmp_path):
    g, n, e = graphs_to_tables(make_graphs(5), dim=8)
    node = n.column("node").to_numpy().copy()
    node[1] = 0  # duplicate node id 0 in the first graph
    n = n.set_column(1, "node", pa.array(node, pa.int32()))
    nn = g.column("num_edges").to_numpy().copy()
    nn[2] += 1
    g = g.set_column(4, "num_edges", pa.array(nn, pa.int32()))
    out = tmp_path / "bad"
    with ArtifactWriter(out, stage="graphs", dim=8) as a:
        a.write("graphs", g)
        a.write("nodes", n)
        a.write("edges", e)
    text = "\n".join(validate(out))
    assert "duplicate (graph_id, node)" in text
    assert "edge row count differs from num_edges" in text


def test_stray_tmp_is_a_warning(art):
    (art / ".samples-00009.parquet.tmp").write_bytes(b"half")
    (art / "samples-00042.parquet").write_bytes((art / "samples-00000.parquet").read_bytes())
    rep = NullReporter()
    assert validate(art, reporter=rep) == []
    assert any("stray temp file" in w for w in rep.warnings)
    assert any("not listed in the manifest" in w for w in rep.warnings)
    assert check(art).ok


def test_missing_or_bad_manifest(art, tmp_path):
    (art / "manifest.json").write_text("{not json")
    assert any("unreadable manifest" in x for x in validate(art))
    (art / "manifest.json").unlink()
    assert any("no manifest.json" in x for x in validate(art))
    assert any("no such file" in x for x in validate(tmp_path / "nowhere"))


def test_manifest_row_count_mismatch(art):
    m = json.loads((art / "manifest.json").read_text())
    m["tables"]["samples"]["shards"][0]["num_rows"] += 1
    (art / "manifest.json").write_text(json.dumps(m))
    problems = validate(art)
    assert any("rows, manifest says" in x for x in problems)
    assert any("num_rows" in x and "sum of shards" in x for x in problems)


def test_lone_file_without_mmre_metadata(tmp_path):
    p = tmp_path / "x.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), p)
    assert any("no mmre.table" in x for x in validate(p))
    q = tmp_path / "y.parquet"
    q.write_bytes(b"not parquet at all")
    assert any("not readable Parquet" in x for x in validate(q))


def test_lone_shard_duplicates(tmp_path):
    t = instances_to_table(make_instances(3) * 2, LABELS)
    p = tmp_path / "s.parquet"
    schema = table_schema("samples", dim=0, stage="x")
    pq.write_table(t.replace_schema_metadata(schema.metadata), p, **PARQUET_OPTIONS)
    assert any("duplicate sample_id" in x for x in validate(p))
    np.testing.assert_equal(len(pq.read_table(p)), 6)
