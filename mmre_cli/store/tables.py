"""Conversions between in-memory records and Arrow tables (the schemas of :mod:`.schemas`).

* :func:`instances_to_table` / :func:`table_to_instances` — ``samples``.
* :func:`features_to_table` — ``features`` from numpy arrays.
* :func:`graphs_to_tables` / :func:`tables_to_graphs` — ``graphs``/``nodes``/``edges``; the round
  trip is exact for numpy arrays (dtypes included: ``edge_index`` comes back int64, the small
  ids int8, boxes/attrs/x float32, ``x=None`` stays ``None``).

Round-trip caveats (documented, not bugs):
    * Entity boxes are stored as float32, so an Entity box comes back float32-rounded.
    * ``Instance.extra`` is not stored.
    * ``Graph.meta`` is stored as JSON: tuples come back as lists, numpy scalars/arrays as Python
      numbers/lists.
    * A graph with zero nodes always comes back with ``x=None``.
"""

from __future__ import annotations

import json
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from mmre_cli.data.instance import Entity, Instance
from mmre_cli.errors import InputError
from mmre_cli.graphs.graph import EDGE_ATTR_DIM, Graph
from mmre_cli.store.schemas import (
    BOX_DIM,
    edges_schema,
    features_schema,
    graphs_schema,
    nodes_schema,
    samples_schema,
    vector,
)

LabelLookup = Mapping[str, int] | Callable[[str], int] | None


# --------------------------------------------------------------------------- helpers


def vectors_to_array(values: np.ndarray, dim: int, valid: np.ndarray | None = None) -> pa.Array:
    """``[N, dim]`` float32 array -> ``fixed_size_list<float32>[dim]`` (rows null where ``~valid``)."""
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if flat.size % dim:
        raise ValueError(f"{flat.size} values do not split into rows of {dim}")
    mask = None
    if valid is not None and not bool(np.all(valid)):
        mask = pa.array(~np.asarray(valid, dtype=bool))
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), type=vector(dim), mask=mask)


def array_to_vectors(column: pa.Array | pa.ChunkedArray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``fixed_size_list<float32>[dim]`` column -> (``[N, dim]`` float32, ``[N]`` bool valid)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n = len(column)
    values = column.values.slice(column.offset * dim, n * dim)
    out = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(n, dim)
    if column.null_count:
        valid = ~column.is_null().to_numpy(zero_copy_only=False)
    else:
        valid = np.ones(n, dtype=bool)
    return out, valid


def _np(column: pa.ChunkedArray | pa.Array, dtype) -> np.ndarray:
    return np.asarray(column.to_numpy(), dtype=dtype)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"graph meta value of type {type(obj).__name__} is not JSON serialisable")


def meta_to_json(meta: dict) -> str:
    """Deterministic JSON for ``Graph.meta`` (sorted keys, compact separators)."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


# --------------------------------------------------------------------------- samples


def _lookup(label_map_lookup: LabelLookup, inst: Instance) -> int:
    if inst.relation is None:
        return -1
    if label_map_lookup is None:
        return -1
    if callable(label_map_lookup) and not isinstance(label_map_lookup, Mapping):
        return int(label_map_lookup(inst.relation))
    try:
        return int(label_map_lookup[inst.relation])
    except KeyError:
        where = f" ({inst.source})" if inst.source else ""
        raise InputError(f"relation {inst.relation!r} of {inst.sample_id}{where} is not in the label map") from None


def _box(e: Entity):
    return None if e.box is None else [float(v) for v in e.box]


def instances_to_table(instances: Sequence[Instance], label_map_lookup: LabelLookup = None) -> pa.Table:
    """Instances -> ``samples`` table (schema :func:`~.schemas.samples_schema`, no metadata).

    Args:
        instances: the records, written in order.
        label_map_lookup: relation string -> label id, as a mapping or a callable; ``None`` writes
            ``label = -1`` for every row. Instances with ``relation=None`` always get ``-1``.
            An unknown relation in a mapping raises :class:`~mmre_cli.errors.InputError`.
    """
    cols: dict[str, list] = {name: [] for name in samples_schema().names}
    for inst in instances:
        h, t = inst.head, inst.tail
        cols["sample_id"].append(inst.sample_id)
        cols["split"].append(inst.split)
        cols["tokens"].append(list(inst.tokens))
        cols["head_name"].append(h.name)
        cols["head_start"].append(int(h.start))
        cols["head_end"].append(int(h.end))
        cols["head_box"].append(_box(h))
        cols["tail_name"].append(t.name)
        cols["tail_start"].append(int(t.start))
        cols["tail_end"].append(int(t.end))
        cols["tail_box"].append(_box(t))
        cols["relation"].append(inst.relation)
        cols["label"].append(_lookup(label_map_lookup, inst))
        cols["img_id"].append(inst.img_id)
        cols["image_path"].append(inst.image_path)
        cols["image_status"].append(inst.image_status)
        cols["caption"].append(inst.caption)
        cols["source"].append(inst.source)
    schema = samples_schema()
    return pa.Table.from_pydict(cols, schema=schema)


def table_to_instances(table: pa.Table | pa.RecordBatch) -> list[Instance]:
    """``samples`` table (or batch) -> instances, in row order (``extra`` is empty)."""
    out = []
    for row in table.to_pylist():
        hb, tb = row["head_box"], row["tail_box"]
        out.append(
            Instance(
                sample_id=row["sample_id"],
                split=row["split"],
                tokens=tuple(row["tokens"]),
                head=Entity(row["head_name"], row["head_start"], row["head_end"], None if hb is None else tuple(hb)),
                tail=Entity(row["tail_name"], row["tail_start"], row["tail_end"], None if tb is None else tuple(tb)),
                relation=row["relation"],
                img_id=row["img_id"],
                image_path=row["image_path"],
                image_status=row["image_status"],
                caption=row["caption"],
                source=row["source"],
            )
        )
    return out


def table_labels(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """The ``label`` column of a ``samples`` table as int32 numpy."""
    return _np(table.column("label"), np.int32)


# --------------------------------------------------------------------------- features


def features_to_table(
    sample_ids: Sequence[str],
    units: Sequence[str],
    kinds: Sequence[str],
    emb: np.ndarray,
    *,
    texts: Sequence[str | None] | None = None,
    boxes: np.ndarray | None = None,
    box_valid: np.ndarray | None = None,
) -> pa.Table:
    """Parallel sequences -> ``features`` table (no metadata).

    Shapes:
        sample_ids, units, kinds, texts: ``[N]``
        emb: ``[N, D]`` float32
        boxes: ``[N, 4]`` float32 or ``None`` (all null); rows with ``box_valid == False`` or
        any NaN are written null.
    """
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2:
        raise ValueError(f"emb must be [N, D], got shape {emb.shape}")
    n, dim = emb.shape
    if not (len(sample_ids) == len(units) == len(kinds) == n):
        raise ValueError("sample_ids, units, kinds and emb must have the same length")
    if boxes is None:
        box_arr = vectors_to_array(np.zeros((n, BOX_DIM), np.float32), BOX_DIM, np.zeros(n, bool))
    else:
        boxes = np.asarray(boxes, dtype=np.float32).reshape(n, BOX_DIM)
        valid = ~np.isnan(boxes).any(axis=1)
        if box_valid is not None:
            valid &= np.asarray(box_valid, bool)
        box_arr = vectors_to_array(np.where(valid[:, None], boxes, 0.0), BOX_DIM, valid)
    return pa.Table.from_arrays(
        [
            pa.array(list(sample_ids), pa.string()),
            pa.array(list(units), pa.string()),
            pa.array(list(kinds), pa.string()),
            pa.array([None] * n if texts is None else list(texts), pa.string()),
            box_arr,
            vectors_to_array(emb, dim),
        ],
        schema=features_schema(dim),
    )


# --------------------------------------------------------------------------- graphs


def infer_dim(graphs: Iterable[Graph]) -> int:
    """D of the first graph with features, else 0."""
    for g in graphs:
        if g.x is not None and g.x.ndim == 2:
            return int(g.x.shape[1])
    return 0


def graphs_to_tables(graphs: Sequence[Graph], dim: int | None = None) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Graphs -> (``graphs``, ``nodes``, ``edges``) tables, rows in graph order.

    Args:
        graphs: validated graphs (``Graph.validate`` is called on each).
        dim: width D of the ``x`` column; ``None`` infers it from the first graph with ``x``
            (0 -> the ``nodes`` table has no ``x`` column, and every ``x`` must be ``None``).
    """
    if dim is None:
        dim = infer_dim(graphs)
    g_ids, g_sample, g_label, g_nn, g_ne, g_meta = [], [], [], [], [], []
    n_gid, n_node, n_kind, n_mod, n_role, n_text, n_box, x_parts, x_valid = [], [], [], [], [], [], [], [], []
    e_gid, e_src, e_dst, e_type, e_label, e_attr = [], [], [], [], [], []
    for g in graphs:
        g.validate()
        n, e = g.num_nodes, g.num_edges
        g_ids.append(g.graph_id)
        g_sample.append(str(g.meta.get("sample_id", g.graph_id)))
        g_label.append(int(g.label))
        g_nn.append(n)
        g_ne.append(e)
        g_meta.append(meta_to_json(g.meta))
        n_gid.extend([g.graph_id] * n)
        n_node.append(np.arange(n, dtype=np.int32))
        n_kind.append(np.asarray(g.node_kind, np.int8))
        n_mod.append(np.asarray(g.node_modality, np.int8))
        n_role.append(np.asarray(g.node_role, np.int8))
        n_text.extend(g.node_text)
        n_box.append(np.asarray(g.box, np.float32).reshape(n, BOX_DIM))
        if g.x is not None:
            if dim == 0 or g.x.shape != (n, dim):
                raise ValueError(f"{g.graph_id}: x has shape {g.x.shape}, want ({n}, {dim})")
            x_parts.append(np.asarray(g.x, np.float32))
            x_valid.append(np.ones(n, bool))
        elif dim:
            x_parts.append(np.zeros((n, dim), np.float32))
            x_valid.append(np.zeros(n, bool))
        e_gid.extend([g.graph_id] * e)
        e_src.append(np.asarray(g.edge_index[0], np.int32))
        e_dst.append(np.asarray(g.edge_index[1], np.int32))
        e_type.append(np.asarray(g.edge_type, np.int8))
        e_label.extend(g.edge_label)
        e_attr.append(np.asarray(g.edge_attr, np.float32).reshape(e, EDGE_ATTR_DIM))

    def cat(parts, dtype, width=None):
        if parts:
            return np.concatenate(parts).astype(dtype, copy=False)
        return np.zeros((0,) if width is None else (0, width), dtype)

    gt = pa.Table.from_arrays(
        [
            pa.array(g_ids, pa.string()),
            pa.array(g_sample, pa.string()),
            pa.array(g_label, pa.int32()),
            pa.array(g_nn, pa.int32()),
            pa.array(g_ne, pa.int32()),
            pa.array(g_meta, pa.string()),
        ],
        schema=graphs_schema(),
    )
    node_cols = [
        pa.array(n_gid, pa.string()),
        pa.array(cat(n_node, np.int32)),
        pa.array(cat(n_kind, np.int8)),
        pa.array(cat(n_mod, np.int8)),
        pa.array(cat(n_role, np.int8)),
        pa.array(n_text, pa.string()),
        vectors_to_array(cat(n_box, np.float32, BOX_DIM), BOX_DIM),
    ]
    if dim:
        node_cols.append(vectors_to_array(cat(x_parts, np.float32, dim), dim, cat(x_valid, bool)))
    nt = pa.Table.from_arrays(node_cols, schema=nodes_schema(dim))
    et = pa.Table.from_arrays(
        [
            pa.array(e_gid, pa.string()),
            pa.array(cat(e_src, np.int32)),
            pa.array(cat(e_dst, np.int32)),
            pa.array(cat(e_type, np.int8)),
            pa.array(e_label, pa.string()),
            vectors_to_array(cat(e_attr, np.float32, EDGE_ATTR_DIM), EDGE_ATTR_DIM),
        ],
        schema=edges_schema(),
    )
    return gt, nt, et


def _group_order(keys: np.ndarray, index: dict, what: str, extra: np.ndarray | None = None):
    """(order, group index per row) that sorts rows by graph (stable), then by ``extra``."""
    try:
        gidx = np.fromiter((index[k] for k in keys), dtype=np.int64, count=len(keys))
    except KeyError as exc:
        raise ValueError(f"{what} row refers to graph {exc.args[0]!r} which is not in the graphs table") from None
    if extra is None:
        sorted_already = bool(np.all(gidx[1:] >= gidx[:-1])) if len(gidx) else True
        order = None if sorted_already else np.argsort(gidx, kind="stable")
    else:
        order = np.lexsort((extra, gidx))
        if np.array_equal(order, np.arange(len(order))):
            order = None
    if order is not None:
        gidx = gidx[order]
    return order, gidx


def tables_to_graphs(graphs: pa.Table, nodes: pa.Table, edges: pa.Table) -> list[Graph]:
    """(``graphs``, ``nodes``, ``edges``) tables -> graphs, in ``graphs`` row order.

    Node rows are placed by their ``node`` id, edge rows keep their order within a graph. Rows
    need not be grouped (they are when written by :func:`graphs_to_tables`; that case is fast).
    Raises ``ValueError`` if the tables disagree (counts, ids out of range).
    """
    g_ids = graphs.column("graph_id").to_pylist()
    if len(set(g_ids)) != len(g_ids):
        raise ValueError("duplicate graph_id in graphs table")
    index = {gid: i for i, gid in enumerate(g_ids)}
    num_nodes = _np(graphs.column("num_nodes"), np.int64)
    num_edges = _np(graphs.column("num_edges"), np.int64)
    labels = _np(graphs.column("label"), np.int64)
    metas = graphs.column("meta").to_pylist()

    node_ids = _np(nodes.column("node"), np.int64)
    n_order, n_g = _group_order(
        np.asarray(nodes.column("graph_id").to_pylist(), dtype=object), index, "nodes", node_ids
    )
    e_order, e_g = _group_order(np.asarray(edges.column("graph_id").to_pylist(), dtype=object), index, "edges")

    def take(arr, order):
        return arr if order is None else arr[order]

    kind = take(_np(nodes.column("kind"), np.int8), n_order)
    modality = take(_np(nodes.column("modality"), np.int8), n_order)
    role = take(_np(nodes.column("role"), np.int8), n_order)
    text = nodes.column("text").to_pylist()
    if n_order is not None:
        text = [text[i] for i in n_order]
    node_ids = take(node_ids, n_order)
    box, _ = array_to_vectors(nodes.column("box"), BOX_DIM)
    box = take(box, n_order)
    has_x = "x" in nodes.column_names
    if has_x:
        dim = nodes.schema.field("x").type.list_size
        x_all, x_valid = array_to_vectors(nodes.column("x"), dim)
        x_all, x_valid = take(x_all, n_order), take(x_valid, n_order)

    src = take(_np(edges.column("src"), np.int64), e_order)
    dst = take(_np(edges.column("dst"), np.int64), e_order)
    etype = take(_np(edges.column("type"), np.int8), e_order)
    elabel = edges.column("label").to_pylist()
    if e_order is not None:
        elabel = [elabel[i] for i in e_order]
    attr, _ = array_to_vectors(edges.column("attr"), EDGE_ATTR_DIM)
    attr = take(attr, e_order)

    n_counts = np.bincount(n_g, minlength=len(g_ids)) if len(n_g) else np.zeros(len(g_ids), np.int64)
    e_counts = np.bincount(e_g, minlength=len(g_ids)) if len(e_g) else np.zeros(len(g_ids), np.int64)
    bad = np.nonzero((n_counts != num_nodes) | (e_counts != num_edges))[0]
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"graph {g_ids[i]!r}: {n_counts[i]} node rows / {e_counts[i]} edge rows, "
            f"graphs table says {num_nodes[i]} / {num_edges[i]}"
        )
    n_off = np.concatenate([[0], np.cumsum(num_nodes)])
    e_off = np.concatenate([[0], np.cumsum(num_edges)])

    out = []
    for i, gid in enumerate(g_ids):
        a, b = int(n_off[i]), int(n_off[i + 1])
        c, d = int(e_off[i]), int(e_off[i + 1])
        n = b - a
        if not np.array_equal(node_ids[a:b], np.arange(n)):
            raise ValueError(f"graph {gid!r}: node ids are not 0..{n - 1}")
        x = None
        if has_x and n:
            valid = x_valid[a:b]
            if valid.all():
                x = x_all[a:b].copy()
            elif valid.any():
                raise ValueError(f"graph {gid!r}: x is null for some nodes but not all")
        g = Graph(
            graph_id=gid,
            node_kind=kind[a:b].copy(),
            node_modality=modality[a:b].copy(),
            node_role=role[a:b].copy(),
            node_text=list(text[a:b]),
            box=box[a:b].copy(),
            edge_index=np.stack([src[c:d], dst[c:d]]).astype(np.int64, copy=False)
            if d > c
            else np.zeros((2, 0), np.int64),
            edge_type=etype[c:d].copy(),
            edge_label=list(elabel[c:d]),
            edge_attr=attr[c:d].copy(),
            x=x,
            label=int(labels[i]),
            meta=json.loads(metas[i]) if metas[i] else {},
        )
        if d > c and (g.edge_index.min() < 0 or g.edge_index.max() >= n):
            raise ValueError(f"graph {gid!r}: edge endpoint outside [0, {n})")
        out.append(g)
    return out
