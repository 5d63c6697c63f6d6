# Over 500 lines on purpose: the editor of Alg. 2 (policy, episodes, actor-critic update) is one algorithm whose formulas read in one place.
r"""RL graph editor (paper Alg. 2): an actor-critic agent that edits cross-modal graphs.

Actions, per graph and step: ``stop``, *delete node* ``i``, *delete edge* ``e``, *add edge*
``c`` (a candidate pair from :func:`mmre_cli.learn.editing.candidate_additions`). Invalid
actions (:func:`mmre_cli.learn.editing.action_masks`) get logit :math:`-\infty`.

Policy. A GAT encoder (PyG ``GATConv``, ``num_layers`` residual layers) runs on the *current*
graph over the original node numbering (dead nodes isolated, flagged by an ``alive`` input);
node input ``[x_i, onehot(role_i), alive_i]``, edge input ``[edge_attr, onehot(edge_type)]``.
With :math:`g_b = [\mathrm{mean}_{i\,\mathrm{alive}} h_i, h_{head}, h_{tail}, t/T]`:

.. math::
    s^{stop}_b = f_{stop}(g_b), \quad s^{node}_i = f_n([h_i, g_{b(i)}]), \quad
    s^{edge}_{e=(i,j)} = f_e([h_i, h_j, a_e]), \quad
    s^{add}_{c=\{i,j\}} = f_a([h_i + h_j, h_i \odot h_j, \cos_{ij}])

and the policy is two-level (``policy="two_level"``, default): first stop or edit, then which
edit. The stop head estimates :math:`Q_{edit}(s_b) = s^{stop}_b`, the return expected from
editing now, against the 0 of stopping; graph ``b`` stops with
:math:`\pi(\mathrm{stop} \mid s_b) = \sigma(-Q_{edit}(s_b)/T)` (``stop_temperature`` T) and
otherwise picks one edit from the softmax of the masked edit scores of graph ``b`` only (a
per-graph softmax by scatter over the graph index),
:math:`\pi(a \mid s_b) = (1 - \pi(\mathrm{stop} \mid s_b))\,\mathrm{softmax}_a(s)`; a graph with
no valid edit stops with probability 1. Stopping is one decision against editing at all, not one
action among the ~N + E + K edits (``policy="flat"``, the earlier parametrisation for editors
saved before: one softmax over ``[s^{stop}_b, s^{node}, s^{edge}, s^{add}]``, where an untrained
editor stops with probability ~1/(N + E + K + 1) and the stop score is a policy-gradient logit).
One action is sampled per graph (Gumbel-max over :math:`\log\pi`; ``argmax`` when greedy), all
graphs of the batch at once. A graph's episode ends at ``stop`` or after ``max_steps`` actions.
In training, with probability ``explore`` a graph's step skips the stop decision and draws an edit
(the editor keeps trying edits once most have stopped paying).

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

from dataclasses import asdict, dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn import GATConv
from torch_geometric.utils import scatter

from mmre_cli.graphs.graph import EDGE_ATTR_DIM, EDGE_TYPES
from mmre_cli.learn.editing import (
    action_masks,
    apply_edits,
    candidate_additions,
    current_edges,
    pair_cosine,
    protected_nodes,
)
from mmre_cli.learn.metrics import peer_scores
from mmre_cli.learn.reward import batch_reward, step_reward
from mmre_cli.learn.gnn import register_model

__all__ = [
    "Classifier",
    "AgentConfig",
    "GraphEditAgent",
    "PolicyOutput",
    "EditState",
    "td_update",
    "init_state",
    "masked_policy",
    "apply_action",
    "agent_step",
    "edit_graphs",
]

_NUM_ROLES = 3


class Classifier(Protocol):
    """Anything called as ``classifier(batch) -> logits [B, C]`` (e.g. ``RelationGNN``)."""

    def __call__(self, batch: Batch) -> Tensor: ...


@dataclass
class AgentConfig:
    r"""Hyper-parameters of the editor (``params.yaml`` section ``rl``).

    Args:
        max_steps: actions per graph per episode, ``T`` (default 4).
        lam: :math:`\\lambda`, weight of the accuracy term (default 3.0; paper [2, 5]).
        mu: :math:`\\mu`, weight of the complexity term (default 2.0; paper [2, 5]).
        gamma: discount :math:`\\gamma` (default 0.98).
        lr: learning rate for the optimizer the caller builds (default 1e-3).
        entropy: entropy bonus :math:`\\beta` (default 0.01).
        add_k: candidate additions per node (default 2).
        add_threshold: minimum cosine for a candidate (default 0.5).
        reward_mode: ``"likelihood"`` (default) or ``"correct"``.
        none_id: id of the ``None`` relation (default 0).
        shaping: ``"delta"`` (default, :math:`r_t = R_{t+1} - R_t`) or ``"final"``.
        value_coef: critic loss weight :math:`c_v` (default 0.5).
        max_grad_norm: gradient clipping norm, ``None`` for none (default 1.0).
        complexity_node_weight: :math:`w_n` of the complexity (default 0.5).
        none_weight: accuracy factor for gold-``None`` graphs (default 1.0).
        evidence_penalty: :math:`\kappa` of :func:`~mmre_cli.learn.reward.step_reward`: the extra cost of a deletion
            that lowers the classifier's gold-label likelihood (default 0.0: off).
        complexity: ``"edits"`` (default: :math:`C = m_b / N_b`, each edit costs
            :math:`\mu / N_b`) or ``"size"`` (the edited graph's size; every deletion pays).
        policy: ``"two_level"`` (default: stop vs edit, then which edit) or ``"flat"`` (one
            softmax over stop and every edit; editors saved before the two-level policy).
        stop_temperature: two-level: :math:`T` of :math:`\pi(\mathrm{stop}) =
            \sigma(-Q_{edit}(s)/T)` (default 0.02, in reward units).
        explore: training only (two-level): the probability that a graph's step skips the stop
            decision and draws an edit (:func:`masked_policy`'s ``force_edit``), so the editor
            keeps trying edits after it has learnt that most of them do not pay (default 0.3).
    """

    max_steps: int = 4
    lam: float = 3.0
    mu: float = 2.0
    gamma: float = 0.98
    lr: float = 1e-3
    entropy: float = 0.01
    add_k: int = 2
    add_threshold: float = 0.5
    reward_mode: str = "likelihood"
    none_id: int = 0
    shaping: str = "delta"
    value_coef: float = 0.5
    max_grad_norm: float | None = 1.0
    complexity_node_weight: float = 0.5
    none_weight: float = 1.0
    evidence_penalty: float = 0.0
    complexity: str = "edits"
    policy: str = "two_level"
    stop_temperature: float = 0.02
    explore: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


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


@dataclass
class EditState:
    """The edit state of a batch (all indices in the original batch).

    Shapes:
        node_alive ``[N]``, edge_alive ``[E]``, cand_used ``[K]``, done ``[B]`` bool;
        cand_edge_index ``[2, K]``, cand_graph ``[K]``, cand_cos ``[K]``; steps ``[B]`` long.
    """

    node_alive: Tensor
    edge_alive: Tensor
    cand_edge_index: Tensor
    cand_graph: Tensor
    cand_cos: Tensor
    cand_used: Tensor
    done: Tensor
    steps: Tensor
    edge_deleted: Tensor | None = None  # [E] bool, deleted by an explicit edge action

    def added_edges(self) -> Tensor:
        """``[2, A]`` candidate pairs added so far."""
        return self.cand_edge_index[:, self.cand_used]


def init_state(batch: Batch, cfg: AgentConfig) -> EditState:
    """Start state: nothing deleted or added, candidates from :func:`candidate_additions`."""
    dev = batch.x.device
    cand, cgraph = candidate_additions(batch, k=cfg.add_k, threshold=cfg.add_threshold)
    return EditState(
        node_alive=torch.ones(batch.num_nodes, dtype=torch.bool, device=dev),
        edge_alive=torch.ones(batch.edge_index.size(1), dtype=torch.bool, device=dev),
        cand_edge_index=cand,
        cand_graph=cgraph,
        cand_cos=pair_cosine(batch.x.float(), cand),
        cand_used=torch.zeros(cand.size(1), dtype=torch.bool, device=dev),
        done=torch.zeros(batch.num_graphs, dtype=torch.bool, device=dev),
        steps=torch.zeros(batch.num_graphs, dtype=torch.long, device=dev),
        edge_deleted=torch.zeros(batch.edge_index.size(1), dtype=torch.bool, device=dev),
    )


def _mlp(i: int, h: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, 1))


@dataclass
class PolicyOutput:
    """Raw (unmasked) action scores and the state value.

    Shapes:
        stop ``[B]``, node ``[N]``, edge ``[E]`` (original edges), cand ``[K]``, value ``[B]``
    """

    stop: Tensor
    node: Tensor
    edge: Tensor
    cand: Tensor
    value: Tensor


@register_model
class GraphEditAgent(nn.Module):
    r"""Actor-critic graph editor (module docstring has the formulas).

    Args:
        in_dim: node feature size ``D``.
        hidden: hidden size (default 128); must be divisible by ``heads``.
        heads: GAT attention heads (default 2), concatenated.
        num_layers: GAT layers (default 2), residual.
        edge_dim: ``edge_attr`` columns (default ``EDGE_ATTR_DIM``).
        dropout: attention dropout (default 0.0).
        max_pool: add the max over alive nodes of :math:`h` to :math:`g_b` (default ``False``,
            as editors saved before it; ``train-agent`` builds editors with ``True``): a single
            odd node stands out in a max, while a mean dilutes it by :math:`1/N`.

    Shapes:
        forward(batch ``B``/``N``/``E``, state with ``K`` candidates) -> :class:`PolicyOutput`
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int = 128,
        heads: int = 2,
        num_layers: int = 2,
        edge_dim: int = EDGE_ATTR_DIM,
        dropout: float = 0.0,
        max_pool: bool = False,
    ) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden={hidden} must be divisible by heads={heads}")
        self.config = {"in_dim": in_dim, "hidden": hidden, "heads": heads, "num_layers": num_layers,
                       "edge_dim": edge_dim, "dropout": dropout}
        if max_pool:
            self.config["max_pool"] = True
        self.max_pool = bool(max_pool)
        self.in_dim, self.hidden, self.heads, self.edge_dim = in_dim, hidden, heads, edge_dim
        self.edge_feat_dim = edge_dim + len(EDGE_TYPES)
        self.node_in = nn.Linear(in_dim + _NUM_ROLES + 1, hidden)
        self.convs = nn.ModuleList(
            GATConv(hidden, hidden // heads, heads=heads, edge_dim=self.edge_feat_dim, dropout=dropout)
            for _ in range(num_layers)
        )
        g = (4 if max_pool else 3) * hidden + 1
        self.node_scorer = _mlp(hidden + g, hidden)
        self.edge_scorer = _mlp(2 * hidden + self.edge_feat_dim, hidden)
        self.cand_scorer = _mlp(2 * hidden + 1, hidden)
        self.stop_head = _mlp(g, hidden)
        self.value_head = _mlp(g, hidden)

    def _edge_feat(self, edge_type: Tensor, edge_attr: Tensor) -> Tensor:
        return torch.cat([edge_attr.float(), F.one_hot(edge_type.long(), len(EDGE_TYPES)).float()], dim=-1)

    def forward(self, batch: Batch, state: EditState, t_frac: float = 0.0) -> PolicyOutput:
        alive = state.node_alive
        ei, et, attr, _ = current_edges(batch, alive, state.edge_alive, state.added_edges())
        role = batch.node_role.long().clamp(0, _NUM_ROLES - 1)
        x_in = torch.cat([batch.x.float(), F.one_hot(role, _NUM_ROLES).float(), alive.float().unsqueeze(1)], -1)
        h = F.relu(self.node_in(x_in))
        e_feat = self._edge_feat(et, attr)
        for conv in self.convs:
            h = h + F.elu(conv(h, ei, e_feat))
        b = batch.num_graphs
        af = alive.float().unsqueeze(1)
        pooled = scatter(h * af, batch.batch, dim=0, dim_size=b, reduce="sum")
        pooled = pooled / scatter(af, batch.batch, dim=0, dim_size=b, reduce="sum").clamp(min=1.0)
        t_col = h.new_full((b, 1), float(t_frac))
        parts = [pooled]
        if self.max_pool:
            parts.append(scatter(h.masked_fill(~alive.unsqueeze(1), float("-inf")), batch.batch, dim=0, dim_size=b,
                                 reduce="max").clamp(min=-1e4))
        g = torch.cat(parts + [h[batch.head_index.long()], h[batch.tail_index.long()], t_col], dim=-1)
        node = self.node_scorer(torch.cat([h, g[batch.batch]], -1)).squeeze(-1)
        src, dst = batch.edge_index
        edge = self.edge_scorer(
            torch.cat([h[src], h[dst], self._edge_feat(batch.edge_type, batch.edge_attr)], -1)
        ).squeeze(-1)
        ci, cj = state.cand_edge_index
        cand = self.cand_scorer(torch.cat([h[ci] + h[cj], h[ci] * h[cj], state.cand_cos.unsqueeze(1)], -1)).squeeze(-1)
        return PolicyOutput(
            stop=self.stop_head(g).squeeze(-1),
            node=node,
            edge=edge,
            cand=cand,
            value=self.value_head(g).squeeze(-1),
        )


def masked_policy(
    batch: Batch, state: EditState, out: PolicyOutput, greedy: bool = False, policy: str = "two_level",
    force_edit: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Sample one action per graph from the per-graph masked policy (module docstring).

    Flat action space ``[stop_0..stop_{B-1}, node_0..node_{N-1}, edge_0..edge_{E-1},
    cand_0..cand_{K-1}]``; each action belongs to one graph; invalid edits get
    :math:`\log\pi = -\infty`. With :math:`\mathrm{lse}_b = \log\sum_{a' \in b,\,valid} \exp s_{a'}`
    over graph ``b``'s valid *edits*:

    * ``policy="two_level"``: :math:`\log\pi(\mathrm{stop}_b) = \log\sigma(s^{stop}_b)` and
      :math:`\log\pi(a) = \log\sigma(-s^{stop}_b) + s_a - \mathrm{lse}_b` (a graph with no valid
      edit: :math:`\log\pi(\mathrm{stop}_b) = 0`);
    * ``policy="flat"``: one softmax over ``stop`` and the edits,
      :math:`\log\pi(a) = s_a - \log(\exp s^{stop}_b + \exp \mathrm{lse}_b)`.

    ``stop`` is always valid, so every graph has an action. Finished graphs (``state.done``) may
    only ``stop``; their action is ignored by the caller. Sampling is Gumbel-max over
    :math:`\log\pi`; ``greedy`` takes the most probable action (ties: the lowest index, so
    ``stop`` first).

    ``force_edit`` (``[B]`` bool, two-level only; training exploration, ``AgentConfig.explore``):
    those graphs that have a valid edit skip the stop decision and draw an edit from
    :math:`\mathrm{softmax}_a(s)`; their returned log-prob is that conditional
    :math:`s_a - \mathrm{lse}_b`, so the actor's update of *which* edit stays on-policy and the
    stop decision is learned from the other steps only.

    Returns:
        ``(action [B] flat index, log_prob [B], entropy [B])``.
    """
    b = batch.num_graphs
    dev = batch.x.device
    node_mask, edge_mask, add_mask = action_masks(
        batch, state.node_alive, state.edge_alive, state.cand_used, state.cand_edge_index
    )
    egraph = batch.batch[batch.edge_index[0]]
    open_ = ~state.done
    edit_group = torch.cat([batch.batch, egraph, state.cand_graph])
    group = torch.cat([torch.arange(b, device=dev), edit_group])
    edit_valid = torch.cat([node_mask & open_[batch.batch], edge_mask & open_[egraph], add_mask & open_[state.cand_graph]])
    valid = torch.cat([torch.ones(b, dtype=torch.bool, device=dev), edit_valid])
    edit_scores = torch.cat([out.node, out.edge, out.cand]).masked_fill(~edit_valid, float("-inf"))
    if policy == "two_level":
        has_edit = scatter(edit_valid.float(), edit_group, dim=0, dim_size=b, reduce="max") > 0
        m = scatter(edit_scores.detach(), edit_group, dim=0, dim_size=b, reduce="max")
        m = torch.where(has_edit, m, torch.zeros_like(m))
        lse = m + torch.log(scatter(torch.exp(edit_scores - m[edit_group]), edit_group, dim=0, dim_size=b,
                                    reduce="sum").clamp_min(1e-30))
        stop = out.stop
        logp_stop = torch.where(has_edit, F.logsigmoid(stop), torch.zeros_like(stop))
        logp_edit = F.logsigmoid(-stop)[edit_group] + edit_scores - lse[edit_group]
        logp = torch.cat([logp_stop, logp_edit.masked_fill(~edit_valid, float("-inf"))])
        forced = None
        if force_edit is not None:
            forced = force_edit.to(dev).bool() & has_edit & open_
            cond = (edit_scores - lse[edit_group]).masked_fill(~edit_valid, float("-inf"))
            logp_sample = torch.cat([logp_stop.masked_fill(forced, float("-inf")),
                                     torch.where(forced[edit_group], cond, logp[b:])])
    elif policy == "flat":
        masked = torch.cat([out.stop, edit_scores])
        m = scatter(masked.detach(), group, dim=0, dim_size=b, reduce="max")
        lse = m + torch.log(scatter(torch.exp(masked - m[group]), group, dim=0, dim_size=b, reduce="sum"))
        logp = masked - lse[group]
    else:
        raise ValueError(f"unknown policy {policy!r}; want 'two_level' or 'flat'")
    if policy != "two_level" or force_edit is None:
        forced, logp_sample = None, logp
    # entropy without 0 * (-inf): zero the invalid entries before multiplying (NaN-free grads)
    logp_safe = logp.masked_fill(~valid, 0.0)
    plogp = torch.exp(logp_safe) * logp_safe
    entropy = -scatter(plogp, group, dim=0, dim_size=b, reduce="sum")
    with torch.no_grad():
        score = logp_sample.detach().masked_fill(~valid, float("-inf"))
        if not greedy:
            u = torch.rand_like(score).clamp(1e-10, 1.0 - 1e-7)
            score = score - torch.log(-torch.log(u))
        best = scatter(score, group, dim=0, dim_size=b, reduce="max")
        idx = torch.arange(score.numel(), device=score.device)
        big = torch.full_like(idx, score.numel())
        action = scatter(torch.where(score == best[group], idx, big), group, dim=0, dim_size=b, reduce="min")
    if not bool(valid[action].all()):  # cannot happen: stop is always valid
        raise RuntimeError("masked_policy sampled an invalid action")
    return action, logp_sample[action], entropy


@torch.no_grad()
def apply_action(batch: Batch, state: EditState, action: Tensor) -> Tensor:
    """Apply one flat action (from :func:`masked_policy`) per open graph to ``state`` in place.

    Deleting a node also kills its edges; finished graphs are left alone; ``state.steps`` counts
    the non-stop actions. ``state.done`` is *not* changed: the caller ORs in the returned flags
    (and its own horizon).

    Returns:
        ``[B]`` bool, graphs that chose ``stop`` now.
    """
    b, n, e = batch.num_graphs, batch.num_nodes, batch.edge_index.size(1)
    open_ = ~state.done
    is_stop = action < b
    is_node = (action >= b) & (action < b + n)
    is_edge = (action >= b + n) & (action < b + n + e)
    is_cand = action >= b + n + e
    nodes = action[open_ & is_node] - b
    if nodes.numel():
        state.node_alive[nodes] = False
        src, dst = batch.edge_index
        state.edge_alive &= state.node_alive[src] & state.node_alive[dst]
    edges = action[open_ & is_edge] - b - n
    if edges.numel():
        state.edge_alive[edges] = False
        state.edge_deleted[edges] = True
    cands = action[open_ & is_cand] - b - n - e
    if cands.numel():
        state.cand_used[cands] = True
    stopped = open_ & is_stop
    state.steps += (open_ & ~is_stop).long()
    return stopped


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
            out = PolicyOutput(stop=-q_edit.detach() / cfg.stop_temperature, node=out.node, edge=out.edge,
                               cand=out.cand, value=out.value)
        force = None
        if classifier is not None and not greedy and cfg.explore > 0 and cfg.policy == "two_level":
            force = torch.rand(batch.num_graphs, device=batch.x.device) < cfg.explore
        action, logp, ent = masked_policy(batch, state, out, greedy=greedy, policy=cfg.policy, force_edit=force)
        active = ~state.done
        stopped = apply_action(batch, state, action)
        done_after = stopped | (t == cfg.max_steps - 1)
        rec = {"logp": logp, "entropy": ent, "value": out.value, "active": active, "done": done_after,
               "edited": active & ~stopped, "q_edit": q_edit}
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
            loss=loss.item(), actor_loss=actor.item(), critic_loss=critic.item(), entropy=ent.item(),
            value=float(torch.cat(values).mean()), edit_value_loss=q_loss.item(),
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
def edit_graphs(
    agent: GraphEditAgent, batch: Batch, cfg: AgentConfig, greedy: bool = True
) -> tuple[Batch, list[dict]]:
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
