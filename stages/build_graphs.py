"""DVC stage ``build_graphs``: textual, caption and visual scene graphs, chunk by chunk.

For each chunk of the features artifact (see :mod:`mmre_cli.pipeline.chunks`) it writes, in one shard of
the ``graphs``/``nodes``/``edges`` tables:

* ``<sample_id>:text`` — the sentence graph of each instance (:func:`~mmre_cli.graphs.textual.text_graph`);
* ``caption:<img>`` — the caption graph of each captioned image, once per chunk;
* ``image:<img>`` — the visual graph of each image whose objects were detected or given.

Graphs carry no features here (``x`` is joined in by merge-cmg). spaCy runs once per chunk over
all sentences and captions with ``nlp.pipe``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from mmre_cli.errors import MmreError
from mmre_cli.graphs.graph import EDGE_TYPES
from mmre_cli.graphs.nlp import load_spacy
from mmre_cli.params import declared, params_hash, stage_view
from mmre_cli.pipeline.chunks import iter_feature_chunks, num_chunks, read_chunk, require_artifact
from mmre_cli.pipeline.records import finish
from mmre_cli.pipeline.scene import chunk_graphs
from mmre_cli.reporting import Reporter, reporter_or_null
from mmre_cli.store.manifest import read_manifest
from mmre_cli.store.readers import iter_graphs
from mmre_cli.store.writers import ArtifactWriter

#: the params this stage reads (dvc.yaml lists the same; tests/test_params_declared.py);
#: data.root: the features must come from the dataset named
PARAMS = declared("data.root", "build_graphs.spacy_model", "build_graphs.batch_size", "build_graphs.caption_graph")


def _check_dataset(features: Path, dataset_root: str) -> None:
    """The features must come from the dataset named on the command line."""
    effective = Path(features) / "params.effective.yaml"
    if not effective.exists():
        return
    used = (yaml.safe_load(effective.read_text()) or {}).get("data", {}).get("root")
    if used is not None and Path(used).resolve() != Path(dataset_root).resolve():
        raise MmreError(f"{features} was extracted from {used}, not {dataset_root}; rerun extract-features on it")


def run(
    *, features: Path, out: Path, params: dict, stats: Path | None = None, reporter: Reporter | None = None
) -> dict:
    """Run the stage; returns (and writes) its statistics."""
    reporter = reporter_or_null(reporter)
    features, out = Path(features), Path(out)
    params = stage_view(params, PARAMS)
    require_artifact(features, "extract-features")
    _check_dataset(features, params["data"]["root"])
    cfg = params["build_graphs"]
    nlp = load_spacy(cfg["spacy_model"])
    upstream = read_manifest(features)["params_hash"]
    phash = params_hash(params, PARAMS) + "-" + upstream
    total = num_chunks(features, "samples")
    with ArtifactWriter(out, stage="build_graphs", dim=0, params_hash=phash, resume=True) as art:
        gw = art.graph_writer(max_graphs_per_shard=1 << 30, max_nodes_per_shard=1 << 40, max_edges_per_shard=1 << 40)
        done = len(gw.writers["graphs"].shards)
        instances_total = sum(read_chunk(features, "samples", k).num_rows for k in range(total))
        with reporter.progress("build-graphs", total=instances_total) as task:
            for k in range(done):
                task.advance(read_chunk(features, "samples", k).num_rows)
            for _, chunk, feats in iter_feature_chunks(features, start=done):
                graphs = chunk_graphs(chunk, feats, nlp, cfg)
                gw.write(graphs)
                gw.roll()
                task.advance(len(chunk))
    return finish(
        out,
        params,
        PARAMS,
        {"resumed_chunks": done, "chunks": total, **scene_statistics(out)},
        stats,
        upstream=(features,),
    )


def graph_view(graph_id: str) -> str:
    """``text`` / ``caption`` / ``visual`` from a scene graph's id."""
    if graph_id.endswith(":text"):
        return "text"
    return "caption" if graph_id.startswith("caption:") else "visual"


def scene_statistics(graphs_dir: Path) -> dict:
    """Per view: graphs, mean/median nodes and edges, edges by type (over the whole artifact)."""
    views: dict[str, dict] = {}
    for g in iter_graphs(graphs_dir):
        v = views.setdefault(graph_view(g.graph_id), {"nodes": [], "edges": [], "by_type": {}})
        v["nodes"].append(g.num_nodes)
        v["edges"].append(g.num_edges)
        for t in g.edge_type.tolist():
            v["by_type"][EDGE_TYPES[t]] = v["by_type"].get(EDGE_TYPES[t], 0) + 1
    out = {}
    for name in ("text", "caption", "visual"):
        v = views.get(name, {"nodes": [], "edges": [], "by_type": {}})
        n = len(v["nodes"])
        out[name] = {
            "graphs": n,
            "mean_nodes": float(np.mean(v["nodes"])) if n else 0.0,
            "median_nodes": float(np.median(v["nodes"])) if n else 0.0,
            "mean_edges": float(np.mean(v["edges"])) if n else 0.0,
            "median_edges": float(np.median(v["edges"])) if n else 0.0,
            "edges_by_type": v["by_type"],
        }
    return out
