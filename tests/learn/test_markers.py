"""mmre_cli.learn.markers: where the entity markers go, and the pieces the special markers start from."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmre_cli.learn.markers import _SPECIAL_INIT, insert_markers

MNRE = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnre"


def test_insert_markers_keeps_token_order():
    toks = ["a", "b", "c", "d", "e"]
    words, src = insert_markers(toks, (1, 3), (4, 5), ("<h>", "</h>", "<t>", "</t>"))
    assert words == ["a", "<h>", "b", "c", "</h>", "d", "<t>", "e", "</t>"]
    assert [words[j] for j, s in enumerate(src) if s >= 0] == toks
    assert [s for s in src if s >= 0] == list(range(5))
    # tail before head, adjacent spans: the close comes before the open
    words, _ = insert_markers(toks, (2, 3), (0, 2), ("<h>", "</h>", "<t>", "</t>"))
    assert words == ["<t>", "a", "b", "</t>", "<h>", "c", "</h>", "d", "e"]
    # nested (tail inside head) and a visual entity (no markers)
    words, _ = insert_markers(toks, (0, 4), (1, 2), list("HhTt"))
    assert words == ["H", "a", "T", "b", "t", "c", "d", "h", "e"]
    words, src = insert_markers(toks, (0, 1), None, list("HhTt"))
    assert words == ["H", "a", "h", "b", "c", "d", "e"] and src.count(-3) == 0


def test_insert_markers_with_types_puts_the_type_after_each_opening_marker():
    toks = ["a", "b", "c", "d", "e"]
    words, src = insert_markers(toks, (1, 3), (4, 5), ("<h>", "</h>", "<t>", "</t>"), ("person", "location"))
    assert words == ["a", "<h>", "person", "b", "c", "</h>", "d", "<t>", "location", "e", "</t>"]
    assert src == [0, -1, -5, 1, 2, -2, 3, -3, -6, 4, -4]
    # tail first: each type still follows its own marker; a visual tail gets neither
    words, src = insert_markers(toks, (3, 4), (0, 1), list("HhTt"), ("person", "unknown"))
    assert words == ["T", "unknown", "a", "t", "b", "c", "H", "person", "d", "h", "e"]
    words, src = insert_markers(toks, (0, 1), None, list("HhTt"), ("person", "unknown"))
    assert words == ["H", "person", "a", "h", "b", "c", "d", "e"] and -6 not in src


@pytest.mark.skipif(not MNRE.is_dir(), reason="../shared/data/mnre not present")
def test_marker_init_pieces_never_occur_in_mnre_text_or_captions():
    files = [MNRE / "v2_text" / f"ours_{s}.txt" for s in ("train", "val")] + sorted(
        f for s in ("train", "val") for f in (MNRE / "v2_captions").glob(f"*_{s}.txt")
    )  # train/val only: never test
    assert files
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        for piece in _SPECIAL_INIT:
            assert piece not in text, f"{piece!r} occurs in {f.name}"
