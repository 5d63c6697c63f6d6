"""Visual scene graph: spatial features/labels on hand-computed boxes, graph layout, visual tail."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmre_cli.graphs.graph import EDGE_ATTR_COLUMNS, EDGE_TYPES, NODE_KINDS, ROLE_OTHER, ROLE_TAIL
from mmre_cli.graphs.visual import (
    box_iou,
    cxcywh_to_xyxy,
    mark_visual_tail,
    spatial_features,
    spatial_label,
    visual_graph,
)

K = {k: i for i, k in enumerate(NODE_KINDS)}
E = {e: i for i, e in enumerate(EDGE_TYPES)}

# (a, b, [iou, contain, dx, dy, log_area_ratio], label(a, b), label(b, a))
CASES = [
    # half-overlapping squares: inter .0625, union .4375
    ((0, 0, 0.5, 0.5), (0.25, 0.25, 0.75, 0.75), [0.0625 / 0.4375, 0.25, 0.25, 0.25, 0.0], "overlaps", "overlaps"),
    # small box inside a big one: inter .01, areas .01 / .25
    ((0.1, 0.1, 0.2, 0.2), (0, 0, 0.5, 0.5), [0.04, 1.0, 0.1, 0.1, math.log(25)], "inside", "contains"),
    # disjoint, side by side: centres (.1,.1) and (.6,.15)
    ((0, 0, 0.2, 0.2), (0.5, 0.05, 0.7, 0.25), [0.0, 0.0, 0.5, 0.05, 0.0], "left_of", "right_of"),
    # disjoint, one above the other (y grows downwards): centres (.5,.1) and (.5,.8), areas .04 / .16
    ((0.4, 0, 0.6, 0.2), (0.3, 0.6, 0.7, 1.0), [0.0, 0.0, 0.0, 0.7, math.log(4)], "above", "below"),
    # identical boxes
    ((0.2, 0.2, 0.4, 0.6), (0.2, 0.2, 0.4, 0.6), [1.0, 1.0, 0.0, 0.0, 0.0], "overlaps", "overlaps"),
]


@pytest.mark.parametrize("a,b,feats,lab_ab,lab_ba", CASES)
def test_spatial_features_and_labels(a, b, feats, lab_ab, lab_ba):
    got = spatial_features(a, b)
    assert got.dtype == np.float32 and got.shape == (5,)
    np.testing.assert_allclose(got, feats, atol=1e-6)
    assert spatial_label(a, b) == lab_ab
    assert spatial_label(b, a) == lab_ba


def test_spatial_features_reverse_pair():
    got = spatial_features((0, 0, 0.5, 0.5), (0.1, 0.1, 0.2, 0.2))  # big a, small b inside
    np.testing.assert_allclose(got, [0.04, 0.04, -0.1, -0.1, -math.log(25)], atol=1e-6)


def test_zero_area_is_guarded():
    got = spatial_features((0.5, 0.5, 0.5, 0.5), (0, 0, 1, 1))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, [0.0, 0.0, 0.0, 0.0, math.log(1e6)], rtol=1e-5)
    assert spatial_label((0.5, 0.5, 0.5, 0.5), (0, 0, 1, 1)) == "overlaps"  # same centre
    assert spatial_label((0.1, 0.1, 0.1, 0.1), (0.8, 0.1, 0.9, 0.2)) == "left_of"


def test_box_helpers():
    assert cxcywh_to_xyxy((0.5, 0.5, 0.2, 0.4)) == pytest.approx((0.4, 0.3, 0.6, 0.7))
    assert box_iou((0, 0, 0.5, 0.5), (0.25, 0.25, 0.75, 0.75)) == pytest.approx(1 / 7)
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_visual_graph_layout():
    boxes = np.array([[0, 0, 0.2, 0.2], [0.5, 0.05, 0.7, 0.25], [0.1, 0.1, 0.15, 0.15]], np.float32)
    g = visual_graph("v1", boxes, ["person", "dog", "cat"], [0.5, 0.9, 0.1], max_objects=2)
    g.validate()
    # image first, then objects by score: dog (0.9), person (0.5); cat dropped
    assert g.node_text == ["image", "dog", "person"]
    assert g.node_kind.tolist() == [K["image"], K["object"], K["object"]]
    np.testing.assert_allclose(g.box[0], [0, 0, 1, 1])
    np.testing.assert_allclose(g.box[1], boxes[1])
    assert g.meta["object_index"] == [-1, 1, 0]
    assert g.meta["lemmas"] == ["", "dog", "person"]
    assert (g.node_role == ROLE_OTHER).all()
    # 2 part_of_image + 2 ordered spatial pairs
    assert g.num_edges == 4
    pairs = {(int(s), int(d)): (int(t), lab) for s, d, t, lab in zip(*g.edge_index, g.edge_type, g.edge_label)}
    assert pairs[(1, 0)][0] == E["part_of_image"] and pairs[(2, 0)][0] == E["part_of_image"]
    assert pairs[(1, 2)] == (E["spatial"], "right_of")  # dog is right of person
    assert pairs[(2, 1)] == (E["spatial"], "left_of")
    k = next(i for i in range(g.num_edges) if tuple(g.edge_index[:, i]) == (2, 1))
    cols = {c: g.edge_attr[k, i] for i, c in enumerate(EDGE_ATTR_COLUMNS)}
    assert cols["weight"] == 1 and cols["cosine"] == 0
    assert cols["dx"] == pytest.approx(0.5) and cols["dy"] == pytest.approx(0.05)


def test_visual_graph_edge_cases():
    assert visual_graph("none", None).num_nodes == 0
    only_image = visual_graph("v", np.zeros((0, 4)), [], [])
    assert only_image.num_nodes == 1 and only_image.num_edges == 0
    no_img = visual_graph("v", np.array([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]), with_image_node=False)
    assert no_img.node_kind.tolist() == [K["object"]] * 2 and no_img.num_edges == 2
    assert no_img.node_text == ["object", "object"]
    m = 10
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 0.5, (12, 2))
    big = visual_graph("v", np.concatenate([xy, xy + 0.3], 1), scores=rng.uniform(size=12), max_objects=m)
    assert big.num_nodes == m + 1 and big.num_edges == m + m * (m - 1)


def test_mark_visual_tail_matches_best_iou():
    boxes = np.array([[0, 0, 0.4, 0.4], [0.5, 0.5, 1.0, 1.0]], np.float32)
    g = visual_graph("v", boxes, ["a", "b"], [0.9, 0.8])
    t = mark_visual_tail(g, (0.75, 0.75, 0.4, 0.4))  # cxcywh -> (.55,.55,.95,.95) overlaps object b
    assert t.node_role.tolist() == [ROLE_OTHER, ROLE_OTHER, ROLE_TAIL]
    assert t.meta["tail_node"] == 2 and t.meta["tail_iou"] == pytest.approx(0.16 / 0.25)
    assert (g.node_role == ROLE_OTHER).all()  # input untouched
    t2 = mark_visual_tail(g, (0, 0, 0.4, 0.4), box_format="xyxy")
    assert t2.meta["tail_node"] == 1 and t2.meta["tail_iou"] == pytest.approx(1.0)


def test_mark_visual_tail_adds_node_when_nothing_overlaps():
    g = visual_graph("v", np.array([[0, 0, 0.2, 0.2]]), ["a"], [0.9])
    t = mark_visual_tail(g, (0.7, 0.7, 0.9, 0.9), box_format="xyxy", name="cake")
    assert t.num_nodes == 3 and t.node_text == ["image", "a", "cake"]
    assert t.node_role.tolist() == [ROLE_OTHER, ROLE_OTHER, ROLE_TAIL]
    assert t.meta["object_index"] == [-1, 0, -1]
    assert t.num_edges == 2 + 2  # part_of_image x2, spatial both ways
    same = mark_visual_tail(g, (0.7, 0.7, 0.9, 0.9), box_format="xyxy", add_if_missing=False)
    assert same.num_nodes == 2 and same.meta["tail_node"] is None
