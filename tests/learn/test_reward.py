"""Tests for mmre_cli.learn.reward: R = lam * Acc - mu * Complexity, per-graph accuracy, step rewards."""

from __future__ import annotations

import math

import pytest
import torch

from mmre_cli.learn.policy import AgentConfig, apply_action, init_state  # noqa: E402
from mmre_cli.learn.reward import graph_accuracy, reward  # noqa: E402
from tests.learn.test_policy import _one_thread, ring_batch  # noqa: E402,F401 (_one_thread: the fixture)


def test_reward_hand_value():
    assert reward(0.8, 0.5, lam=3.0, mu=2.0) == pytest.approx(1.4)
    assert reward(0.0, 1.0, lam=3.0, mu=2.0) == pytest.approx(-2.0)
    assert reward(1.0, 0.0, lam=5.0, mu=2.0) == pytest.approx(5.0)


def test_reward_sign_and_scale_tensor():
    acc = torch.tensor([0.8, 0.8, 0.2])
    comp = torch.tensor([0.5, 1.0, 0.5])
    r = reward(acc, comp, lam=3.0, mu=2.0)
    assert torch.allclose(r, torch.tensor([1.4, 0.4, -0.4]))
    assert r[1] < r[0]  # higher complexity lowers the reward
    assert r[2] < r[0]  # lower accuracy lowers the reward
    r2 = reward(acc, comp, lam=6.0, mu=4.0)
    assert torch.allclose(r2, 2 * r)  # linear in (lam, mu)


def test_likelihood_uses_gold_probability_not_argmax():
    # gold class 1 has p = 0.4 but class 0 wins the argmax
    logits = torch.log(torch.tensor([[0.6, 0.4], [0.1, 0.9]]))
    y = torch.tensor([1, 1])
    lik = graph_accuracy(logits, y, none_id=0)
    assert torch.allclose(lik, torch.tensor([0.4, 0.9]))
    cor = graph_accuracy(logits, y, none_id=0, mode="correct")
    assert cor.tolist() == [0.0, 1.0]
    # likelihood is smooth: more gold mass -> more reward even when the argmax is still wrong
    better = graph_accuracy(torch.log(torch.tensor([[0.55, 0.45]])), torch.tensor([1]), none_id=0)
    assert better.item() > lik[0].item()
    assert graph_accuracy(torch.log(torch.tensor([[0.55, 0.45]])), torch.tensor([1]), 0, "correct").item() == 0.0


def test_likelihood_hand_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0]])
    expect = math.exp(1.0) / (1 + math.exp(1.0) + math.exp(2.0))
    assert graph_accuracy(logits, torch.tensor([1]), none_id=0).item() == pytest.approx(expect, rel=1e-6)


def test_none_weight_scales_gold_none_only():
    logits = torch.log(torch.tensor([[0.8, 0.2], [0.3, 0.7]]))
    y = torch.tensor([0, 1])  # first is gold None
    acc = graph_accuracy(logits, y, none_id=0, none_weight=0.5)
    assert torch.allclose(acc, torch.tensor([0.4, 0.7]))


def test_graph_accuracy_errors():
    with pytest.raises(ValueError):
        graph_accuracy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 0, mode="accuracy")
    with pytest.raises(ValueError):
        graph_accuracy(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long), 0)
    with pytest.raises(ValueError):
        graph_accuracy(torch.zeros(2, 3), torch.tensor([0, -1]), 0)  # unlabelled


# ----------------------------------------------------------------------------- evidence shaping (issue 11)


def test_deleting_a_node_the_gold_relies_on_has_a_negative_shaped_reward():
    """Under ``complexity="size"`` (the earlier default). Hand-built: one ring graph; the classifier's
    gold probability is 0.60 with node k and 0.55 without it. Deleting k (1 of 8 nodes, 4 of 16
    directed edges: dC = 0.5/8 + 0.5 * 4/16 = 0.1875) saves mu * dC = +0.375, more than
    lambda * dAcc costs (-0.15), so the plain delta reward is +0.225; the evidence penalty
    (kappa = 6: -0.30) makes it negative."""
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
    assert (
        float(step_reward(r0, r0, acc0, acc0, torch.tensor([True]), torch.tensor([False]), torch.tensor([False]), cfg))
        == 0.0
    )  # (a neutral edit's -0.25 is in R itself: C rose by 1/8)
    assert (
        float(
            step_reward(r0, r0 - 5, acc0, acc0, torch.tensor([False]), torch.tensor([True]), torch.tensor([True]), cfg)
        )
        == 0.0
    )  # stop
