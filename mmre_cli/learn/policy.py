r"""The RL graph editor's policy (paper Alg. 2): its edit state, the GAT actor-critic network, and
the masked policy that picks one action per graph.

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

Episodes, the reward of each step and the actor-critic update that trains this network are in
:mod:`mmre_cli.learn.agent`; its hyper-parameters are :class:`AgentConfig` (below).

Shapes:
    batch: PyG ``Batch`` with ``x [N, D]``, ``edge_index [2, E]``, ``edge_type [E]``,
    ``edge_attr [E, EDGE_ATTR_DIM]``, ``node_role [N]``, ``head_index [B]``, ``tail_index [B]``
    (global ids), ``batch [N]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn import GATConv
from torch_geometric.utils import scatter

from mmre_cli.graphs.graph import EDGE_ATTR_DIM, EDGE_TYPES
from mmre_cli.learn.editing import action_masks, candidate_additions, current_edges, pair_cosine
from mmre_cli.learn.gnn import register_model

__all__ = ["AgentConfig", "GraphEditAgent", "PolicyOutput", "EditState", "init_state", "masked_policy", "apply_action"]

_NUM_ROLES = 3


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
        self.config = {
            "in_dim": in_dim,
            "hidden": hidden,
            "heads": heads,
            "num_layers": num_layers,
            "edge_dim": edge_dim,
            "dropout": dropout,
        }
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
            parts.append(
                scatter(
                    h.masked_fill(~alive.unsqueeze(1), float("-inf")), batch.batch, dim=0, dim_size=b, reduce="max"
                ).clamp(min=-1e4)
            )
        g = torch.cat(parts + [h[batch.head_index.long()], h[batch.tail_index.long()], t_col], dim=-1)
        node = self.node_scorer(torch.cat([h, g[batch.batch]], -1)).squeeze(-1)
        src, dst = batch.edge_index
        edge = self.edge_scorer(
            torch.cat([h[src], h[dst], self._edge_feat(batch.edge_type, batch.edge_attr)], -1)
        ).squeeze(-1)
        ci, cj = state.cand_edge_index
        cand = self.cand_scorer(torch.cat([h[ci] + h[cj], h[ci] * h[cj], state.cand_cos.unsqueeze(1)], -1)).squeeze(-1)
        return PolicyOutput(
            stop=self.stop_head(g).squeeze(-1), node=node, edge=edge, cand=cand, value=self.value_head(g).squeeze(-1)
        )


def masked_policy(
    batch: Batch,
    state: EditState,
    out: PolicyOutput,
    greedy: bool = False,
    policy: str = "two_level",
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
    edit_valid = torch.cat(
        [node_mask & open_[batch.batch], edge_mask & open_[egraph], add_mask & open_[state.cand_graph]]
    )
    valid = torch.cat([torch.ones(b, dtype=torch.bool, device=dev), edit_valid])
    edit_scores = torch.cat([out.node, out.edge, out.cand]).masked_fill(~edit_valid, float("-inf"))
    if policy == "two_level":
        has_edit = scatter(edit_valid.float(), edit_group, dim=0, dim_size=b, reduce="max") > 0
        m = scatter(edit_scores.detach(), edit_group, dim=0, dim_size=b, reduce="max")
        m = torch.where(has_edit, m, torch.zeros_like(m))
        lse = m + torch.log(
            scatter(torch.exp(edit_scores - m[edit_group]), edit_group, dim=0, dim_size=b, reduce="sum").clamp_min(
                1e-30
            )
        )
        stop = out.stop
        logp_stop = torch.where(has_edit, F.logsigmoid(stop), torch.zeros_like(stop))
        logp_edit = F.logsigmoid(-stop)[edit_group] + edit_scores - lse[edit_group]
        logp = torch.cat([logp_stop, logp_edit.masked_fill(~edit_valid, float("-inf"))])
        forced = None
        if force_edit is not None:
            forced = force_edit.to(dev).bool() & has_edit & open_
            cond = (edit_scores - lse[edit_group]).masked_fill(~edit_valid, float("-inf"))
            logp_sample = torch.cat(
                [logp_stop.masked_fill(forced, float("-inf")), torch.where(forced[edit_group], cond, logp[b:])]
            )
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
