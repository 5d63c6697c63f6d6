"""MNRE v2/v1 readers on made-up fixtures, and on the real data when it is present."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmre_cli.data.instance import Entity
from mmre_cli.data.labels import LabelMap
from mmre_cli.data.load import iter_split, load_split
from mmre_cli.data.locate import detect_format, resolve_label_map, split_files
from mmre_cli.errors import InputError
from mmre_cli.reporting import NullReporter

MNRE_REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnre"
real_data = pytest.mark.skipif(not MNRE_REAL.is_dir(), reason=f"real MNRE data not at {MNRE_REAL}")


# -- fixtures: v2 ------------------------------------------------------------------------------
def test_v2_detect_and_splits(fixture_copy):
    d = fixture_copy("mnre_v2")
    assert detect_format(d) == "mnre"
    assert set(split_files(d, "mnre")) == {"train", "val"}
    assert detect_format(d / "txt" / "ours_val.txt") == "mnre"


def test_v2_load_fields(fixture_copy):
    d = fixture_copy("mnre_v2")
    insts, rep = load_split(d, "train")
    assert rep.format == "mnre" and rep.read == 4 and rep.kept == 4 and rep.skipped == {}
    a = insts[0]
    assert a.sample_id == "train-000001" and a.split == "train"
    assert a.tokens == ("Ada", "Quill", "joined", "Lumen", "Labs", "today", ".")
    assert a.head == Entity("Ada Quill", 0, 2) and a.tail == Entity("Lumen Labs", 3, 5)
    assert a.relation == "/per/org/member_of" and a.img_id == "pic_a.jpg"
    assert a.source.endswith("ours_train.txt:1")
    # the None label is the string "None"; extra keys are kept
    assert insts[1].relation == "None"
    assert insts[3].extra == {"caption": ["a harbour at dusk"], "entity": ["Harbor"]}
    # no image folder -> kept as text-only by default
    assert all(i.image_status == "missing" and i.image_path is None for i in insts)
    assert rep.text_only == 4
    assert rep.label_counts == {"/per/org/member_of": 1, "None": 1, "/per/per/peer": 1, "/loc/loc/contain": 1}


def test_v2_images_found_in_dataset_dir_parent_and_explicit(fixture_copy, make_image, tmp_path):
    d = fixture_copy("mnre_v2")
    make_image(d / "img_org" / "train" / "pic_a.jpg")
    make_image(d / "img_org" / "train" / "pic_b.jpg")
    insts, rep = load_split(d, "train")
    assert [i.image_status for i in insts] == ["ok"] * 4 and rep.text_only == 0
    assert Path(insts[0].image_path).is_file() and Path(insts[0].image_path).is_absolute()
    # pointing at the txt/ folder finds ../img_org/{split}
    insts, _ = load_split(d / "txt", "train")
    assert insts[0].image_status == "ok"
    # explicit image root, either the split folder's parent or the folder itself
    other = tmp_path / "elsewhere"
    make_image(other / "val" / "pic_c.jpg")
    make_image(other / "val" / "pic_d.jpg")
    for root in (other, other / "val"):
        insts, rep = load_split(d, "val", image_root=root)
        assert [i.image_status for i in insts] == ["ok", "ok"]


def test_v2_any_split_name_and_missing_split(fixture_copy):
    d = fixture_copy("mnre_v2")
    (d / "txt" / "ours_test.txt").write_bytes((d / "txt" / "ours_val.txt").read_bytes())
    insts, rep = load_split(d, "test")
    assert rep.kept == 2 and insts[0].sample_id == "test-000001" and insts[0].split == "test"
    with pytest.raises(InputError, match="no file for split 'heldout'"):
        load_split(d, "heldout")


def test_v2_captions_template(fixture_copy):
    d = fixture_copy("mnre_v2")
    cap = fixture_copy("captions")
    rep_ = NullReporter()
    insts, rep = load_split(d, "train", captions=str(cap / "cap_{split}.txt"), reporter=rep_)
    # pic_a has a caption, pic_b's is empty -> not attached
    assert [i.caption for i in insts] == ["two people at a laboratory bench"] * 2 + [None, None]
    assert rep.captioned == 2
    assert any("captions attached to 2 of 4" in m for m in rep_.messages)
    insts, rep = load_split(d, "val", captions=cap / "cap_val.txt")
    assert rep.captioned == 2 and insts[1].caption == "a market square"


def test_v2_label_map_explicit_and_unknown(fixture_copy, tmp_path):
    d = fixture_copy("mnre_v2")
    lm, src = resolve_label_map(d, "mnre")
    assert lm.labels[0] == "None" and lm.none_id == 0 and len(lm) == 4 and src.endswith("ours_rel2id.json")
    small = LabelMap(("None", "/per/per/peer"), "None")
    with pytest.raises(InputError, match=r"ours_train\.txt:1: unknown relation label '/per/org/member_of'"):
        load_split(d, "train", label_map=small)
    insts, rep = load_split(d, "train", label_map=small, on_error="skip")
    assert rep.kept == 2 and rep.skipped == {"unknown relation": 2}


def test_iter_split_streams_with_report(fixture_copy):
    d = fixture_copy("mnre_v2")
    it = iter_split(d, "train")
    first = next(it)
    assert first.sample_id == "train-000001"
    rest = list(it)
    assert len(rest) == 3 and it.report.kept == 4


# -- fixtures: v1 ------------------------------------------------------------------------------
def test_v1_detect_labels_and_quirks(fixture_copy):
    d = fixture_copy("mnre_v1")
    assert detect_format(d) == "mnre-v1"
    assert detect_format(d / "txt") == "mnre-v1"
    lm, src = resolve_label_map(d, "mnre-v1")
    assert lm.labels == ("none", "/per/org/member_of") and lm.none_label == "none"
    insts, rep = load_split(d, "train")
    assert rep.kept == 3 and rep.label_counts == {"/per/org/member_of": 1, "none": 2}
    # int img_id (MNRE-1 quirk) -> "N.jpg", raw value kept
    assert insts[1].img_id == "102.jpg" and insts[1].extra["img_id_raw"] == 102
    # '#Redfield' over tokens ['#', 'Redfield'] is accepted (whitespace-insensitive name check)
    assert insts[2].head == Entity("#Redfield", 0, 2)
    insts, rep = load_split(d / "txt", "val")
    assert rep.kept == 2


# -- real data ---------------------------------------------------------------------------------
V2_COUNTS = {
    "train": {
        "None": 7744,
        "/per/per/parent": 14,
        "/per/per/siblings": 14,
        "/per/per/couple": 115,
        "/per/per/neighbor": 8,
        "/per/per/peer": 960,
        "/per/per/charges": 24,
        "/per/per/alumi": 8,
        "/per/per/alternate_names": 146,
        "/per/org/member_of": 872,
        "/per/loc/place_of_residence": 231,
        "/per/loc/place_of_birth": 69,
        "/org/org/alternate_names": 78,
        "/org/org/subsidiary": 152,
        "/org/loc/locate_at": 316,
        "/loc/loc/contain": 629,
        "/per/misc/present_in": 427,
        "/per/misc/awarded": 57,
        "/per/misc/race": 6,
        "/per/misc/religion": 6,
        "/per/misc/nationality": 98,
        "/misc/misc/part_of": 81,
        "/misc/loc/held_on": 192,
    },
    "val": {
        "None": 1000,
        "/per/per/parent": 3,
        "/per/per/siblings": 2,
        "/per/per/couple": 19,
        "/per/per/neighbor": 2,
        "/per/per/peer": 120,
        "/per/per/charges": 2,
        "/per/per/alumi": 1,
        "/per/per/alternate_names": 19,
        "/per/org/member_of": 121,
        "/per/loc/place_of_residence": 28,
        "/per/loc/place_of_birth": 4,
        "/org/org/alternate_names": 13,
        "/org/org/subsidiary": 25,
        "/org/loc/locate_at": 48,
        "/loc/loc/contain": 82,
        "/per/misc/present_in": 61,
        "/per/misc/awarded": 8,
        "/per/misc/race": 1,
        "/per/misc/religion": 1,
        "/per/misc/nationality": 17,
        "/misc/misc/part_of": 15,
        "/misc/loc/held_on": 32,
    },
}


@real_data
@pytest.mark.parametrize("split,n", [("train", 12247), ("val", 1624)])
def test_real_v2_counts_and_captions(split, n):
    d = MNRE_REAL / "v2_text"
    assert detect_format(d) == "mnre"
    insts, rep = load_split(d, split, captions=str(MNRE_REAL / "v2_captions" / "cogvlm_{split}.txt"))
    assert rep.read == n and rep.kept == n and rep.skipped == {}
    assert rep.label_counts == V2_COUNTS[split]
    assert sum(V2_COUNTS[split].values()) == n
    assert rep.captioned == n and all(i.caption and i.caption.strip() for i in insts)
    lm, _ = resolve_label_map(d, "mnre")
    assert len(lm) == 23 and lm.none_label == "None" and lm.none_id == 0


@real_data
@pytest.mark.parametrize("split,n,n_none", [("train", 7824, 4751), ("val", 975, None)])
def test_real_v1(split, n, n_none):
    d = MNRE_REAL / "version1" / "txt"
    assert detect_format(d) == "mnre-v1"
    insts, rep = load_split(d, split)
    assert rep.kept == n and rep.skipped == {}
    if split != "train":
        return  # the label map scans train; check it once
    lm, _ = resolve_label_map(d, "mnre-v1")
    assert lm.none_label == "none" and lm.none_id == 0 and len(lm) == 29
    if n_none is not None:
        assert rep.label_counts["none"] == n_none
    assert "None" not in rep.label_counts


@real_data
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_real_image_sample(split):
    d = MNRE_REAL / "real_image_sample" / "data" / "RE_data"
    insts, rep = load_split(d, split, verify_images=True)
    assert rep.kept == 5 and rep.text_only == 0
    assert all(i.image_status == "ok" and Path(i.image_path).is_file() for i in insts)
    assert all("caption" in i.extra and "entity" in i.extra for i in insts)
    assert all(i.caption is None for i in insts)  # MRE-ISE's retrieved captions stay in extra
