r"""GraphMNL-style negative learning across branches (issue 12) — this project's reading of the
abstract of "Multimodal Graph Negative Learning" (2026), which publishes no formulas or code.

**Branches.** Besides the model's prediction (the *fusion* branch, :math:`b = f`: its usual
classifier), three heads predict the relation from one view each:

* *text* :math:`b = x` — the sentence: the input features of head, tail and text nodes
  (:math:`[\mathbf{u}_h, \mathbf{u}_t, \mathbf{u}_h \odot \mathbf{u}_t, \mathrm{mean}_{text}\mathbf{u}]`
  before any message passing), or the encoder's entity-marker states when the encoder is fine-tuned;
* *image view* :math:`b = v` — the caption / visual nodes: :math:`[\bar{\mathbf{u}}_v,
  \bar{\mathbf{u}}_v \odot \mathbf{u}_h, \bar{\mathbf{u}}_v \odot \mathbf{u}_t]` with
  :math:`\bar{\mathbf{u}}_v` the mean input feature of the non-text nodes (zeros when there are none);
* *structure* :math:`b = s` — the GNN over the CMG: its readout :math:`\mathbf{z}_g`.

Each head is ``Linear → GELU → Dropout → Linear`` giving :math:`p_b = \mathrm{softmax}(\ell_b)`.

**Reliability and the teacher.** Per instance :math:`i` with gold label :math:`y_i`, branch
:math:`b`'s graph-aware reliability is

.. math::
    r_{b,i} = p_b(y_i \mid g_i)\cdot \rho_b(g_i),\qquad
    \rho_v(g) = \mathbb{1}[g \text{ has an image-view node}],\ \rho_b(g) = 1 \text{ otherwise}

and the dominant branch (the teacher) is :math:`t_i = \arg\max_b r_{b,i}` over
:math:`\{f, x, v, s\}` — the fusion branch can teach too.

**Negative learning.** The teacher's belief that class :math:`c` is *not* the answer,
:math:`g_{c,i} = 1 - p_{t_i}(c)` (detached), weights the complementary-label loss of every weaker
branch :math:`b \neq t_i`:

.. math::
    \mathcal{L}^{NL}_{b,i} = -\frac{1}{C-1}\sum_{c \neq y_i} g_{c,i}\,\log\bigl(1 - \tilde p_{b}(c)\bigr),
    \qquad
    \tilde p_b(c) = \frac{e^{\ell_{b,c}}}{e^{\ell_{b,c}} + e^{\ell_{b,y}}
        + \sum_{j \ne c, y} e^{\mathrm{sg}(\ell_{b,j})}}

:math:`\tilde p_b(c)` equals :math:`p_b(c)` in value; the stop-gradient :math:`\mathrm{sg}` on the
other classes' logits makes each term push only :math:`\ell_{b,c}` down and :math:`\ell_{b,y}` up, so
the gradient of :math:`\mathcal{L}^{NL}` never lowers the gold class's probability (without it the
softmax coupling can: pushing one wrong class down raises the others' share, the gold's included
or not). The loss is zero when the weak branch puts no mass on the non-target classes.

**Stability gate.** Each branch keeps the batch means of :math:`p_b(y)` over the last :math:`W`
training steps (``window``, default 50); its gate is

.. math::
    \gamma_b = \max\Bigl(0,\ 1 - \frac{\mathrm{std}(\text{last } W \text{ means})}{\tau}\Bigr)

(``tolerance`` :math:`\tau` = 0.05), and 0 until :math:`W` steps are seen: a teacher whose
confidence still swings, or that has not been watched long enough, teaches nothing.

**Loss.** With :math:`\mathrm{CE}_w` the class-weighted cross-entropy of the trainer,

.. math::
    \mathcal{L} = \mathrm{CE}_w(\ell_f, y) + \beta \sum_{b \in \{x, v, s\}} \mathrm{CE}_w(\ell_b, y)
        + \lambda \cdot \frac{1}{B}\sum_i \gamma_{t_i} \sum_{b \neq t_i} \mathcal{L}^{NL}_{b,i}

:math:`\beta = 1` (every branch keeps its own gold-label loss; imitation never replaces it),
:math:`\lambda` = ``nl_weight`` (0.5). Only the fusion branch predicts at evaluation.

Shapes:
    branch logits ``[B, C]`` each, ``y [B]``, ``has_image [B]``; :func:`negative_learning_loss`:
    ``logits [B, C]``, ``y [B]``, ``g [B, C]`` -> ``[B]``
"""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BRANCHES", "LOSSES", "BranchHeads", "StabilityGate", "negative_learning_loss", "branch_loss"]

#: branch names; the first is the model's own prediction
BRANCHES = ("fusion", "text", "image", "structure")
#: values of ``train_gnn.loss``
LOSSES = ("ce", "ce+negative_learning")


def negative_learning_loss(logits: Tensor, y: Tensor, g: Tensor) -> Tensor:
    r"""Per-instance :math:`\mathcal{L}^{NL}` (module docstring), gold-safe gradient.

    Args:
        logits: the weak branch's logits :math:`\ell_b`.
        y: gold labels.
        g: per-class weights :math:`g_c` (the target's entry is ignored).

    Shapes:
        ``[B, C]``, ``[B]``, ``[B, C]`` -> ``[B]``
    """
    b, c = logits.shape
    z = logits - logits.detach().max(dim=1, keepdim=True).values
    e = z.exp()
    ed = e.detach()
    e_y = e.gather(1, y.view(-1, 1))  # [B, 1], with gradient
    ed_y = ed.gather(1, y.view(-1, 1))
    others = ed.sum(dim=1, keepdim=True) - ed_y - ed  # every class but c and y, no gradient
    denom = e + e_y + others
    p = e / denom  # = softmax(logits)[c] in value
    term = -torch.log1p(-p.clamp(max=1.0 - 1e-6))
    not_target = torch.ones_like(term, dtype=torch.bool).scatter(1, y.view(-1, 1), False)
    return (g.detach() * term * not_target).sum(dim=1) / max(1, c - 1)


class StabilityGate(nn.Module):
    r""":math:`\gamma_b` per branch from the last ``window`` batch means of :math:`p_b(y)`.

    Args:
        branches (int): number of branches.
        window (int, optional): :math:`W`. (default: ``50``)
        tolerance (float, optional): :math:`\tau`, the std at which the gate closes. (default: ``0.05``)
    """

    def __init__(self, branches: int, window: int = 50, tolerance: float = 0.05):
        super().__init__()
        self.window, self.tolerance = int(window), float(tolerance)
        self.history = [deque(maxlen=self.window) for _ in range(branches)]

    def resume_state(self) -> list[list[float]]:
        """The recorded means (not in ``state_dict``: the model file is the same with or without
        them); saved with the per-epoch training state (:mod:`mmre_cli.learn.resume`)."""
        return [list(h) for h in self.history]

    def restore_state(self, value: list[list[float]]) -> None:
        self.history = [deque(v, maxlen=self.window) for v in value]

    def update(self, gold_probs: Tensor) -> None:
        """Record one step: ``gold_probs [B, n_branches]`` (detached)."""
        means = gold_probs.detach().float().mean(dim=0).tolist()
        for h, m in zip(self.history, means):
            h.append(m)

    def gates(self) -> Tensor:
        """``[n_branches]`` in ``[0, 1]``."""
        out = []
        for h in self.history:
            if len(h) < self.window:
                out.append(0.0)
                continue
            std = float(torch.tensor(list(h)).std(unbiased=False))
            out.append(max(0.0, 1.0 - std / self.tolerance))
        return torch.tensor(out)


class BranchHeads(nn.Module):
    """The text / image-view / structure heads (module docstring).

    Args:
        text_dim, image_dim, structure_dim (int): input widths of the three views.
        num_classes (int): C.
        hidden (int): hidden width of each head.
        dropout (float): dropout inside each head.
        nl_weight (float, optional): :math:`\\lambda`. (default: ``0.5``)
        window, tolerance: of the :class:`StabilityGate`.
    """

    def __init__(
        self,
        text_dim: int,
        image_dim: int,
        structure_dim: int,
        num_classes: int,
        hidden: int,
        dropout: float,
        nl_weight: float = 0.5,
        window: int = 50,
        tolerance: float = 0.05,
    ):
        super().__init__()

        def head(d: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))

        self.heads = nn.ModuleDict({"text": head(text_dim), "image": head(image_dim), "structure": head(structure_dim)})
        self.nl_weight = float(nl_weight)
        self.gate = StabilityGate(len(BRANCHES), window, tolerance)

    def forward(self, fusion: Tensor, views: dict[str, Tensor], has_image: Tensor) -> dict:
        """``{"logits": fusion, "branches": [B, 4, C], "has_image": [B]}`` (training output)."""
        logits = [fusion] + [self.heads[name](views[name]) for name in BRANCHES[1:]]
        return {"logits": fusion, "branches": torch.stack(logits, dim=1), "has_image": has_image}


def branch_loss(out: dict, y: Tensor, weight: Tensor | None, heads: BranchHeads) -> Tensor:
    """:math:`\\mathcal{L}` of the module docstring for one batch (updates the stability gate).

    Shapes:
        ``out["branches"] [B, 4, C]``, ``y [B]`` -> scalar
    """
    branches = out["branches"].float()
    b, k, c = branches.shape
    ce = sum(F.cross_entropy(branches[:, j], y, weight=weight) for j in range(k))
    probs = branches.softmax(dim=-1)
    gold = probs.gather(2, y.view(-1, 1, 1).expand(b, k, 1)).squeeze(2)  # [B, K]
    heads.gate.update(gold)
    rho = torch.ones_like(gold)
    rho[:, BRANCHES.index("image")] = out["has_image"].to(gold.dtype)
    teacher = (gold.detach() * rho).argmax(dim=1)  # [B]
    gates = heads.gate.gates().to(branches.device)[teacher]  # [B]
    if heads.nl_weight == 0 or not bool((gates > 0).any()):
        return ce
    g = 1.0 - probs.detach()[torch.arange(b, device=branches.device), teacher]  # [B, C]
    nl = torch.stack([negative_learning_loss(branches[:, j], y, g) for j in range(k)], dim=1)  # [B, K]
    weak = torch.ones_like(nl).scatter(1, teacher.view(-1, 1), 0.0)
    return ce + heads.nl_weight * (gates * (nl * weak).sum(dim=1)).mean()
