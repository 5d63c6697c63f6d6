"""`diffuse.relevance: editor`: the learned prior runs through the stage and prunes by it."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from mmre_cli.errors import MmreError


def test_editor_relevance_through_the_diffuse_stage(trained, tmp_path):
    from mmre_cli.params import DEFAULTS
    from mmre_cli.store.readers import iter_graphs
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


def test_default_minmax_pruning_reports_its_fraction(trained, tmp_path):
    """The stage's defaults (prune: minmax, tau 0.1): the relevance stored is the per-graph
    rescaled v (min 0, max 1 per graph), every pruned edge weighs below tau, every kept edge not
    touching head/tail at least tau, and stats give the pruned fraction; the editor's records carry
    ``deleted_words``."""
    from mmre_cli.graphs.graph import ROLE_OTHER
    from mmre_cli.params import DEFAULTS
    from mmre_cli.store.readers import iter_graphs
    from stages import diffuse

    root = trained["root"]
    params = copy.deepcopy(DEFAULTS)
    assert (params["diffuse"]["prune"], params["diffuse"]["tau"]) == ("minmax", 0.1)
    stats = diffuse.run(cmg=root / "cmg", agent=root / "agent", out=tmp_path / "d", params=params)
    assert stats["prune_rule"] == "minmax" and stats["tau"] == 0.1
    assert stats["pruned_ratio"] == pytest.approx(stats["pruned_edges"] / stats["edges_diffused"])
    assert 0.0 <= stats["pruned_ratio_mean_graph"] <= 1.0
    for g in iter_graphs(tmp_path / "d"):
        rel = np.asarray(g.meta["relevance"])
        if g.num_nodes > 1 and np.ptp(rel) > 0:
            assert rel.min() == pytest.approx(0.0, abs=1e-6) and rel.max() == pytest.approx(1.0, abs=1e-6)
        assert all(w < 0.1 for *_, w in g.meta["pruned_edges"])
        src, dst = g.edge_index
        free = (g.node_role[src] == ROLE_OTHER) & (g.node_role[dst] == ROLE_OTHER)
        assert (g.edge_attr[free, 0] >= 0.1 - 1e-6).all()
        assert isinstance(g.meta["deleted_words"], list)
