"""The scene graphs of one chunk: sentence, caption and visual graphs (build-graphs, predict)."""

from __future__ import annotations

import numpy as np

from mmre_cli.pipeline.owners import chunk_captions, image_owner


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
        captions = chunk_captions(chunk)
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
        graphs.append(
            visual_graph(
                key,
                boxes,
                [text or "object" for _, text, _ in objects],
                with_image_node=feats.get(key, "image") is not None,
                max_objects=len(objects),
            )
        )
    return graphs
