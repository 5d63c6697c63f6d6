"""predictions.jsonl: evaluate's writer and the distillation reader agree, and bad files are refused."""

import json

import numpy as np
import pytest

from mmre_cli.errors import InputError
from mmre_cli.store.predictions import PREDICTIONS_FILE, read_probabilities, write_predictions

LABELS = ["None", "/per/per/peer", "/misc/loc/held_on"]


def test_written_distributions_read_back_in_another_label_order(tmp_path):
    prob = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    write_predictions(tmp_path / PREDICTIONS_FILE, ["a", "b"], [0, 2], [0, 2], prob, LABELS)
    line = json.loads((tmp_path / PREDICTIONS_FILE).read_text().splitlines()[1])
    assert line == {
        "sample_id": "b",
        "gold": "/misc/loc/held_on",
        "pred": "/misc/loc/held_on",
        "prob": pytest.approx(0.8),
        "probs": {"None": pytest.approx(0.1), "/per/per/peer": pytest.approx(0.1), "/misc/loc/held_on": 0.8},
    }
    other_order = ["/misc/loc/held_on", "None", "/per/per/peer", "/org/org/subsidiary"]
    table = read_probabilities(tmp_path, other_order)  # the folder: its predictions.jsonl
    assert table["a"] == pytest.approx([0.1, 0.7, 0.2, 0.0], abs=1e-6)
    assert table["b"] == pytest.approx([0.8, 0.1, 0.1, 0.0], abs=1e-6)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"sample_id": "a", "gold": "None", "pred": "None", "prob": 0.9}\n', "older mmre"),
        ("not json\n", "not JSON"),
        ('{"sample_id": "a", "probs": {"/x/y": 1.0}}\n', "'/x/y' is not one of"),
        ('{"sample_id": "a", "probs": {"None": 0.0}}\n', "sum to 0.0"),
    ],
)
def test_bad_files_are_refused_with_the_line(tmp_path, text, says):
    path = tmp_path / "p.jsonl"
    path.write_text(text)
    with pytest.raises(InputError, match=":1: ") as err:
        read_probabilities(path, LABELS)
    assert says in str(err.value)


def test_a_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(InputError, match="mmre evaluate"):
        read_probabilities(tmp_path / "nope.jsonl", LABELS)
