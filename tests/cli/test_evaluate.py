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
    from mmre_cli.predict.scoring import score_split

    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(trained["model"]),
            "--model",
            str(second_model),
            "--graphs",
            str(trained["diffused"]),
            "--out",
            str(out),
            "--json",
            "-q",
        ],
    )
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
        assert list(line["probs"]) == a["labels"]  # the whole mean distribution, keyed by label
        assert [line["probs"][label] for label in a["labels"]] == pytest.approx(p.tolist(), abs=1e-6)
    stats = json.loads((out / "stats.json").read_text())
    assert len(stats["members"]) == 2 and stats["micro_f1"] == summary["micro_f1"]

    table = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(trained["model"]),
            "--model",
            str(second_model),
            "--graphs",
            str(trained["diffused"]),
            "--out",
            str(tmp_path / "eval2"),
            "-q",
        ],
    )
    assert table.exit_code == 0 and "ensemble of 2 (mean probability)" in table.stdout


def test_members_must_share_labels_and_instances():
    from mmre_cli.predict.scoring import ensemble_scores

    one = {"labels": ["None", "a"], "none_id": 0, "ids": ["x", "y"], "gold": [0, 1], "prob": [[0.9, 0.1], [0.2, 0.8]]}
    with pytest.raises(MmreError, match="label maps"):
        ensemble_scores([one, {**one, "labels": ["None", "b"]}])
    with pytest.raises(MmreError, match="different instances"):
        ensemble_scores([one, {**one, "ids": ["x", "z"]}])
    both = ensemble_scores([one, {**one, "ids": ["y", "x"], "prob": [[0.6, 0.4], [0.3, 0.7]]}])  # matched by id
    assert np.allclose(both["prob"], [[0.6, 0.4], [0.4, 0.6]]) and both["pred"].tolist() == [0, 1]


def test_train_gnn_ensemble_trains_k_seeds_into_one_folder_that_evaluate_and_predict_average(trained, tmp_path):
    import copy

    from mmre_cli.params import DEFAULTS
    from mmre_cli.predict.scoring import score_split
    from stages import train_gnn

    params = copy.deepcopy(DEFAULTS)
    params["train_gnn"].update(epochs=1, hidden=16, heads=2, seed=13, ensemble=2)
    ens, alone = tmp_path / "ens", tmp_path / "alone"
    result = train_gnn.run(graphs=trained["diffused"], out=ens, params=params, agent=trained["root"] / "agent")
    assert [m["seed"] for m in result["ensemble"]] == [13, 14] and [m["model"] for m in result["ensemble"]] == [
        ".",
        "members/seed14",
    ]
    assert result["train_seconds"] == pytest.approx(sum(m["train_seconds"] for m in result["ensemble"]), abs=0.2)
    pipeline = json.loads((ens / "pipeline.json").read_text())
    assert pipeline["ensemble"] == ["members/seed14"] and pipeline["params"]["train_gnn"]["ensemble"] == 2
    member = json.loads((ens / "members" / "seed14" / "pipeline.json").read_text())
    assert member["params"]["train_gnn"]["seed"] == 14 and member["params"]["train_gnn"]["ensemble"] == 1
    # the first member is exactly the model a single run with that seed trains
    single = copy.deepcopy(params)
    single["train_gnn"].update(ensemble=1)
    train_gnn.run(graphs=trained["diffused"], out=alone, params=single, agent=trained["root"] / "agent")
    assert (ens / "model.safetensors").read_bytes() == (alone / "model.safetensors").read_bytes()

    out = tmp_path / "eval"
    ran = runner.invoke(
        app, ["evaluate", "--model", str(ens), "--graphs", str(trained["diffused"]), "--out", str(out), "--json", "-q"]
    )
    assert ran.exit_code == 0, ran.output
    summary = json.loads(ran.stdout)
    assert [m["model"] for m in summary["members"]] == [str(ens), str(ens / "members" / "seed14")]
    from mmre_cli.predict.scoring import ensemble_scores

    both = ensemble_scores([score_split(m, trained["diffused"], "val") for m in (ens, ens / "members" / "seed14")])
    assert summary["micro_f1"] == pytest.approx(both["metrics"]["micro_f1"])

    from tests.cli.cli_helpers import json_lines, query_args, run_predict, val_query

    v = val_query(1)
    said = run_predict(*query_args(v), "--model", str(ens), "--json")
    assert said.exit_code == 0, said.output
    (line,) = json_lines(said)
    k = both["ids"].index("val-000002")
    assert abs(float(both["prob"][k].max()) - line["probability"]) < 1e-4

    # resume keeps a member that is already whole
    before = (ens / "members" / "seed14" / "model.safetensors").stat().st_mtime_ns
    again = train_gnn.run(
        graphs=trained["diffused"], out=ens, params=params, agent=trained["root"] / "agent", resume=True
    )
    assert (ens / "members" / "seed14" / "model.safetensors").stat().st_mtime_ns == before
    assert [m["seed"] for m in again["ensemble"]] == [13, 14]

    # mmre validate checks the members too
    assert runner.invoke(app, ["validate", str(ens)]).exit_code == 0
    (ens / "members" / "seed14" / "model.safetensors").unlink()
    broken = runner.invoke(app, ["validate", str(ens), "--json"])
    assert broken.exit_code == 1 and "seed14" in broken.stdout


def test_evaluate_on_a_split_the_graphs_lack_names_the_ones_they_have(trained, tmp_path):
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(trained["model"]),
            "--graphs",
            str(trained["diffused"]),
            "--out",
            str(tmp_path / "eval"),
            "--split",
            "test",
        ],
    )
    assert result.exit_code == 2
    assert "no graphs of split 'test' (have: train, val)" in result.stderr
