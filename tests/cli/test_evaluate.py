"""``mmre evaluate`` with several ``--model`` folders: the mean-probability ensemble and its members."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mmre_cli.cli.app import app
from mmre_cli.errors import MmreError

runner = CliRunner()


def test_two_models_are_scored_as_the_mean_of_their_probabilities(trained, second_model, tmp_path):
    from stages.evaluate import score_split

    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "--model", str(trained["model"]), "--model", str(second_model),
                                 "--graphs", str(trained["diffused"]), "--out", str(out), "--json", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [m["model"] for m in summary["members"]] == [str(trained["model"]), str(second_model)]
    a, b = (score_split(m, trained["diffused"], "val") for m in (trained["model"], second_model))
    for member, alone in zip(summary["members"], (a, b)):
        assert member["micro_f1"] == pytest.approx(alone["metrics"]["micro_f1"])
    prob_b = {sid: p for sid, p in zip(b["ids"], b["prob"])}
    mean = {sid: (np.asarray(p) + np.asarray(prob_b[sid])) / 2 for sid, p in zip(a["ids"], a["prob"])}
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == len(a["ids"])
    for line in lines:
        p = mean[line["sample_id"]]
        assert line["pred"] == a["labels"][int(p.argmax())] and line["prob"] == pytest.approx(float(p.max()), abs=1e-6)
    stats = json.loads((out / "stats.json").read_text())
    assert len(stats["members"]) == 2 and stats["micro_f1"] == summary["micro_f1"]

    table = runner.invoke(app, ["evaluate", "--model", str(trained["model"]), "--model", str(second_model),
                                "--graphs", str(trained["diffused"]), "--out", str(tmp_path / "eval2"), "-q"])
    assert table.exit_code == 0 and "ensemble of 2 (mean probability)" in table.stdout


def test_members_must_share_labels_and_instances():
    from stages.evaluate import ensemble_scores

    one = {"labels": ["None", "a"], "none_id": 0, "ids": ["x", "y"], "gold": [0, 1],
           "prob": [[0.9, 0.1], [0.2, 0.8]]}
    with pytest.raises(MmreError, match="label maps"):
        ensemble_scores([one, {**one, "labels": ["None", "b"]}])
    with pytest.raises(MmreError, match="different instances"):
        ensemble_scores([one, {**one, "ids": ["x", "z"]}])
    both = ensemble_scores([one, {**one, "ids": ["y", "x"], "prob": [[0.6, 0.4], [0.3, 0.7]]}])  # matched by id
    assert np.allclose(both["prob"], [[0.6, 0.4], [0.4, 0.6]]) and both["pred"].tolist() == [0, 1]
