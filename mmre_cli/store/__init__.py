"""The Parquet artifact store: schemas, atomic sharded writers, streaming readers, validation.

An artifact is a directory of tables; each table is a set of shards ``TABLE-00000.parquet``, ...
plus one ``manifest.json`` (tables, shard files, row counts, sha256) written last and atomically.
Schemas are in :mod:`.schemas` (written out in its docstring), conversions from/to
:class:`~mmre_cli.data.instance.Instance` and :class:`~mmre_cli.graphs.graph.Graph` in
:mod:`.tables`, the directory layout and ``manifest.json`` in :mod:`.manifest`, one table's
shards written by :mod:`.shard_writer`, whole artifacts by :mod:`.writers`, streaming readers in
:mod:`.readers`, and ``validate`` in :mod:`.validate`.

Typical use::

    from mmre_cli import store

    with store.ArtifactWriter(out, stage="graphs", encoder="clip", dim=512, params_hash=h) as art:
        art.write("samples", store.instances_to_table(instances, label_to_id))
        art.graph_writer().write(graphs)

    for g in store.iter_graphs(out):
        ...
    problems = store.validate(out)   # [] when OK

Nothing here imports torch.
"""

from mmre_cli.store.manifest import MANIFEST, ShardInfo, num_rows, read_manifest, shard_paths, table_names
from mmre_cli.store.readers import (
    iter_batches,
    iter_graphs,
    iter_instances,
    read_graphs,
    read_instances,
    read_meta,
    read_schema,
    read_table,
)
from mmre_cli.store.schemas import (
    GRAPH_TABLES,
    META_KEYS,
    SCHEMAS,
    decode_metadata,
    edges_schema,
    features_schema,
    graphs_schema,
    make_metadata,
    nodes_schema,
    samples_schema,
    schema_for,
    table_schema,
    vector,
    with_metadata,
)
from mmre_cli.store.shard_writer import PARQUET_OPTIONS, ShardWriter
from mmre_cli.store.tables import (
    array_to_vectors,
    features_to_table,
    graphs_to_tables,
    instances_to_table,
    table_to_instances,
    tables_to_graphs,
    vectors_to_array,
)
from mmre_cli.store.validate import ValidationReport, check, validate
from mmre_cli.store.writers import ArtifactWriter, GraphWriter, write_artifact

__all__ = [
    "GRAPH_TABLES",
    "META_KEYS",
    "SCHEMAS",
    "MANIFEST",
    "PARQUET_OPTIONS",
    "decode_metadata",
    "edges_schema",
    "features_schema",
    "graphs_schema",
    "make_metadata",
    "nodes_schema",
    "samples_schema",
    "schema_for",
    "table_schema",
    "vector",
    "with_metadata",
    "ArtifactWriter",
    "GraphWriter",
    "ShardInfo",
    "ShardWriter",
    "iter_batches",
    "iter_graphs",
    "iter_instances",
    "num_rows",
    "read_graphs",
    "read_instances",
    "read_manifest",
    "read_meta",
    "read_schema",
    "read_table",
    "shard_paths",
    "table_names",
    "write_artifact",
    "array_to_vectors",
    "features_to_table",
    "graphs_to_tables",
    "instances_to_table",
    "table_to_instances",
    "tables_to_graphs",
    "vectors_to_array",
    "ValidationReport",
    "check",
    "validate",
]
