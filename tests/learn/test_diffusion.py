"""Algorithm 3 (relevance diffusion + pruning) against hand-computed numbers."""

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

from mmre_cli.learn.diffusion import diffuse, diffuse_and_prune, endpoint_edge_mask, node_relevance, propagation_weights

# Path graph 0 - 1 - 2 - 3, given one direction only; undirected=True symmetrises it.
EDGE_INDEX = torch.tensor([[0, 1, 2], [1, 2, 3]])
A = np.array([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0]], dtype=np.float64)
D_INV = np.diag(1.0 / A.sum(1))  # degrees 1, 2, 2, 1
A_ROW = D_INV @ A  # [[0,1,0,0],[.5,0,.5,0],[0,.5,0,.5],[0,0,1,0]]


def closed_form(a_hat, v0, alpha, k):
    """v_K = (αÂ)^K v0 + (1-α) Σ_{k<K} (αÂ)^k v0."""
    m = alpha * a_hat
    out = np.linalg.matrix_power(m, k) @ v0
    for i in range(k):
        out = out + (1 - alpha) * np.linalg.matrix_power(m, i) @ v0
    return out


def test_hand_example_two_steps():
    # alpha = 0.5, K = 2, v0 = e_0:
    #   v1 = .5*Â v0 + .5 v0 = [.5, .25, 0, 0]
    #   v2 = .5*Â v1 + .5 v0 = .5*[.25, .25, .125, 0] + [.5, 0, 0, 0] = [.625, .125, .0625, 0]
    v0 = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    v, w, keep = diffuse(EDGE_INDEX, 4, v0, alpha=0.5, max_iter=2, tau=0.05)
    np.testing.assert_allclose(v.numpy(), [0.625, 0.125, 0.0625, 0.0], atol=1e-6)
    # w_ij = (v_i + v_j)/2 for (0,1), (1,2), (2,3)
    np.testing.assert_allclose(w.numpy(), [0.375, 0.09375, 0.03125], atol=1e-6)
    assert keep.tolist() == [True, True, False]
    np.testing.assert_allclose(v.numpy(), closed_form(A_ROW, v0.numpy(), 0.5, 2), atol=1e-6)


def test_default_parameters_match_closed_form():
    v0 = np.array([0.9, 0.2, 0.05, 0.0])
    v, w, keep = diffuse(EDGE_INDEX, 4, torch.tensor(v0, dtype=torch.float64))
    expect = closed_form(A_ROW, v0, 0.85, 10)
    np.testing.assert_allclose(v.numpy(), expect, atol=1e-6)
    w_expect = np.array([(expect[0] + expect[1]) / 2, (expect[1] + expect[2]) / 2, (expect[2] + expect[3]) / 2])
    np.testing.assert_allclose(w.numpy(), w_expect, atol=1e-6)
    assert keep.tolist() == list(w_expect >= 0.05)
    assert ((v >= 0) & (v <= 1)).all()


def test_row_normalised_matrix_written_out():
    ei, wt = propagation_weights(EDGE_INDEX, 4)
    dense = np.zeros((4, 4))
    dense[ei[1].numpy(), ei[0].numpy()] = wt.numpy()  # Â[dst, src]
    np.testing.assert_allclose(dense, [[0, 1, 0, 0], [0.5, 0, 0.5, 0], [0, 0.5, 0, 0.5], [0, 0, 1, 0]])


def test_gcn_normalisation_matches_numpy():
    d = A.sum(1)
    a_gcn = np.diag(d**-0.5) @ A @ np.diag(d**-0.5)
    v0 = np.array([0.3, 0.6, 0.1, 0.8])
    v, _, _ = diffuse(EDGE_INDEX, 4, torch.tensor(v0, dtype=torch.float64), alpha=0.5, max_iter=3, norm="gcn")
    np.testing.assert_allclose(v.numpy(), np.clip(closed_form(a_gcn, v0, 0.5, 3), 0, 1), atol=1e-6)


def test_directed_propagation():
    # undirected=False: Â[dst, src]; node 0 has no in-edge, node k receives only from k-1.
    a_dir = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float64)
    v0 = np.array([1.0, 0.5, 0.0, 0.0])
    v, _, _ = diffuse(EDGE_INDEX, 4, torch.tensor(v0, dtype=torch.float64), alpha=0.5, max_iter=3, undirected=False)
    np.testing.assert_allclose(v.numpy(), closed_form(a_dir, v0, 0.5, 3), atol=1e-6)


def test_pruning_removes_exactly_expected_edges_and_keep_mask_protects():
    v0 = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    # w = [0.375, 0.09375, 0.03125]; tau = 0.1 prunes (1,2) and (2,3)
    _, _, keep = diffuse(EDGE_INDEX, 4, v0, alpha=0.5, max_iter=2, tau=0.1)
    assert keep.tolist() == [True, False, False]
    protect = endpoint_edge_mask(EDGE_INDEX, torch.tensor([3]))
    assert protect.tolist() == [False, False, True]
    _, _, keep = diffuse(EDGE_INDEX, 4, v0, alpha=0.5, max_iter=2, tau=0.1, keep_mask=protect)
    assert keep.tolist() == [True, False, True]


def test_no_iterations_and_no_edges():
    v0 = torch.tensor([0.2, 0.4])
    v, w, keep = diffuse(torch.zeros((2, 0), dtype=torch.long), 2, v0, alpha=0.85, max_iter=5)
    np.testing.assert_allclose(v.numpy(), 0.15 * v0.numpy(), atol=1e-7)
    assert w.numel() == 0 and keep.numel() == 0
    v, _, _ = diffuse(EDGE_INDEX, 4, torch.ones(4), max_iter=0)
    assert torch.equal(v, torch.ones(4))
    with pytest.raises(ValueError):
        diffuse(EDGE_INDEX, 4, torch.ones(3))


def test_node_relevance_hand_values():
    # head = [1, 0], tail = [0, 1] -> centre [.5, .5]
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [0.0, 0.0]])
    v = node_relevance(x, torch.tensor([0]), torch.tensor([1]), torch.zeros(5, dtype=torch.long))
    c45 = (1 + np.sqrt(0.5)) / 2
    np.testing.assert_allclose(v.numpy(), [c45, c45, 1.0, 0.0, 0.5], atol=1e-6)


def test_batched_equals_per_graph():
    torch.manual_seed(0)
    datas = []
    for n in (5, 7):
        ei = torch.randint(0, n, (2, 9))
        datas.append(
            Data(
                x=torch.randn(n, 4),
                edge_index=ei,
                edge_type=torch.zeros(9, dtype=torch.long),
                edge_attr=torch.randn(9, 3),
                head_index=torch.tensor([0]),
                tail_index=torch.tensor([1]),
                num_nodes=n,
            )
        )
    b = Batch.from_data_list(datas)
    vb = node_relevance(b.x, b.head_index, b.tail_index, b.batch)
    v_b, w_b, _ = diffuse(b.edge_index, b.num_nodes, vb)
    parts = []
    for d in datas:
        v0 = node_relevance(d.x, d.head_index, d.tail_index, None)
        parts.append(diffuse(d.edge_index, d.num_nodes, v0)[0])
    torch.testing.assert_close(v_b, torch.cat(parts), atol=1e-6, rtol=0)

    pruned = diffuse_and_prune(b, tau=0.6, protect_head_tail=True)
    e = pruned.edge_index.size(1)
    assert pruned.edge_type.shape == (e,) and pruned.edge_attr.shape == (e, 3) and pruned.edge_weight.shape == (e,)
    assert pruned.node_score.shape == (12,)
    ht = torch.cat([b.head_index, b.tail_index])
    # every kept edge either passes the threshold or touches the head/tail
    assert bool(((pruned.edge_weight >= 0.6) | endpoint_edge_mask(pruned.edge_index, ht)).all())
    # every protected input edge survives
    assert int(endpoint_edge_mask(b.edge_index, ht).sum()) <= e
    assert b.edge_index.size(1) == 18  # input untouched


def test_relevance_modes_on_hand_values():
    import torch

    from mmre_cli.learn.diffusion import node_relevance

    # head (0) and tail (1) orthogonal; centre = (0.5, 0.5); node 2 opposite, node 3 along the head
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0], [1.0, 0.0]])
    head, tail = torch.tensor([0]), torch.tensor([1])
    c = 2**-0.5
    shifted = node_relevance(x, head, tail, mode="shifted")
    clipped = node_relevance(x, head, tail, mode="clipped")
    torch.testing.assert_close(shifted, torch.tensor([(1 + c) / 2, (1 + c) / 2, 0.0, (1 + c) / 2]))
    torch.testing.assert_close(clipped, torch.tensor([c, c, 0.0, c]))


# ----------------------------------------------------------------------------- pruning rules (issue 26)


def test_minmax_pruning_hand_example():
    """v0 = e_0, alpha = 0.5, K = 2: v = [.625, .125, .0625, 0]; min-max (range .625):
    v^ = [1, .2, .1, 0]; w = [(1 + .2)/2, (.2 + .1)/2, (.1 + 0)/2] = [.6, .15, .05];
    tau = 0.1 prunes exactly (2, 3), tau = 0.2 (1, 2) and (2, 3)."""
    from mmre_cli.learn.diffusion import minmax_per_graph

    v0 = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    v, w, keep = diffuse(EDGE_INDEX, 4, v0, alpha=0.5, max_iter=2, tau=0.1, prune="minmax")
    np.testing.assert_allclose(v.numpy(), [1.0, 0.2, 0.1, 0.0], atol=1e-6)
    np.testing.assert_allclose(w.numpy(), [0.6, 0.15, 0.05], atol=1e-6)
    assert keep.tolist() == [True, True, False]
    _, _, keep = diffuse(EDGE_INDEX, 4, v0, alpha=0.5, max_iter=2, tau=0.2, prune="minmax")
    assert keep.tolist() == [True, False, False]
    # the raw rule (w = [.375, .094, .031]) at tau = .05 prunes (2, 3) only
    _, _, keep = diffuse(EDGE_INDEX, 4, v0, alpha=0.5, max_iter=2, tau=0.05)
    assert keep.tolist() == [True, True, False]
    # per graph: two copies side by side, the second scaled by 1/10, rescale alike
    vv = torch.tensor([0.625, 0.125, 0.0625, 0.0, 0.0625, 0.0125, 0.00625, 0.0], dtype=torch.float64)
    out = minmax_per_graph(vv, torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]))
    np.testing.assert_allclose(out.numpy(), [1, 0.2, 0.1, 0, 1, 0.2, 0.1, 0], atol=1e-9)
    assert minmax_per_graph(torch.full((3,), 0.4)).tolist() == [1.0, 1.0, 1.0]  # nothing to tell apart


def test_quantile_pruning_hand_example_and_protection():
    """A star 0-1, 0-2, 0-3, 0-4 with v0 = [1, .8, .6, .4, .2] and K = 0 (v = v0):
    w = [.9, .8, .7, .6]; the 0.5-quantile (linear) of w is .75, so (0,3) and (0,4) are pruned
    (w < .75); q = 0 prunes nothing; a keep_mask protects an edge below the quantile."""
    ei = torch.tensor([[0, 0, 0, 0], [1, 2, 3, 4]])
    v0 = torch.tensor([1.0, 0.8, 0.6, 0.4, 0.2], dtype=torch.float64)
    v, w, keep = diffuse(ei, 5, v0, max_iter=0, tau=0.5, prune="quantile")
    np.testing.assert_allclose(w.numpy(), [0.9, 0.8, 0.7, 0.6], atol=1e-9)
    assert keep.tolist() == [True, True, False, False]
    _, _, keep = diffuse(ei, 5, v0, max_iter=0, tau=0.0, prune="quantile")
    assert keep.all()
    _, _, keep = diffuse(
        ei, 5, v0, max_iter=0, tau=0.5, prune="quantile", keep_mask=torch.tensor([False, False, False, True])
    )
    assert keep.tolist() == [True, True, False, True]
    # per graph: the same star twice, the second with every v halved: each prunes its own two
    ei2 = torch.cat([ei, ei + 5], 1)
    v2 = torch.cat([v0, v0 / 2])
    _, _, keep = diffuse(ei2, 10, v2, max_iter=0, tau=0.5, prune="quantile", batch=torch.tensor([0] * 5 + [1] * 5))
    assert keep.tolist() == [True, True, False, False] * 2
    with pytest.raises(ValueError):
        diffuse(ei, 5, v0, tau=1.5, prune="quantile")
    with pytest.raises(ValueError):
        diffuse(ei, 5, v0, prune="bogus")
