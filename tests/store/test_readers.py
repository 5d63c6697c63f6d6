"""The streaming readers: columns and batches, single-shard files, bounded memory."""

from __future__ import annotations

import gc
import json

import numpy as np
import pyarrow as pa
import pytest

from mmre_cli.errors import InputError
from mmre_cli.store import ShardWriter, features_to_table, iter_batches, read_table, table_schema

from .conftest import write_feats


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


def test_iter_batches_bounded_memory(tmp_path):
    dim, rows, n_shards = 128, 2000, 24
    shard_bytes = rows * dim * 4
    schema = table_schema("features", dim=dim)
    w = ShardWriter(tmp_path, "features", schema, max_rows_per_shard=rows)
    rng = np.random.default_rng(0)
    for k in range(n_shards):
        w.write(
            features_to_table(
                [f"s{k}"] * rows,
                ["image"] * rows,
                ["image"] * rows,
                rng.standard_normal((rows, dim)).astype(np.float32),
            )
        )
    entry = w.close()
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "format": "mmre-artifact",
                "schema_version": 1,
                "stage": "",
                "encoder": "",
                "dim": dim,
                "params_hash": "",
                "info": {},
                "tables": {"features": entry},
            }
        )
    )
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
