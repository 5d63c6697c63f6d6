r"""Graph edits for the RL editor (paper Alg. 2): candidates, action masks, applying edits.

Pure tensor operations on a PyG :class:`~torch_geometric.data.Batch`; nothing here learns.
An *edit state* over a batch is three boolean vectors, all indexed in the **original** batch:

* ``node_alive [N]`` — ``False`` once the node was deleted;
* ``edge_alive [E]`` — ``False`` once the edge was deleted (an edge touching a deleted node is
  dead whatever this flag says);
* ``cand_used [K]`` — ``True`` once candidate pair ``k`` of :func:`candidate_additions` was added.

Candidate additions (:func:`candidate_additions`): for every node ``i``, the ``k`` nodes ``j`` of
the *same* graph with the highest cosine similarity

.. math::
    \cos_{ij} = \frac{x_i^\top x_j}{\lVert x_i\rVert\,\lVert x_j\rVert}, \qquad
    \cos_{ij} \ge \text{threshold}, \quad j \ne i, \quad (i,j), (j,i) \notin \mathcal{E}

and the unordered pairs ``{i, j}`` are deduplicated (stored with ``i < j``). An added pair becomes
**two** directed edges ``i -> j`` and ``j -> i`` of type ``EDGE_TYPES.index('added')`` with
``edge_attr[:, weight] = edge_attr[:, cosine] = cos_ij`` and every other column 0.

Dead nodes (:func:`apply_edits`) are **removed** and the survivors renumbered per graph
(``subgraph(relabel_nodes=True)`` semantics, order kept). Head and tail nodes can never be
deleted (:func:`action_masks`), so ``head_index`` / ``tail_index`` are remapped through the same
renumbering and always point at the same original nodes. Removal (rather than keeping dead nodes
isolated with zeroed features) keeps mean/attention pooling in the classifier undiluted.

Complexity (the paper leaves it undefined). Two definitions, chosen by ``AgentConfig.complexity``:

* ``"edits"`` (default, :func:`edit_complexity`): the size of the *edit* relative to the graph,
  with :math:`m_b` the edits (node deletions, edge deletions, additions) made so far in graph
  ``b`` and :math:`N_b` its nodes before editing:

  .. math::
      C_b = m_b / N_b

  so :math:`C = 0` for the unedited graph and every edit costs :math:`\mu / N_b` in the reward
  :math:`R = \lambda\,\mathrm{Acc} - \mu\,C`: an edit pays only when it raises the gold
  likelihood by more than :math:`\mu / (\lambda N_b)`, a deletion can never buy more than the
  evidence it removes, and stopping (no edit, no cost) wins when no edit helps. The charge
  scales with :math:`1/N_b` like one node's share of a pooled graph representation.
* ``"size"`` (:func:`complexity`, the earlier default): the size of the edited graph. Per graph
  ``b`` with ``N_b`` / ``E_b`` nodes / directed edges before editing and ``N'_b`` / ``E'_b``
  after (added edges count, two per added pair):

  .. math::
      C_b = w_n \frac{N'_b}{N_b} + (1 - w_n)\,\rho_b, \qquad
      \rho_b = \begin{cases} E'_b / E_b & E_b > 0 \\ 1 + E'_b & E_b = 0 \end{cases}

  with ``w_n = 0.5`` by default (``C = 1`` unedited). Every deletion lowers it, so under this
  term deleting pays whatever it removes and adding never does (measured on MNRE-2:
  ``max_steps`` deletions per graph, no addition).

Deleted words (:func:`masked_words`): when the batch carries the sentence (``words``,
``word_keep``, ``node_span``: ``graph_to_data(..., words=True)``, for a classifier that re-encodes
the text), :func:`apply_edits` also sets ``word_keep`` false for the words of every deleted
sentence-token node, exactly the words :func:`mmre_cli.graphs.refine.apply_edit_record` records in
``meta["deleted_words"]``: a fine-tuned reward classifier reads the edited sentence as the final
classifier will.

Protected nodes (:func:`protected_nodes`): the head and tail nodes and, when the batch carries
``node_protected`` (:func:`mmre_cli.graphs.pyg.graph_to_data`: every text node inside the head or
tail token span, e.g. the tokens "David" and "Bowie" of the head "David Bowie"), those too.

Shapes:
    batch: ``B`` graphs, ``N`` nodes, ``E`` edges (see :mod:`mmre_cli.learn.policy`)
    cand_edge_index: ``[2, K]`` global node ids with row 0 < row 1; cand_graph: ``[K]``
    node_mask ``[N]``, edge_mask ``[E]``, add_mask ``[K]`` bool
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.utils import to_dense_adj, to_dense_batch

from mmre_cli.graphs.graph import EDGE_ATTR_COLUMNS, EDGE_ATTR_DIM, EDGE_TYPES, MODALITIES, NODE_KINDS, ROLE_OTHER

__all__ = [
    "ADDED_EDGE_TYPE",
    "candidate_additions",
    "pair_cosine",
    "action_masks",
    "protected_nodes",
    "current_edges",
    "apply_edits",
    "masked_words",
    "complexity",
    "edit_complexity",
    "graph_sizes",
]

#: Edge type id given to edges the editor adds.
ADDED_EDGE_TYPE = EDGE_TYPES.index("added")
_W_COL = EDGE_ATTR_COLUMNS.index("weight")
_COS_COL = EDGE_ATTR_COLUMNS.index("cosine")
_TOKEN, _TEXT = NODE_KINDS.index("token"), MODALITIES.index("text")
_NODE_KEYS = {"x", "node_role", "batch"}
_EDGE_KEYS = {"edge_index", "edge_type", "edge_attr"}
_INDEX_KEYS = {"head_index", "tail_index"}


def _ptr(batch: Batch) -> Tensor:
    ptr = getattr(batch, "ptr", None)
    if ptr is not None:
        return ptr
    counts = torch.bincount(batch.batch, minlength=batch.num_graphs)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def graph_sizes(batch: Batch) -> tuple[Tensor, Tensor]:
    """Nodes and directed edges per graph.

    Returns:
        ``(num_nodes [B], num_edges [B])`` as ``long``.
    """
    b = batch.num_graphs
    n = torch.bincount(batch.batch, minlength=b)
    e = torch.bincount(batch.batch[batch.edge_index[0]], minlength=b)
    return n, e


def pair_cosine(x: Tensor, pairs: Tensor) -> Tensor:
    """Cosine similarity of ``x[pairs[0]]`` and ``x[pairs[1]]``.

    Shapes:
        x: ``[N, D]``, pairs: ``[2, K]`` -> ``[K]``
    """
    if pairs.numel() == 0:
        return x.new_zeros(0)
    return F.cosine_similarity(x[pairs[0]], x[pairs[1]], dim=-1, eps=1e-8)


@torch.no_grad()
def candidate_additions(batch: Batch, k: int = 2, threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    r"""Non-adjacent same-graph node pairs that are most similar (edge-addition candidates).

    For each node the ``k`` most cosine-similar other nodes of its graph with
    ``cos >= threshold`` and no edge in either direction are taken; unordered pairs are
    deduplicated and returned sorted (by first node, then second), hence grouped by graph.

    Args:
        batch: a PyG batch with ``x``, ``edge_index``, ``batch``.
        k: candidates per node (default 2).
        threshold: minimum cosine similarity (default 0.5).

    Returns:
        ``(cand_edge_index [2, K] long, cand_graph [K] long)`` with ``cand_edge_index[0] <
        cand_edge_index[1]`` (global node ids) and ``cand_graph`` the graph of each pair.
    """
    device = batch.x.device
    empty = (torch.zeros(2, 0, dtype=torch.long, device=device), torch.zeros(0, dtype=torch.long, device=device))
    if k <= 0 or batch.num_nodes < 2:
        return empty
    bvec = batch.batch
    xd, mask = to_dense_batch(F.normalize(batch.x.float(), dim=-1, eps=1e-8), bvec)  # [B, M, D]
    nmax = xd.size(1)
    sim = torch.bmm(xd, xd.transpose(1, 2))  # [B, M, M]
    adj = to_dense_adj(batch.edge_index, bvec, max_num_nodes=nmax) > 0
    adj = adj | adj.transpose(1, 2)
    eye = torch.eye(nmax, dtype=torch.bool, device=device).unsqueeze(0)
    valid = mask.unsqueeze(2) & mask.unsqueeze(1) & ~eye & ~adj & (sim >= threshold)
    sim = sim.masked_fill(~valid, float("-inf"))
    kk = min(k, max(nmax - 1, 1))
    vals, cols = sim.topk(kk, dim=-1)  # [B, M, kk]
    keep = torch.isfinite(vals)
    if not bool(keep.any()):
        return empty
    g, i, slot = keep.nonzero(as_tuple=True)
    j = cols[g, i, slot]
    ptr = _ptr(batch)
    gi, gj = ptr[g] + i, ptr[g] + j
    lo, hi = torch.minimum(gi, gj), torch.maximum(gi, gj)
    n = batch.num_nodes
    key = torch.unique(lo * n + hi)  # sorted
    cand = torch.stack([key // n, key % n])
    return cand, bvec[cand[0]]


def protected_nodes(batch: Batch) -> Tensor:
    """``[N]`` bool: nodes the editor may never delete.

    Head/tail nodes (``node_role != 0`` or listed in ``head_index``/``tail_index``) and, when
    the batch has it, every node flagged in ``node_protected`` (the tokens inside the head and
    tail spans, :func:`mmre_cli.graphs.pyg.graph_to_data`).
    """
    prot = torch.zeros(batch.num_nodes, dtype=torch.bool, device=batch.x.device)
    flagged = getattr(batch, "node_protected", None)
    if flagged is not None and flagged.numel() == batch.num_nodes:
        prot |= flagged.to(prot.device).bool().view(-1)
    role = getattr(batch, "node_role", None)
    if role is not None:
        prot |= role != ROLE_OTHER
    for key in ("head_index", "tail_index"):
        idx = getattr(batch, key, None)
        if idx is not None and idx.numel():
            prot[idx.long().view(-1)] = True
    return prot


def _effective_edge_alive(batch: Batch, node_alive: Tensor, edge_alive: Tensor) -> Tensor:
    src, dst = batch.edge_index
    return edge_alive & node_alive[src] & node_alive[dst]


def action_masks(
    batch: Batch, node_alive: Tensor, edge_alive: Tensor, cand_used: Tensor, cand_edge_index: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Which edit actions are valid in the current state.

    * delete node ``i``: alive and not head/tail (see :func:`protected_nodes`);
    * delete edge ``e``: not yet deleted and both endpoints alive;
    * add candidate ``c``: not yet added and both endpoints alive;
    * ``stop`` (not returned): always valid.

    Args:
        batch: the original (unedited) batch.
        node_alive, edge_alive, cand_used: the edit state (module docstring).
        cand_edge_index: the candidate pairs the ``cand_used`` flags refer to; ``None`` means
            there are none (``K`` must then be 0).

    Returns:
        ``(node_mask [N], edge_mask [E], add_mask [K])`` bool.
    """
    node_mask = node_alive & ~protected_nodes(batch)
    edge_mask = _effective_edge_alive(batch, node_alive, edge_alive)
    if cand_edge_index is None or cand_edge_index.numel() == 0:
        add_mask = torch.zeros_like(cand_used, dtype=torch.bool)
    else:
        add_mask = ~cand_used & node_alive[cand_edge_index[0]] & node_alive[cand_edge_index[1]]
    return node_mask, edge_mask, add_mask


def _added_edge_tensors(batch: Batch, added_edges: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Both directions of each added pair: ``(edge_index [2,2A], edge_type [2A], edge_attr [2A,F])``."""
    cos = pair_cosine(batch.x.float(), added_edges)
    ei = torch.cat([added_edges, added_edges.flip(0)], dim=1)
    cos2 = torch.cat([cos, cos])
    attr_dim = batch.edge_attr.size(1) if getattr(batch, "edge_attr", None) is not None else EDGE_ATTR_DIM
    dtype = batch.edge_attr.dtype if getattr(batch, "edge_attr", None) is not None else torch.float
    attr = torch.zeros(ei.size(1), attr_dim, dtype=dtype, device=ei.device)
    if attr_dim == EDGE_ATTR_DIM:
        attr[:, _W_COL] = cos2.to(dtype)
        attr[:, _COS_COL] = cos2.to(dtype)
    et_dtype = batch.edge_type.dtype if getattr(batch, "edge_type", None) is not None else torch.long
    etype = torch.full((ei.size(1),), ADDED_EDGE_TYPE, dtype=et_dtype, device=ei.device)
    return ei, etype, attr


def current_edges(
    batch: Batch, node_alive: Tensor, edge_alive: Tensor, added_edges: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The current edge set over the *original* node numbering (dead nodes isolated).

    Alive original edges (in order) followed by both directions of every added pair whose
    endpoints are alive.

    Returns:
        ``(edge_index [2, E'], edge_type [E'], edge_attr [E', F], kept [E] bool)``.
    """
    kept = _effective_edge_alive(batch, node_alive, edge_alive)
    if added_edges.numel():
        added_edges = added_edges[:, node_alive[added_edges[0]] & node_alive[added_edges[1]]]
    a_ei, a_t, a_attr = _added_edge_tensors(batch, added_edges.reshape(2, -1))
    ei = torch.cat([batch.edge_index[:, kept], a_ei], dim=1)
    et = torch.cat([batch.edge_type[kept], a_t])
    attr = torch.cat([batch.edge_attr[kept], a_attr])
    return ei, et, attr, kept


def apply_edits(batch: Batch, node_alive: Tensor, edge_alive: Tensor, added_edges: Tensor) -> Batch:
    """The edited graphs as a new batch (the input is not modified).

    Dead nodes are removed and the others renumbered (order kept); original edges survive when
    ``edge_alive`` and both endpoints are alive; each added pair ``{i, j}`` whose endpoints are
    alive becomes edges ``i -> j`` and ``j -> i`` (type ``added``, weight = cosine = ``cos_ij``),
    placed after the graph's surviving original edges. ``head_index`` / ``tail_index`` are
    remapped (head/tail must be alive). Other node-level / edge-level tensors (told apart by the
    batch's ``_slice_dict``, or by length for tensors set after batching; e.g. ``node_kind``,
    ``node_modality``, ``edge_weight``) are filtered alike; added edges get
    ``edge_weight = cos_ij`` and zeros in any other edge-level tensor. Graph-level values (``y``,
    ``has_head``, ``graph_id``, …) are copied. The result keeps ``_slice_dict`` / ``_inc_dict`` consistent, so
    ``to_data_list()`` works.

    Edges of one graph must be contiguous in ``edge_index`` (as ``Batch.from_data_list`` makes
    them).

    Args:
        batch: the original batch.
        node_alive: ``[N]`` bool.
        edge_alive: ``[E]`` bool.
        added_edges: ``[2, A]`` long, global ids of added (unordered) pairs.

    Returns:
        a :class:`Batch` with the same ``B`` graphs.
    """
    device = batch.x.device
    b = batch.num_graphs
    prot = protected_nodes(batch)
    if bool((prot & ~node_alive).any()):
        raise ValueError("apply_edits: a head/tail node is marked dead")
    added_edges = added_edges.reshape(2, -1).long().to(device)
    ptr = _ptr(batch)
    old_e_counts = torch.bincount(batch.batch[batch.edge_index[0]], minlength=b)
    old_eptr = torch.cat([old_e_counts.new_zeros(1), old_e_counts.cumsum(0)])

    # node renumbering
    new_id = torch.cumsum(node_alive.long(), 0) - 1  # valid where alive
    n_counts = torch.bincount(batch.batch[node_alive], minlength=b)
    new_ptr = torch.cat([n_counts.new_zeros(1), n_counts.cumsum(0)])

    ei, et, attr, kept = current_edges(batch, node_alive, edge_alive, added_edges)
    n_kept = int(kept.sum())
    n_add = ei.size(1) - n_kept
    # weight of each added directed edge (its cosine), for an optional `edge_weight` tensor
    add_w = attr[n_kept:, _W_COL] if attr.size(1) == EDGE_ATTR_DIM else attr.new_ones(n_add)
    egraph = batch.batch[ei[0]]
    order = torch.sort(egraph, stable=True).indices  # per graph: kept originals, then added
    ei, et, attr = new_id[ei[:, order]], et[order], attr[order]
    e_counts = torch.bincount(egraph, minlength=b)
    new_eptr = torch.cat([e_counts.new_zeros(1), e_counts.cumsum(0)])

    out = copy.copy(batch)
    slice_dict = dict(getattr(batch, "_slice_dict", None) or {})
    inc_dict = dict(getattr(batch, "_inc_dict", None) or {})
    has_dicts = bool(slice_dict)

    def _kind(key: str) -> str:
        if key in _NODE_KEYS:
            return "node"
        if key in _EDGE_KEYS:
            return "edge"
        if key in _INDEX_KEYS:
            return "index"
        if key == "ptr":
            return "other"
        if key not in slice_dict:  # set after batching: go by its length (and name when tied)
            val = batch[key]
            if not torch.is_tensor(val) or val.dim() == 0:
                return "other"
            on_nodes, on_edges = val.size(0) == ptr[-1].item(), val.size(0) == old_eptr[-1].item()
            if on_nodes and on_edges:
                return "edge" if "edge" in key else "node"
            return "node" if on_nodes else "edge" if on_edges else "other"
        s = slice_dict[key]
        is_node = s.numel() == ptr.numel() and torch.equal(s.to(ptr.device), ptr)
        is_edge = s.numel() == old_eptr.numel() and torch.equal(s.to(device), old_eptr)
        if is_node and is_edge:
            return "edge" if "edge" in key else "node"
        return "node" if is_node else "edge" if is_edge else "graph"

    for key in list(batch.keys()):
        val = batch[key]
        kind = _kind(key)
        if key in ("edge_index", "edge_type", "edge_attr", "batch", "ptr"):
            continue  # set below
        if kind == "node" and torch.is_tensor(val):
            out[key] = val[node_alive]
            if has_dicts and key in slice_dict:
                slice_dict[key] = new_ptr.clone()
        elif kind == "edge" and torch.is_tensor(val):
            kv = val[kept]
            pad = val.new_zeros((n_add,) + tuple(val.shape[1:]))
            if key == "edge_weight" and n_add:  # added edges weigh their cosine, like edge_attr
                pad = add_w.to(val.dtype).reshape((n_add,) + tuple(val.shape[1:]))
            out[key] = torch.cat([kv, pad])[order]
            if has_dicts and key in slice_dict:
                slice_dict[key] = new_eptr.clone()
        elif kind == "index" and torch.is_tensor(val):
            out[key] = new_id[val.long()].to(val.dtype)
            if has_dicts:
                inc_dict[key] = new_ptr[:-1].clone()

    out.edge_index = ei
    out.edge_type = et
    out.edge_attr = attr
    out.batch = batch.batch[node_alive]
    out.ptr = new_ptr
    if has_dicts:
        for key in ("edge_index", "edge_type", "edge_attr"):
            if key in slice_dict or key == "edge_index":
                slice_dict[key] = new_eptr.clone()
        inc_dict["edge_index"] = new_ptr[:-1].clone()
        out._slice_dict = slice_dict
        out._inc_dict = inc_dict
    if "num_nodes" in batch.keys():  # explicit num_nodes (collate keeps the per-graph list)
        out.num_nodes = int(node_alive.sum())
        if hasattr(batch._store, "_num_nodes"):
            out._store._num_nodes = n_counts.tolist()
    out._num_graphs = b
    keep = masked_words(batch, node_alive)
    if keep is not None:
        out.word_keep = keep
    return out


def masked_words(batch: Batch, node_alive: Tensor) -> Tensor | None:
    """The batch's ``word_keep`` with the words of its deleted sentence-token nodes set false (module
    docstring), or ``None`` when the batch carries no words.

    Shapes:
        node_alive ``[N]`` -> ``[T]`` (``T``: the batch's words, graph after graph)
    """
    keep, span = getattr(batch, "word_keep", None), getattr(batch, "node_span", None)
    if keep is None or span is None:
        return None
    kind, modality = getattr(batch, "node_kind", None), getattr(batch, "node_modality", None)
    if kind is None or modality is None:
        return keep
    dead = ~node_alive & (kind == _TOKEN) & (modality == _TEXT) & (span[:, 0] >= 0) & (span[:, 1] > span[:, 0])
    if not bool(dead.any()):
        return keep
    words = batch.words
    words = [words] if words and isinstance(words[0], str) else words
    lengths = [len(w) for w in words]
    starts = [0, *itertools.accumulate(lengths)]
    keep = keep.clone()
    for node in dead.nonzero().reshape(-1).tolist():
        g = int(batch.batch[node]) if getattr(batch, "batch", None) is not None else 0
        s, e = (int(v) for v in span[node])
        keep[starts[g] + s : starts[g] + min(e, lengths[g])] = False
    return keep


def complexity(batch_edited: Batch, batch_orig: Batch, node_weight: float = 0.5) -> Tensor:
    r"""Per-graph complexity of the edited graphs relative to the originals (module docstring).

    .. math::
        C_b = w_n \frac{N'_b}{N_b} + (1 - w_n)\,\rho_b, \quad
        \rho_b = E'_b / E_b \ (E_b > 0), \quad \rho_b = 1 + E'_b \ (E_b = 0)

    Args:
        batch_edited: the edited batch (same ``B`` and graph order as ``batch_orig``).
        batch_orig: the original batch.
        node_weight: ``w_n`` in [0, 1] (default 0.5: nodes and edges weigh the same).

    Returns:
        ``[B]`` float, 1 for an unedited graph.
    """
    n0, e0 = graph_sizes(batch_orig)
    n1, e1 = graph_sizes(batch_edited)
    n_ratio = n1.float() / n0.clamp(min=1).float()
    e_ratio = torch.where(e0 > 0, e1.float() / e0.clamp(min=1).float(), 1.0 + e1.float())
    return node_weight * n_ratio + (1.0 - node_weight) * e_ratio


def edit_complexity(num_edits: Tensor, num_nodes: Tensor) -> Tensor:
    r"""Per-graph edit complexity :math:`C_b = m_b / N_b` (module docstring).

    Args:
        num_edits: ``m_b``, edits made so far (``EditState.steps``).
        num_nodes: ``N_b``, nodes of the unedited graph (:func:`graph_sizes`).

    Returns:
        ``[B]`` float, 0 for an unedited graph; each edit adds :math:`1/N_b`.

    Shapes:
        num_edits ``[B]``, num_nodes ``[B]`` -> ``[B]``
    """
    return num_edits.float() / num_nodes.clamp(min=1).float().to(num_edits.device)
