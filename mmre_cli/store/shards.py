"""Sharded, atomic, deterministic Parquet writers and bounded-memory readers.

Layout of an artifact directory::

    ART/
      manifest.json              written last, atomically, only when the writer succeeded
      samples-00000.parquet      shards of table ``samples``
      samples-00001.parquet
      graphs-00000.parquet       graphs/nodes/edges shards are *aligned*: shard k of nodes and
      nodes-00000.parquet        edges holds exactly the graph_ids of shard k of graphs
      edges-00000.parquet
      .samples-00002.parquet.tmp a shard being written (or left by a killed writer): ignored

``manifest.json``::

    {
      "format": "mmre-artifact",
      "schema_version": 1,
      "stage": "...", "encoder": "...", "dim": 512, "params_hash": "...",
      "info": {...},                       # free JSON from the stage (e.g. the label list)
      "tables": {
        "samples": {"num_rows": 1234,
                    "shards": [{"file": "samples-00000.parquet", "num_rows": 1000,
                                "bytes": 81234, "sha256": "..."}, ...]},
        ...
      }
    }

Atomicity: each shard is written to ``.TABLE-NNNNN.parquet.tmp`` in the same directory, flushed
and fsync'ed, then ``os.replace``'d to its final name (and the directory fsync'ed). A killed
writer therefore leaves only whole shards under final names, perhaps one ``.tmp`` file (which
readers ignore and the next writer removes), and no manifest (an :class:`ArtifactWriter` deletes
any old manifest before it writes the first shard).

Determinism: the writer options are fixed (:data:`PARQUET_OPTIONS`), the schema metadata holds no
timestamps, and the only other footer field, ``created_by``, is the constant
``"parquet-cpp-arrow version X"``; the same rows written by the same pyarrow version give
byte-identical shards. With only a row bound, shard k holds rows ``[k*M, (k+1)*M)`` however the
rows were chunked in ``write`` calls, so a resumed run produces the same files as an
uninterrupted one.

Resuming: ``ShardWriter(..., resume=True)`` keeps the longest prefix of whole shards
``00000..k-1`` whose schema (metadata included: stage, encoder, dim, params hash) equals the
writer's, deletes the rest, and continues at shard k; :attr:`ShardWriter.rows_done` says how
many input rows to skip.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from mmre_cli import SCHEMA_VERSION
from mmre_cli.hashing import sha256_file
from mmre_cli.data.instance import Instance
from mmre_cli.errors import InputError
from mmre_cli.graphs.graph import Graph
from mmre_cli.store.schemas import (
    GRAPH_TABLES,
    decode_metadata,
    schema_diff,
    schema_for,
    with_metadata,
)
from mmre_cli.store.tables import graphs_to_tables, table_to_instances, tables_to_graphs

MANIFEST = "manifest.json"
FORMAT = "mmre-artifact"
SHARD_RE = re.compile(r"^(?P<table>[A-Za-z0-9_]+)-(?P<index>\d{5})\.parquet$")
TMP_RE = re.compile(r"^\.(?P<table>[A-Za-z0-9_]+)-(?P<index>\d{5})\.parquet\.tmp$")
TABLE_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")

#: Fixed Parquet writer options (so output is deterministic). Page checksums let a reader
#: detect a corrupted page even without the manifest's sha256. Dictionary encoding is used for
#: string columns only (see :func:`parquet_options`): on float vectors it costs 3x the write
#: time for nothing.
PARQUET_OPTIONS: dict[str, Any] = dict(
    version="2.6",
    compression="zstd",
    compression_level=1,
    use_dictionary=True,
    write_statistics=True,
    data_page_version="1.0",
    store_schema=True,
    write_page_index=False,
    write_page_checksum=True,
    use_compliant_nested_type=True,
)



def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """:data:`PARQUET_OPTIONS` with ``use_dictionary`` set to the schema's string columns."""
    cols = []
    for f in schema:
        if pa.types.is_string(f.type):
            cols.append(f.name)
        elif pa.types.is_list(f.type) and pa.types.is_string(f.type.value_type):
            cols.append(f"{f.name}.list.{f.type.value_field.name}")
    return {**PARQUET_OPTIONS, "use_dictionary": cols or False}


DEFAULT_MAX_ROWS_PER_SHARD = 131_072
DEFAULT_MAX_BYTES_PER_SHARD = 256 * 1024 * 1024
DEFAULT_ROW_GROUP_SIZE = 16_384
DEFAULT_MAX_GRAPHS_PER_SHARD = 8_192
DEFAULT_BATCH_SIZE = 16_384


def shard_name(table: str, index: int) -> str:
    return f"{table}-{index:05d}.parquet"


def tmp_name(table: str, index: int) -> str:
    return f".{table}-{index:05d}.parquet.tmp"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a same-directory temp file, fsync and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name("." + path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@dataclass(frozen=True)
class ShardInfo:
    """One whole shard: file name (relative to the artifact), rows, size and sha256."""

    file: str
    num_rows: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict:
        return asdict(self)


def list_shard_files(out_dir: str | os.PathLike, table: str | None = None) -> list[tuple[str, int, Path]]:
    """(table, index, path) of every final-named shard in ``out_dir``, sorted."""
    out = []
    d = Path(out_dir)
    if not d.is_dir():
        return out
    for p in d.iterdir():
        m = SHARD_RE.match(p.name)
        if m and (table is None or m["table"] == table):
            out.append((m["table"], int(m["index"]), p))
    return sorted(out, key=lambda t: (t[0], t[1]))


def list_tmp_files(out_dir: str | os.PathLike, table: str | None = None) -> list[Path]:
    d = Path(out_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if (m := TMP_RE.match(p.name)) and (table is None or m["table"] == table))


def conform(data: pa.Table, schema: pa.Schema, table: str = "table") -> pa.Table:
    """``data`` with exactly ``schema``'s types (casting e.g. a list child named ``item``);
    ``ValueError`` on other column names/types or nulls in a non-nullable column."""
    if not data.schema.equals(schema, check_metadata=False):
        if data.schema.names != schema.names:
            raise ValueError(f"{table}: data does not match the table schema: {schema_diff(data.schema, schema)}")
        try:
            data = data.cast(schema.remove_metadata())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            raise ValueError(
                f"{table}: data does not match the table schema: {schema_diff(data.schema, schema)} ({exc})"
            ) from None
        if not data.schema.equals(schema, check_metadata=False):
            raise ValueError(f"{table}: data does not match the table schema: {schema_diff(data.schema, schema)}")
    for field, column in zip(schema, data.columns):
        if not field.nullable and column.null_count:
            raise ValueError(f"{table}: column {field.name} is not nullable but holds {column.null_count} nulls")
    return data


class ShardWriter:
    """Buffers rows of one table and writes them as atomic, bounded shards.

    Args:
        out_dir: the artifact directory (created if missing).
        table: table name (``[A-Za-z0-9_]+``); files are ``TABLE-00000.parquet``, ...
        schema: the Arrow schema, metadata included (see :func:`~.schemas.with_metadata`).
            Data passed to :meth:`write` must match it (metadata aside).
        max_rows_per_shard: roll a shard at this many rows (default 131072); ``None`` = only
            when :meth:`roll` is called (used by :class:`GraphWriter`).
        max_bytes_per_shard: also roll when the buffered Arrow data reaches this many bytes
            (default 256 MiB; ``None`` = no byte bound). Boundaries then depend on the data.
        row_group_size: rows per Parquet row group (default 16384).
        resume: keep the whole shards of a previous run (see module docstring); otherwise all
            existing shards of ``table`` are deleted.
        on_shard: called with the :class:`ShardInfo` after each shard is committed.

    Stray ``.TABLE-*.parquet.tmp`` files are always removed on construction.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        table: str,
        schema: pa.Schema,
        *,
        max_rows_per_shard: int | None = DEFAULT_MAX_ROWS_PER_SHARD,
        max_bytes_per_shard: int | None = DEFAULT_MAX_BYTES_PER_SHARD,
        row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
        resume: bool = False,
        on_shard: Callable[[ShardInfo], None] | None = None,
    ):
        if not TABLE_NAME_RE.match(table):
            raise ValueError(f"bad table name {table!r}")
        if max_rows_per_shard is not None and max_rows_per_shard < 1:
            raise ValueError("max_rows_per_shard must be >= 1")
        self.out_dir = Path(out_dir)
        self.table = table
        self.schema = schema
        self.max_rows_per_shard = max_rows_per_shard
        self.max_bytes_per_shard = max_bytes_per_shard
        self.row_group_size = row_group_size
        self.on_shard = on_shard
        self._buffer: list[pa.Table] = []
        self._buffered_rows = 0
        self._buffered_bytes = 0
        self._closed = False
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for tmp in list_tmp_files(self.out_dir, table):
            tmp.unlink(missing_ok=True)
        if resume:
            self._shards = self.completed_shards(self.out_dir, table, schema)
            self.truncate(len(self._shards))
        else:
            self._shards = []
            self.truncate(0)

    # ------------------------------------------------------------------ resume support

    @staticmethod
    def completed_shards(
        out_dir: str | os.PathLike, table: str, schema: pa.Schema | None = None
    ) -> list[ShardInfo]:
        """The longest prefix ``00000, 00001, ...`` of whole shards of ``table`` in ``out_dir``.

        A shard counts if its Parquet footer reads and (when ``schema`` is given) its schema,
        metadata included, equals ``schema``. Temp files are never counted.
        """
        out: list[ShardInfo] = []
        for expected, (_, index, path) in enumerate(list_shard_files(out_dir, table)):
            if index != expected:
                break
            try:
                pf = pq.ParquetFile(path)
                got = pf.schema_arrow
                rows = pf.metadata.num_rows
            except Exception:
                break
            if schema is not None and not got.equals(schema, check_metadata=True):
                break
            out.append(ShardInfo(path.name, int(rows), path.stat().st_size, sha256_file(path)))
        return out

    def truncate(self, num_shards: int) -> None:
        """Delete shards ``num_shards`` and later (only before new rows are written)."""
        if self._buffered_rows:
            raise RuntimeError("truncate() with rows buffered")
        for _, index, path in list_shard_files(self.out_dir, self.table):
            if index >= num_shards:
                path.unlink(missing_ok=True)
        self._shards = self._shards[:num_shards]

    @property
    def shards(self) -> list[ShardInfo]:
        """Shards committed so far (kept ones from a resumed run included)."""
        return list(self._shards)

    @property
    def rows_done(self) -> int:
        """Rows held in whole shards (a resuming stage skips this many input rows)."""
        return sum(s.num_rows for s in self._shards)

    @property
    def buffered_rows(self) -> int:
        return self._buffered_rows

    # ------------------------------------------------------------------ writing

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        """Buffer rows; commits a shard whenever a bound is reached."""
        if self._closed:
            raise RuntimeError(f"ShardWriter({self.table}) is closed")
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        data = conform(data, self.schema, self.table)
        if data.num_rows == 0:
            return
        data = data.replace_schema_metadata(self.schema.metadata)
        self._buffer.append(data)
        self._buffered_rows += data.num_rows
        self._buffered_bytes += data.nbytes
        while self._buffered_rows and self._over_bound():
            self._flush(self._rows_for_next_shard())

    def _over_bound(self) -> bool:
        if self.max_rows_per_shard is not None and self._buffered_rows >= self.max_rows_per_shard:
            return True
        return self.max_bytes_per_shard is not None and self._buffered_bytes >= self.max_bytes_per_shard

    def _rows_for_next_shard(self) -> int:
        n = self._buffered_rows
        if self.max_rows_per_shard is not None:
            n = min(n, self.max_rows_per_shard)
        if self.max_bytes_per_shard is not None and self._buffered_bytes >= self.max_bytes_per_shard:
            per_row = max(1.0, self._buffered_bytes / self._buffered_rows)
            n = min(n, max(1, int(self.max_bytes_per_shard // per_row)))
        return n

    def _flush(self, nrows: int, allow_empty: bool = False) -> ShardInfo | None:
        if nrows == 0 and not allow_empty:
            return None
        if self._buffer:
            table = pa.concat_tables(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        else:
            table = self.schema.empty_table()
        head, rest = table.slice(0, nrows), table.slice(nrows)
        self._buffer = [rest] if rest.num_rows else []
        self._buffered_rows = rest.num_rows
        self._buffered_bytes = rest.nbytes if rest.num_rows else 0
        return self._write_shard(head.combine_chunks())

    def roll(self, allow_empty: bool = False) -> ShardInfo | None:
        """Commit everything buffered as one shard now (an empty one if ``allow_empty``)."""
        return self._flush(self._buffered_rows, allow_empty=allow_empty)

    def _open_tmp(self, path: Path) -> BinaryIO:
        """Open the temp file a shard is written to (a hook tests override to slow writing)."""
        return open(path, "wb")

    def _write_shard(self, table: pa.Table) -> ShardInfo:
        index = len(self._shards)
        tmp = self.out_dir / tmp_name(self.table, index)
        final = self.out_dir / shard_name(self.table, index)
        table = table.replace_schema_metadata(self.schema.metadata)
        try:
            with self._open_tmp(tmp) as f:
                writer = pq.ParquetWriter(f, self.schema, **parquet_options(self.schema))
                writer.write_table(table, row_group_size=self.row_group_size)
                writer.close()
                f.flush()
                os.fsync(f.fileno())
            info = ShardInfo(final.name, table.num_rows, tmp.stat().st_size, sha256_file(tmp))
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.out_dir)
        self._shards.append(info)
        if self.on_shard is not None:
            self.on_shard(info)
        return info

    def close(self) -> dict:
        """Commit the remaining rows and return this table's manifest entry.

        A table that received no rows at all gets one empty shard, so its schema is on disk.
        """
        if not self._closed:
            while self._buffered_rows:
                self._flush(self._rows_for_next_shard())
            if not self._shards:
                self._flush(0, allow_empty=True)
            self._closed = True
        return self.manifest_entry()

    def abort(self) -> None:
        """Drop buffered rows; committed shards stay (a later resume can keep them)."""
        self._buffer, self._buffered_rows, self._buffered_bytes = [], 0, 0
        for tmp in list_tmp_files(self.out_dir, self.table):
            tmp.unlink(missing_ok=True)
        self._closed = True

    def manifest_entry(self) -> dict:
        return {"num_rows": self.rows_done, "shards": [s.to_dict() for s in self._shards]}


class GraphWriter:
    """Writes graphs as the aligned ``graphs``/``nodes``/``edges`` tables.

    Shard k of every one of the three tables holds the same graphs, so :func:`iter_graphs`
    joins them one shard at a time. A shard is rolled before a graph that would take it past
    ``max_graphs_per_shard`` graphs, ``max_nodes_per_shard`` node rows or
    ``max_edges_per_shard`` edge rows (a single bigger graph gets a shard of its own).
    Boundaries depend only on the graph sequence, not on how it is split into ``write`` calls.

    Build it through :meth:`ArtifactWriter.graph_writer`, or directly with the three schemas.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        schemas: dict[str, pa.Schema],
        *,
        dim: int,
        max_graphs_per_shard: int = DEFAULT_MAX_GRAPHS_PER_SHARD,
        max_nodes_per_shard: int = 4 * DEFAULT_MAX_ROWS_PER_SHARD,
        max_edges_per_shard: int = 8 * DEFAULT_MAX_ROWS_PER_SHARD,
        row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
        resume: bool = False,
        on_shard: Callable[[ShardInfo], None] | None = None,
    ):
        self.dim = dim
        self.max_graphs = max_graphs_per_shard
        self.max_nodes = max_nodes_per_shard
        self.max_edges = max_edges_per_shard
        self.writers = {
            name: ShardWriter(
                out_dir,
                name,
                schemas[name],
                max_rows_per_shard=None,
                max_bytes_per_shard=None,
                row_group_size=row_group_size,
                resume=resume,
                on_shard=on_shard if name == "graphs" else None,
            )
            for name in GRAPH_TABLES
        }
        if resume:  # keep only shards present in all three tables
            k = min(len(w.shards) for w in self.writers.values())
            for w in self.writers.values():
                w.truncate(k)
        self._pending: list[Graph] = []
        self._pending_nodes = 0
        self._pending_edges = 0

    @property
    def graphs_done(self) -> int:
        """Graphs held in whole aligned shards (a resuming stage skips this many)."""
        return self.writers["graphs"].rows_done

    def write(self, graphs: Graph | Iterable[Graph]) -> None:
        if isinstance(graphs, Graph):
            graphs = [graphs]
        for g in graphs:
            n, e = g.num_nodes, g.num_edges
            if self._pending and (
                self._pending_nodes + n > self.max_nodes or self._pending_edges + e > self.max_edges
            ):
                self.roll()
            self._pending.append(g)
            self._pending_nodes += n
            self._pending_edges += e
            if len(self._pending) >= self.max_graphs:
                self.roll()

    def roll(self) -> None:
        """Commit the pending graphs as shard k of all three tables."""
        if not self._pending:
            return
        tables = graphs_to_tables(self._pending, dim=self.dim)
        self._pending, self._pending_nodes, self._pending_edges = [], 0, 0
        # Nodes and edges first, graphs last: the graphs shard count decides graphs_done.
        for name, t in zip(GRAPH_TABLES, tables):
            if name != "graphs":
                self.writers[name].write(t)
                self.writers[name].roll(allow_empty=True)
        self.writers["graphs"].write(tables[0])
        self.writers["graphs"].roll(allow_empty=True)

    def close(self) -> dict[str, dict]:
        self.roll()
        return {name: w.close() for name, w in self.writers.items()}

    def abort(self) -> None:
        self._pending = []
        for w in self.writers.values():
            w.abort()


class ArtifactWriter:
    """Writes an artifact directory: several tables plus ``manifest.json``.

    Usage::

        with ArtifactWriter(out, stage="features", encoder="clip-vit-b32", dim=512,
                            params_hash=h) as art:
            art.write("samples", instances_to_table(instances, labels))
            for chunk in chunks:
                art.write("features", features_to_table(...))
            gw = art.graph_writer()
            gw.write(graphs)
        # manifest.json written here, only if the block raised nothing

    Args:
        out_dir: the directory (created).
        stage, encoder, dim, params_hash: recorded in every shard's schema metadata and in the
            manifest. ``dim`` is the embedding width D of ``features.emb`` / ``nodes.x``
            (0: no embeddings).
        resume: keep whole shards from a killed run (see :class:`ShardWriter`); otherwise the
            directory's old shards, temp files and manifest are removed on entry.
        info: free JSON-serialisable dict stored in the manifest under ``"info"``.
        max_rows_per_shard, max_bytes_per_shard, row_group_size: passed to every ShardWriter.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        stage: str,
        encoder: str = "",
        dim: int = 0,
        params_hash: str = "",
        resume: bool = False,
        info: dict | None = None,
        max_rows_per_shard: int | None = DEFAULT_MAX_ROWS_PER_SHARD,
        max_bytes_per_shard: int | None = DEFAULT_MAX_BYTES_PER_SHARD,
        row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    ):
        self.out_dir = Path(out_dir)
        self.stage = stage
        self.encoder = encoder
        self.dim = int(dim)
        self.params_hash = params_hash
        self.resume = resume
        self.info = dict(info or {})
        self._shard_kw = dict(
            max_rows_per_shard=max_rows_per_shard,
            max_bytes_per_shard=max_bytes_per_shard,
            row_group_size=row_group_size,
        )
        self._writers: dict[str, ShardWriter] = {}
        self._graph_writer: GraphWriter | None = None
        self._opened = False
        self._done = False

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> "ArtifactWriter":
        if self._opened:
            return self
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / MANIFEST).unlink(missing_ok=True)
        _fsync_dir(self.out_dir)
        if not self.resume:
            for _, _, p in list_shard_files(self.out_dir):
                p.unlink(missing_ok=True)
        for p in list_tmp_files(self.out_dir):
            p.unlink(missing_ok=True)
        self._opened = True
        return self

    def __enter__(self) -> "ArtifactWriter":
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def schema(self, table: str, schema: pa.Schema | None = None) -> pa.Schema:
        """The schema (with this artifact's metadata) a table is written with."""
        base = schema if schema is not None else schema_for(table, self.dim)
        return with_metadata(
            base, table, stage=self.stage, encoder=self.encoder, dim=self.dim, params_hash=self.params_hash
        )

    def table(self, name: str, schema: pa.Schema | None = None, **shard_kw) -> ShardWriter:
        """The ShardWriter of table ``name`` (created on first use; ``schema`` needed for
        tables not in :data:`~.schemas.SCHEMAS`)."""
        self.open()
        if name in GRAPH_TABLES and self._graph_writer is not None:
            return self._graph_writer.writers[name]
        if name not in self._writers:
            kw = {**self._shard_kw, **shard_kw}
            self._writers[name] = ShardWriter(self.out_dir, name, self.schema(name, schema), resume=self.resume, **kw)
        return self._writers[name]

    def write(self, name: str, data: pa.Table | pa.RecordBatch) -> None:
        self.table(name).write(data)

    def rows_done(self, name: str) -> int:
        """Rows of table ``name`` already in whole shards (non-zero only when resuming)."""
        if name in GRAPH_TABLES:
            return self.graph_writer().writers[name].rows_done
        return self.table(name).rows_done

    def graph_writer(self, **kw) -> GraphWriter:
        """The (single) :class:`GraphWriter` of this artifact; ``kw`` as GraphWriter's."""
        self.open()
        if self._graph_writer is None:
            if any(n in self._writers for n in GRAPH_TABLES):
                raise RuntimeError("graph tables must be written through graph_writer() only")
            schemas = {n: self.schema(n) for n in GRAPH_TABLES}
            kw.setdefault("row_group_size", self._shard_kw["row_group_size"])
            self._graph_writer = GraphWriter(self.out_dir, schemas, dim=self.dim, resume=self.resume, **kw)
        return self._graph_writer

    def close(self) -> dict:
        """Commit all tables and write the manifest atomically; returns the manifest."""
        if self._done:
            return read_manifest(self.out_dir)
        self.open()
        tables: dict[str, dict] = {}
        for name, w in self._writers.items():
            tables[name] = w.close()
        if self._graph_writer is not None:
            tables.update(self._graph_writer.close())
        manifest = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "stage": self.stage,
            "encoder": self.encoder,
            "dim": self.dim,
            "params_hash": self.params_hash,
            "info": self.info,
            "tables": {k: tables[k] for k in sorted(tables)},
        }
        data = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        atomic_write_bytes(self.out_dir / MANIFEST, data.encode("utf-8"))
        self._done = True
        return manifest

    def abort(self) -> None:
        """Drop buffered rows and temp files; no manifest is written. Whole shards stay."""
        for w in self._writers.values():
            w.abort()
        if self._graph_writer is not None:
            self._graph_writer.abort()
        self._done = True


def write_artifact(
    out_dir: str | os.PathLike,
    tables: dict[str, pa.Table],
    *,
    graphs: Sequence[Graph] | None = None,
    stage: str,
    encoder: str = "",
    dim: int = 0,
    params_hash: str = "",
    info: dict | None = None,
    **shard_kw,
) -> dict:
    """Write small tables (and optionally graphs) as one artifact in one call; returns the manifest."""
    with ArtifactWriter(
        out_dir, stage=stage, encoder=encoder, dim=dim, params_hash=params_hash, info=info, **shard_kw
    ) as art:
        for name, t in tables.items():
            art.write(name, t)
        if graphs is not None:
            art.graph_writer().write(graphs)
    return read_manifest(out_dir)


# ====================================================================== readers


def read_manifest(artifact_dir: str | os.PathLike) -> dict:
    """Parse ``manifest.json``; :class:`InputError` if it is missing (incomplete artifact) or bad."""
    path = Path(artifact_dir) / MANIFEST
    if not path.is_file():
        raise InputError(
            "no manifest.json: not an mmre artifact, or the stage that writes it did not finish",
            path=str(artifact_dir),
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable manifest: {exc}", path=str(path)) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tables"), dict):
        raise InputError("manifest has no 'tables' object", path=str(path))
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InputError(
            f"artifact schema version {version}, this mmre reads version {SCHEMA_VERSION}; re-run the stage",
            path=str(path),
        )
    return manifest


def table_names(artifact_dir: str | os.PathLike) -> list[str]:
    return sorted(read_manifest(artifact_dir)["tables"])


def shard_paths(artifact_dir: str | os.PathLike, table: str) -> list[Path]:
    """Paths of ``table``'s shards, in order. A path to a single ``.parquet`` file is its own shard."""
    p = Path(artifact_dir)
    if p.is_file():
        return [p]
    manifest = read_manifest(p)
    entry = manifest["tables"].get(table)
    if entry is None:
        raise InputError(f"artifact has no table {table!r} (tables: {', '.join(sorted(manifest['tables']))})", path=str(p))
    return [p / s["file"] for s in entry["shards"]]


def num_rows(artifact_dir: str | os.PathLike, table: str) -> int:
    p = Path(artifact_dir)
    if p.is_file():
        return pq.ParquetFile(p).metadata.num_rows
    return int(read_manifest(p)["tables"][table]["num_rows"])


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
            f"schema version {version}, this mmre reads version {SCHEMA_VERSION}; re-run the stage",
            path=str(path),
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


def read_table(
    artifact_dir: str | os.PathLike, table: str, columns: Sequence[str] | None = None
) -> pa.Table:
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
            "graphs/nodes/edges have different shard counts "
            + "/".join(str(len(x)) for x in lists),
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
