"""Every kind of bad input gives a one-line InputError naming file and line (on_error='raise'),
or a counted skip with the good lines still loaded (on_error='skip'). Reading never writes."""

from __future__ import annotations

import json

import pytest

from mmre_cli.data.load import load_split
from mmre_cli.data.mnre import MAX_LINE_BYTES
from mmre_cli.errors import InputError

REL2ID = {"None": 0, "/per/org/member_of": 1}


def mnre_line(**over) -> str:
    rec = {
        "token": ["Uma", "joined", "Vexa", "Corp"],
        "h": {"name": "Uma", "pos": [0, 1]},
        "t": {"name": "Vexa Corp", "pos": [2, 4]},
        "img_id": "u.jpg",
        "relation": "/per/org/member_of",
    }
    for k, v in over.items():
        if v is _DROP:
            rec.pop(k)
        else:
            rec[k] = v
    return repr(rec)  # Python literal, single quotes, as MNRE ships it


def more_line(box) -> str:
    return repr(
        {
            "token": ["Uma", "rides", "a", "bike"],
            "h": {"name": "Uma", "pos": [0, 1]},
            "t": {"name": "bike", "box": box},
            "img_id": "u.jpg",
            "relation": "None",
        }
    )


def jsonl_line(**over) -> str:
    rec = {
        "tokens": ["Uma", "joined", "Vexa", "Corp"],
        "head": {"name": "Uma"},
        "tail": {"name": "Vexa Corp", "pos": [2, 4]},
        "relation": "/per/org/member_of",
    }
    rec.update(over)
    return json.dumps(rec)


_DROP = object()

# (case id, format, bad line (str or bytes), expected skip reason)
CASES = [
    ("not-a-dict", "mnre", "['Uma', 'joined']", "not a dict"),
    ("literal-syntax", "mnre", "{'token': ['Uma', 'joined'", "syntax error"),
    ("json-decode", "jsonl", '{"tokens": ["a"], "head": ', "invalid JSON"),
    ("missing-token", "mnre", mnre_line(token=_DROP), "missing key"),
    ("missing-h", "mnre", mnre_line(h=_DROP), "missing key"),
    ("missing-t", "mnre", mnre_line(t=_DROP), "missing key"),
    ("missing-relation", "mnre", mnre_line(relation=_DROP), "missing key"),
    ("tokens-not-strings", "mnre", mnre_line(token=["Uma", 3, "Vexa", "Corp"]), "bad tokens"),
    ("tokens-not-list", "jsonl", jsonl_line(tokens="Uma joined"), "bad tokens"),
    ("empty-tokens", "mnre", mnre_line(token=[]), "empty tokens"),
    ("pos-not-two-ints", "mnre", mnre_line(h={"name": "Uma", "pos": [0.0, 1.0]}), "bad span"),
    ("pos-one-int", "mnre", mnre_line(h={"name": "Uma", "pos": [0]}), "bad span"),
    ("pos-out-of-range", "mnre", mnre_line(t={"name": "Vexa Corp", "pos": [2, 9]}), "span out of range"),
    ("start-ge-end", "mnre", mnre_line(t={"name": "Vexa Corp", "pos": [3, 3]}), "empty span"),
    ("name-mismatch", "mnre", mnre_line(h={"name": "Bob", "pos": [0, 1]}), "name mismatch"),
    ("unknown-relation", "mnre", mnre_line(relation="/per/per/rival"), "unknown relation"),
    ("img-id-dotdot", "mnre", mnre_line(img_id="../../secret.jpg"), "unsafe img_id"),
    ("img-id-absolute", "mnre", mnre_line(img_id="/etc/passwd"), "unsafe img_id"),
    ("jsonl-image-dotdot", "jsonl", jsonl_line(image="../outside.jpg"), "unsafe img_id"),
    ("non-utf8", "mnre", b"{'token': ['Caf\xe9']}", "not UTF-8"),
    ("binary-garbage", "mnre", bytes(range(256)).replace(b"\n", b""), "binary data"),
    ("huge-line", "mnre", "{'token': ['" + "x" * (MAX_LINE_BYTES + 10) + "']}", "line too long"),
    ("duplicate-id", "jsonl", jsonl_line(id="dup"), "duplicate id"),
    ("entity-not-found", "jsonl", jsonl_line(head={"name": "Zed"}), "entity not found"),
    ("more-box-outside", "more", more_line([0.5, 0.5, 1.4, 0.2]), "bad box"),
    ("more-box-not-numbers", "more", more_line(["a", 0.5, 0.1, 0.2]), "bad box"),
    ("bad-relation-type", "mnre", mnre_line(relation=3), "bad relation"),
]


def _corpus(tmp_path, fmt, bad):
    """Write good / bad / good lines in the layout of ``fmt``; return (dataset dir, file)."""
    d = tmp_path / "ds"
    if fmt == "mnre":
        (d / "txt").mkdir(parents=True)
        (d / "ours_rel2id.json").write_text(json.dumps(REL2ID))
        f, good = d / "txt" / "ours_train.txt", [mnre_line(), mnre_line(relation="None")]
    elif fmt == "more":
        (d / "txt").mkdir(parents=True)
        (d / "rel2id.json").write_text(json.dumps({"None": 0, "/per/rides": 1}))
        f, good = d / "txt" / "train.txt", [more_line([0.5, 0.5, 0.2, 0.2]), more_line([0.2, 0.3, 0.1, 0.1])]
    else:
        d.mkdir()
        # line 1 holds id 'dup', so a bad line 2 with id 'dup' is a duplicate
        f, good = d / "train.jsonl", [jsonl_line(id="dup"), jsonl_line(id="other")]
    bad_b = bad if isinstance(bad, bytes) else bad.encode("utf-8")
    f.write_bytes(good[0].encode() + b"\n" + bad_b + b"\n" + good[1].encode() + b"\n")
    return d, f


@pytest.mark.parametrize("case,fmt,bad,reason", CASES, ids=[c[0] for c in CASES])
def test_bad_record_raise_and_skip(tmp_path, snapshot, case, fmt, bad, reason):
    d, f = _corpus(tmp_path, fmt, bad)
    before = snapshot(d)
    with pytest.raises(InputError) as exc:
        load_split(d, "train", fmt=fmt)
    msg = str(exc.value)
    assert f"{f.name}:2: " in msg and str(f) in msg, msg
    assert "\n" not in msg and len(msg) < 600, msg  # one clean line
    assert exc.value.line == 2

    insts, rep = load_split(d, "train", fmt=fmt, on_error="skip")
    assert rep.skipped == {reason: 1}, rep.skipped
    assert rep.read == 3 and rep.kept == 2 and len(insts) == 2
    assert [i.source.rsplit(":", 1)[1] for i in insts] == ["1", "3"]
    assert rep.first_problems and rep.first_problems[0].startswith(f"{f}:2: ")
    assert snapshot(d) == before  # nothing written, nothing touched


def _image_corpus(tmp_path, make_image, broken=False):
    d = tmp_path / "ds"
    (d / "txt").mkdir(parents=True)
    (d / "ours_rel2id.json").write_text(json.dumps(REL2ID))
    make_image(d / "img_org" / "train" / "u.jpg")
    if broken:
        (d / "img_org" / "train" / "v.jpg").write_text("this is not a jpeg")
    lines = [mnre_line(), mnre_line(img_id="v.jpg"), mnre_line(relation="None")]
    (d / "txt" / "ours_train.txt").write_text("\n".join(lines) + "\n")
    return d


def test_missing_image_per_policy(tmp_path, make_image, snapshot):
    d = _image_corpus(tmp_path, make_image)
    before = snapshot(d)
    with pytest.raises(InputError, match=r"ours_train\.txt:2: image 'v.jpg' not found"):
        load_split(d, "train", image_policy="error")
    insts, rep = load_split(d, "train", image_policy="skip")
    assert rep.kept == 2 and rep.skipped == {"missing image": 1}
    insts, rep = load_split(d, "train")  # text-only default
    assert rep.kept == 3 and rep.text_only == 1 and rep.skipped == {}
    assert insts[1].image_status == "missing" and insts[1].image_path is None
    assert insts[0].image_status == "ok"
    assert any("ours_train.txt:2: " in p for p in rep.first_problems)
    assert snapshot(d) == before


def test_unreadable_image_with_verify(tmp_path, make_image, snapshot):
    d = _image_corpus(tmp_path, make_image, broken=True)
    before = snapshot(d)
    insts, rep = load_split(d, "train")  # no verify: existence is enough
    assert [i.image_status for i in insts] == ["ok", "ok", "ok"]
    with pytest.raises(InputError, match=r"ours_train\.txt:2: .*v\.jpg.*not a recognised image"):
        load_split(d, "train", image_policy="error", verify_images=True)
    insts, rep = load_split(d, "train", image_policy="skip", verify_images=True)
    assert rep.kept == 2 and rep.skipped == {"unreadable image": 1}
    insts, rep = load_split(d, "train", verify_images=True)
    assert insts[1].image_status == "missing" and rep.text_only == 1
    assert snapshot(d) == before


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file(tmp_path, content):
    d = tmp_path / "ds"
    d.mkdir()
    (d / "ours_rel2id.json").write_text(json.dumps(REL2ID))
    (d / "ours_train.txt").write_bytes(content)
    with pytest.raises(InputError, match=r"ours_train\.txt:1: file is empty"):
        load_split(d, "train", fmt="mnre")
    insts, rep = load_split(d, "train", fmt="mnre", on_error="skip")
    assert insts == [] and rep.skipped == {"empty file": 1}


def test_rel2id_not_an_object(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    (d / "ours_rel2id.json").write_text('["None", "/per/org/member_of"]')
    (d / "ours_train.txt").write_text(mnre_line() + "\n")
    with pytest.raises(InputError, match=r"ours_rel2id\.json:1: label map must be a JSON object"):
        load_split(d, "train")


def test_bad_options_and_paths(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_split(tmp_path / "nope", "train")
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(InputError, match="cannot detect the dataset format"):
        load_split(tmp_path, "train")
