r"""RL graph editor (paper Alg. 2): an actor-critic agent that edits cross-modal graphs — its
episodes, the reward of each step, and the actor-critic update.

The editor itself (the actions, the edit state, the GAT network and the two-level policy over
*stop* / *delete node* / *delete edge* / *add edge*) is :mod:`mmre_cli.learn.policy`. An episode
(:func:`_rollout`) runs it on a batch of graphs, one action per graph and step, until each graph
stops or ``max_steps`` actions.

Reward. :math:`R(G) = \lambda\,\mathrm{Acc}(G) - \mu\,\mathrm{Complexity}(G)`
(:mod:`mmre_cli.learn.reward`) with the frozen classifier; ``complexity="edits"`` (default,
:func:`mmre_cli.learn.editing.edit_complexity`) charges :math:`C = m_b / N_b` for the
:math:`m_b` edits made, ``"size"`` the edited graph's size
(:func:`mmre_cli.learn.editing.complexity`). With ``shaping="delta"`` (default) the step reward is
the potential difference :math:`r_t = R(G_{t+1}) - R(G_t)` (0 for ``stop``), so the undiscounted
return telescopes to :math:`R(G_T) - R(G_0)`, the edited graph's score measured against the
unedited one's. Under ``"edits"`` an edit's step reward is

.. math::
    r_t = \lambda\,(\mathrm{Acc}_{t+1} - \mathrm{Acc}_t) - \mu / N_b

so an edit pays only if it raises the gold-label likelihood by more than
:math:`\mu/(\lambda N_b)`, a deletion never pays more than the evidence it removes (a deletion
that lowers the likelihood always has :math:`r_t < 0`), an addition competes on the same terms,
and ``stop`` (:math:`r_t = 0`) wins when nothing helps. ``shaping="final"`` pays
:math:`R(G_T)` at the last step only.

Evidence shaping (``evidence_penalty`` :math:`\kappa > 0`, :func:`~mmre_cli.learn.reward.step_reward`): a step that
*deletes* a node or an edge also pays :math:`-\kappa \max(0, \mathrm{Acc}_t - \mathrm{Acc}_{t+1})`,
the gold-label likelihood it cost, so the editor cannot buy complexity by deleting what the
classifier relies on (the words that carry the relation); additions and stops are not charged.
This term does not telescope: it only ever lowers the return of deletions that hurt.

Critic: TD(0), the function-approximation form of the paper's
:math:`V(s) \leftarrow V(s) + \alpha[r + \gamma V(s') - V(s)]` (:func:`td_update`):

.. math::
    \delta_t = r_t + \gamma V(s_{t+1})(1 - d_t) - V(s_t), \quad
    L = \underbrace{-\log\pi(a_t|s_t)\,\mathrm{sg}(\delta_t)}_{actor}
      + c_v \underbrace{(\mathrm{sg}(r_t + \gamma V(s_{t+1})(1-d_t)) - V(s_t))^2}_{critic}
      + c_v \underbrace{\mathbb{1}[a_t \ne \mathrm{stop}]\,
          (\mathrm{sg}(r_t + \gamma \max(0, Q_{edit}(s_{t+1}))(1-d_t)) - Q_{edit}(s_t))^2}_{stop\ decision}
      - \beta\,\mathcal{H}(\pi(\cdot|s_t))

averaged over the (graph, step) pairs still running; ``d_t = 1`` at ``stop`` and at the last
allowed step (finite horizon; ``t/T`` is in the state). Under the two-level policy the actor term
trains *which* edit (its log-probability sees the stop score through a stop-gradient) and the
stop decision is the optimal-stopping regression of :math:`Q_{edit}` (stop = 0, or edit and then
decide again), which keeps learning where a policy-gradient stop logit saturates: an editor
that has learnt to stop gets no gradient from the edits it no longer samples.

Shapes:
    batch: PyG ``Batch`` with ``x [N, D]``, ``edge_index [2, E]``, ``edge_type [E]``,
    ``edge_attr [E, EDGE_ATTR_DIM]``, ``node_role [N]``, ``head_index [B]``, ``tail_index [B]``
    (global ids), ``y [B]`` (for training), ``batch [N]``.
    Classifier: ``Batch -> logits [B, C]``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from mmre_cli.learn.editing import apply_edits, protected_nodes
from mmre_cli.learn.metrics import peer_scores
from mmre_cli.learn.policy import (
    AgentConfig,
    EditState,
    GraphEditAgent,
    PolicyOutput,
    apply_action,
    init_state,
    masked_policy,
)
from mmre_cli.learn.reward import Classifier, batch_reward, step_reward

__all__ = ["td_update", "agent_step", "edit_graphs", "editor_relevance"]


def td_update(v_s, r, v_next, done, alpha: float, gamma: float):
    r"""Tabular TD(0): :math:`V(s) \leftarrow V(s) + \alpha[r + \gamma V(s')(1 - d) - V(s)]`.

    Works on floats or tensors (elementwise). ``done`` (bool / 0-1) drops the bootstrap term.

    Example: ``td_update(0.5, 1.0, 0.2, False, alpha=0.1, gamma=0.98) == 0.5696``.
    """
    if isinstance(done, Tensor):
        not_done = 1.0 - done.to(torch.float32)
    else:
        not_done = 1.0 - float(done)
    return v_s + alpha * (r + gamma * v_next * not_done - v_s)


def _rollout(agent: GraphEditAgent, batch: Batch, cfg: AgentConfig, greedy: bool, classifier=None):
    """Run one batched episode; per step collects log-probs, entropies, values, rewards."""
    state = init_state(batch, cfg)
    steps = []
    r_prev = acc_prev = None
    if classifier is not None:
        r_prev, acc_prev, *_ = batch_reward(classifier, batch, state, cfg)
    r0 = r_prev
    last = None
    for t in range(cfg.max_steps):
        if bool(state.done.all()):
            break
        out = agent(batch, state, t / max(cfg.max_steps, 1))
        q_edit = None
        if cfg.policy == "two_level":
            # the stop head estimates Q_edit(s); pi(stop) = sigmoid(-Q_edit / T), learnt by regression
            q_edit = out.stop
            out = PolicyOutput(
                stop=-q_edit.detach() / cfg.stop_temperature,
                node=out.node,
                edge=out.edge,
                cand=out.cand,
                value=out.value,
            )
        force = None
        if classifier is not None and not greedy and cfg.explore > 0 and cfg.policy == "two_level":
            force = torch.rand(batch.num_graphs, device=batch.x.device) < cfg.explore
        action, logp, ent = masked_policy(batch, state, out, greedy=greedy, policy=cfg.policy, force_edit=force)
        active = ~state.done
        stopped = apply_action(batch, state, action)
        done_after = stopped | (t == cfg.max_steps - 1)
        rec = {
            "logp": logp,
            "entropy": ent,
            "value": out.value,
            "active": active,
            "done": done_after,
            "edited": active & ~stopped,
            "q_edit": q_edit,
        }
        if classifier is not None:
            r_now, acc, comp, edited, logits = batch_reward(classifier, batch, state, cfg)
            b, n, e = batch.num_graphs, batch.num_nodes, batch.edge_index.size(1)
            deleted = (action >= b) & (action < b + n + e)  # a node or an edge was deleted
            r = step_reward(r_prev, r_now, acc_prev, acc, deleted, stopped, done_after, cfg)
            r_prev = torch.where(stopped, r_prev, r_now)
            acc_prev = torch.where(stopped, acc_prev, acc)
            rec["reward"] = r * active.float()
            last = (r_prev, acc, comp, edited, logits)
        state.done |= done_after
        steps.append(rec)
    if classifier is not None and last is None:  # max_steps == 0
        last = batch_reward(classifier, batch, state, cfg)[1:]
        last = (r0,) + tuple(last)
    return state, steps, r0, last


def agent_step(
    agent: GraphEditAgent,
    classifier: Classifier,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    cfg: AgentConfig,
    grad_hook: Callable[[nn.Module], None] | None = None,
) -> dict:
    """One actor-critic update from one batched episode over ``batch`` (classifier frozen).

    ``grad_hook(agent)`` runs between ``backward`` and the optimiser step; data-parallel training
    passes one that averages the gradients across processes (``Fabric.all_reduce``).

    The classifier is called under ``no_grad`` and its train/eval mode is left as the caller set
    it (use eval mode for a deterministic reward). ``batch.y`` is required.

    Returns:
        floats: ``loss``, ``actor_loss``, ``critic_loss``, ``entropy``; ``reward`` (mean final
        :math:`R(G_T)`), ``reward_start`` (mean :math:`R(G_0)`), ``reward_gain``; ``value``
        (mean :math:`V(s_t)` over running steps); ``acc`` (mean accuracy term), ``complexity``;
        ``f1`` (peer micro-F1 without ``None`` of the classifier on the edited batch), ``steps``
        (mean actions per graph), ``node_filter_ratio`` (deleted nodes / nodes),
        ``edge_adjust_ratio`` ((removed original + added directed edges) / original edges).
    """
    agent.train()
    state, steps, r0, (r_final, acc, comp, edited, logits) = _rollout(agent, batch, cfg, False, classifier)
    actor_terms, critic_terms, ent_terms, values, q_terms = [], [], [], [], []
    for t, rec in enumerate(steps):
        act = rec["active"]
        if not bool(act.any()):
            continue
        v = rec["value"]
        v_next = steps[t + 1]["value"].detach() if t + 1 < len(steps) else torch.zeros_like(v)
        done = rec["done"].float()
        target = (rec["reward"] + cfg.gamma * v_next * (1.0 - done)).detach()
        adv = target - v
        actor_terms.append((-rec["logp"] * adv.detach())[act])
        critic_terms.append(((target - v) ** 2)[act])
        ent_terms.append(rec["entropy"][act])
        values.append(v.detach()[act])
        if rec["q_edit"] is not None and bool(rec["edited"].any()):
            # optimal stopping: after this edit the editor may stop (0) or edit again (Q_edit(s'))
            q_next = steps[t + 1]["q_edit"].detach().clamp(min=0.0) if t + 1 < len(steps) else torch.zeros_like(v)
            q_target = (rec["reward"] + cfg.gamma * q_next * (1.0 - done)).detach()
            q_terms.append(((q_target - rec["q_edit"]) ** 2)[rec["edited"]])
    logs: dict = {}
    if actor_terms:
        actor = torch.cat(actor_terms).mean()
        critic = torch.cat(critic_terms).mean()
        ent = torch.cat(ent_terms).mean()
        q_loss = torch.cat(q_terms).mean() if q_terms else actor.new_zeros(())
        loss = actor + cfg.value_coef * (critic + q_loss) - cfg.entropy * ent
        optimizer.zero_grad()
        loss.backward()
        if grad_hook is not None:
            grad_hook(agent)
        if cfg.max_grad_norm:
            nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
        optimizer.step()
        logs.update(
            loss=loss.item(),
            actor_loss=actor.item(),
            critic_loss=critic.item(),
            entropy=ent.item(),
            value=float(torch.cat(values).mean()),
            edit_value_loss=q_loss.item(),
        )
    else:
        logs.update(loss=0.0, actor_loss=0.0, critic_loss=0.0, entropy=0.0, value=0.0, edit_value_loss=0.0)
    logs.update(_edit_stats(batch, state, edited))
    pred = logits.argmax(-1).cpu().numpy()
    logs.update(
        reward=float(r_final.mean()),
        reward_start=float(r0.mean()),
        reward_gain=float((r_final - r0).mean()),
        acc=float(acc.mean()),
        complexity=float(comp.mean()),
        f1=float(peer_scores(pred, batch.y.cpu().numpy(), cfg.none_id)["micro_f1"]),
    )
    return logs


def _edit_stats(batch: Batch, state: EditState, edited: Batch) -> dict:
    n0, e0 = batch.num_nodes, batch.edge_index.size(1)
    removed_nodes = n0 - int(state.node_alive.sum())
    src, dst = batch.edge_index
    kept = state.edge_alive & state.node_alive[src] & state.node_alive[dst]
    removed_edges = e0 - int(kept.sum())
    added = edited.edge_index.size(1) - int(kept.sum())
    return {
        "node_filter_ratio": removed_nodes / max(n0, 1),
        "edge_adjust_ratio": (removed_edges + added) / max(e0, 1),
        "steps": float(state.steps.float().mean()),
    }


@torch.no_grad()
def edit_graphs(agent: GraphEditAgent, batch: Batch, cfg: AgentConfig, greedy: bool = True) -> tuple[Batch, list[dict]]:
    """Edit every graph of ``batch`` with the agent (inference; no classifier, no ``y`` needed).

    The agent is put in eval mode for the call and its mode restored afterwards.

    Returns:
        ``(edited batch, records)``; ``records[b]`` holds, in the **original** graph's local
        numbering: ``deleted_nodes`` (node ids), ``deleted_edges`` (positions in the graph's
        original edge list, including edges lost with a deleted node), ``added_edges``
        (``(i, j)`` pairs, ``i < j``, each added in both directions), ``steps`` (actions taken).
    """
    was_training = agent.training
    agent.eval()
    try:
        state, _, _, _ = _rollout(agent, batch, cfg, greedy, None)
    finally:
        agent.train(was_training)
    edited = apply_edits(batch, state.node_alive, state.edge_alive, state.added_edges())
    b = batch.num_graphs
    ptr = torch.cat([batch.batch.new_zeros(1), torch.bincount(batch.batch, minlength=b).cumsum(0)])
    egraph = batch.batch[batch.edge_index[0]]
    ecounts = torch.bincount(egraph, minlength=b)
    eptr = torch.cat([ecounts.new_zeros(1), ecounts.cumsum(0)])
    src, dst = batch.edge_index
    kept = state.edge_alive & state.node_alive[src] & state.node_alive[dst]
    add = state.added_edges()
    add = add[:, state.node_alive[add[0]] & state.node_alive[add[1]]] if add.numel() else add
    add_graph = batch.batch[add[0]] if add.numel() else add.new_zeros(0)
    records = []
    for g in range(b):
        lo, hi = int(ptr[g]), int(ptr[g + 1])
        elo, ehi = int(eptr[g]), int(eptr[g + 1])
        dead = (~state.node_alive[lo:hi]).nonzero().view(-1).tolist()
        gone = (~kept[elo:ehi]).nonzero().view(-1).tolist()
        sel = add[:, add_graph == g] - lo
        records.append(
            {
                "deleted_nodes": dead,
                "deleted_edges": gone,
                "added_edges": [tuple(p) for p in sel.t().tolist()],
                "steps": int(state.steps[g]),
            }
        )
    return edited, records


def editor_relevance(agent: GraphEditAgent, batch: Batch, cfg: AgentConfig) -> Tensor:
    r"""A learned relevance prior for diffusion (``diffuse.relevance: editor``): how little the
    editor wants to delete each node of the (already edited) graphs.

    With :math:`s_i` the editor's node-deletion score at the start state of graph :math:`g`
    and :math:`p_i = \mathrm{softmax}_{j \in g}(s_j)` over the graph's nodes,

    .. math::
        v^{(0)}_i = 1 - \frac{p_i}{\max_{j \in g} p_j}

    so the node the editor would delete first gets 0, one it would never delete ~1; head and tail
    get 1. Computed in eval mode under ``no_grad``.

    Shapes:
        batch: ``B`` graphs, ``N`` nodes -> ``[N]`` in ``[0, 1]``
    """
    from torch_geometric.utils import softmax

    was_training = agent.training
    agent.eval()
    try:
        with torch.no_grad():
            out = agent(batch, init_state(batch, cfg), 0.0)
    finally:
        agent.train(was_training)
    p = softmax(out.node.float(), batch.batch)
    top = scatter(p, batch.batch, dim=0, dim_size=batch.num_graphs, reduce="max")
    v0 = 1.0 - p / top[batch.batch].clamp(min=1e-12)
    v0[protected_nodes(batch)] = 1.0
    return v0.clamp(0.0, 1.0)
