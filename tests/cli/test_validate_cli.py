"""`mmre validate` on a real stage output: exit 0 when whole, 1 with a reason when damaged."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from mmre_cli.cli.app import app
from mmre_cli.graphs.graph import EDGE_ATTR_DIM, Graph
from mmre_cli.store.writers import ArtifactWriter

runner = CliRunner()


def _graph(i: int) -> Graph:
    return Graph(
        graph_id=f"g{i}",
        node_kind=np.array([1, 1, 0], np.int8),
        node_modality=np.zeros(3, np.int8),
        node_role=np.array([1, 2, 0], np.int8),
        node_text=["a", "b", "c"],
        box=np.full((3, 4), np.nan, np.float32),
        edge_index=np.array([[0, 1], [2, 2]], np.int64),
        edge_type=np.zeros(2, np.int8),
        edge_label=["nsubj", "dobj"],
        edge_attr=np.ones((2, EDGE_ATTR_DIM), np.float32),
        x=np.eye(3, 8, dtype=np.float32),
        label=i % 3,
    )


@pytest.fixture
def artifact(tmp_path):
    out = tmp_path / "cmg"
    with ArtifactWriter(out, stage="merge_cmg", encoder="test", dim=8, params_hash="h") as art:
        gw = art.graph_writer(max_graphs_per_shard=4)
        gw.write([_graph(i) for i in range(10)])
    return out


def test_accepts_a_good_artifact(artifact):
    result = runner.invoke(app, ["validate", str(artifact), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload.pop("checks") and payload == {
        "path": str(artifact),
        "kind": "merge_cmg artifact",
        "ok": True,
        "problems": [],
    }


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_rejects_a_damaged_artifact(artifact, tmp_path, damage):
    broken = tmp_path / "broken"
    shutil.copytree(artifact, broken)
    shard = sorted(broken.glob("nodes-*.parquet"))[1]
    data = bytearray(shard.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        shard.write_bytes(bytes(data))
    elif damage == "truncate":
        shard.write_bytes(bytes(data[: len(data) // 3]))
    else:
        shard.unlink()
    result = runner.invoke(app, ["validate", str(broken)])
    assert result.exit_code == 1
    assert shard.name in result.output
    assert "Traceback" not in result.output


def test_usage_errors_are_one_line_and_flags_show_no_type():
    """The installed `mmre` (its main()): a usage error is one `error:` line, exit 2, no box."""
    import subprocess
    import sys
    from pathlib import Path

    mmre = Path(sys.executable).with_name("mmre")
    bad = subprocess.run([str(mmre), "predict", "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: No such option: --bogus (see `mmre predict --help`)"
    ]
    missing = subprocess.run([str(mmre), "validate"], capture_output=True, text=True)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    helped = subprocess.run(
        [str(mmre), "evaluate", "--help"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "COLUMNS": "120"},
    )
    assert helped.returncode == 0 and "--json" in helped.stdout and "<bool>" not in helped.stdout
    plain = subprocess.run([str(mmre)], capture_output=True, text=True)
    assert plain.returncode == 0 and "Usage: mmre" in plain.stdout


def test_info_says_where_models_are_looked_for():
    import json

    from typer.testing import CliRunner

    from mmre_cli.cli.app import app

    rows = json.loads(CliRunner().invoke(app, ["info", "--json"]).stdout)
    for key in (
        "mmre cache",
        "MiniLM looked for",
        "MPNet looked for",
        "CLIP looked for",
        "YOLO looked for",
        "captioner",
    ):
        assert rows[key], key


def test_a_path_that_does_not_exist_is_a_usage_error(tmp_path):
    """README: bad input is exit 2; exit 1 is kept for a damaged artifact."""
    result = runner.invoke(app, ["validate", str(tmp_path / "nonexistent"), "--json"])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.strip() == f"error: {tmp_path / 'nonexistent'}: no such file or directory"


def test_json_lists_what_was_checked(artifact, tmp_path):
    result = runner.invoke(app, ["validate", str(artifact), "--json"])
    checks = json.loads(result.output)["checks"]
    assert any("sha256" in c for c in checks) and any(c.startswith("graphs/nodes/edges") for c in checks)
    shard = sorted(artifact.glob("nodes-*.parquet"))[0]
    single = json.loads(runner.invoke(app, ["validate", str(shard), "--json"]).output)
    assert single["ok"] and any("sha256" in c for c in single["checks"])
