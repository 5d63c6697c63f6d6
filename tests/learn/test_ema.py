"""Weight EMA: the update written out by hand, the swap, frozen parameters, and the trainer's use of it."""

import pytest
import torch
from torch import nn

from mmre_cli.learn.ema import WeightEMA
from mmre_cli.learn.gnn import PooledMLP
from tests.learn.test_trainer import F_IN, NUM_CLASSES, _fit, loaders  # noqa: F401 (the fixture)


def test_update_follows_the_warmed_up_decay():
    w = nn.Parameter(torch.zeros(3))
    model = nn.Module()
    model.w = w
    ema = WeightEMA(model, decay=0.9)
    want = torch.zeros(3)
    for t, value in enumerate([1.0, 2.0, 4.0, -1.0] + [3.0] * 96, start=1):
        with torch.no_grad():
            w.fill_(value)
        ema.update()
        d = min(0.9, (1 + t) / (10 + t))  # 0.18, 0.25, ..., capped at 0.9 from t = 80
        want = d * want + (1 - d) * value
        assert torch.allclose(ema.shadow[0], want.expand(3))
    assert ema.steps == 100 and d == 0.9


def test_applied_swaps_the_average_in_and_the_live_weights_back():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    model[0].requires_grad_(False)  # frozen: never averaged, never touched
    frozen = model[0].weight.detach().clone()
    ema = WeightEMA(model, decay=0.5)
    assert len(ema.shadow) == 2  # the second layer's weight and bias
    start = model[1].weight.detach().clone()
    with torch.no_grad():
        model[1].weight.add_(1.0)
    live = model[1].weight.detach().clone()
    ema.update()  # t = 1: d_1 = 2/11
    averaged = 2 / 11 * start + 9 / 11 * live
    x = torch.randn(5, 4)
    with ema.applied():
        assert torch.allclose(model[1].weight, averaged)
        out_avg = model(x)
    assert torch.equal(model[1].weight, live) and torch.equal(model[0].weight, frozen)
    assert not torch.allclose(out_avg, model(x))


def test_bad_decay_is_refused():
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(nn.Linear(2, 2), decay=1.0)


def test_trainer_keeps_the_averaged_weights(loaders):  # noqa: F811 (the imported fixture)
    torch.manual_seed(0)
    live_model = PooledMLP(F_IN, NUM_CLASSES, hidden=64, dropout=0.1)
    torch.manual_seed(0)
    ema_model = PooledMLP(F_IN, NUM_CLASSES, hidden=64, dropout=0.1)
    _, live = _fit(live_model, loaders, epochs=6, patience=0)
    best, averaged = _fit(ema_model, loaders, epochs=6, patience=0, ema=0.95)
    assert max(h["val_micro_f1"] for h in averaged) > 0.9  # it still learns the task
    # the same steps, other weights chosen: validation saw the average, not the live weights
    assert [h["loss"] for h in live] == pytest.approx([h["loss"] for h in averaged])
    assert [h["val_loss"] for h in live] != pytest.approx([h["val_loss"] for h in averaged])
    assert all(torch.equal(best[k], v) for k, v in ema_model.state_dict().items())
