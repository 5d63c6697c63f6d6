"""Hand-computed cases for the peer metric (HVPNeT ``eval_result``) and the per-class report."""

import numpy as np
import pytest

from mmre_cli.learn.metrics import confusion_matrix, peer_scores, per_class_report

NONE = 0


def test_all_none_predictions_give_zero_prf():
    gold = [0, 1, 2, 0, 1]
    pred = [0, 0, 0, 0, 0]
    s = peer_scores(pred, gold, NONE)
    assert s["acc"] == pytest.approx(2 / 5)
    assert s["micro_p"] == 0.0 and s["micro_r"] == 0.0 and s["micro_f1"] == 0.0
    assert (s["pred_positive"], s["gold_positive"], s["correct_positive"]) == (0, 3, 0)


def test_wrong_positive_on_gold_none_counts_against_precision_only():
    gold = [1, 2, 0]
    pred = [1, 2, 3]  # last: positive label on a gold-None instance
    s = peer_scores(pred, gold, NONE)
    assert s["micro_r"] == pytest.approx(1.0)
    assert s["micro_p"] == pytest.approx(2 / 3)
    assert s["micro_f1"] == pytest.approx(2 * (2 / 3) * 1.0 / (2 / 3 + 1.0))
    assert s["acc"] == pytest.approx(2 / 3)


def test_mixed_case():
    # gold:  1 1 2 0 0 3 2 0
    # pred:  1 2 2 0 1 0 2 0
    # correct_positive: idx 0, 2, 6 -> 3; pred != 0: idx 0,1,2,4,6 -> 5; gold != 0: 0,1,2,5,6 -> 5
    gold = [1, 1, 2, 0, 0, 3, 2, 0]
    pred = [1, 2, 2, 0, 1, 0, 2, 0]
    s = peer_scores(pred, gold, NONE)
    assert s["micro_p"] == pytest.approx(3 / 5)
    assert s["micro_r"] == pytest.approx(3 / 5)
    assert s["micro_f1"] == pytest.approx(3 / 5)
    assert s["acc"] == pytest.approx(5 / 8)


def test_none_id_not_zero():
    gold = np.array([2, 2, 0, 1])
    pred = np.array([2, 0, 0, 1])  # none_id = 2: cp = idx 2, 3 -> 2; pred!=2: 3; gold!=2: 2
    s = peer_scores(pred, gold, none_id=2)
    assert s["micro_p"] == pytest.approx(2 / 3)
    assert s["micro_r"] == pytest.approx(1.0)
    assert s["micro_f1"] == pytest.approx(0.8)


def test_perfect():
    gold = [0, 1, 2, 3, 0]
    s = peer_scores(gold, gold, NONE)
    assert s["acc"] == s["micro_p"] == s["micro_r"] == s["micro_f1"] == 1.0


def test_empty():
    s = peer_scores([], [], NONE)
    assert s["n"] == 0
    assert s["acc"] == s["micro_p"] == s["micro_r"] == s["micro_f1"] == 0.0
    assert confusion_matrix([], [], 3).sum() == 0
    rows = per_class_report([], [], ["None", "a"])
    assert [r["f1"] for r in rows] == [0.0, 0.0]


def test_length_mismatch_raises():
    with pytest.raises(ValueError):
        peer_scores([0, 1], [0], NONE)


def test_confusion_and_per_class():
    gold = [0, 1, 1, 2, 0]
    pred = [0, 1, 2, 2, 1]
    m = confusion_matrix(pred, gold, 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 1], [0, 0, 1]])
    rows = per_class_report(pred, gold, ["None", "a", "b"])
    assert [r["label"] for r in rows] == ["None", "a", "b"]
    assert [r["support"] for r in rows] == [2, 2, 1]
    a = rows[1]
    assert a["p"] == pytest.approx(1 / 2) and a["r"] == pytest.approx(1 / 2) and a["f1"] == pytest.approx(1 / 2)
    b = rows[2]
    assert b["p"] == pytest.approx(1 / 2) and b["r"] == pytest.approx(1.0)
    assert b["f1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        confusion_matrix([5], [0], 3)
