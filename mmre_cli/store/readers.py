"""Bounded-memory readers of artifacts: stream a table's shards as record batches, or read a
small table, its schema and metadata, the instances or the graphs back.

Each reader finds a table's shards through ``manifest.json`` (:func:`~.manifest.shard_paths`; a
path to one ``.parquet`` file is its own shard), so the temp files a killed writer may leave
are never read, and refuses a shard written for another schema version.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from mmre_cli import SCHEMA_VERSION
from mmre_cli.data.instance import Instance
from mmre_cli.errors import InputError
from mmre_cli.graphs.graph import Graph
from mmre_cli.store.manifest import shard_paths
from mmre_cli.store.schemas import GRAPH_TABLES, decode_metadata
from mmre_cli.store.tables import table_to_instances, tables_to_graphs

DEFAULT_BATCH_SIZE = 16_384


def _open(path: Path, **kw) -> pq.ParquetFile:
    try:
        pf = pq.ParquetFile(path, **kw)
    except FileNotFoundError:
        raise InputError("shard listed in the manifest is missing", path=str(path)) from None
    except Exception as exc:
        raise InputError(f"not a readable Parquet file: {exc}", path=str(path)) from None
    version = decode_metadata(pf.schema_arrow).get("schema_version")
    if version != SCHEMA_VERSION:
        raise InputError(
            f"schema version {version}, this mmre reads version {SCHEMA_VERSION}; re-run the stage", path=str(path)
        )
    return pf


def _read_shard(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    pf = _open(path)
    try:
        return pf.read(columns=list(columns) if columns else None)
    finally:
        pf.close()


def iter_batches(
    artifact_dir: str | os.PathLike,
    table: str,
    columns: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[pa.RecordBatch]:
    """Stream a table as record batches, one shard (and one row group) at a time.

    Memory stays around one row group (compressed + decoded, plus ``batch_size`` rows; about
    3x the shard's raw size when a shard is one row group) whatever the number of shards.
    """
    for path in shard_paths(artifact_dir, table):
        pf = _open(path, pre_buffer=False)
        try:
            yield from pf.iter_batches(batch_size=batch_size, columns=list(columns) if columns else None)
        finally:
            pf.close()


def read_table(artifact_dir: str | os.PathLike, table: str, columns: Sequence[str] | None = None) -> pa.Table:
    """A whole table in memory (for small tables). Keeps the shards' schema metadata."""
    parts = [_read_shard(path, columns) for path in shard_paths(artifact_dir, table)]
    if not parts:
        raise InputError(f"table {table!r} has no shards", path=str(artifact_dir))
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def read_schema(artifact_dir: str | os.PathLike, table: str) -> pa.Schema:
    """The schema (with metadata) of a table, from its first shard."""
    paths = shard_paths(artifact_dir, table)
    if not paths:
        raise InputError(f"table {table!r} has no shards", path=str(artifact_dir))
    pf = _open(paths[0])
    try:
        return pf.schema_arrow
    finally:
        pf.close()


def read_meta(artifact_dir: str | os.PathLike, table: str) -> dict[str, object]:
    """``{"schema_version", "table", "stage", "encoder", "dim", "params_hash"}`` of a table."""
    return decode_metadata(read_schema(artifact_dir, table))


def iter_instances(artifact_dir: str | os.PathLike, batch_size: int = 4096) -> Iterator[Instance]:
    for batch in iter_batches(artifact_dir, "samples", batch_size=batch_size):
        yield from table_to_instances(batch)


def read_instances(artifact_dir: str | os.PathLike) -> list[Instance]:
    return list(iter_instances(artifact_dir))


def iter_graphs(artifact_dir: str | os.PathLike, batch_graphs: int = 256) -> Iterator[Graph]:
    """Stream :class:`Graph` objects, joining aligned ``graphs``/``nodes``/``edges`` shards.

    One shard of each table is in memory at a time; Graph objects are built ``batch_graphs``
    at a time. Raises :class:`InputError` if the shards are not aligned.
    """
    lists = [shard_paths(artifact_dir, t) for t in GRAPH_TABLES]
    if len({len(x) for x in lists}) != 1:
        raise InputError(
            "graphs/nodes/edges have different shard counts " + "/".join(str(len(x)) for x in lists),
            path=str(artifact_dir),
        )
    for gp, np_, ep in zip(*lists):
        g_t, n_t, e_t = (_read_shard(p) for p in (gp, np_, ep))
        nn = g_t.column("num_nodes").to_numpy().astype("int64")
        ne = g_t.column("num_edges").to_numpy().astype("int64")
        if int(nn.sum()) != n_t.num_rows or int(ne.sum()) != e_t.num_rows:
            raise InputError(
                f"shard not aligned: graphs say {int(nn.sum())} nodes / {int(ne.sum())} edges, "
                f"shards hold {n_t.num_rows} / {e_t.num_rows}",
                path=str(gp),
            )
        n_off = [0, *nn.cumsum().tolist()]
        e_off = [0, *ne.cumsum().tolist()]
        for a in range(0, g_t.num_rows, batch_graphs):
            b = min(a + batch_graphs, g_t.num_rows)
            try:
                graphs = tables_to_graphs(
                    g_t.slice(a, b - a),
                    n_t.slice(n_off[a], n_off[b] - n_off[a]),
                    e_t.slice(e_off[a], e_off[b] - e_off[a]),
                )
            except ValueError as exc:
                raise InputError(str(exc), path=str(gp)) from None
            yield from graphs
        del g_t, n_t, e_t


def read_graphs(artifact_dir: str | os.PathLike) -> list[Graph]:
    return list(iter_graphs(artifact_dir))
