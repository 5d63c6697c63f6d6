"""Each stage declares the params it reads (``stages/<stage>.py``'s ``PARAMS``); ``dvc.yaml`` lists
exactly those for it, the stage sees no other key, and ``mmre run`` decides what to rerun from the
same list — so ``dvc repro`` and ``mmre run`` rerun the same stages when a key changes.

(That an edit of ``train_gnn.lr`` makes ``dvc repro --dry`` and ``mmre run --dry`` name the same
stages on a real project is checked in ``tests/stages/test_pipeline_e2e.py``.)
"""

from __future__ import annotations

import ast
import importlib

import pytest
import yaml

from mmre_cli.cli.recipe import STAGE_NAMES
from mmre_cli.errors import MmreError
from mmre_cli.param_sections import SECTIONS, fields
from mmre_cli.params import DEFAULTS, declared, load_params, stage_view
from tests.test_dvc_deps import REPO, import_closure


def _dvc_params() -> dict[str, list[str]]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: list(stage.get("params", [])) for name, stage in stages.items()}


def test_dvc_yaml_names_the_stages_of_mmre_run_in_order():
    assert list(_dvc_params()) == STAGE_NAMES


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_dvc_yaml_lists_exactly_the_keys_the_stage_declares(stage):
    wanted = list(importlib.import_module(f"stages.{stage}").PARAMS)
    assert _dvc_params()[stage] == wanted, f"dvc.yaml {stage}.params should be:\n" + "\n".join(
        f"    - {k}" for k in wanted
    )


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_every_declared_key_is_named_in_code_the_stage_runs(stage):
    """A declared key no code of the stage mentions is a stale declaration (it would rerun the
    stage for nothing)."""
    words: set[str] = set()
    for path in import_closure(f"stages.{stage}"):
        for node in ast.walk(ast.parse((REPO / path).read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                words.add(node.value)
            elif isinstance(node, ast.keyword) and node.arg:
                words.add(node.arg)
    unused = [k for k in importlib.import_module(f"stages.{stage}").PARAMS if k.split(".", 1)[1] not in words]
    assert not unused, f"{stage}: declared but never named in its code: {unused}"


def test_every_key_is_read_by_some_stage_or_by_predict():
    read = {k for s in STAGE_NAMES for k in importlib.import_module(f"stages.{s}").PARAMS}
    predict_only = {"data.captioner"}  # predict/serve caption a raw image with it; no stage does
    every = {f"{section}.{f.name}" for section in SECTIONS for f in fields(section)}
    assert every - read == predict_only


def test_a_stage_sees_only_its_keys():
    params = load_params(None)
    view = stage_view(params, declared("merge_cmg.top_k", "data.root"))
    assert view["merge_cmg"]["top_k"] == DEFAULTS["merge_cmg"]["top_k"] and view["data"]["root"] == "data/sample"
    with pytest.raises(MmreError, match=r"merge_cmg\.hops is read but not declared"):
        view["merge_cmg"]["hops"]
    with pytest.raises(MmreError, match=r"merge_cmg\.hops is read but not declared"):
        view["merge_cmg"].get("hops", 2)  # a fallback cannot hide it either
    with pytest.raises(MmreError, match="section 'train_gnn'"):
        view["train_gnn"]
    with pytest.raises(ValueError, match="unknown parameter 'merge_cmg.nope'"):
        declared("merge_cmg.nope")


def test_the_values_a_stage_sees_are_copies():
    params = load_params(None)
    view = stage_view(params, declared("data.splits"))
    view["data"]["splits"].append("test")
    assert params["data"]["splits"] == ["train", "val"]
