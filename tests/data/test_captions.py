"""Captions files and label maps."""

from __future__ import annotations

import json

import pytest

from mmre_cli.data.captions import caption_path, join_captions, read_captions, split_captions
from mmre_cli.data.labels import LabelMap, find_none_label
from mmre_cli.errors import InputError


def test_read_captions_literal_lines(fixture_copy):
    d = fixture_copy("captions")
    caps, stats = read_captions(d / "cap_train.txt")
    assert caps == {"pic_a.jpg": "two people at a laboratory bench", "inf.png": "a stray row"}
    assert stats.rows == 3 and stats.empty == 1 and stats.duplicates == 0


def test_read_captions_json_and_duplicates(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"a.jpg": " A dog ", "b.jpg": ""}))
    caps, stats = read_captions(p)
    assert caps == {"a.jpg": "A dog"} and stats.empty == 1
    q = tmp_path / "c.txt"
    q.write_text("{\"img_id\": \"a.jpg\", \"text\": \"one\"}\n{'img_id': 'a.jpg', 'text': 'two'}\n")
    caps, stats = read_captions(q)
    assert caps == {"a.jpg": "two"} and stats.duplicates == 1


def test_captions_bad_rows(tmp_path):
    p = tmp_path / "cap_val.txt"
    p.write_text("{'img_id': 'a.jpg', 'text': 'ok'}\n{'img_id': 'b.jpg'}\n['x']\n")
    with pytest.raises(InputError, match=r"cap_val\.txt:2: missing key 'text'"):
        read_captions(p)
    caps, stats = read_captions(p, on_error="skip")
    assert caps == {"a.jpg": "ok"} and stats.bad == {"missing key": 1, "not a dict": 1}


def test_caption_path_template(tmp_path):
    (tmp_path / "cog_val.txt").write_text("")
    assert caption_path(str(tmp_path / "cog_{split}.txt"), "val") == tmp_path / "cog_val.txt"
    with pytest.raises(InputError, match="cog_test.txt"):
        caption_path(str(tmp_path / "cog_{split}.txt"), "test")


# -- labels ------------------------------------------------------------------------------------
def test_joined_captions_keep_one_slot_per_captioner():
    """join_captions keeps an empty slot for a missing caption; split_captions gives the slots back,
    also after mmre predict folds the white space ("a ;  ; c" -> "a ; ; c")."""
    assert join_captions(["a man", None, "a stage"]) == "a man ;  ; a stage"
    assert join_captions([None, None]) is None and join_captions(["only"]) == "only"
    for text in ("a man ;  ; a stage", "a man ; ; a stage"):
        assert split_captions(text) == ["a man", None, "a stage"]
    assert split_captions(join_captions([None, "b"]).strip()) == [None, "b"]
    assert split_captions(join_captions(["a", None]).strip()) == ["a", None]
    assert split_captions("tea; then a walk") == ["tea; then a walk"]  # no space before ";": one caption
    assert split_captions(None) == [] and split_captions("  ") == []


def test_find_none_label_order():
    assert find_none_label(["None", "none", "x"]) == "none"  # the peers' candidate order
    assert find_none_label({"NA": 3, "None": 0}) == "NA"
    with pytest.raises(ValueError):
        find_none_label(["a", "b"])


def test_label_map_roundtrip(tmp_path):
    lm = LabelMap.from_labels(["b", "None", "a", "b"])
    assert lm.labels == ("None", "a", "b") and lm.none_id == 0 and len(lm) == 3
    assert lm.id("b") == 2 and lm.label(1) == "a" and "a" in lm
    p = tmp_path / "rel2id.json"
    p.write_text(lm.to_json())
    assert LabelMap.from_file(p) == lm
    assert LabelMap.from_labels(["x", "y"]).labels == ("None", "x", "y")


@pytest.mark.parametrize(
    "text,match",
    [
        ('["None", "a"]', r"rel2id\.json:1: label map must be a JSON object"),
        ('{"None": 0,', r"rel2id\.json:1: invalid JSON"),
        ('{"None": 0, "a": 2}', "without gaps"),
        ('{"None": 0, "a": 0}', "share id 0"),
        ('{"x": 0, "a": 1}', "no negative label"),
        ('{"None": "0"}', "not a string -> int"),
    ],
)
def test_label_map_bad_files(tmp_path, text, match):
    p = tmp_path / "rel2id.json"
    p.write_text(text)
    with pytest.raises(InputError, match=match):
        LabelMap.from_file(p)
