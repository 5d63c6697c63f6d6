"""`diffuse.relevance: editor`: the learned prior runs through the stage and prunes by it."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from mmre_cli.errors import MmreError


def test_editor_relevance_through_the_diffuse_stage(trained, tmp_path):
    from mmre_cli.params import DEFAULTS
    from mmre_cli.store.shards import iter_graphs
    from stages import diffuse

    root = trained["root"]
    params = copy.deepcopy(DEFAULTS)
    params["diffuse"].update(relevance="editor", tau=0.3)
    stats = diffuse.run(cmg=root / "cmg", agent=root / "agent", out=tmp_path / "d", params=params)
    graphs = list(iter_graphs(tmp_path / "d"))
    assert len(graphs) == stats["graphs"] > 0
    rel = [np.asarray(g.meta["relevance"]) for g in graphs]
    assert all(((r >= 0) & (r <= 1)).all() for r in rel)
    assert stats["pruned_edges"] > 0  # a learned prior with zeros: tau has something to cut
    params["train_agent"]["enabled"] = False
    with pytest.raises(MmreError, match="needs the RL editor"):
        diffuse.run(cmg=root / "cmg", agent=root / "agent", out=tmp_path / "d2", params=params)
