"""DVC stage ``diffuse``: the trained editor's edits, then feature diffusion with pruning (Alg. 3).

For every CMG (all splits, streamed in stored order):

1. if the editor is enabled, :func:`~mmre_cli.learn.agent.edit_graphs` picks its edits greedily
   and :func:`~mmre_cli.graphs.refine.apply_edit_record` applies them to the stored graph;
2. if diffusion is enabled, the relevance prior ``v0`` of each node is
   ``max(0, cos(x_i, (x_head + x_tail)/2))`` (``relevance: clipped``, default) or
   ``(1 + cos)/2`` (``shifted``), or learned (``editor``: one minus how much the trained editor
   wants to delete the node, :func:`~mmre_cli.learn.agent.editor_relevance`) — in [0, 1] each
   way, so ``τ`` means something — and
   ``v ← α·Â·v + (1−α)·v0`` runs ``max_iter`` steps with PyG's ``APPNP`` (row-normalised Â,
   edges made undirected); with ``prune: minmax`` (default) ``v`` is rescaled per graph to span
   [0, 1] (``(v − min) / (max − min)``), so ``τ`` is a share of each graph's relevance range;
   each edge gets ``w_ij = (v_i + v_j)/2`` in its weight column, and edges with ``w_ij < τ``
   are pruned unless they touch the head or the tail (``prune: quantile``: below the
   ``τ``-quantile of the graph's edge weights; ``absolute``: ``τ`` on the raw ``v``, the paper's
   rule, which on MNRE pruned 15 of 340,357 edges).

The refined graphs are written like the merged ones; ``meta`` keeps the edits (with
``deleted_words``: the sentence token indices whose token nodes the editor removed), the
relevance and the pruned edges (for evaluation and ``mmre predict --explain``). The stats report
``pruned_ratio`` (pruned / edges entering diffusion, i.e. after the editor) and the
per-graph mean ``pruned_ratio_mean_graph``.
"""

from __future__ import annotations

from pathlib import Path

from mmre_cli.graphs.graph import Graph
from mmre_cli.params import declared, params_hash, stage_view
from mmre_cli.pipeline.chunks import require_artifact
from mmre_cli.pipeline.devices import cpu_threads
from mmre_cli.pipeline.editor import EDITOR_PARAMS, load_editor, refine
from mmre_cli.pipeline.records import finish
from mmre_cli.reporting import Reporter, reporter_or_null
from mmre_cli.store.manifest import num_rows, read_manifest
from mmre_cli.store.readers import iter_graphs
from mmre_cli.store.writers import ArtifactWriter

#: the params this stage reads (dvc.yaml lists the same; tests/test_params_declared.py);
#: train_agent's keys configure the editor it applies
PARAMS = declared(
    *EDITOR_PARAMS,
    "diffuse.enabled",
    "diffuse.alpha",
    "diffuse.max_iter",
    "diffuse.tau",
    "diffuse.prune",
    "diffuse.relevance",
)


def run(
    *, cmg: Path, agent: Path, out: Path, params: dict, stats: Path | None = None, reporter: Reporter | None = None
) -> dict:
    """Run the stage; returns (and writes) its statistics."""
    reporter = reporter_or_null(reporter)
    cmg, agent_dir, out = Path(cmg), Path(agent), Path(out)
    params = stage_view(params, PARAMS)
    require_artifact(cmg, "merge-cmg")
    cpu_threads()
    editor, agent_cfg = load_editor(agent_dir, params)
    dcfg = params["diffuse"]
    man = read_manifest(cmg)
    phash = params_hash(params, PARAMS) + "-" + man["params_hash"]
    totals = {
        "graphs": 0,
        "nodes_before": 0,
        "nodes_after": 0,
        "edges_before": 0,
        "edges_after": 0,
        "deleted_nodes": 0,
        "added_edges": 0,
        "pruned_edges": 0,
        "edges_diffused": 0,
    }
    graph_ratios: list[float] = []
    batch_size = 256
    with ArtifactWriter(
        out, stage="diffuse", encoder=man["encoder"], dim=man["dim"], params_hash=phash, info=man.get("info", {})
    ) as art:
        gw = art.graph_writer()
        pending: list[Graph] = []

        def flush() -> None:
            refined = refine(pending, editor, agent_cfg, dcfg)
            for before, after in zip(pending, refined):
                totals["graphs"] += 1
                totals["nodes_before"] += before.num_nodes
                totals["nodes_after"] += after.num_nodes
                totals["edges_before"] += before.num_edges
                totals["edges_after"] += after.num_edges
                edits = after.meta.get("edits", {})
                totals["deleted_nodes"] += len(edits.get("deleted_nodes", []))
                totals["added_edges"] += 2 * len(edits.get("added_edges", []))
                pruned = len(after.meta.get("pruned_edges", []))
                totals["pruned_edges"] += pruned
                totals["edges_diffused"] += after.num_edges + pruned
                if after.num_edges + pruned:
                    graph_ratios.append(pruned / (after.num_edges + pruned))
            gw.write(refined)
            pending.clear()

        with reporter.progress("diffuse", total=num_rows(cmg, "graphs")) as task:
            for g in iter_graphs(cmg):
                pending.append(g)
                if len(pending) == batch_size:
                    flush()
                    task.advance(batch_size)
            if pending:
                n = len(pending)
                flush()
                task.advance(n)
    result = dict(totals)
    result["agent_enabled"] = editor is not None
    result["diffusion_enabled"] = bool(dcfg["enabled"])
    if totals["nodes_before"]:
        result["node_filter_ratio"] = totals["deleted_nodes"] / totals["nodes_before"]
    if dcfg["enabled"]:
        result["prune_rule"], result["tau"] = dcfg["prune"], dcfg["tau"]
    if totals["edges_before"]:
        result["pruned_ratio"] = totals["pruned_edges"] / max(1, totals["edges_diffused"])
        result["added_ratio"] = totals["added_edges"] / totals["edges_before"]
    if graph_ratios:
        result["pruned_ratio_mean_graph"] = sum(graph_ratios) / len(graph_ratios)
    return finish(out, params, PARAMS, result, stats, upstream=(cmg, agent_dir))
