"""mmre_cli/pipeline/learning.py: the second-segment captions (``train_gnn.pair_captions``), one captioner or
several; a teacher's probabilities (``train_gnn.distill_from``); an artifact read back as PyG batches."""

import numpy as np
import pytest

from mmre_cli.data.captions import CAPTION_JOIN, split_captions
from mmre_cli.errors import MmreError
from mmre_cli.graphs.graph import EDGE_ATTR_DIM, Graph
from mmre_cli.pipeline.learning import apply_pair_captions, apply_teacher


def _graph(gid: str, img: str) -> Graph:
    return Graph(
        graph_id=gid,
        node_kind=np.zeros(1, np.int8),
        node_modality=np.zeros(1, np.int8),
        node_role=np.zeros(1, np.int8),
        node_text=["w"],
        box=np.zeros((1, 4), np.float32),
        edge_index=np.zeros((2, 0), np.int64),
        edge_type=np.zeros(0, np.int8),
        edge_label=[],
        edge_attr=np.zeros((0, EDGE_ATTR_DIM), np.float32),
        label=0,
        meta={"img_id": img, "caption": "from the graphs"},
    )


def _captions(path, rows: dict[str, str]) -> None:
    path.write_text("".join(f"{{'img_id': {k!r}, 'text': {v!r}}}\n" for k, v in rows.items()))


def test_one_captioner_replaces_the_caption(tmp_path):
    _captions(tmp_path / "blip_val.txt", {"a.jpg": "a man on a stage", "b.jpg": ""})
    groups = {"val": [_graph("g0", "a.jpg"), _graph("g1", "b.jpg"), _graph("g2", "c.jpg")]}
    assert apply_pair_captions(groups, str(tmp_path / "blip_{split}.txt")) == 1
    assert [g.meta["caption"] for g in groups["val"]] == ["a man on a stage", None, None]


def test_several_captioners_are_joined_in_order(tmp_path):
    _captions(tmp_path / "blip_val.txt", {"a.jpg": "a man on a stage", "b.jpg": "a dog"})
    _captions(tmp_path / "qwen_val.txt", {"a.jpg": "Bowie sings at Earls Court", "c.jpg": "a crowd"})
    groups = {"val": [_graph("g0", "a.jpg"), _graph("g1", "b.jpg"), _graph("g2", "c.jpg"), _graph("g3", "d.jpg")]}
    found = apply_pair_captions(groups, [str(tmp_path / "blip_{split}.txt"), str(tmp_path / "qwen_{split}.txt")])
    assert found == 3
    # one slot per captioner, in the list's order: a missing caption leaves its slot empty
    assert [g.meta["caption"] for g in groups["val"]] == [
        f"a man on a stage{CAPTION_JOIN}Bowie sings at Earls Court",
        f"a dog{CAPTION_JOIN}",
        f"{CAPTION_JOIN}a crowd",
        None,
    ]
    assert [split_captions(g.meta["caption"]) for g in groups["val"]] == [
        ["a man on a stage", "Bowie sings at Earls Court"],
        ["a dog", None],
        [None, "a crowd"],
        [],
    ]


def test_the_editors_caption_deletions_do_not_cut_another_captioners_text(tmp_path):
    from mmre_cli.graphs.refine import edited_caption

    _captions(tmp_path / "blip_val.txt", {"a.jpg": "a man on a stage"})
    g = _graph("g0", "a.jpg")
    g.meta["deleted_caption_texts"] = ["a stage"]  # a phrase of the graph's own caption
    assert edited_caption(g.meta) == "from the graphs"
    apply_pair_captions({"val": [g]}, str(tmp_path / "blip_{split}.txt"))
    assert "deleted_caption_texts" not in g.meta and edited_caption(g.meta) == "a man on a stage"


def test_no_source_keeps_the_graphs_captions(tmp_path):
    groups = {"val": [_graph("g0", "a.jpg")]}
    assert apply_pair_captions(groups, None) == 0 and groups["val"][0].meta["caption"] == "from the graphs"


def test_a_teacher_reaches_every_labelled_graph_and_its_batches(tmp_path):
    from mmre_cli.graphs.pyg import graph_to_data
    from mmre_cli.store.predictions import write_predictions

    labels = ["None", "/per/per/peer"]
    graphs = [_graph("g0", "a.jpg"), _graph("g1", "b.jpg"), _graph("g2", "c.jpg")]
    graphs[0].meta["sample_id"] = "train-000001"  # matched by sample id, else by graph id
    graphs[2].label = -1  # unlabelled: never trained on, needs no teacher
    prob = np.array([[0.2, 0.8], [0.6, 0.4]], np.float32)
    write_predictions(tmp_path / "predictions.jsonl", ["train-000001", "g1"], [0, 0], [1, 0], prob, labels)
    assert apply_teacher(graphs, tmp_path, labels) == 2
    assert graphs[0].meta["teacher_probs"] == pytest.approx([0.2, 0.8]) and "teacher_probs" not in graphs[2].meta
    graphs[0].x = np.zeros((1, 4), np.float32)
    assert graph_to_data(graphs[0]).teacher.tolist() == [pytest.approx([0.2, 0.8])]  # [1, C]: batches stack to [B, C]
    graphs[2].label = 0
    with pytest.raises(MmreError, match="no probabilities for 1 of 3 training graphs .e.g. g2.*split=train"):
        apply_teacher(graphs, tmp_path / "predictions.jsonl", labels)


def test_load_graph_batches_roundtrip(tmp_path):
    from mmre_cli.pipeline.learning import load_graph_batches
    from mmre_cli.store.writers import write_artifact
    from tests.graphs.test_pyg import GRAPHS, check_batch

    write_artifact(tmp_path / "g", {}, graphs=GRAPHS, stage="graphs", dim=8)
    batches = list(load_graph_batches(tmp_path / "g", 2))
    assert [b.num_graphs for b in batches] == [2, 2, 1]
    check_batch(batches[0], GRAPHS[:2])
    shuffled = [gid for b in load_graph_batches(tmp_path / "g", 5, shuffle=True, seed=1) for gid in b.graph_id]
    assert sorted(shuffled) == [g.graph_id for g in GRAPHS]
    again = [gid for b in load_graph_batches(tmp_path / "g", 5, shuffle=True, seed=1) for gid in b.graph_id]
    assert shuffled == again
