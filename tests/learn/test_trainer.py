"""fit_classifier on a synthetic task whose label is a function of the head/tail features."""

import numpy as np
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from mmre_cli.graphs.graph import EDGE_ATTR_DIM, ROLE_HEAD, ROLE_TAIL
from mmre_cli.learn.checkpoint import load_checkpoint, save_checkpoint
from mmre_cli.learn.gnn import PooledMLP, RelationGNN
from mmre_cli.learn.trainer import compute_class_weights, evaluate, fit_classifier, predict
from mmre_cli.reporting import NullReporter

F_IN = 8
NUM_CLASSES = 5  # 0 = None (~62 %), 1..4 from the signs of two tail features


def synthetic(n_graphs: int, seed: int) -> list[Data]:
    """Random graphs; label = 0 if head feature 0 is negative-ish, else 1 + 2*[t1 > 0] + [t2 > 0].

    Decisive features are kept >= 1 away from the boundary so the task is learnable exactly.
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_graphs):
        n = int(rng.integers(4, 10))
        x = rng.normal(size=(n, F_IN)).astype(np.float32)
        head, tail = rng.choice(n, size=2, replace=False)
        positive = rng.random() > 0.62
        s1, s2 = rng.random() > 0.5, rng.random() > 0.5
        x[head, 0] = (1 if positive else -1) * (1.0 + abs(x[head, 0]))
        x[tail, 1] = (1 if s1 else -1) * (1.0 + abs(x[tail, 1]))
        x[tail, 2] = (1 if s2 else -1) * (1.0 + abs(x[tail, 2]))
        y = 1 + 2 * int(s1) + int(s2) if positive else 0
        e = int(rng.integers(n, 3 * n))
        role = np.zeros(n, np.int64)
        role[head], role[tail] = ROLE_HEAD, ROLE_TAIL
        out.append(
            Data(
                x=torch.from_numpy(x),
                edge_index=torch.from_numpy(rng.integers(0, n, size=(2, e))),
                edge_type=torch.from_numpy(rng.integers(0, 3, size=e)),
                edge_attr=torch.from_numpy(rng.normal(size=(e, EDGE_ATTR_DIM)).astype(np.float32)),
                node_role=torch.from_numpy(role),
                y=torch.tensor([y]),
                head_index=torch.tensor([int(head)]),
                tail_index=torch.tensor([int(tail)]),
                num_nodes=n,
            )
        )
    return out


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny batches on a shared 2-core box: intra-op threads only contend (10x slower)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def loaders():
    train, val = synthetic(200, 0), synthetic(80, 1)
    return (DataLoader(train, batch_size=16, shuffle=True), DataLoader(val, batch_size=64))


def _fit(model, loaders, **kw):
    args = dict(epochs=12, lr=3e-3, weight_decay=1e-4, class_weights="inverse_sqrt", none_id=0, seed=0, patience=6)
    args.update(kw)
    return fit_classifier(model, loaders[0], loaders[1], **args)


def test_gnn_learns_synthetic_task(loaders):
    torch.manual_seed(0)
    model = RelationGNN(F_IN, NUM_CLASSES, hidden=64, layers=2, heads=4, dropout=0.1)
    rep = NullReporter()
    best, history = _fit(model, loaders, reporter=rep)  # no timed assertion: speed lives in bench/
    best_f1 = max(h["val_micro_f1"] for h in history)
    assert best_f1 > 0.9
    assert set(history[0]) >= {"epoch", "loss", "val_acc", "val_micro_p", "val_micro_r", "val_micro_f1"}
    assert any(m.startswith("epoch 1:") for m in rep.messages)
    # the model ends holding the best state, and evaluate() agrees with the history
    assert evaluate(model, loaders[1], 0)["micro_f1"] == pytest.approx(best_f1)
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())


def test_pooled_mlp_learns_synthetic_task(loaders):
    torch.manual_seed(0)
    model = PooledMLP(F_IN, NUM_CLASSES, hidden=64, dropout=0.1)
    _, history = _fit(model, loaders)
    best_f1 = max(h["val_micro_f1"] for h in history)
    print(f"PooledMLP: {len(history)} epochs, best val micro-F1 {best_f1:.3f}")
    print([round(h["val_micro_f1"], 3) for h in history])
    assert best_f1 > 0.9


def test_deterministic_with_seed(loaders):
    # model init happens outside fit_classifier, so seed it identically too
    torch.manual_seed(7)
    m1 = PooledMLP(F_IN, NUM_CLASSES, hidden=16)
    torch.manual_seed(7)
    m2 = PooledMLP(F_IN, NUM_CLASSES, hidden=16)
    h1 = _fit(m1, loaders, epochs=2, seed=123)[1]
    h2 = _fit(m2, loaders, epochs=2, seed=123)[1]
    assert [(h["loss"], h["val_micro_f1"]) for h in h1] == [(h["loss"], h["val_micro_f1"]) for h in h2]


def test_predict_and_checkpoint_round_trip(loaders, tmp_path):
    torch.manual_seed(0)
    model = RelationGNN(F_IN, NUM_CLASSES, hidden=32, heads=4)
    _, history = _fit(model, loaders, epochs=2)
    pred, prob = predict(model, loaders[1])
    assert pred.shape == (80,) and prob.shape == (80, NUM_CLASSES)
    np.testing.assert_allclose(prob.sum(1), 1.0, atol=1e-5)
    save_checkpoint(tmp_path, "best", model, {"metrics": history[-1], "label_map": list("Nabcd")})
    loaded, meta = load_checkpoint(tmp_path, "best")
    batch = next(iter(loaders[1]))
    model.eval()
    assert torch.equal(model(batch), loaded(batch))
    pred2, prob2 = predict(loaded, loaders[1])
    assert np.array_equal(pred, pred2) and np.array_equal(prob, prob2)


def test_fabric_cpu(loaders):
    import lightning

    fabric = lightning.fabric.Fabric(accelerator="cpu", devices=1)
    model = PooledMLP(F_IN, NUM_CLASSES, hidden=16)
    best, history = _fit(model, loaders, epochs=2, fabric=fabric)
    assert len(history) == 2 and set(best) == set(model.state_dict())


def test_class_weights():
    counts = [62, 20, 10, 8, 0]
    for mode in ("none", "inverse_sqrt", "balanced"):
        w = compute_class_weights(counts, mode).numpy()
        assert np.dot(w, counts) == pytest.approx(sum(counts), rel=1e-6)  # mean instance weight 1
    w = compute_class_weights(counts, "inverse_sqrt").numpy()
    assert w[0] / w[1] == pytest.approx(np.sqrt(20 / 62), rel=1e-5)
    w = compute_class_weights(counts, "balanced").numpy()
    assert w[0] / w[1] == pytest.approx(20 / 62, rel=1e-5)
    assert np.all(compute_class_weights(counts, "none").numpy() == 1)
    with pytest.raises(ValueError):
        compute_class_weights(counts, "focal")


def test_early_stopping(loaders):
    model = PooledMLP(F_IN, NUM_CLASSES, hidden=16)
    _, history = _fit(model, loaders, epochs=50, lr=0.0, patience=2)  # lr=0: nothing improves
    assert len(history) == 3 and history[0]["best"] and not history[1]["best"]


def test_rdrop_loss_is_two_passes_plus_symmetric_kl(loaders):
    from mmre_cli.learn.gnn import classification_loss
    from mmre_cli.learn.trainer import training_loss

    torch.manual_seed(0)
    model = PooledMLP(F_IN, NUM_CLASSES, hidden=16, dropout=0.5).train()
    batch = next(iter(loaders[0]))
    y = batch.y.reshape(-1).long()
    # alpha 0: exactly one pass
    torch.manual_seed(1)
    one = training_loss(model, model, batch, y, None, 0.0)
    torch.manual_seed(1)
    assert torch.equal(one, classification_loss(model, model(batch), y, None))
    # alpha > 0: the same two dropout passes, written out by hand
    torch.manual_seed(2)
    got = training_loss(model, model, batch, y, None, 4.0)
    torch.manual_seed(2)
    z1, z2 = model(batch), model(batch)
    p, q = z1.softmax(-1), z2.softmax(-1)
    kl_pq = (p * (p.log() - q.log())).sum(-1).mean()
    kl_qp = (q * (q.log() - p.log())).sum(-1).mean()
    assert kl_pq > 0 and kl_qp > 0  # dropout made the passes differ
    want = 0.5 * (torch.nn.functional.cross_entropy(z1, y) + torch.nn.functional.cross_entropy(z2, y)) + 4.0 / 4 * (
        kl_pq + kl_qp
    )
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    # without dropout the passes agree and R-Drop is the plain loss
    model.eval()
    assert training_loss(model, model, batch, y, None, 4.0).item() == pytest.approx(
        classification_loss(model, model(batch), y, None).item(), rel=1e-6
    )


def test_rdrop_trains(loaders):
    torch.manual_seed(0)
    model = PooledMLP(F_IN, NUM_CLASSES, hidden=64, dropout=0.1)
    _, history = _fit(model, loaders, rdrop=1.0)
    assert max(h["val_micro_f1"] for h in history) > 0.9


def test_distillation_term_is_t_squared_kl_to_the_softened_teacher(loaders):
    from mmre_cli.learn.gnn import classification_loss
    from mmre_cli.learn.trainer import distillation_loss, training_loss

    torch.manual_seed(0)
    model = PooledMLP(F_IN, NUM_CLASSES, hidden=16).eval()
    batch = next(iter(loaders[0])).clone()
    y = batch.y.reshape(-1).long()
    z = model(batch)
    teacher = torch.softmax(torch.randn(z.shape), -1)
    # by hand: q_T ∝ q^(1/T), p_T = softmax(z / T), T^2 * mean_b sum_c q_T (log q_T - log p_T)
    t = 2.0
    q = teacher ** (1 / t)
    q = q / q.sum(-1, keepdim=True)
    p = torch.softmax(z / t, -1)
    want = t * t * (q * (q.log() - p.log())).sum(-1).mean()
    assert distillation_loss(z, teacher, t).item() == pytest.approx(want.item(), rel=1e-5)
    # a teacher equal to the model itself costs nothing
    assert distillation_loss(z, torch.softmax(z, -1), t).item() == pytest.approx(0.0, abs=1e-6)
    # training_loss mixes it with the gold loss only when the batch carries a teacher
    plain = classification_loss(model, z, y, None).item()
    assert training_loss(model, model, batch, y, None, distill=(0.25, t)).item() == pytest.approx(plain, rel=1e-6)
    batch.teacher = teacher
    mixed = training_loss(model, model, batch, y, None, distill=(0.25, t))
    assert mixed.item() == pytest.approx(0.75 * plain + 0.25 * want.item(), rel=1e-5)
    assert training_loss(model, model, batch, y, None).item() == pytest.approx(plain, rel=1e-6)  # distill off


def test_distillation_pulls_the_model_toward_the_teacher(loaders):
    """A teacher that always says class 3 wins over the gold labels at alpha 1."""
    from torch_geometric.loader import DataLoader as Loader

    train = []
    for d in synthetic(200, 0):
        d = d.clone()
        d.teacher = torch.nn.functional.one_hot(torch.tensor([3]), NUM_CLASSES).float() * 0.96 + 0.01
        train.append(d)
    torch.manual_seed(0)
    model = PooledMLP(F_IN, NUM_CLASSES, hidden=16)
    fit_classifier(
        model,
        Loader(train, batch_size=16, shuffle=True),
        loaders[1],
        epochs=5,
        lr=3e-3,
        weight_decay=0.0,
        class_weights="none",
        distill=(1.0, 1.0),
    )
    pred, _ = predict(model, loaders[1])
    gold = torch.cat([b.y for b in loaders[1]]).numpy()
    assert (gold == 3).mean() < 0.2 and (pred == 3).mean() > 0.8  # (the kept epoch is val's best)
