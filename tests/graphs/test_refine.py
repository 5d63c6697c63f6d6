"""mmre_cli.graphs.refine: what the editor's record leaves in the stored graph's meta."""

from __future__ import annotations

import numpy as np

from mmre_cli.graphs.graph import EDGE_ATTR_DIM, EDGE_TYPES, MODALITIES, NODE_KINDS, Graph
from mmre_cli.graphs.pyg import graph_to_data
from mmre_cli.graphs.refine import apply_edit_record, edited_caption


def _graph() -> Graph:
    """Sentence "Bowie plays a red guitar ." (tokens 0-5), head entity "Bowie" [0, 1), tail
    "guitar" [4, 5), noun phrase "a red guitar" [2, 5); two caption phrases ("a man" [0, 2),
    "a stage" [4, 6) of the caption)."""
    words = ["Bowie", "plays", "a", "red", "guitar", "."]
    kinds = ["token"] * 6 + ["entity", "entity", "noun_phrase", "caption_phrase", "caption_phrase"]
    mods = ["text"] * 9 + ["caption"] * 2
    spans = [[i, i + 1] for i in range(6)] + [[0, 1], [4, 5], [2, 5], [0, 2], [4, 6]]
    ei = np.array([[1, 1, 4, 4, 0, 4, 2, 3, 4, 8, 9], [0, 4, 2, 3, 6, 7, 8, 8, 8, 9, 10]], np.int64)
    e = ei.shape[1]
    return Graph(
        graph_id="g",
        node_kind=np.array([NODE_KINDS.index(k) for k in kinds], np.int8),
        node_modality=np.array([MODALITIES.index(m) for m in mods], np.int8),
        node_role=np.array([0] * 6 + [1, 2, 0, 0, 0], np.int8),
        node_text=words + ["Bowie", "guitar", "a red guitar", "a man", "a stage"],
        box=np.full((11, 4), np.nan, np.float32),
        edge_index=ei,
        edge_type=np.full(e, EDGE_TYPES.index("dep"), np.int8),
        edge_label=[""] * e,
        edge_attr=np.zeros((e, EDGE_ATTR_DIM), np.float32),
        x=np.random.default_rng(0).normal(size=(11, 4)).astype(np.float32),
        label=1,
        meta={"spans": spans, "words": words, "entity_spans": [0, 1, 4, 5]},
    )


def test_deleted_words_and_caption_spans_are_recorded():
    g = _graph()
    # delete the tokens "red" (3) and "plays" (1), the noun phrase (8) and the caption phrase "a stage" (10)
    out = apply_edit_record(g, {"deleted_nodes": [10, 3, 8, 1], "deleted_edges": [], "added_edges": []})
    assert out.meta["deleted_words"] == [1, 3]  # token nodes only; the noun phrase lists no words
    assert out.meta["deleted_caption_spans"] == [[4, 6]]
    assert out.meta["edits"]["deleted_texts"] == ["plays", "red", "a red guitar", "a stage"]
    assert out.num_nodes == 7 and out.meta["words"] == g.meta["words"]
    assert [out.meta["spans"][i] for i in range(out.num_nodes)] == [
        [0, 1],
        [2, 3],
        [4, 5],
        [5, 6],
        [0, 1],
        [4, 5],
        [0, 2],
    ]
    assert out.meta["deleted_caption_texts"] == ["a stage"]
    none = apply_edit_record(g, {"deleted_nodes": [], "deleted_edges": [0], "added_edges": [(2, 5)]})
    assert none.meta["deleted_words"] == [] and none.meta["deleted_caption_spans"] == []
    assert none.meta["deleted_caption_texts"] == []


def test_a_deleted_caption_phrase_is_cut_from_the_caption_the_model_reads():
    g = _graph()
    g.meta["caption"] = "a man  with a guitar on a stage"
    out = apply_edit_record(g, {"deleted_nodes": [10], "deleted_edges": [], "added_edges": []})
    assert edited_caption(out.meta) == "a man with a guitar on"
    assert graph_to_data(out, words=True).caption == "a man with a guitar on"
    kept = apply_edit_record(g, {"deleted_nodes": [3], "deleted_edges": [], "added_edges": []})
    assert graph_to_data(kept, words=True).caption == "a man  with a guitar on a stage"  # untouched, verbatim
    # another captioner's text (apply_pair_captions drops the list): a phrase not in it cuts nothing
    assert edited_caption({"caption": "two people", "deleted_caption_texts": ["a stage"]}) == "two people"
    assert edited_caption({"caption": None, "deleted_caption_texts": ["a stage"]}) == ""
