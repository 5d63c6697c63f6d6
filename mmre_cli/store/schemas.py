"""Arrow schemas of every artifact table, and the ``mmre.*`` schema metadata.

Every table is built by a function of the embedding dim ``D`` where it has an embedding column,
so a reader can rebuild the exact expected schema from the metadata of a shard and compare.
List children are named ``element`` (the Parquet-compliant name) so that a schema read back from
a shard compares equal to the one built here.

Tables
------

``samples`` (one row per :class:`~mmre_cli.data.instance.Instance`)::

    sample_id     string          not null   "{split}-{line:06d}"
    split         string          not null
    tokens        list<string>    not null
    head_name     string          not null
    head_start    int32           not null   -1 for a visual entity
    head_end      int32           not null   exclusive; -1 for a visual entity
    head_box      fixed_size_list<float32>[4]   null for a text entity (cx, cy, w, h)
    tail_name     string          not null
    tail_start    int32           not null
    tail_end      int32           not null
    tail_box      fixed_size_list<float32>[4]   null for a text entity (MORE: visual tails)
    relation      string                     null when unlabelled
    label         int32           not null   relation id, -1 unlabelled
    img_id        string
    image_path    string
    image_status  string          not null   "ok" | "missing" | "none"
    caption       string
    source        string          not null   "path:line"

``features`` (one row per embedded unit of a sample)::

    sample_id  string                        not null
    unit       string                        not null   "token:3", "entity:head", "image",
                                                        "object:0", "caption:0", ...
    kind       string                        not null   free-form family, e.g. "token"
    text       string                                   the text that was embedded, if any
    box        fixed_size_list<float32>[4]              normalised (x1, y1, x2, y2); null if none
    emb        fixed_size_list<float32>[D]   not null

``graphs`` / ``nodes`` / ``edges`` (one :class:`~mmre_cli.graphs.graph.Graph` = one ``graphs`` row,
``num_nodes`` ``nodes`` rows and ``num_edges`` ``edges`` rows, all keyed by ``graph_id``)::

    graphs: graph_id   string  not null
            sample_id  string  not null   meta["sample_id"] if present, else graph_id
            label      int32   not null   -1 unlabelled
            num_nodes  int32   not null
            num_edges  int32   not null
            meta       string  not null   JSON object (sorted keys)

    nodes:  graph_id   string  not null
            node       int32   not null   0 .. num_nodes-1, in order
            kind       int8    not null   index into graphs.graph.NODE_KINDS
            modality   int8    not null   index into graphs.graph.MODALITIES
            role       int8    not null   ROLE_OTHER / ROLE_HEAD / ROLE_TAIL
            text       string  not null
            box        fixed_size_list<float32>[4]   not null; NaN for non-visual nodes
            x          fixed_size_list<float32>[D]   null when the graph has no features
                       (the column is absent altogether when D == 0)

    edges:  graph_id   string  not null
            src        int32   not null
            dst        int32   not null
            type       int8    not null   index into graphs.graph.EDGE_TYPES
            label      string  not null   "" when none
            attr       fixed_size_list<float32>[EDGE_ATTR_DIM]   not null

Schema metadata (bytes keys and values, in this order): ``mmre.schema_version``,
``mmre.table``, ``mmre.stage``, ``mmre.encoder``, ``mmre.dim``, ``mmre.params_hash``.
"""

from __future__ import annotations

from typing import Callable

import pyarrow as pa

from mmre_cli import SCHEMA_VERSION
from mmre_cli.graphs.graph import EDGE_ATTR_DIM

META_KEYS = ("mmre.schema_version", "mmre.table", "mmre.stage", "mmre.encoder", "mmre.dim", "mmre.params_hash")

BOX_DIM = 4


def vector(dim: int) -> pa.DataType:
    """``fixed_size_list<float32>[dim]`` with the Parquet-compliant child name ``element``."""
    if dim < 1:
        raise ValueError(f"vector dim must be >= 1, got {dim}")
    return pa.list_(pa.field("element", pa.float32()), dim)


def string_list() -> pa.DataType:
    return pa.list_(pa.field("element", pa.string()))


def _f(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


def samples_schema(dim: int = 0) -> pa.Schema:
    """Schema of the ``samples`` table (``dim`` is ignored; accepted for uniformity)."""
    box = vector(BOX_DIM)
    return pa.schema(
        [
            _f("sample_id", pa.string()),
            _f("split", pa.string()),
            _f("tokens", string_list()),
            _f("head_name", pa.string()),
            _f("head_start", pa.int32()),
            _f("head_end", pa.int32()),
            _f("head_box", box, True),
            _f("tail_name", pa.string()),
            _f("tail_start", pa.int32()),
            _f("tail_end", pa.int32()),
            _f("tail_box", box, True),
            _f("relation", pa.string(), True),
            _f("label", pa.int32()),
            _f("img_id", pa.string(), True),
            _f("image_path", pa.string(), True),
            _f("image_status", pa.string()),
            _f("caption", pa.string(), True),
            _f("source", pa.string()),
        ]
    )


def features_schema(dim: int) -> pa.Schema:
    """Schema of the ``features`` table; ``emb`` is ``fixed_size_list<float32>[dim]``."""
    return pa.schema(
        [
            _f("sample_id", pa.string()),
            _f("unit", pa.string()),
            _f("kind", pa.string()),
            _f("text", pa.string(), True),
            _f("box", vector(BOX_DIM), True),
            _f("emb", vector(dim)),
        ]
    )


def graphs_schema(dim: int = 0) -> pa.Schema:
    """Schema of the ``graphs`` table (one row per graph)."""
    return pa.schema(
        [
            _f("graph_id", pa.string()),
            _f("sample_id", pa.string()),
            _f("label", pa.int32()),
            _f("num_nodes", pa.int32()),
            _f("num_edges", pa.int32()),
            _f("meta", pa.string()),
        ]
    )


def nodes_schema(dim: int) -> pa.Schema:
    """Schema of the ``nodes`` table; ``x`` is ``fixed_size_list<float32>[dim]``, absent if dim == 0."""
    fields = [
        _f("graph_id", pa.string()),
        _f("node", pa.int32()),
        _f("kind", pa.int8()),
        _f("modality", pa.int8()),
        _f("role", pa.int8()),
        _f("text", pa.string()),
        _f("box", vector(BOX_DIM)),
    ]
    if dim > 0:
        fields.append(_f("x", vector(dim), True))
    return pa.schema(fields)


def edges_schema(dim: int = 0) -> pa.Schema:
    """Schema of the ``edges`` table (``dim`` ignored)."""
    return pa.schema(
        [
            _f("graph_id", pa.string()),
            _f("src", pa.int32()),
            _f("dst", pa.int32()),
            _f("type", pa.int8()),
            _f("label", pa.string()),
            _f("attr", vector(EDGE_ATTR_DIM)),
        ]
    )


#: The known tables and their schema builders (each takes the embedding dim).
SCHEMAS: dict[str, Callable[[int], pa.Schema]] = {
    "samples": samples_schema,
    "features": features_schema,
    "graphs": graphs_schema,
    "nodes": nodes_schema,
    "edges": edges_schema,
}

GRAPH_TABLES = ("graphs", "nodes", "edges")


def schema_for(table: str, dim: int) -> pa.Schema:
    """The expected schema (without metadata) of a known table. ``KeyError`` for unknown names."""
    try:
        build = SCHEMAS[table]
    except KeyError:
        raise KeyError(f"unknown artifact table {table!r}; known: {', '.join(SCHEMAS)}") from None
    return build(dim)


def make_metadata(table: str, *, stage: str, encoder: str, dim: int, params_hash: str) -> dict[bytes, bytes]:
    """The ``mmre.*`` schema metadata, as bytes, in a fixed order (no timestamps)."""
    values = (str(SCHEMA_VERSION), table, stage, encoder, str(int(dim)), params_hash)
    return {k.encode(): str(v).encode() for k, v in zip(META_KEYS, values)}


def with_metadata(schema: pa.Schema, table: str, *, stage: str, encoder: str, dim: int, params_hash: str) -> pa.Schema:
    """``schema`` with its metadata replaced by :func:`make_metadata`."""
    return schema.with_metadata(make_metadata(table, stage=stage, encoder=encoder, dim=dim, params_hash=params_hash))


def table_schema(table: str, *, dim: int, stage: str = "", encoder: str = "", params_hash: str = "") -> pa.Schema:
    """Expected schema of a known table with its ``mmre.*`` metadata attached."""
    return with_metadata(schema_for(table, dim), table, stage=stage, encoder=encoder, dim=dim, params_hash=params_hash)


def decode_metadata(schema: pa.Schema) -> dict[str, object]:
    """The ``mmre.*`` metadata of ``schema`` as ``{"schema_version": int, "table": str, "stage": str,
    "encoder": str, "dim": int, "params_hash": str}``; missing keys are absent from the dict.

    ``schema_version``/``dim`` stay strings if they are not integers (validation reports that).
    """
    raw = schema.metadata or {}
    out: dict[str, object] = {}
    for key in META_KEYS:
        value = raw.get(key.encode())
        if value is None:
            continue
        text = value.decode("utf-8", errors="replace")
        short = key.split(".", 1)[1]
        if short in ("schema_version", "dim"):
            try:
                out[short] = int(text)
                continue
            except ValueError:
                pass
        out[short] = text
    return out


def schema_diff(got: pa.Schema, want: pa.Schema) -> str:
    """One line describing how two schemas differ (ignoring metadata), or ``""`` if equal."""
    if got.equals(want, check_metadata=False):
        return ""
    got_names, want_names = got.names, want.names
    missing = [n for n in want_names if n not in got_names]
    extra = [n for n in got_names if n not in want_names]
    parts = []
    if missing:
        parts.append("missing columns " + ", ".join(missing))
    if extra:
        parts.append("unexpected columns " + ", ".join(extra))
    for name in want_names:
        if name in got_names:
            gf, wf = got.field(name), want.field(name)
            if not gf.equals(wf):
                parts.append(
                    f"column {name}: {gf.type}{'' if gf.nullable else ' not null'} "
                    f"!= expected {wf.type}{'' if wf.nullable else ' not null'}"
                )
    if not parts and got_names != want_names:
        parts.append(f"column order {got_names} != expected {want_names}")
    return "; ".join(parts) or "schemas differ"
