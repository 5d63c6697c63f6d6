"""Tests for mmre_cli.learn.policy: the editor's config, network and masked two-level policy; the ring
batches the editor tests share (``ring_batch``)."""

from __future__ import annotations

import math

import pytest
import torch
import torch_geometric  # noqa: F401 - a hard dependency: a broken install fails, never skips
from torch_geometric.data import Batch  # noqa: E402

from mmre_cli.learn.editing import protected_nodes  # noqa: E402
from mmre_cli.learn.policy import AgentConfig, GraphEditAgent, PolicyOutput, apply_action, init_state, masked_policy  # noqa: E402
from tests.learn.ring_graphs import ring_graphs  # noqa: E402

D = 8
C = 4


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def ring_batch(num_graphs: int = 8, seed: int = 0, noise: bool = False, n_range=(6, 11)) -> Batch:
    """Bidirectional rings (every node touches exactly 4 directed edges), clustered x (± 0.3).

    With ``noise`` one non-head/tail node per graph gets ``x[:, 0] = 3`` (others 0) and y = 1.
    """
    return ring_graphs(num_graphs, dim=D, seed=seed, n_range=n_range, spread=0.3, num_classes=C, noise=noise)


def test_config_defaults():
    cfg = AgentConfig()
    assert (cfg.max_steps, cfg.lam, cfg.mu, cfg.gamma) == (4, 3.0, 2.0, 0.98)
    assert (cfg.lr, cfg.entropy, cfg.add_k, cfg.add_threshold) == (1e-3, 0.01, 2, 0.5)
    assert (cfg.reward_mode, cfg.none_id) == ("likelihood", 0)
    assert cfg.to_dict()["gamma"] == 0.98


def test_agent_rejects_bad_heads():
    with pytest.raises(ValueError):
        GraphEditAgent(D, hidden=15, heads=2)


# ----------------------------------------------------------------------------- masking


def _check_episode(batch: Batch, cfg: AgentConfig, score_fn, steps: int) -> dict:
    """Sample ``steps`` actions per graph with ``score_fn``; check each one with plain loops."""
    state = init_state(batch, cfg)
    b, n, e = batch.num_graphs, batch.num_nodes, batch.edge_index.size(1)
    prot = protected_nodes(batch).tolist()
    node_graph = batch.batch.tolist()
    src, dst = batch.edge_index.tolist()
    cand = state.cand_edge_index.t().tolist()
    cand_graph = state.cand_graph.tolist()
    dead_nodes: set[int] = set()
    dead_edges: set[int] = set()
    added: set[tuple[int, int]] = set()
    done = [False] * b
    counts = {"stop": 0, "node": 0, "edge": 0, "add": 0}
    for t in range(steps):
        out = score_fn(state, t)
        action, logp, ent = masked_policy(batch, state, out, greedy=False)
        assert torch.isfinite(logp).all() and (logp <= 1e-6).all()
        assert torch.isfinite(ent).all() and (ent >= -1e-6).all()
        for g, a in enumerate(action.tolist()):
            if done[g]:
                assert a == g, "a finished graph may only 'stop'"
                continue
            if a < b:
                assert a == g
                done[g] = True
                counts["stop"] += 1
            elif a < b + n:
                i = a - b
                assert node_graph[i] == g, "node of another graph"
                assert not prot[i], "head/tail deleted"
                assert i not in dead_nodes, "node deleted twice"
                dead_nodes.add(i)
                for k in range(e):
                    if src[k] == i or dst[k] == i:
                        dead_edges.add(k)
                counts["node"] += 1
            elif a < b + n + e:
                k = a - b - n
                assert node_graph[src[k]] == g, "edge of another graph"
                assert k not in dead_edges, "edge deleted twice / touching a dead node"
                assert src[k] not in dead_nodes and dst[k] not in dead_nodes
                dead_edges.add(k)
                counts["edge"] += 1
            else:
                c = a - b - n - e
                i, j = cand[c]
                assert cand_graph[c] == g, "candidate of another graph"
                assert (i, j) not in added, "duplicate addition"
                assert i not in dead_nodes and j not in dead_nodes, "addition touching a dead node"
                added.add((i, j))
                counts["add"] += 1
        stopped = apply_action(batch, state, action)
        state.done |= stopped
        # the tensor state agrees with the loop bookkeeping
        assert {i for i in range(n) if not state.node_alive[i]} == dead_nodes
        assert {tuple(p) for p in state.added_edges().t().tolist()} == added
        for k in range(e):
            if k in dead_edges:
                assert not (state.edge_alive[k] and state.node_alive[src[k]] and state.node_alive[dst[k]])
        assert state.done.tolist() == done
    return counts


@pytest.mark.parametrize("seed", range(4))
def test_masking_never_samples_invalid_random_scores(seed):
    """Random scores that favour edits (stop rarely wins) drive graphs to exhaustion."""
    batch = ring_batch(num_graphs=6, seed=seed, n_range=(4, 8))
    cfg = AgentConfig(add_k=3, add_threshold=0.0)
    g = torch.Generator().manual_seed(seed)
    b, n, e = batch.num_graphs, batch.num_nodes, batch.edge_index.size(1)

    def score(state, t):
        k = state.cand_edge_index.size(1)
        return PolicyOutput(
            stop=torch.full((b,), -6.0),
            node=3 * torch.randn(n, generator=g),
            edge=3 * torch.randn(e, generator=g),
            cand=3 * torch.randn(k, generator=g),
            value=torch.zeros(b),
        )

    counts = _check_episode(batch, cfg, score, steps=40)
    assert counts["node"] > 0 and counts["edge"] > 0 and counts["add"] > 0
    assert counts["stop"] > 0  # graphs ran out of valid edits and were forced to stop


@pytest.mark.parametrize("seed", range(3))
def test_masking_never_samples_invalid_agent(seed):
    batch = ring_batch(num_graphs=8, seed=10 + seed)
    cfg = AgentConfig(max_steps=12)
    torch.manual_seed(seed)
    agent = GraphEditAgent(D, hidden=16, heads=2)
    with torch.no_grad():
        agent.stop_head[-1].bias.fill_(-4.0)  # a raw stop logit here (no Q_edit transform): keep editing
        _check_episode(batch, cfg, lambda s, t: agent(batch, s, t / 12), steps=12)


def test_greedy_policy_picks_best_valid_action():
    batch = ring_batch(num_graphs=3, seed=3)
    cfg = AgentConfig()
    state = init_state(batch, cfg)
    b, n, e = batch.num_graphs, batch.num_nodes, batch.edge_index.size(1)
    k = state.cand_edge_index.size(1)
    node = torch.zeros(n)
    head = int(batch.head_index[0])
    node[head] = 100.0  # best score, but protected
    other = int((~protected_nodes(batch) & (batch.batch == 0)).nonzero()[0])
    node[other] = 50.0
    stop = torch.zeros(b)
    stop[0] = -5.0  # graph 0 edits with probability 1 - sigmoid(-5)
    out = PolicyOutput(stop, node, torch.zeros(e), torch.zeros(k), torch.zeros(b))
    action, logp, _ = masked_policy(batch, state, out, greedy=True)
    assert int(action[0]) == b + other
    # all-zero scores: stop has sigmoid(0) = 1/2, more than any one edit
    assert action[1:].tolist() == [1, 2]
    assert float(logp[0]) == pytest.approx(math.log(1 - 1 / (1 + math.exp(5.0))), abs=1e-5)  # ~all edit mass on it
    assert logp[1:].tolist() == pytest.approx([math.log(0.5)] * 2)
    # the flat policy (editors trained before the two-level one): one softmax over stop and edits
    action, logp, _ = masked_policy(batch, state, out, greedy=True, policy="flat")
    assert int(action[0]) == b + other and action[1:].tolist() == [1, 2]
    m1 = (
        int(((batch.batch == 1) & ~protected_nodes(batch)).sum())
        + int((batch.batch[batch.edge_index[0]] == 1).sum())
        + int((state.cand_graph == 1).sum())
    )
    assert float(logp[1]) == pytest.approx(-math.log(1 + m1), abs=1e-5)


def test_two_level_policy_probabilities_sum_to_one_per_graph():
    batch = ring_batch(num_graphs=4, seed=8)
    state = init_state(batch, AgentConfig())
    state.done[3] = True  # a finished graph may only stop
    torch.manual_seed(0)
    agent = GraphEditAgent(D, hidden=16, heads=2)
    out = agent(batch, state, 0.0)
    b, n, e = batch.num_graphs, batch.num_nodes, batch.edge_index.size(1)
    counts = torch.zeros(b, n + e + b + state.cand_edge_index.size(1))
    for _ in range(300):
        action, logp, ent = masked_policy(batch, state, out, greedy=False)
        for g, a in enumerate(action.tolist()):
            counts[g, a] += 1
    assert counts[3, 3] == 300
    p_stop = torch.sigmoid(out.stop.detach())
    for g in range(3):
        assert float(counts[g, g]) / 300 == pytest.approx(float(p_stop[g]), abs=0.1)
