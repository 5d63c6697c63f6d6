"""DVC stage ``build_graphs``: textual, caption and visual scene graphs, chunk by chunk.

For each chunk of the features artifact (see :mod:`stages._chunks`) it writes, in one shard of
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

from mmre_cli.errors import MmreError
from mmre_cli.reporting import Reporter
from stages._chunks import iter_feature_chunks, num_chunks, read_chunk, require_artifact
from stages._common import finish, reporter_or_null
from stages.extract_features import caption_owner, image_owner

SECTIONS = ["data", "build_graphs"]


def _check_dataset(features: Path, dataset_root: str) -> None:
    """The features must come from the dataset named on the command line."""
    import yaml

    effective = Path(features) / "params.effective.yaml"
    if not effective.exists():
        return
    used = (yaml.safe_load(effective.read_text()) or {}).get("data", {}).get("root")
    if used is not None and Path(used).resolve() != Path(dataset_root).resolve():
        raise MmreError(f"{features} was extracted from {used}, not {dataset_root}; rerun extract-features on it")


def chunk_graphs(chunk, feats, nlp, cfg) -> list:
    """All scene graphs of one chunk, in a fixed order (text graphs, captions, images)."""
    from mmre_cli.graphs.nlp import parse_pretokenized, parse_texts
    from mmre_cli.graphs.textual import caption_graph, text_graph
    from mmre_cli.graphs.visual import visual_graph

    graphs = []
    docs = parse_pretokenized(nlp, [list(inst.tokens) for inst in chunk], batch_size=cfg["batch_size"])
    for inst, doc in zip(chunk, docs):
        graph = text_graph(f"{inst.sample_id}:text", inst, doc)
        graph.meta["sample_id"] = inst.sample_id
        graphs.append(graph)
    if cfg["caption_graph"]:
        captions: dict[str, str] = {}
        for inst in chunk:
            key = caption_owner(inst)
            if key is not None:
                captions.setdefault(key, inst.caption)
        keys = list(captions)
        for key, doc in zip(keys, parse_texts(nlp, [captions[k] for k in keys], batch_size=cfg["batch_size"])):
            graphs.append(caption_graph(key, doc))
    seen = set()
    for inst in chunk:
        key = image_owner(inst)
        if key is None or key in seen:
            continue
        seen.add(key)
        objects = feats.units(key, "object")
        if not objects and feats.get(key, "image") is None:
            continue
        boxes = np.stack([box for _, _, box in objects]) if objects else np.zeros((0, 4), np.float32)
        graphs.append(visual_graph(key, boxes, [text or "object" for _, text, _ in objects],
                                   with_image_node=feats.get(key, "image") is not None, max_objects=len(objects)))
    return graphs


def run(*, features: Path, out: Path, params: dict, stats: Path | None = None, reporter: Reporter | None = None) -> dict:
    """Run the stage; returns (and writes) its statistics."""
    from mmre_cli.graphs.nlp import load_spacy
    from mmre_cli.params import params_hash
    from mmre_cli.store.shards import ArtifactWriter, read_manifest

    reporter = reporter_or_null(reporter)
    features, out = Path(features), Path(out)
    require_artifact(features, "extract-features")
    _check_dataset(features, params["data"]["root"])
    cfg = params["build_graphs"]
    nlp = load_spacy(cfg["spacy_model"])
    upstream = read_manifest(features)["params_hash"]
    phash = params_hash(params, SECTIONS) + "-" + upstream
    total = num_chunks(features, "samples")
    with ArtifactWriter(out, stage="build_graphs", dim=0, params_hash=phash, resume=True) as art:
        gw = art.graph_writer(max_graphs_per_shard=1 << 30, max_nodes_per_shard=1 << 40, max_edges_per_shard=1 << 40)
        done = len(gw.writers["graphs"].shards)
        instances_total = sum(read_chunk(features, "samples", k).num_rows for k in range(total))
        with reporter.progress("build-graphs", total=instances_total) as task:
            for k in range(done):
                task.advance(read_chunk(features, "samples", k).num_rows)
            for k, chunk, feats in iter_feature_chunks(features, start=done):
                graphs = chunk_graphs(chunk, feats, nlp, cfg)
                gw.write(graphs)
                gw.roll()
                task.advance(len(chunk))
    return finish(out, params, SECTIONS, {"resumed_chunks": done, "chunks": total, **scene_statistics(out)}, stats, upstream=(features,))


def graph_view(graph_id: str) -> str:
    """``text`` / ``caption`` / ``visual`` from a scene graph's id."""
    if graph_id.endswith(":text"):
        return "text"
    return "caption" if graph_id.startswith("caption:") else "visual"


def scene_statistics(graphs_dir: Path) -> dict:
    """Per view: graphs, mean/median nodes and edges, edges by type (over the whole artifact)."""
    from mmre_cli.graphs.graph import EDGE_TYPES
    from mmre_cli.store.shards import iter_graphs

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
        out[name] = {"graphs": n,
                     "mean_nodes": float(np.mean(v["nodes"])) if n else 0.0,
                     "median_nodes": float(np.median(v["nodes"])) if n else 0.0,
                     "mean_edges": float(np.mean(v["edges"])) if n else 0.0,
                     "median_edges": float(np.median(v["edges"])) if n else 0.0,
                     "edges_by_type": v["by_type"]}
    return out
