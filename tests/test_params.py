"""params.yaml: defaults, overrides, hashing, the effective-params file."""

from __future__ import annotations

import pytest
import yaml

from mmre_cli.errors import MmreError
from mmre_cli.params import (
    DEFAULTS,
    apply_overrides,
    load_params,
    params_hash,
    parse_set_options,
    select,
    write_effective,
)


def test_repo_params_yaml_has_exactly_the_known_keys(repo):
    on_disk = yaml.safe_load((repo / "params.yaml").read_text())
    assert set(on_disk) == set(DEFAULTS)
    for section, values in DEFAULTS.items():
        assert set(on_disk[section]) == set(values), section


def test_overrides_parse_yaml_scalars_and_win():
    params = load_params(None)
    params = apply_overrides(
        params, parse_set_options(["train_gnn.lr=0.5", "data.captions=null", "train_gnn.epochs=3"]), skip_none=False
    )
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


def test_hash_changes_with_the_declared_keys_only(tmp_path):
    a = load_params(None)
    b = apply_overrides(a, {"train_gnn.lr": 0.123})
    assert params_hash(a, ["merge_cmg.top_k", "train_gnn.epochs"]) == params_hash(
        b, ["merge_cmg.top_k", "train_gnn.epochs"]
    )
    assert params_hash(a, ["train_gnn.lr"]) != params_hash(b, ["train_gnn.lr"])
    target = write_effective(tmp_path, select(b, ["train_gnn.lr", "data.root"]))
    assert yaml.safe_load(target.read_text()) == {"train_gnn": {"lr": 0.123}, "data": {"root": "data/sample"}}


@pytest.mark.parametrize(
    "item, message",
    [
        ("train_gnn.epochs=abc", "train_gnn.epochs must be an integer, not 'abc'"),
        ("train_gnn.lr=fast", "train_gnn.lr must be a number, not 'fast'"),
        ("train_gnn.readout=pooled", "train_gnn.readout must be one of gnn_markers | markers, not 'pooled'"),
        ("train_agent.enabled=maybe", "train_agent.enabled must be true or false"),
        ("merge_cmg.top_k=null", "merge_cmg.top_k may not be null"),
    ],
)
def test_values_are_checked_against_their_types(item, message):
    with pytest.raises(MmreError) as err:
        apply_overrides(load_params(None), parse_set_options([item]), skip_none=False)
    assert message in str(err.value)


def test_a_file_value_of_the_wrong_type_names_the_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("diffuse:\n  prune: sometimes\n")
    with pytest.raises(MmreError, match=r"p.yaml: diffuse.prune must be one of minmax \| quantile \| absolute"):
        load_params(path)


def test_numbers_are_accepted_where_they_fit():
    params = apply_overrides(
        load_params(None),
        parse_set_options(
            ["train_gnn.lr=1", "train_gnn.precision=32", "train_gnn.train_layers=null", "data.splits=[a, b]"]
        ),
        skip_none=False,
    )
    assert params["train_gnn"]["lr"] == 1 and params["train_gnn"]["precision"] == "32"
    assert params["train_gnn"]["train_layers"] is None and params["data"]["splits"] == ["a", "b"]


def test_a_moved_key_says_where_it_went(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("data:\n  pair_captions: x.txt\n")
    with pytest.raises(MmreError, match="moved to train_gnn.pair_captions"):
        load_params(path)
