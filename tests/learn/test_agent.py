"""Tests for mmre_cli.learn.agent: TD(0), masked batched episodes, actor-critic learning signal."""

from __future__ import annotations

import math
import time

import pytest

import torch
import torch_geometric  # noqa: F401 - a hard dependency: a broken install fails, never skips

from torch_geometric.data import Batch, Data  # noqa: E402
from torch_geometric.nn import global_mean_pool  # noqa: E402
from torch_geometric.utils import scatter  # noqa: E402

from mmre_cli.graphs.graph import EDGE_ATTR_DIM  # noqa: E402
from mmre_cli.learn.agent import (  # noqa: E402
    AgentConfig,
    GraphEditAgent,
    PolicyOutput,
    agent_step,
    apply_action,
    edit_graphs,
    init_state,
    masked_policy,
    td_update,
)
from mmre_cli.learn.editing import ADDED_EDGE_TYPE, protected_nodes  # noqa: E402

D = 8
C = 4


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def ring_batch(num_graphs: int = 8, seed: int = 0, noise: bool = False, n_range=(6, 11)) -> Batch:
    """Bidirectional rings (every node touches exactly 4 directed edges), clustered x.

    With ``noise`` one non-head/tail node per graph gets ``x[:, 0] = 3`` (others 0) and y = 1.
    """
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(3, D, generator=g)
    data = []
    for _ in range(num_graphs):
        n = int(torch.randint(n_range[0], n_range[1], (1,), generator=g))
        x = centers[torch.randint(0, 3, (n,), generator=g)] + 0.3 * torch.randn(n, D, generator=g)
        perm = torch.randperm(n, generator=g)
        if noise:
            x[:, 0] = 0.0
            x[perm[2], 0] = 3.0
        src = torch.arange(n)
        dst = (src + 1) % n
        ei = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)
        role = torch.zeros(n, dtype=torch.long)
        role[perm[0]], role[perm[1]] = 1, 2
        e = ei.size(1)
        data.append(
            Data(
                x=x,
                edge_index=ei,
                edge_type=torch.randint(0, ADDED_EDGE_TYPE, (e,), generator=g),
                edge_attr=torch.rand(e, EDGE_ATTR_DIM, generator=g),
                node_role=role,
                y=torch.tensor([1]) if noise else torch.randint(0, C, (1,), generator=g),
                head_index=perm[:1].clone(),
                tail_index=perm[1:2].clone(),
            )
        )
    return Batch.from_data_list(data)


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
    m1 = int(((batch.batch == 1) & ~protected_nodes(batch)).sum()) + int((batch.batch[batch.edge_index[0]] == 1).sum()) \
        + int((state.cand_graph == 1).sum())
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
        "loss", "actor_loss", "critic_loss", "entropy", "value", "reward", "reward_start", "reward_gain",
        "acc", "complexity", "f1", "steps", "node_filter_ratio", "edge_adjust_ratio",
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


# ----------------------------------------------------------------------------- evidence shaping (issue 11)


def test_deleting_a_node_the_gold_relies_on_has_a_negative_shaped_reward():
    """Under ``complexity="size"`` (the earlier default). Hand-built: one ring graph; the classifier's gold probability is 0.60 with node k and 0.55
    without it. Deleting k (1 of 8 nodes, 4 of 16 directed edges: dC = 0.5/8 + 0.5 * 4/16 =
    0.1875) saves mu * dC = +0.375, more than lambda * dAcc costs (-0.15), so the plain delta
    reward is +0.225; the evidence penalty (kappa = 6: -0.30) makes it negative."""
    import math as m

    from mmre_cli.learn.reward import batch_reward, step_reward

    batch = ring_batch(1, seed=3, n_range=(8, 9))
    batch.y = torch.tensor([1])
    head, tail = int(batch.head_index), int(batch.tail_index)
    k = next(i for i in range(batch.num_nodes) if i not in (head, tail))
    marked = batch.x.clone()
    marked[:, 0] = 0.0
    marked[k, 0] = 1.0
    batch.x = marked

    def classifier(b):
        present = float(b.x[:, 0].max() > 0.5)
        gold = m.log(0.60 / 0.40) if present else m.log(0.55 / 0.45)
        return torch.tensor([[0.0, gold]])

    cfg = AgentConfig(lam=3.0, mu=2.0, evidence_penalty=6.0, complexity="size")
    state = init_state(batch, cfg)
    r0, acc0, *_ = batch_reward(classifier, batch, state, cfg)
    state.node_alive[k] = False
    src, dst = batch.edge_index
    state.edge_alive &= state.node_alive[src] & state.node_alive[dst]
    r1, acc1, *_ = batch_reward(classifier, batch, state, cfg)
    assert float(acc0) == pytest.approx(0.60) and float(acc1) == pytest.approx(0.55)
    deleted, no = torch.tensor([True]), torch.tensor([False])
    plain = step_reward(r0, r1, acc0, acc1, deleted, no, no, AgentConfig(lam=3.0, mu=2.0, complexity="size"))
    shaped = step_reward(r0, r1, acc0, acc1, deleted, no, no, cfg)
    assert float(plain) == pytest.approx(-3.0 * 0.05 + 2.0 * 0.1875, abs=1e-6)  # +0.225: deleting pays without it
    assert float(shaped) == pytest.approx(0.225 - 6.0 * 0.05, abs=1e-6) and float(shaped) < 0
    # an edit that raises the gold likelihood, an addition, and a stop are not charged
    assert float(step_reward(r1, r0, acc1, acc0, deleted, no, no, cfg)) == pytest.approx(float(r0 - r1))
    assert float(step_reward(r0, r1, acc0, acc1, no, no, no, cfg)) == pytest.approx(float(plain))
    assert float(step_reward(r0, r1, acc0, acc1, deleted, torch.tensor([True]), no, cfg)) == 0.0


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
    from mmre_cli.learn.agent import editor_relevance, init_state

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


# ----------------------------------------------------------------------------- the edit-cost reward (issue 26)


def test_edit_complexity_step_rewards_by_hand():
    """complexity="edits": each edit costs mu / N. One ring graph of N = 8 nodes, lam = 3, mu = 2:
    a deletion that lowers the gold likelihood 0.60 -> 0.55 pays 3 * -0.05 - 2/8 = -0.40; one that
    raises it 0.55 -> 0.65 pays 3 * 0.10 - 0.25 = +0.05; a neutral one -0.25; stop 0."""
    import math as m

    from mmre_cli.learn.reward import batch_reward, step_reward

    batch = ring_batch(1, seed=3, n_range=(8, 9))
    batch.y = torch.tensor([1])
    probs = {}

    def classifier(b):
        p = probs[b.num_nodes]
        return torch.tensor([[0.0, m.log(p / (1 - p))]])

    cfg = AgentConfig(lam=3.0, mu=2.0)
    assert cfg.complexity == "edits"
    free = [i for i in range(8) if i not in (int(batch.head_index), int(batch.tail_index))]
    state = init_state(batch, cfg)
    probs.update({8: 0.60, 7: 0.55, 6: 0.65})
    r0, acc0, c0, *_ = batch_reward(classifier, batch, state, cfg)
    assert float(c0) == 0.0 and float(r0) == pytest.approx(3 * 0.60)
    rewards = []
    for k in free[:2]:
        apply_action(batch, state, torch.tensor([1 + k]))  # flat index: stop_0, then the nodes
        r1, acc1, c1, *_ = batch_reward(classifier, batch, state, cfg)
        yes, no = torch.tensor([True]), torch.tensor([False])
        rewards.append(float(step_reward(r0, r1, acc0, acc1, yes, no, no, cfg)))
        r0, acc0 = r1, acc1
    assert float(c1) == pytest.approx(2 / 8)
    assert rewards == pytest.approx([3 * -0.05 - 0.25, 3 * 0.10 - 0.25], abs=1e-5)
    assert float(step_reward(r0, r0, acc0, acc0, torch.tensor([True]), torch.tensor([False]), torch.tensor([False]),
                             cfg)) == 0.0  # (a neutral edit's -0.25 is in R itself: C rose by 1/8)
    assert float(step_reward(r0, r0 - 5, acc0, acc0, torch.tensor([False]), torch.tensor([True]),
                             torch.tensor([True]), cfg)) == 0.0  # stop


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
    return Graph(graph_id="g", node_kind=np.array([NODE_KINDS.index(k) for k in kinds], np.int8),
                 node_modality=np.array([MODALITIES.index(m) for m in mods], np.int8),
                 node_role=np.array(roles, np.int8), node_text=words + ["David Bowie", "London", "David Bowie", "a man"],
                 box=np.full((11, 4), np.nan, np.float32), edge_index=ei,
                 edge_type=np.full(e, EDGE_TYPES.index("dep"), np.int8), edge_label=[""] * e,
                 edge_attr=np.zeros((e, EDGE_ATTR_DIM), np.float32), x=rng.normal(size=(11, D)).astype(np.float32),
                 label=1, meta={"spans": spans, "words": words, "entity_spans": [0, 2, 5, 6]})


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
