r"""Reward of the RL graph editor (paper Alg. 2): :math:`R = \lambda\,\mathrm{Acc}(G') - \mu\,\mathrm{Complexity}(G')`.

``Acc`` is computed **per graph** from the (frozen) classifier's logits on the edited graph:

* ``mode="likelihood"`` (default) — the softmax probability of the gold label,
  :math:`\mathrm{Acc}_b = \mathrm{softmax}(z_b)_{y_b} \in [0, 1]`. Smooth, so every edit that
  makes the classifier more sure of the gold relation pays off. Raw 0/1 accuracy on MNRE
  (~62 % ``None``) teaches the agent to push every graph towards ``None``.
* ``mode="correct"`` — :math:`\mathbb{1}[\arg\max_c z_{bc} = y_b]`.

Either can be scaled on gold-``None`` graphs by ``none_weight`` (default 1: no effect;
< 1 makes the agent care less about ``None`` instances, closer to the peer micro-F1).

``Complexity`` is, by default, :func:`mmre_cli.learn.editing.edit_complexity`
:math:`C_b = m_b / N_b` (edits made / nodes; 0 for the unedited graph, each edit costs
:math:`\mu/N_b`), or :func:`mmre_cli.learn.editing.complexity` (the edited graph's size; 1 for the
unedited graph) with ``complexity: size``.

:func:`batch_reward` scores a batch of graphs as the editor has left them so far;
:func:`step_reward` turns two such scores into the reward of one editing step (delta shaping and
the evidence penalty: :mod:`mmre_cli.learn.agent`'s docstring has the formulas).

Shapes:
    logits: ``[B, C]``; y: ``[B]`` long; returned accuracies / rewards: ``[B]``
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor
from torch_geometric.data import Batch

from mmre_cli.learn.editing import apply_edits, complexity, edit_complexity, graph_sizes
from mmre_cli.learn.policy import AgentConfig, EditState

__all__ = ["REWARD_MODES", "Classifier", "graph_accuracy", "reward", "batch_reward", "step_reward"]

REWARD_MODES = ("likelihood", "correct")


class Classifier(Protocol):
    """Anything called as ``classifier(batch) -> logits [B, C]`` (e.g. ``RelationGNN``)."""

    def __call__(self, batch: Batch) -> Tensor: ...


def graph_accuracy(
    logits: Tensor, y: Tensor, none_id: int, mode: str = "likelihood", none_weight: float = 1.0
) -> Tensor:
    r"""Per-graph accuracy term of the reward.

    .. math::
        \mathrm{Acc}_b = w_b \cdot \begin{cases}
            \mathrm{softmax}(z_b)_{y_b} & \text{likelihood} \\
            \mathbb{1}[\arg\max_c z_{bc} = y_b] & \text{correct}
        \end{cases}, \qquad w_b = \text{none\_weight if } y_b = \text{none\_id else } 1

    Args:
        logits: classifier logits.
        y: gold label ids.
        none_id: id of the ``None`` label (used by ``none_weight``).
        mode: ``"likelihood"`` (default) or ``"correct"``.
        none_weight: factor for gold-``None`` graphs (default 1.0).

    Returns:
        ``[B]`` float in [0, 1].

    Shapes:
        logits ``[B, C]``, y ``[B]`` -> ``[B]``
    """
    if logits.dim() != 2 or y.shape != logits.shape[:1]:
        raise ValueError(f"logits {tuple(logits.shape)} and y {tuple(y.shape)} do not match")
    y = y.long().to(logits.device)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= logits.size(1)):
        raise ValueError(f"gold label outside [0, {logits.size(1)}) (unlabelled graphs have y = -1)")
    if mode == "likelihood":
        acc = torch.softmax(logits.float(), dim=-1).gather(1, y.view(-1, 1)).squeeze(1)
    elif mode == "correct":
        acc = (logits.argmax(dim=-1) == y).float()
    else:
        raise ValueError(f"unknown reward mode {mode!r}; want one of {REWARD_MODES}")
    if none_weight != 1.0:
        acc = torch.where(y == none_id, acc * none_weight, acc)
    return acc


def reward(acc: Tensor | float, complexity: Tensor | float, lam: float, mu: float) -> Tensor | float:
    r""":math:`R = \lambda\,\mathrm{acc} - \mu\,\mathrm{complexity}` (elementwise).

    Args:
        acc: accuracy term (:func:`graph_accuracy`), tensor ``[B]`` or float.
        complexity: complexity term, same shape as ``acc`` (or broadcastable).
        lam: :math:`\lambda` (paper: in [2, 5]).
        mu: :math:`\mu` (paper: in [2, 5]).

    Returns:
        the reward, same shape/type as the inputs.
    """
    return lam * acc - mu * complexity


def batch_reward(
    classifier: Classifier, batch: Batch, state: EditState, cfg: AgentConfig
) -> tuple[Tensor, Tensor, Tensor, Batch, Tensor]:
    """Reward of the current edited graphs.

    Returns:
        ``(R [B], acc [B], complexity [B], edited batch, logits [B, C])`` (no gradient).
    """
    with torch.no_grad():
        edited = apply_edits(batch, state.node_alive, state.edge_alive, state.added_edges())
        logits = classifier(edited)
        acc = graph_accuracy(logits, batch.y, cfg.none_id, cfg.reward_mode, cfg.none_weight)
        if cfg.complexity == "edits":
            comp = edit_complexity(state.steps, graph_sizes(batch)[0]).to(acc.device)
        elif cfg.complexity == "size":
            comp = complexity(edited, batch, cfg.complexity_node_weight).to(acc.device)
        else:
            raise ValueError(f"unknown complexity {cfg.complexity!r}; want 'edits' or 'size'")
        return reward(acc, comp, cfg.lam, cfg.mu), acc, comp, edited, logits


def step_reward(
    r_prev: Tensor,
    r_now: Tensor,
    acc_prev: Tensor,
    acc_now: Tensor,
    deleted: Tensor,
    stopped: Tensor,
    done: Tensor,
    cfg: AgentConfig,
) -> Tensor:
    r"""The reward of one step per graph (module docstring):

    .. math::
        r_t = \underbrace{R(G_{t+1}) - R(G_t)}_{\text{delta shaping}}
            - \kappa\,\mathbb{1}[a_t \text{ deletes}]\,\max(0, \mathrm{Acc}_t - \mathrm{Acc}_{t+1})

    (0 for ``stop``); with ``shaping="final"`` the first term is :math:`R(G_T)` at the last step.

    Shapes:
        every argument ``[B]`` -> ``[B]``
    """
    if cfg.shaping == "delta":
        r = torch.where(stopped, torch.zeros_like(r_now), r_now - r_prev)
    elif cfg.shaping == "final":
        r = torch.where(done, r_now, torch.zeros_like(r_now))
    else:
        raise ValueError(f"unknown shaping {cfg.shaping!r}")
    if cfg.evidence_penalty:
        lost = (acc_prev - acc_now).clamp(min=0.0)
        r = r - cfg.evidence_penalty * lost * (deleted & ~stopped).float()
    return r
