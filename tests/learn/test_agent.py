"""Tests for mmre_cli.learn.agent: TD(0), batched episodes, the actor-critic learning signal, a trained
editor's choices, editor_relevance."""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch_geometric  # noqa: F401 - a hard dependency: a broken install fails, never skips
from torch_geometric.data import Batch  # noqa: E402
from torch_geometric.nn import global_mean_pool  # noqa: E402
from torch_geometric.utils import scatter  # noqa: E402

from mmre_cli.graphs.graph import EDGE_ATTR_DIM  # noqa: E402
from mmre_cli.learn.agent import agent_step, edit_graphs, td_update  # noqa: E402
from mmre_cli.learn.editing import ADDED_EDGE_TYPE, protected_nodes  # noqa: E402
from mmre_cli.learn.policy import AgentConfig, GraphEditAgent, init_state  # noqa: E402
from tests.learn.test_policy import C, D, _one_thread, ring_batch  # noqa: E402,F401 (_one_thread: the fixture)


class StandIn(torch.nn.Module):
    """Tiny classifier: mean-pooled x and the head/tail nodes -> logits [B, C]."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.lin = torch.nn.Linear(3 * D, C)

    def forward(self, batch: Batch) -> torch.Tensor:
        pooled = global_mean_pool(batch.x, batch.batch, size=batch.num_graphs)
        return self.lin(torch.cat([pooled, batch.x[batch.head_index], batch.x[batch.tail_index]], -1))


def noise_classifier(batch: Batch) -> torch.Tensor:
    """Confident in class 1 unless the graph still holds its noise node (x[:, 0] > 1)."""
    has_noise = scatter((batch.x[:, 0] > 1).float(), batch.batch, dim=0, dim_size=batch.num_graphs, reduce="max")
    logits = torch.zeros(batch.num_graphs, 3)
    logits[:, 1] = 3.0 - 5.0 * has_noise
    return logits


# ----------------------------------------------------------------------------- TD(0)


def test_td_update_hand_numbers():
    v = td_update(0.5, 1.0, 0.2, False, alpha=0.1, gamma=0.98)
    assert v == pytest.approx(0.5 + 0.1 * (1 + 0.98 * 0.2 - 0.5))
    assert v == pytest.approx(0.5696)
    # terminal: no bootstrap
    assert td_update(0.5, 1.0, 0.2, True, alpha=0.1, gamma=0.98) == pytest.approx(0.55)
    # alpha = 1 jumps to the target
    assert td_update(0.5, 1.0, 0.2, False, alpha=1.0, gamma=0.98) == pytest.approx(1.196)


def test_td_update_tensor_and_fixed_point():
    v = torch.tensor([0.5, 0.5])
    out = td_update(v, torch.tensor([1.0, 1.0]), torch.tensor([0.2, 0.2]), torch.tensor([False, True]), 0.1, 0.98)
    assert torch.allclose(out, torch.tensor([0.5696, 0.55]))
    # repeated updates on a self-loop with reward r converge to r / (1 - gamma)
    val = 0.0
    for _ in range(3000):
        val = td_update(val, 1.0, val, False, alpha=0.5, gamma=0.9)
    assert val == pytest.approx(10.0, rel=1e-4)


# ----------------------------------------------------------------------------- episodes


def test_batched_episode_logs_in_range():
    batch = ring_batch(num_graphs=8, seed=5)
    cfg = AgentConfig(max_steps=3)
    torch.manual_seed(0)
    agent = GraphEditAgent(D, hidden=32, heads=2)
    opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr)
    before = [p.detach().clone() for p in agent.parameters()]
    logs = agent_step(agent, StandIn(), batch, opt, cfg)
    for key in (
        "loss",
        "actor_loss",
        "critic_loss",
        "entropy",
        "value",
        "reward",
        "reward_start",
        "reward_gain",
        "acc",
        "complexity",
        "f1",
        "steps",
        "node_filter_ratio",
        "edge_adjust_ratio",
    ):
        assert key in logs and math.isfinite(logs[key]), key
    # ring graphs: <= 3 actions, each removes <= 4 or adds 2 of >= 12 directed edges
    assert 0.0 <= logs["node_filter_ratio"] <= 1.0
    assert 0.0 <= logs["edge_adjust_ratio"] <= 1.0
    assert 0.0 <= logs["f1"] <= 1.0 and 0.0 <= logs["acc"] <= 1.0
    assert 0.0 <= logs["steps"] <= 3.0
    assert logs["reward_gain"] == pytest.approx(logs["reward"] - logs["reward_start"], abs=1e-5)
    assert logs["reward"] == pytest.approx(cfg.lam * logs["acc"] - cfg.mu * logs["complexity"], abs=1e-4)
    assert logs["critic_loss"] >= 0 and logs["entropy"] >= 0
    changed = [not torch.equal(a, p) for a, p in zip(before, agent.parameters())]
    assert any(changed)
    assert all(torch.isfinite(p).all() for p in agent.parameters())


def test_edit_graphs_records_match_edited_batch():
    batch = ring_batch(num_graphs=8, seed=6)
    cfg = AgentConfig(max_steps=3, add_threshold=0.3)
    torch.manual_seed(0)
    agent = GraphEditAgent(D, hidden=16, heads=2)
    with torch.no_grad():
        agent.stop_head[-1].bias.fill_(4.0)  # Q_edit = 4 > 0: keep editing
    edited, records = edit_graphs(agent, batch, cfg, greedy=True)
    edited2, records2 = edit_graphs(agent, batch, cfg, greedy=True)
    assert records == records2 and torch.equal(edited.edge_index, edited2.edge_index)  # greedy is deterministic
    assert agent.training  # mode restored
    assert len(records) == batch.num_graphs == edited.num_graphs
    originals = batch.to_data_list()
    for d0, d1, rec in zip(originals, edited.to_data_list(), records):
        assert set(rec) == {"deleted_nodes", "deleted_edges", "added_edges", "steps"}
        assert rec["steps"] <= 3
        assert int(d0.head_index) not in rec["deleted_nodes"] and int(d0.tail_index) not in rec["deleted_nodes"]
        assert d1.num_nodes == d0.num_nodes - len(rec["deleted_nodes"])
        assert d1.edge_index.size(1) == d0.edge_index.size(1) - len(rec["deleted_edges"]) + 2 * len(rec["added_edges"])
        assert int((d1.edge_type == ADDED_EDGE_TYPE).sum()) == 2 * len(rec["added_edges"])
        keep = [i for i in range(d0.num_nodes) if i not in rec["deleted_nodes"]]
        assert keep[int(d1.head_index)] == int(d0.head_index)
        assert keep[int(d1.tail_index)] == int(d0.tail_index)
        for i, j in rec["added_edges"]:
            assert i < j and i in keep and j in keep
    assert sum(r["steps"] for r in records) > 0


def test_agent_step_handles_zero_steps_and_final_shaping():
    batch = ring_batch(num_graphs=4, seed=7)
    agent = GraphEditAgent(D, hidden=16, heads=2)
    opt = torch.optim.SGD(agent.parameters(), lr=0.0)
    logs = agent_step(agent, StandIn(), batch, opt, AgentConfig(max_steps=0))
    assert logs["steps"] == 0 and logs["reward_gain"] == pytest.approx(0.0)
    assert logs["node_filter_ratio"] == 0 and logs["edge_adjust_ratio"] == 0
    logs = agent_step(agent, StandIn(), batch, opt, AgentConfig(max_steps=2, shaping="final"))
    assert math.isfinite(logs["loss"])
    with pytest.raises(ValueError):
        agent_step(agent, StandIn(), batch, opt, AgentConfig(max_steps=1, shaping="bogus"))


# ----------------------------------------------------------------------------- learning signal


def _noise_removed(agent, batch, cfg) -> float:
    edited, _ = edit_graphs(agent, batch, cfg, greedy=True)
    has = scatter((edited.x[:, 0] > 1).float(), edited.batch, dim=0, dim_size=edited.num_graphs, reduce="max")
    return 1.0 - float(has.mean())


def test_learning_signal_increases_reward():
    """The classifier is only confident once the noise node is gone: the agent learns to delete it."""
    start = time.perf_counter()
    torch.manual_seed(0)
    cfg = AgentConfig(max_steps=2, lr=3e-3, add_threshold=0.9)
    agent = GraphEditAgent(D, hidden=32, heads=2, max_pool=True)
    opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr)
    eval_batch = ring_batch(num_graphs=32, seed=999, noise=True)
    removed_before = _noise_removed(agent, eval_batch, cfg)
    rewards = []
    for it in range(60):
        logs = agent_step(agent, noise_classifier, ring_batch(num_graphs=16, seed=it, noise=True), opt, cfg)
        rewards.append(logs["reward"])
    removed_after = _noise_removed(agent, eval_batch, cfg)
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 1.0, (first, last)
    assert removed_before < 0.5 and removed_after >= 0.9, (removed_before, removed_after)
    assert time.perf_counter() - start < 20.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_head_and_tail_survive_many_sampled_episodes(seed):
    from mmre_cli.learn.agent import _rollout

    torch.manual_seed(seed)
    agent = GraphEditAgent(D)
    with torch.no_grad():
        agent.stop_head[-1].bias.fill_(4.0)  # Q_edit = 4 > 0: keep editing
    batch = ring_batch(16, seed=seed, n_range=(4, 7))  # small graphs: deletions reach head/tail often
    cfg = AgentConfig(max_steps=6)
    for _ in range(40):
        state, *_ = _rollout(agent, batch, cfg, greedy=False)
        assert bool(state.node_alive[batch.head_index].all()) and bool(state.node_alive[batch.tail_index].all())
        assert int((~state.node_alive).sum()) > 0  # the editor did delete other nodes


def test_editor_relevance_ranks_nodes_by_the_editors_deletion_scores():
    from mmre_cli.learn.agent import editor_relevance
    from mmre_cli.learn.policy import init_state

    torch.manual_seed(0)
    agent = GraphEditAgent(D)
    batch = ring_batch(3, seed=4, n_range=(5, 8))
    cfg = AgentConfig()
    v0 = editor_relevance(agent, batch, cfg)
    assert v0.shape == (batch.num_nodes,) and float(v0.min()) >= 0.0 and float(v0.max()) <= 1.0
    assert bool((v0[batch.head_index] == 1).all()) and bool((v0[batch.tail_index] == 1).all())
    with torch.no_grad():
        scores = agent.eval()(batch, init_state(batch, cfg), 0.0).node
    for g in range(batch.num_graphs):
        nodes = (batch.batch == g).nonzero().view(-1)
        top = nodes[scores[nodes].argmax()]
        if top not in (batch.head_index[g], batch.tail_index[g]):
            assert float(v0[top]) == 0.0  # the node it would delete first
        free = [int(n) for n in nodes if n not in (batch.head_index[g], batch.tail_index[g])]
        order = sorted(free, key=lambda n: float(scores[n]))
        assert [float(v0[n]) for n in order] == sorted((float(v0[n]) for n in order), reverse=True)


def mixed_batch(num_graphs: int, seed: int) -> tuple[Batch, torch.Tensor, torch.Tensor]:
    """Ring graphs, y = 1; odd graphs hold one distractor node (x[:, 0] = 3), even ones nothing to
    remove (the same graphs with the distractor's mark cleared). Returns ``(batch, noisy [B],
    distractor node id [B] (global; -1 for a clean graph))``."""
    batch = ring_batch(num_graphs=num_graphs, seed=seed, noise=True)
    noisy = torch.arange(num_graphs) % 2 == 1
    x = batch.x.clone()
    mark = x[:, 0] > 1
    x[mark & ~noisy[batch.batch], 0] = 0.0
    batch.x = x
    node = torch.full((num_graphs,), -1)
    hit = (x[:, 0] > 1).nonzero().view(-1)
    node[batch.batch[hit]] = hit
    return batch, noisy, node


@pytest.fixture(scope="module")
def trained_editor():
    """An editor trained (default reward: edit cost, two-level policy) against ``noise_classifier``
    on graphs half of which hold a distractor: deleting it raises the gold likelihood 0.12 -> 0.95,
    any other edit changes nothing and costs mu / N."""
    torch.manual_seed(0)
    cfg = AgentConfig(max_steps=2, lr=3e-3, add_threshold=0.9)
    agent = GraphEditAgent(D, hidden=32, heads=2, max_pool=True)
    opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr)
    for it in range(150):
        agent_step(agent, noise_classifier, mixed_batch(16, seed=100 + it)[0], opt, cfg)
    return agent.eval(), cfg


def test_trained_policy_stops_when_nothing_is_to_be_removed(trained_editor):
    from mmre_cli.learn.agent import _rollout

    agent, cfg = trained_editor
    batch, noisy, _ = mixed_batch(32, seed=999)
    clean = ~noisy
    stops, episodes = 0, 0
    torch.manual_seed(1)
    for _ in range(10):  # 10 sampled episodes of 16 clean graphs
        state, *_ = _rollout(agent, batch, cfg, greedy=False)
        first_stop = state.steps == 0
        stops += int(first_stop[clean].sum())
        episodes += int(clean.sum())
    assert stops / episodes >= 0.9, stops / episodes


def test_trained_policy_deletes_the_distractor_first(trained_editor):
    from mmre_cli.learn.agent import _rollout

    agent, cfg = trained_editor
    batch, noisy, node = mixed_batch(32, seed=999)
    b = batch.num_graphs
    hits, episodes = 0, 0
    torch.manual_seed(2)
    for _ in range(10):  # sampled episodes: the distractor is the first edit
        state, steps, *_ = _rollout(agent, batch, cfg, greedy=False)
        first = torch.zeros(b, dtype=torch.bool)
        first[noisy] = ~state.node_alive[node[noisy]]
        hits += int(first[noisy].sum())
        episodes += int(noisy.sum())
    assert hits / episodes >= 0.9, hits / episodes
    # the greedy episode (what the diffuse stage runs): the distractor goes, then the editor stops;
    # a clean graph is left alone
    _, records = edit_graphs(agent, batch, cfg, greedy=True)
    for g in range(b):
        want = [int(node[g] - batch.ptr[g])] if noisy[g] else []
        assert records[g]["deleted_nodes"] == want and records[g]["steps"] == len(want), (g, records[g])


def _entity_graph():
    """A sentence CMG: tokens "David Bowie was born in London ." (0-6), head entity "David Bowie"
    [0, 2), tail "London" [5, 6), a noun phrase "David Bowie" equal to the head span, one caption
    phrase; dep / member edges."""
    import numpy as np

    from mmre_cli.graphs.graph import EDGE_TYPES, MODALITIES, NODE_KINDS, Graph

    words = ["David", "Bowie", "was", "born", "in", "London", "."]
    kinds = ["token"] * 7 + ["entity", "entity", "noun_phrase", "caption_phrase"]
    mods = ["text"] * 10 + ["caption"]
    roles = [0] * 7 + [1, 2, 0, 0]
    spans = [[i, i + 1] for i in range(7)] + [[0, 2], [5, 6], [0, 2], [0, 2]]  # the caption span is its own
    edges = [(3, 1), (1, 0), (3, 2), (3, 4), (4, 5), (3, 6), (0, 7), (1, 7), (5, 8), (0, 9), (1, 9), (7, 10)]
    ei = np.array(edges, np.int64).T
    ei = np.concatenate([ei, ei[::-1]], 1)
    e = ei.shape[1]
    rng = np.random.default_rng(0)
    return Graph(
        graph_id="g",
        node_kind=np.array([NODE_KINDS.index(k) for k in kinds], np.int8),
        node_modality=np.array([MODALITIES.index(m) for m in mods], np.int8),
        node_role=np.array(roles, np.int8),
        node_text=words + ["David Bowie", "London", "David Bowie", "a man"],
        box=np.full((11, 4), np.nan, np.float32),
        edge_index=ei,
        edge_type=np.full(e, EDGE_TYPES.index("dep"), np.int8),
        edge_label=[""] * e,
        edge_attr=np.zeros((e, EDGE_ATTR_DIM), np.float32),
        x=rng.normal(size=(11, D)).astype(np.float32),
        label=1,
        meta={"spans": spans, "words": words, "entity_spans": [0, 2, 5, 6]},
    )


def test_head_tail_tokens_and_entities_survive_every_sampled_episode():
    from mmre_cli.graphs.pyg import graph_to_data
    from mmre_cli.learn.agent import _rollout

    g = _entity_graph()
    data = graph_to_data(g)
    # "David", "Bowie", "London", both entities and the noun phrase "David Bowie"
    assert data.node_protected.nonzero().view(-1).tolist() == [0, 1, 5, 7, 8, 9]
    batch = Batch.from_data_list([graph_to_data(g) for _ in range(8)])
    prot = protected_nodes(batch)
    assert int(prot.sum()) == 8 * 6
    torch.manual_seed(0)
    agent = GraphEditAgent(D, hidden=16, heads=2)
    with torch.no_grad():
        agent.stop_head[-1].bias.fill_(4.0)  # Q_edit = 4 > 0: keep editing
    cfg = AgentConfig(max_steps=8)
    deleted = 0
    for _ in range(30):
        state, *_ = _rollout(agent, batch, cfg, greedy=False)
        assert bool(state.node_alive[prot].all())
        deleted += int((~state.node_alive).sum())
    assert deleted > 0
    # every unprotected node can still go
    free = (~prot).nonzero().view(-1)
    state = init_state(batch, cfg)
    state.node_alive[free] = False
    assert protected_nodes(batch)[state.node_alive].all()
