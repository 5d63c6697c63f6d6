"""``mmre run RECIPE``: the seven stages as one command; up-to-date stages are skipped, a changed
train_gnn key reruns only train-agent and what follows; recipe files hold only their differences."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from mmre_cli.cli.app import app
from mmre_cli.params import DEFAULTS, load_params

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
runner = CliRunner()


def _recipe(tmp_path: Path) -> Path:
    recipe = {
        "data": {"root": str(SAMPLE), "captions": str(SAMPLE / "captions_{split}.txt")},
        "extract_features": {"workers": 0},
        "train_agent": {"episodes": 1, "warmup_epochs": 1},
        "train_gnn": {"epochs": 1, "hidden": 16, "heads": 2},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_run_chains_skips_and_reruns_only_what_changed(tmp_path):
    recipe, out = _recipe(tmp_path), tmp_path / "run"
    first = runner.invoke(app, ["run", str(recipe), "--out", str(out), "-q"])
    assert first.exit_code == 0, first.output
    log = json.loads((out / "recipe.json").read_text())
    assert log["order"] == [
        "extract_features",
        "build_graphs",
        "merge_cmg",
        "train_agent",
        "diffuse",
        "train_gnn",
        "evaluate",
    ]
    assert not any(s["skipped"] for s in log["stages"].values())
    assert set(log["metrics"]) >= {"acc", "micro_p", "micro_r", "micro_f1"} and "F1" in first.stdout
    stamp = (out / "features" / "stats.json").stat().st_mtime_ns

    again = runner.invoke(app, ["run", str(recipe), "--out", str(out), "-q"])
    assert again.exit_code == 0, again.output
    log = json.loads((out / "recipe.json").read_text())
    assert all(s["skipped"] for s in log["stages"].values())

    changed = runner.invoke(app, ["run", str(recipe), "--out", str(out), "-q", "-S", "train_gnn.dropout=0.1"])
    assert changed.exit_code == 0, changed.output
    skipped = {k: v["skipped"] for k, v in json.loads((out / "recipe.json").read_text())["stages"].items()}
    assert skipped == {
        "extract_features": True,
        "build_graphs": True,
        "merge_cmg": True,
        "train_agent": False,
        "diffuse": False,
        "train_gnn": False,
        "evaluate": False,
    }
    assert (out / "features" / "stats.json").stat().st_mtime_ns == stamp


def test_run_refuses_an_unknown_stage(tmp_path):
    res = runner.invoke(app, ["run", str(_recipe(tmp_path)), "--out", str(tmp_path / "r"), "--from", "nope"])
    assert res.exit_code == 2 and "not a stage" in res.output


def test_the_mnre_recipes_hold_only_known_keys_that_differ_from_the_defaults():
    for name in sorted(p.name for p in (REPO / "configs").glob("*.yaml")):
        raw = yaml.safe_load((REPO / "configs" / name).read_text())
        load_params(REPO / "configs" / name)  # unknown keys would raise
        for section, values in raw.items():
            for key, value in values.items():
                if key == "pair_captions":  # stated explicitly: which captioner the 2nd segment reads
                    continue
                assert DEFAULTS[section][key] != value, f"{name}: {section}.{key} repeats the default"


def test_a_distilling_recipe_without_its_teacher_stops_before_any_stage(tmp_path):
    recipe, out = _recipe(tmp_path), tmp_path / "run"
    res = runner.invoke(
        app, ["run", str(recipe), "--out", str(out), "-S", f"train_gnn.distill_from={tmp_path / 'teacher'}"]
    )
    assert res.exit_code == 2 and "teacher" in res.output and "evaluate.split=train" in res.output
    assert not out.exists()  # nothing ran
