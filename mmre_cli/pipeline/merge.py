"""The cross-modal graph (CMG) of one instance from its chunk's scene graphs and features
(merge-cmg, predict)."""

from __future__ import annotations

import numpy as np

from mmre_cli.errors import MmreError
from mmre_cli.graphs.graph import Graph
from mmre_cli.pipeline.chunks import OwnerFeatures
from mmre_cli.pipeline.owners import caption_owner, image_owner, text_owner


def _with_x(graph: Graph, x: np.ndarray) -> Graph:
    from dataclasses import replace

    return replace(graph, x=np.asarray(x, np.float32))


def instance_cmg(inst, label: int, feats: OwnerFeatures, scene: dict[str, Graph], cfg: dict) -> Graph:
    """The CMG of one instance from its scene graphs and the chunk's features."""
    from mmre_cli.graphs.cmg import merge_cmg, pool_span_features
    from mmre_cli.graphs.visual import mark_visual_tail

    text = scene[f"{inst.sample_id}:text"]
    tokens = feats.units(text_owner(inst.tokens), "token")
    if len(tokens) != len(inst.tokens):
        raise MmreError(
            f"{inst.sample_id}: features hold {len(tokens)} token vectors for {len(inst.tokens)} tokens; "
            "the features and graphs come from different runs — rerun the pipeline"
        )
    text = _with_x(text, pool_span_features(text, np.stack([v for v, _, _ in tokens])))

    caption = scene.get(caption_owner(inst) or "")
    if caption is not None and caption.num_nodes:
        rows = feats.units(caption_owner(inst), "caption")
        if len(rows) != caption.num_nodes:
            raise MmreError(
                f"{inst.sample_id}: {len(rows)} caption vectors for {caption.num_nodes} caption nodes; "
                f"rerun the pipeline"
            )
        caption = _with_x(caption, np.stack([v for v, _, _ in rows]))

    visual = scene.get(image_owner(inst) or "")
    if visual is not None and visual.num_nodes:
        if inst.tail.is_visual:
            visual = mark_visual_tail(visual, inst.tail.box, name=inst.tail.name)
        owner = image_owner(inst)
        objects = feats.units(owner, "object")
        image_row = feats.get(owner, "image")
        dim = feats.dim
        x = np.zeros((visual.num_nodes, dim), np.float32)
        for node, index in enumerate(visual.meta.get("object_index", [])):
            if index is None or index < 0:
                x[node] = image_row[0] if (visual.node_kind[node] == 3 and image_row is not None) else 0.0
            else:
                x[node] = objects[index][0]
        visual = _with_x(visual, x)
    cmg = merge_cmg(
        inst.sample_id,
        text,
        visual,
        caption,
        top_k=cfg["top_k"],
        threshold=cfg["threshold"],
        hops=cfg["hops"],
        label=label,
        cross_cooccur=cfg["cooccur"],
    )
    # the whole sentence and the entity spans, for classifiers that re-encode the text
    # (graph_to_data(..., words=True)); the 2-hop context keeps only some token nodes
    cmg.meta["words"] = list(inst.tokens)
    cmg.meta["entity_spans"] = [
        v for ent in (inst.head, inst.tail) for v in ((-1, -1) if ent.is_visual else (ent.start, ent.end))
    ]
    # the image's caption (its text view), for classifiers that read it as a second segment
    cmg.meta["img_id"] = inst.img_id
    cmg.meta["caption"] = inst.caption
    return cmg
