"""Visual scene graphs: detected (or dataset-given) objects as nodes, spatial relations as edges.

Boxes are normalised corner boxes ``(x1, y1, x2, y2)`` in [0, 1], image y growing downwards.

Spatial features of an ordered pair ``(a, b)`` (:func:`spatial_features`), in this order:

* ``iou`` = area(a∩b) / area(a∪b) (0 when the union is empty);
* ``contain`` = area(a∩b) / area(a), the fraction of ``a`` covered by ``b`` (0 when area(a) = 0);
* ``dx``, ``dy`` = centre of ``b`` minus centre of ``a``;
* ``log_area_ratio`` = log(max(area(b), eps) / max(area(a), eps)), eps = 1e-6.

Spatial label of ``(a, b)`` (:func:`spatial_label`, read "a <label> b"), first rule that fires:

1. ``inside``   — ``cover(a) >= 0.9`` and ``cover(b) < 0.9``, where ``cover(a)`` =
   area(a∩b)/area(a) and ``cover(b)`` = area(a∩b)/area(b) (:data:`CONTAIN_THRESHOLD`);
2. ``contains`` — ``cover(b) >= 0.9`` and ``cover(a) < 0.9``;
3. ``overlaps`` — ``iou >= 0.1`` (:data:`OVERLAP_IOU`), or both covers >= 0.9 (near-identical
   boxes), or the two centres coincide;
4. otherwise by the centre offset ``(dx, dy)`` of b relative to a: if ``|dx| >= |dy|``,
   ``left_of`` when ``dx > 0`` (b lies to the right, so a is left of b) else ``right_of``;
   otherwise ``above`` when ``dy > 0`` (b lies lower) else ``below``.

Graph (:func:`visual_graph`, modality ``visual``): node 0 is the whole image (kind ``image``, box
``(0, 0, 1, 1)``, unless ``with_image_node=False``), then the objects (kind ``object``, text =
class label) sorted by score (highest first, ties by input order), at most ``max_objects``.
Edges: ``part_of_image`` object -> image, and ``spatial`` for every ordered pair of distinct
objects (``edge_label`` = spatial label). ``edge_attr`` = ``[1, iou, contain, dx, dy,
log_area_ratio, 0]`` of (source, target) for both kinds of edge.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .graph import EDGE_ATTR_DIM, EDGE_TYPES, MODALITIES, NODE_KINDS, ROLE_OTHER, ROLE_TAIL, Graph, empty_graph

#: ``cover >= CONTAIN_THRESHOLD`` counts as lying inside the other box.
CONTAIN_THRESHOLD = 0.9
#: IoU from which two boxes are said to overlap (rather than lie beside each other).
OVERLAP_IOU = 0.1
_EPS = 1e-6

_K = {k: i for i, k in enumerate(NODE_KINDS)}
_E = {e: i for i, e in enumerate(EDGE_TYPES)}
_VISUAL = MODALITIES.index("visual")
IMAGE_BOX = (0.0, 0.0, 1.0, 1.0)


def _area(b) -> float:
    return max(0.0, float(b[2]) - float(b[0])) * max(0.0, float(b[3]) - float(b[1]))


def _inter(a, b) -> float:
    w = min(float(a[2]), float(b[2])) - max(float(a[0]), float(b[0]))
    h = min(float(a[3]), float(b[3])) - max(float(a[1]), float(b[1]))
    return max(0.0, w) * max(0.0, h)


def box_iou(a, b) -> float:
    """IoU of two corner boxes (0 when the union is empty)."""
    inter = _inter(a, b)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def cxcywh_to_xyxy(box) -> tuple[float, float, float, float]:
    """``(cx, cy, w, h)`` (MORE's entity-box convention) -> ``(x1, y1, x2, y2)``."""
    cx, cy, w, h = (float(v) for v in box)
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def spatial_features(a, b) -> np.ndarray:
    """``[iou, contain, dx, dy, log_area_ratio]`` (float32) of the ordered pair ``(a, b)``."""
    inter = _inter(a, b)
    area_a, area_b = _area(a), _area(b)
    union = area_a + area_b - inter
    iou = inter / union if union > 0 else 0.0
    contain = inter / area_a if area_a > 0 else 0.0
    dx = (float(b[0]) + float(b[2])) / 2 - (float(a[0]) + float(a[2])) / 2
    dy = (float(b[1]) + float(b[3])) / 2 - (float(a[1]) + float(a[3])) / 2
    lar = float(np.log(max(area_b, _EPS) / max(area_a, _EPS)))
    return np.asarray([iou, contain, dx, dy, lar], np.float32)


def spatial_label(a, b) -> str:
    """The spatial relation "a <label> b" (rules in the module docstring)."""
    inter = _inter(a, b)
    area_a, area_b = _area(a), _area(b)
    cover_a = inter / area_a if area_a > 0 else 0.0
    cover_b = inter / area_b if area_b > 0 else 0.0
    union = area_a + area_b - inter
    iou = inter / union if union > 0 else 0.0
    in_a, in_b = cover_a >= CONTAIN_THRESHOLD, cover_b >= CONTAIN_THRESHOLD
    if in_a and not in_b:
        return "inside"
    if in_b and not in_a:
        return "contains"
    dx = (float(b[0]) + float(b[2])) / 2 - (float(a[0]) + float(a[2])) / 2
    dy = (float(b[1]) + float(b[3])) / 2 - (float(a[1]) + float(a[3])) / 2
    if iou >= OVERLAP_IOU or (in_a and in_b) or (dx == 0 and dy == 0):
        return "overlaps"
    if abs(dx) >= abs(dy):
        return "left_of" if dx > 0 else "right_of"
    return "above" if dy > 0 else "below"


def _assemble(
    graph_id: str,
    boxes: np.ndarray,
    labels: list[str],
    scores: list[float],
    object_index: list[int],
    with_image_node: bool,
) -> Graph:
    m = len(labels)
    off = 1 if with_image_node else 0
    n = m + off
    node_kind = np.full(n, _K["object"], np.int8)
    node_text = list(labels)
    box = np.asarray(boxes, np.float32).reshape(m, 4)
    if with_image_node:
        node_kind[0] = _K["image"]
        node_text = ["image"] + node_text
        box = np.concatenate([np.asarray([IMAGE_BOX], np.float32), box], 0)
    src, dst, etype, elabel, attrs = [], [], [], [], []
    for i in range(m):
        if with_image_node:
            src.append(i + off)
            dst.append(0)
            etype.append(_E["part_of_image"])
            elabel.append("")
            attrs.append(spatial_features(box[i + off], IMAGE_BOX))
    for i in range(m):
        for j in range(m):
            if i == j:
                continue
            a, b = box[i + off], box[j + off]
            src.append(i + off)
            dst.append(j + off)
            etype.append(_E["spatial"])
            elabel.append(spatial_label(a, b))
            attrs.append(spatial_features(a, b))
    e = len(src)
    edge_attr = np.zeros((e, EDGE_ATTR_DIM), np.float32)
    edge_attr[:, 0] = 1.0
    if e:
        edge_attr[:, 1:6] = np.stack(attrs)
    lemmas = [t.lower() for t in labels]
    g = Graph(
        graph_id=graph_id,
        node_kind=node_kind,
        node_modality=np.full(n, _VISUAL, np.int8),
        node_role=np.full(n, ROLE_OTHER, np.int8),
        node_text=node_text,
        box=box,
        edge_index=np.asarray([src, dst], np.int64).reshape(2, e),
        edge_type=np.asarray(etype, np.int8),
        edge_label=elabel,
        edge_attr=edge_attr,
        meta={
            "lemmas": ([""] if with_image_node else []) + lemmas,
            "scores": ([1.0] if with_image_node else []) + [float(s) for s in scores],
            "object_index": ([-1] if with_image_node else []) + [int(k) for k in object_index],
        },
    )
    g.validate()
    return g


def visual_graph(
    graph_id: str,
    boxes: np.ndarray | None,
    labels: Sequence[str] | None = None,
    scores: Sequence[float] | None = None,
    *,
    with_image_node: bool = True,
    max_objects: int = 10,
) -> Graph:
    """Build the visual scene graph of one image.

    Args:
        graph_id: id of the graph.
        boxes: ``[M, 4]`` normalised ``(x1, y1, x2, y2)`` object boxes (clipped to [0, 1]);
            ``None`` means there is no image and gives :func:`~mmre_cli.graphs.graph.empty_graph`.
            ``M = 0`` with an image gives the image node alone.
        labels: ``[M]`` class names (default ``"object"``).
        scores: ``[M]`` detection confidences (default 1); the ``max_objects`` best are kept.
        with_image_node: add node 0 for the whole image (default ``True``).
        max_objects: most objects kept (default 10).

    Returns:
        A ``visual`` graph; ``meta`` holds per node ``lemmas`` (lower-case labels, ``""`` for the
        image node), ``scores`` and ``object_index`` (row in ``boxes``; -1 for the image / an
        added tail).
    """
    if boxes is None:
        return empty_graph(graph_id)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    m = boxes.shape[0]
    labels = ["object"] * m if labels is None else [str(x) for x in labels]
    scores_arr = np.ones(m, np.float32) if scores is None else np.asarray(scores, np.float32).reshape(-1)
    if len(labels) != m or scores_arr.shape[0] != m:
        raise ValueError(f"{graph_id}: {m} boxes, {len(labels)} labels, {scores_arr.shape[0]} scores")
    order = np.argsort(-scores_arr, kind="stable")[: max(0, int(max_objects))]
    boxes = np.clip(boxes[order], 0.0, 1.0)
    return _assemble(
        graph_id,
        boxes,
        [labels[k] for k in order],
        [float(scores_arr[k]) for k in order],
        [int(k) for k in order],
        with_image_node,
    )


def mark_visual_tail(
    visual: Graph,
    box,
    *,
    box_format: str = "cxcywh",
    name: str = "tail",
    min_iou: float = 0.0,
    add_if_missing: bool = True,
) -> Graph:
    """Give the TAIL role to the visual object that best matches a visual entity's box.

    The object with the highest IoU with ``box`` (ties: lowest node index) becomes the tail if its
    IoU is ``> 0`` and ``>= min_iou``. Otherwise (no objects, or no overlap) a new object node for
    the box is appended (text ``name``, score -1, ``object_index`` -1) with its
    ``part_of_image`` and ``spatial`` edges, and it takes the role — unless ``add_if_missing`` is
    false, in which case the graph is returned with no tail. Any previous TAIL role is cleared.

    Args:
        visual: a graph from :func:`visual_graph` (features, if any, are not extended for an
            added node: mark the tail before features are joined in).
        box: the entity box; ``(cx, cy, w, h)`` by default (MORE's convention, as
            :class:`~mmre_cli.data.instance.Entity` stores it) or ``(x1, y1, x2, y2)`` with
            ``box_format="xyxy"``.

    Returns:
        A new graph; ``meta["tail_node"]`` is the tail node (or ``None``) and ``meta["tail_iou"]``
        the IoU of the chosen object (1.0 for an added node).
    """
    if box_format == "cxcywh":
        xyxy = cxcywh_to_xyxy(box)
    elif box_format == "xyxy":
        xyxy = tuple(float(v) for v in box)
    else:
        raise ValueError(f"box_format must be 'cxcywh' or 'xyxy', not {box_format!r}")
    xyxy = tuple(float(np.clip(v, 0.0, 1.0)) for v in xyxy)
    objects = np.flatnonzero(visual.node_kind == _K["object"])
    best, best_iou = None, 0.0
    for k in objects:
        iou = box_iou(visual.box[k], xyxy)
        if iou > best_iou:
            best, best_iou = int(k), iou
    if best is not None and best_iou >= min_iou:
        g = _copy(visual)
        g.node_role[g.node_role == ROLE_TAIL] = ROLE_OTHER
        g.node_role[best] = ROLE_TAIL
        g.meta["tail_node"], g.meta["tail_iou"] = best, float(best_iou)
        return g
    if not add_if_missing:
        g = _copy(visual)
        g.node_role[g.node_role == ROLE_TAIL] = ROLE_OTHER
        g.meta["tail_node"], g.meta["tail_iou"] = None, float(best_iou)
        return g
    with_image = bool(visual.num_nodes) and int(visual.node_kind[0]) == _K["image"]
    if visual.x is not None:
        raise ValueError(f"{visual.graph_id}: cannot add a tail node to a graph whose features are set")
    meta = visual.meta
    obj = [int(k) for k in objects]
    scores = [meta.get("scores", [1.0] * visual.num_nodes)[k] for k in obj] + [-1.0]
    index = [meta.get("object_index", [-1] * visual.num_nodes)[k] for k in obj] + [-1]
    boxes = np.concatenate([visual.box[obj].reshape(-1, 4), np.asarray([xyxy], np.float32)], 0)
    labels = [visual.node_text[k] for k in obj] + [name]
    g = _assemble(visual.graph_id, boxes, labels, scores, index, with_image)
    roles = [int(visual.node_role[k]) for k in obj]
    g.node_role[len(g.node_role) - len(obj) - 1 : -1] = [r if r != ROLE_TAIL else ROLE_OTHER for r in roles]
    g.node_role[-1] = ROLE_TAIL
    g.meta["tail_node"], g.meta["tail_iou"] = g.num_nodes - 1, 1.0
    return g


def _copy(g: Graph) -> Graph:
    return Graph(
        graph_id=g.graph_id,
        node_kind=g.node_kind.copy(),
        node_modality=g.node_modality.copy(),
        node_role=g.node_role.copy(),
        node_text=list(g.node_text),
        box=g.box.copy(),
        edge_index=g.edge_index.copy(),
        edge_type=g.edge_type.copy(),
        edge_label=list(g.edge_label),
        edge_attr=g.edge_attr.copy(),
        x=None if g.x is None else g.x.copy(),
        label=g.label,
        meta=dict(g.meta),
    )
