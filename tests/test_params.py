"""params.yaml: defaults, overrides, hashing, the effective-params file."""

from __future__ import annotations

import yaml
import pytest

from mmre_cli.errors import MmreError
from mmre_cli.params import DEFAULTS, apply_overrides, load_params, params_hash, parse_set_options, write_effective


def test_repo_params_yaml_has_exactly_the_known_keys(repo):
    on_disk = yaml.safe_load((repo / "params.yaml").read_text())
    assert set(on_disk) == set(DEFAULTS)
    for section, values in DEFAULTS.items():
        assert set(on_disk[section]) == set(values), section


def test_dvc_yaml_lists_every_stage_param_key_by_key(repo):
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    assert list(stages) == ["extract_features", "build_graphs", "merge_cmg", "train_agent", "diffuse", "train_gnn", "evaluate"]
    for name, stage in stages.items():
        listed = set(stage["params"])
        assert {f"{name}.{k}" for k in DEFAULTS[name]} <= listed, name
        assert f"stages/{name}.py" in stage["deps"]


def test_overrides_parse_yaml_scalars_and_win():
    params = load_params(None)
    params = apply_overrides(params, parse_set_options(["train_gnn.lr=0.5", "data.captions=null", "train_gnn.epochs=3"]), skip_none=False)
    assert params["train_gnn"]["lr"] == 0.5 and params["train_gnn"]["epochs"] == 3
    assert params["data"]["captions"] is None
    assert DEFAULTS["train_gnn"]["lr"] != 0.5  # the defaults are not mutated


def test_exponent_numbers_are_numbers(tmp_path):
    """PyYAML reads ``1e-4`` (no dot) as a string; -S and params files give a float."""
    got = parse_set_options(["train_gnn.enc_lr=8e-5", "train_gnn.lr=1E-3", "data.root=1e5x"])
    assert got == {"train_gnn.enc_lr": 8e-5, "train_gnn.lr": 1e-3, "data.root": "1e5x"}
    f = tmp_path / "p.yaml"
    f.write_text("train_gnn:\n  enc_lr: 5e-5\n  lr: 2.0e-3\n")
    params = load_params(f)
    assert params["train_gnn"]["enc_lr"] == 5e-5 and isinstance(params["train_gnn"]["enc_lr"], float)


@pytest.mark.parametrize("bad", ["nosection", "train_gnn.nokey", "nosuch.lr"])
def test_unknown_keys_are_refused(bad):
    with pytest.raises(MmreError, match="unknown parameter"):
        apply_overrides(load_params(None), {bad: 1})


def test_set_needs_equals():
    with pytest.raises(MmreError, match="key=value"):
        parse_set_options(["train_gnn.lr"])


def test_unknown_key_in_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train_gnn:\n  lrr: 1\n")
    with pytest.raises(MmreError, match="unknown key 'train_gnn.lrr'"):
        load_params(path)


def test_hash_changes_with_the_section_only(tmp_path):
    a = load_params(None)
    b = apply_overrides(a, {"train_gnn.lr": 0.123})
    assert params_hash(a, ["merge_cmg"]) == params_hash(b, ["merge_cmg"])
    assert params_hash(a, ["train_gnn"]) != params_hash(b, ["train_gnn"])
    target = write_effective(tmp_path, b, ["train_gnn"])
    assert yaml.safe_load(target.read_text()) == {"train_gnn": b["train_gnn"]}
