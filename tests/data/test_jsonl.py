"""The documented JSONL user format."""

from __future__ import annotations

import json

import pytest

from mmre_cli.data.instance import Entity
from mmre_cli.data.jsonl import locate
from mmre_cli.data.load import load_split
from mmre_cli.data.locate import detect_format, resolve_label_map
from mmre_cli.errors import InputError


def test_jsonl_load(fixture_copy, make_image):
    d = fixture_copy("jsonl")
    assert detect_format(d) == "jsonl" and detect_format(d / "train.jsonl") == "jsonl"
    make_image(d / "imgs" / "j1.png", "PNG")
    insts, rep = load_split(d, "train", verify_images=True)
    assert rep.format == "jsonl" and rep.kept == 3
    j1, j2, j3 = insts
    assert j1.sample_id == "j1" and j1.tail == Entity("Pinecrest Bank", 2, 4)
    assert j1.image_status == "ok" and j1.image_path.endswith("imgs/j1.png")
    # text is whitespace-tokenised; names located (case-insensitively as a fallback)
    assert j2.tokens == ("Mo", "lives", "in", "Sunport") and j2.tail == Entity("sunport", 3, 4)
    assert j2.caption == "a beach town" and j2.image_status == "none" and j2.img_id is None
    # a visual tail; a missing image is text-only; unknown keys go to extra
    assert j3.tail.box == (0.5, 0.5, 0.5, 0.9) and j3.image_status == "missing"
    assert j3.extra == {"source_url": "example.org/3"}
    assert rep.text_only == 2 and rep.captioned == 1


def test_jsonl_unlabelled_and_auto_ids(fixture_copy):
    d = fixture_copy("jsonl")
    insts, rep = load_split(d, "test")
    assert insts[0].relation is None and insts[0].sample_id == "test-000001"
    assert rep.label_counts == {}


def test_jsonl_label_map_from_train(fixture_copy):
    d = fixture_copy("jsonl")
    lm, src = resolve_label_map(d, "jsonl")
    assert lm.labels == ("None", "/per/org/member_of") and "train.jsonl" in src


def test_jsonl_absolute_image_and_image_root(tmp_path, make_image):
    img = make_image(tmp_path / "pics" / "x.jpg")
    d = tmp_path / "ds"
    d.mkdir()
    rows = [
        {"tokens": ["Ann", "met", "Bob"], "head": {"name": "Ann"}, "tail": {"name": "Bob"}, "image": str(img)},
        {"tokens": ["Ann", "met", "Bob"], "head": {"name": "Bob"}, "tail": {"name": "Ann"}, "image": "x.jpg"},
    ]
    (d / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    insts, _ = load_split(d / "train.jsonl", "train")
    assert insts[0].image_status == "ok" and insts[1].image_status == "missing"
    insts, _ = load_split(d, "train", image_root=tmp_path / "pics")
    assert [i.image_status for i in insts] == ["ok", "ok"]
    with pytest.raises(InputError, match=r"train\.jsonl:2: image 'x.jpg' not found"):
        load_split(d, "train", image_policy="error")


def test_locate():
    toks = ("New", "York", "is", "new", "york")
    assert locate("new york", toks) == (3, 5)
    assert locate("NEW YORK", toks) == (0, 2)
    assert locate("Boston", toks) is None
