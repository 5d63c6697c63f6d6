"""``mmre params``: the typed keys as a user reads them, with the stages that read each."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mmre_cli.cli.app import app

runner = CliRunner()


def test_params_lists_each_key_with_its_readers():
    res = runner.invoke(app, ["params", "train_gnn", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["key"]: r for r in json.loads(res.output)}
    assert rows["train_gnn.lr"]["read_by"] == ["train_agent", "train_gnn"]  # the reward classifier trains with it
    assert rows["train_gnn.epochs"]["read_by"] == ["train_gnn"]
    assert rows["train_gnn.readout"]["choices"] == ["gnn_markers", "markers"]
    assert rows["train_gnn.pair_captions"]["default"] is None and all(r["help"] for r in rows.values())


def test_params_of_all_sections_prints_a_table_and_an_unknown_section_is_refused():
    res = runner.invoke(app, ["params"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "data.captioner" in res.output and "predict/serve" in res.output
    # brackets printed, not eaten as markup (the cell may wrap, and the console's width is set once)
    assert "[auto" in res.output and "jsonl]" in res.output
    bad = runner.invoke(app, ["params", "nope"])
    assert bad.exit_code == 2 and "no params section 'nope'" in bad.output
