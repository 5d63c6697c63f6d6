"""Tests for mmre_cli.learn.reward: R = lam * Acc - mu * Complexity, per-graph accuracy."""

from __future__ import annotations

import math

import pytest

import torch

from mmre_cli.learn.reward import graph_accuracy, reward  # noqa: E402


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
