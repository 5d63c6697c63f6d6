"""Schemas, schema metadata, and the record <-> table conversions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmre_cli import SCHEMA_VERSION
from mmre_cli.errors import InputError
from mmre_cli.graphs.graph import EDGE_ATTR_DIM
from mmre_cli.store import (
    ArtifactWriter,
    decode_metadata,
    features_schema,
    features_to_table,
    graphs_to_tables,
    instances_to_table,
    iter_graphs,
    nodes_schema,
    read_graphs,
    read_instances,
    read_meta,
    read_schema,
    read_table,
    samples_schema,
    schema_for,
    table_to_instances,
    tables_to_graphs,
    vector,
)

from .conftest import LABELS, assert_graphs_equal, make_graphs


def test_schema_builders_types():
    s = samples_schema()
    assert s.field("tokens").type == pa.list_(pa.field("element", pa.string()))
    assert s.field("tail_box").type == pa.list_(pa.field("element", pa.float32()), 4)
    assert s.field("tail_box").nullable and s.field("relation").nullable
    assert not s.field("label").nullable and s.field("label").type == pa.int32()
    f = features_schema(16)
    assert f.field("emb").type.list_size == 16 and not f.field("emb").nullable
    n = nodes_schema(32)
    assert n.field("x").type.list_size == 32 and n.field("x").nullable
    assert n.field("kind").type == pa.int8()
    assert "x" not in nodes_schema(0).names
    assert schema_for("edges", 5).field("attr").type.list_size == EDGE_ATTR_DIM
    with pytest.raises(ValueError):
        vector(0)
    with pytest.raises(KeyError):
        schema_for("nope", 3)


def test_schema_metadata_written(tmp_path, instances, graphs):
    out = tmp_path / "art"
    with ArtifactWriter(out, stage="graphs", encoder="clip-test", dim=8, params_hash="abc123") as art:
        art.write("samples", instances_to_table(instances, LABELS))
        art.graph_writer().write(graphs)
    for table in ("samples", "graphs", "nodes", "edges"):
        schema = read_schema(out, table)
        raw = schema.metadata
        assert raw[b"mmre.schema_version"] == str(SCHEMA_VERSION).encode()
        assert raw[b"mmre.table"] == table.encode()
        assert raw[b"mmre.encoder"] == b"clip-test"
        assert raw[b"mmre.dim"] == b"8"
        assert raw[b"mmre.params_hash"] == b"abc123"
        assert raw[b"mmre.stage"] == b"graphs"
        assert read_meta(out, table) == {
            "schema_version": SCHEMA_VERSION,
            "table": table,
            "stage": "graphs",
            "encoder": "clip-test",
            "dim": 8,
            "params_hash": "abc123",
        }
        # the schema read back from disk equals the one built in code (metadata aside)
        assert schema.equals(schema_for(table, 8), check_metadata=False)
        # no timestamps anywhere in the footer key/value metadata
        path = next(out.glob(f"{table}-*.parquet"))
        keys = set(pq.ParquetFile(path).metadata.metadata)
        assert keys == {b"ARROW:schema", *(k for k in raw)}


def test_instances_round_trip(tmp_path, instances):
    table = instances_to_table(instances, LABELS)
    assert table.schema.equals(samples_schema())
    assert table.column("label").to_pylist() == [-1, 0, 1, 2, -1, 0, 1, 2, -1]
    assert table.column("tail_box").to_pylist()[2] == [0.5, 0.25, 0.125, 1.0]
    assert table.column("tail_box").to_pylist()[0] is None
    assert table_to_instances(table) == instances
    # through disk, several shards
    with ArtifactWriter(tmp_path / "a", stage="ingest", max_rows_per_shard=4) as art:
        art.write("samples", table)
    assert len(list((tmp_path / "a").glob("samples-*.parquet"))) == 3
    back = read_instances(tmp_path / "a")
    assert back == instances
    assert back[2].tail.box == (0.5, 0.25, 0.125, 1.0)
    assert back[0].tokens == ("w0_0", "w0_1", "w0_2", "w0_3", "ünï")


def test_label_lookup_variants(instances):
    assert instances_to_table(instances).column("label").to_pylist() == [-1] * len(instances)
    t = instances_to_table(instances, lambda r: len(r))
    assert t.column("label").to_pylist()[1] == 4  # len("None")
    with pytest.raises(InputError, match="not in the label map"):
        instances_to_table(instances, {"None": 0})


def test_graphs_round_trip_in_memory(graphs):
    g, n, e = graphs_to_tables(graphs, dim=8)
    assert g.num_rows == len(graphs)
    assert n.num_rows == sum(x.num_nodes for x in graphs)
    assert e.num_rows == sum(x.num_edges for x in graphs)
    assert g.column("sample_id").to_pylist()[0] == "s-g000"
    assert g.column("sample_id").to_pylist()[-1] == "g-empty"  # no meta sample_id -> graph_id
    # x is null exactly for the graphs without features
    x_null = n.column("x").is_null().to_pylist()
    expected = [gr.x is None for gr in graphs for _ in range(gr.num_nodes)]
    assert x_null == expected
    back = tables_to_graphs(g, n, e)
    assert len(back) == len(graphs)
    for a, b in zip(graphs, back):
        assert_graphs_equal(a, b)
    assert back[1].x is None and back[0].x.shape == (graphs[0].num_nodes, 8)


def test_graphs_round_trip_unsorted_rows(graphs):
    g, n, e = graphs_to_tables(graphs, dim=8)
    rng = np.random.default_rng(0)
    n2 = n.take(pa.array(rng.permutation(n.num_rows)))
    # edges: shuffle whole graph blocks but keep the order inside each graph
    gid = np.array(e.column("graph_id").to_pylist(), dtype=object)
    order = np.argsort(-np.array([int(s[1:]) if s != "g-empty" else 0 for s in gid]), kind="stable")
    e2 = e.take(pa.array(order))
    for a, b in zip(graphs, tables_to_graphs(g, n2, e2)):
        assert_graphs_equal(a, b)


def test_graphs_without_features_have_no_x_column(tmp_path):
    gs = make_graphs(4, dim=8)
    for gr in gs:
        gr.x = None
    g, n, e = graphs_to_tables(gs)
    assert "x" not in n.column_names
    with ArtifactWriter(tmp_path / "a", stage="graphs", dim=0) as art:
        art.graph_writer().write(gs)
    for a, b in zip(gs, read_graphs(tmp_path / "a")):
        assert_graphs_equal(a, b)


def test_graphs_round_trip_through_shards(tmp_path, graphs):
    out = tmp_path / "g"
    with ArtifactWriter(out, stage="graphs", dim=8) as art:
        art.graph_writer(max_graphs_per_shard=3).write(graphs)
    assert len(list(out.glob("graphs-*.parquet"))) == 4
    back = list(iter_graphs(out, batch_graphs=2))
    assert [b.graph_id for b in back] == [g.graph_id for g in graphs]
    for a, b in zip(graphs, back):
        assert_graphs_equal(a, b)


def test_features_table(tmp_path):
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((5, 16)).astype(np.float32)
    boxes = np.full((5, 4), np.nan, np.float32)
    boxes[3] = [0.1, 0.2, 0.3, 0.4]
    t = features_to_table(
        ["s1"] * 5,
        ["token:0", "token:1", "entity:head", "object:0", "image"],
        ["token", "token", "entity", "object", "image"],
        emb,
        texts=["a", "b", "a b", "dog", None],
        boxes=boxes,
    )
    assert t.schema.equals(features_schema(16))
    with ArtifactWriter(tmp_path / "f", stage="features", encoder="enc", dim=16) as art:
        art.write("features", t)
    back = read_table(tmp_path / "f", "features")
    assert back.column("box").to_pylist()[0] is None
    np.testing.assert_array_equal(np.array(back.column("box").to_pylist()[3], np.float32), boxes[3])
    got = np.stack([np.asarray(v, np.float32) for v in back.column("emb").to_pylist()])
    np.testing.assert_array_equal(got, emb)
    assert decode_metadata(back.schema)["dim"] == 16
