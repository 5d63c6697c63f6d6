"""DVC stage ``merge_cmg``: one cross-modal graph (CMG) per instance, features joined in.

Per chunk (see :mod:`mmre_cli.pipeline.chunks`): the sentence graph gets ``x`` by mean-pooling the token
vectors over each node's span; the caption graph takes the ``caption:k`` rows (node k = row k);
the visual graph the ``image`` and ``object:j`` rows. A MORE visual tail is marked on the object
whose box matches best. Then :func:`~mmre_cli.graphs.cmg.merge_cmg` adds co-occurrence and
similarity edges and keeps the ``hops``-hop context of the head and tail. Each CMG's meta also
records the whole sentence (``words``) and the head/tail token spans (``entity_spans``, ``-1``
for a visual entity), which a classifier that re-encodes the text needs
(:func:`mmre_cli.graphs.pyg.graph_to_data` with ``words=True``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from mmre_cli.errors import MmreError
from mmre_cli.graphs.graph import EDGE_TYPES, MODALITIES, NODE_KINDS, Graph
from mmre_cli.params import declared, params_hash, stage_view
from mmre_cli.pipeline.chunks import chunk_labels, iter_feature_chunks, num_chunks, read_chunk, require_artifact
from mmre_cli.pipeline.merge import instance_cmg
from mmre_cli.pipeline.records import finish
from mmre_cli.reporting import Reporter, reporter_or_null
from mmre_cli.store.manifest import read_manifest
from mmre_cli.store.readers import iter_batches, iter_graphs
from mmre_cli.store.tables import tables_to_graphs
from mmre_cli.store.writers import ArtifactWriter

#: the params this stage reads (dvc.yaml lists the same; tests/test_params_declared.py)
PARAMS = declared("merge_cmg.top_k", "merge_cmg.threshold", "merge_cmg.hops", "merge_cmg.cooccur")


def _chunk_scene_graphs(graphs_dir: Path, k: int) -> dict[str, Graph]:
    tables = [read_chunk(graphs_dir, name, k) for name in ("graphs", "nodes", "edges")]
    return {g.graph_id: g for g in tables_to_graphs(*tables)}


def run(
    *,
    features: Path,
    graphs: Path,
    out: Path,
    params: dict,
    stats: Path | None = None,
    reporter: Reporter | None = None,
) -> dict:
    """Run the stage; returns (and writes) its statistics."""
    reporter = reporter_or_null(reporter)
    features, graphs, out = Path(features), Path(graphs), Path(out)
    params = stage_view(params, PARAMS)
    require_artifact(features, "extract-features")
    require_artifact(graphs, "build-graphs")
    total = num_chunks(features, "samples")
    if num_chunks(graphs, "graphs") != total:
        raise MmreError(
            f"{graphs} has {num_chunks(graphs, 'graphs')} chunks but {features} has {total}; rerun build-graphs"
        )
    cfg = params["merge_cmg"]
    fman = read_manifest(features)
    phash = params_hash(params, PARAMS) + "-" + read_manifest(graphs)["params_hash"]
    with ArtifactWriter(
        out,
        stage="merge_cmg",
        encoder=fman["encoder"],
        dim=fman["dim"],
        params_hash=phash,
        resume=True,
        info=fman.get("info", {}),
    ) as art:
        gw = art.graph_writer(max_graphs_per_shard=1 << 30, max_nodes_per_shard=1 << 40, max_edges_per_shard=1 << 40)
        done = len(gw.writers["graphs"].shards)
        n_total = sum(read_chunk(features, "samples", k).num_rows for k in range(total))
        with reporter.progress("merge-cmg", total=n_total) as task:
            for k in range(done):
                task.advance(read_chunk(features, "samples", k).num_rows)
            for k, chunk, feats in iter_feature_chunks(features, start=done):
                scene = _chunk_scene_graphs(graphs, k)
                labels = chunk_labels(features, k)
                cmgs = []
                for inst, label in zip(chunk, labels):
                    cmg = instance_cmg(inst, int(label), feats, scene, cfg)
                    cmg.meta["sample_id"] = inst.sample_id
                    cmg.meta["split"] = inst.split
                    cmgs.append(cmg)
                gw.write(cmgs)
                gw.roll()
                task.advance(len(chunk))
    return finish(
        out,
        params,
        PARAMS,
        {"resumed_chunks": done, **cmg_statistics(out, features)},
        stats,
        upstream=(features, graphs),
    )


def cmg_statistics(cmg_dir: Path, features: Path) -> dict:
    """Counts over the written CMGs (so a resumed run reports the whole artifact)."""
    captioned = set()
    for batch in iter_batches(features, "samples", columns=["sample_id", "caption"]):
        ids = batch.column(0).to_pylist()
        has = pc.greater(pc.utf8_length(pc.fill_null(batch.column(1), "")), 0).to_pylist()
        captioned.update(i for i, h in zip(ids, has) if h)
    cap = MODALITIES.index("caption")
    stats = {"graphs": 0, "with_caption": 0, "caption_with_cross_edge": 0, "head_and_tail_present": 0}
    by_type = {t: 0 for t in EDGE_TYPES}
    by_kind = {k: 0 for k in NODE_KINDS}
    nodes, edges = [], []
    for g in iter_graphs(cmg_dir):
        stats["graphs"] += 1
        nodes.append(g.num_nodes)
        edges.append(g.num_edges)
        for t, c in zip(*np.unique(g.edge_type, return_counts=True)):
            by_type[EDGE_TYPES[int(t)]] += int(c)
        for k, c in zip(*np.unique(g.node_kind, return_counts=True)):
            by_kind[NODE_KINDS[int(k)]] += int(c)
        roles = set(g.node_role.tolist())
        stats["head_and_tail_present"] += int({1, 2} <= roles)
        if g.meta.get("sample_id", g.graph_id) in captioned:
            stats["with_caption"] += 1
            mod = g.node_modality
            src, dst = g.edge_index
            cross = (mod[src] != mod[dst]) & ((mod[src] == cap) | (mod[dst] == cap))
            stats["caption_with_cross_edge"] += int(bool(cross.any()))
    if nodes:
        stats.update(
            mean_nodes=float(np.mean(nodes)),
            median_nodes=float(np.median(nodes)),
            mean_edges=float(np.mean(edges)),
            median_edges=float(np.median(edges)),
        )
        stats["mean_nodes_by_kind"] = {k: v / len(nodes) for k, v in by_kind.items()}
        stats["mean_edges_by_type"] = {k: v / len(nodes) for k, v in by_type.items()}
    return stats
