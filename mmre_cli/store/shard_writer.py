"""One table's rows as sharded, atomic, deterministic Parquet files: :class:`ShardWriter`.

Atomicity: each shard is written to ``.TABLE-NNNNN.parquet.tmp`` in the same directory, flushed
and fsync'ed, then ``os.replace``'d to its final name (and the directory fsync'ed). A killed
writer therefore leaves only whole shards under final names, perhaps one ``.tmp`` file (which
readers ignore and the next writer removes).

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

The shard names and the manifest entry a table gets are in :mod:`.manifest`; several tables
and the manifest are written by :class:`~.writers.ArtifactWriter`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from mmre_cli.hashing import sha256_file
from mmre_cli.store.manifest import TABLE_NAME_RE, ShardInfo, list_shard_files, list_tmp_files, shard_name, tmp_name
from mmre_cli.store.schemas import schema_diff

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


def fsync_dir(path: Path) -> None:
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
    fsync_dir(path.parent)


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
            when :meth:`roll` is called (used by :class:`~.writers.GraphWriter`).
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
    def completed_shards(out_dir: str | os.PathLike, table: str, schema: pa.Schema | None = None) -> list[ShardInfo]:
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
        fsync_dir(self.out_dir)
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
