"""GraphMNL-style negative learning: the loss, its gold-safe gradient, the stability gate, the branches."""

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch

from mmre_cli.learn.gnn import RelationGNN, classification_loss
from mmre_cli.learn.negative import BRANCHES, BranchHeads, StabilityGate, branch_loss, negative_learning_loss
from tests.learn.test_gnn import F_IN, make_data


def test_zero_when_the_weak_branch_puts_no_mass_on_non_targets():
    logits = torch.full((2, 5), -60.0)
    y = torch.tensor([1, 3])
    logits[0, 1] = logits[1, 3] = 60.0
    loss = negative_learning_loss(logits, y, torch.ones(2, 5))
    assert loss.tolist() == [0.0, 0.0]


def test_value_is_the_weighted_complementary_log_loss():
    logits = torch.tensor([[1.0, 0.5, -0.3, 2.0]])
    g = torch.tensor([[0.2, 0.9, 0.4, 0.7]])
    p = logits.softmax(-1)[0]
    expected = -(0.2 * torch.log(1 - p[0]) + 0.4 * torch.log(1 - p[2]) + 0.7 * torch.log(1 - p[3])) / 3
    assert float(negative_learning_loss(logits, torch.tensor([1]), g)) == pytest.approx(float(expected), rel=1e-6)


def test_gradient_never_lowers_the_gold_probability():
    gen = torch.Generator().manual_seed(0)
    for trial in range(200):
        c = int(torch.randint(3, 12, (1,), generator=gen))
        logits = (torch.randn(4, c, generator=gen) * 3).requires_grad_()
        y = torch.randint(0, c, (4,), generator=gen)
        g = torch.rand(4, c, generator=gen)
        negative_learning_loss(logits, y, g).sum().backward()
        grad = logits.grad
        gold = grad.gather(1, y.view(-1, 1))
        assert bool((gold <= 0).all()), trial  # a descent step raises the gold logit
        others = grad.scatter(1, y.view(-1, 1), 0.0)
        assert bool((others >= 0).all()), trial  # and lowers (or keeps) every other one
        before = logits.detach().softmax(-1).gather(1, y.view(-1, 1))
        after = (logits.detach() - 0.1 * grad).softmax(-1).gather(1, y.view(-1, 1))
        assert bool((after >= before - 1e-7).all()), trial


def test_without_the_stop_gradient_the_plain_loss_can_lower_the_gold():
    """Why the stop-gradient: the plain -g log(1 - softmax) lowers p(y) here."""
    logits = torch.tensor([[-3.0, 3.0, -3.0]], requires_grad=True)  # y = 0 weak, class 1 dominant
    g = torch.tensor([[0.0, 0.0, 1.0]])  # push only class 2 down
    p = logits.softmax(-1)
    (-(g * torch.log1p(-p))).sum().backward()
    after = (logits.detach() - 1.0 * logits.grad).softmax(-1)
    assert after[0, 0] < p.detach()[0, 0]


def test_gate_closes_for_an_unstable_teacher_and_opens_for_a_stable_one():
    gate = StabilityGate(2, window=10, tolerance=0.05)
    for step in range(9):
        gate.update(torch.tensor([[0.5, 0.1 if step % 2 else 0.9]]))
    assert gate.gates().tolist() == [0.0, 0.0]  # not watched long enough
    gate.update(torch.tensor([[0.5, 0.9]]))
    g = gate.gates()
    assert g[0] == pytest.approx(1.0) and g[1] == 0.0  # std 0 vs std 0.4
    gate.update(torch.tensor([[0.52, 0.9]]))  # small swing: partly open
    assert 0.0 < float(gate.gates()[0]) < 1.0


def _out(branch_logits: torch.Tensor, has_image) -> dict:
    return {"logits": branch_logits[:, 0], "branches": branch_logits, "has_image": torch.tensor(has_image)}


def test_branch_loss_is_ce_until_the_gate_opens_then_adds_negative_learning():
    heads = BranchHeads(4, 4, 4, 3, 8, 0.0, nl_weight=1.0, window=3)
    logits = torch.tensor([[[2.0, 0, 0], [0.5, 0.4, 0.3], [0, 0, 3.0], [0.1, 0.2, 0.3]]])  # y = 0
    y = torch.tensor([0])
    ce = sum(F.cross_entropy(logits[:, j], y) for j in range(4))
    for _ in range(3):
        first = branch_loss(_out(logits, [True]), y, None, heads)
    assert float(first) > float(ce)  # third call: window full, stable teacher -> NL term on
    heads2 = BranchHeads(4, 4, 4, 3, 8, 0.0, nl_weight=1.0, window=3)
    assert float(branch_loss(_out(logits, [True]), y, None, heads2)) == pytest.approx(float(ce))


def test_image_branch_without_image_nodes_is_never_the_teacher():
    heads = BranchHeads(4, 4, 4, 3, 8, 0.0, nl_weight=1.0, window=1)
    # the image branch is the most confident in the gold, but the graph has no image-view node
    logits = torch.tensor([[[1.0, 0, 0], [1.0, 0, 0], [9.0, 0, 0], [1.0, 0, 0]]])
    y = torch.tensor([0])
    with_image = branch_loss(_out(logits, [True]), y, None, heads)
    without = branch_loss(_out(logits, [False]), y, None, heads)
    # teacher = image: the three equal branches learn; teacher = fusion: the image branch, almost
    # sure of the gold, costs nearly nothing, so the NL term is smaller
    assert float(without) < float(with_image)
    assert BRANCHES.index("image") == 2


def test_relation_gnn_with_negative_learning_returns_branches_in_training_and_logits_in_eval():
    torch.manual_seed(0)
    model = RelationGNN(F_IN, 4, hidden=16, heads=2, loss="ce+negative_learning")
    b = Batch.from_data_list([make_data(5, 8, seed=s, y=s % 4) for s in range(3)])
    out = model(b)
    assert set(out) == {"logits", "branches", "has_image"} and out["branches"].shape == (3, 4, 4)
    loss = classification_loss(model, out, b.y, None)
    loss.backward()
    assert model.branch_heads.heads["image"][0].weight.grad is not None
    model.eval()
    assert model(b).shape == (3, 4)
