"""Writers of whole artifacts: :class:`ArtifactWriter` (several tables plus ``manifest.json``),
:class:`GraphWriter` (graphs as the aligned graphs/nodes/edges tables) and :func:`write_artifact`.

Each table goes through a :class:`~.shard_writer.ShardWriter` (atomic, deterministic, resumable
shards); :mod:`.manifest` has the directory layout and the manifest's format. The manifest is
written last and atomically, only when every table was committed: an :class:`ArtifactWriter`
deletes any old manifest before it writes the first shard, so a killed run leaves none.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pyarrow as pa

from mmre_cli import SCHEMA_VERSION
from mmre_cli.graphs.graph import Graph
from mmre_cli.store.manifest import FORMAT, MANIFEST, ShardInfo, list_shard_files, list_tmp_files, read_manifest
from mmre_cli.store.schemas import GRAPH_TABLES, schema_for, with_metadata
from mmre_cli.store.shard_writer import (
    DEFAULT_MAX_BYTES_PER_SHARD,
    DEFAULT_MAX_GRAPHS_PER_SHARD,
    DEFAULT_MAX_ROWS_PER_SHARD,
    DEFAULT_ROW_GROUP_SIZE,
    ShardWriter,
    atomic_write_bytes,
    fsync_dir,
)
from mmre_cli.store.tables import graphs_to_tables


class GraphWriter:
    """Writes graphs as the aligned ``graphs``/``nodes``/``edges`` tables.

    Shard k of every one of the three tables holds the same graphs, so :func:`~.readers.iter_graphs`
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
            if self._pending and (self._pending_nodes + n > self.max_nodes or self._pending_edges + e > self.max_edges):
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
        fsync_dir(self.out_dir)
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
