"""Fixtures of the CLI tests: one tiny model trained once per session on the shipped sample."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict:
    """``{"model", "diffused"}``: the sample pipeline run once through the stage functions."""
    from mmre_cli.params import DEFAULTS
    from stages import build_graphs, diffuse, extract_features, merge_cmg, train_agent, train_gnn

    root = tmp_path_factory.mktemp("predict")
    params = copy.deepcopy(DEFAULTS)
    params["data"].update(root=str(SAMPLE), captions=str(SAMPLE / "captions_{split}.txt"))
    params["extract_features"].update(workers=0)
    params["train_agent"].update(episodes=1, warmup_epochs=1)
    params["train_gnn"].update(epochs=2, hidden=32, heads=2)
    extract_features.run(out=root / "features", params=params)
    build_graphs.run(features=root / "features", out=root / "graphs", params=params)
    merge_cmg.run(features=root / "features", graphs=root / "graphs", out=root / "cmg", params=params)
    train_agent.run(cmg=root / "cmg", out=root / "agent", params=params)
    diffuse.run(cmg=root / "cmg", agent=root / "agent", out=root / "diffused", params=params)
    train_gnn.run(graphs=root / "diffused", out=root / "model", params=params, agent=root / "agent")
    return {"model": root / "model", "diffused": root / "diffused", "root": root}


@pytest.fixture(scope="session")
def second_model(trained, tmp_path_factory) -> Path:
    """Another frozen-feature classifier on ``trained``'s graphs (other seed, other width): an
    ensemble's second member."""
    from mmre_cli.params import DEFAULTS
    from stages import train_gnn

    params = copy.deepcopy(DEFAULTS)
    params["train_gnn"].update(epochs=1, hidden=16, heads=2, seed=14)
    out = tmp_path_factory.mktemp("second") / "model"
    train_gnn.run(graphs=trained["diffused"], out=out, params=params, agent=trained["root"] / "agent")
    return out
