"""Per-epoch training state: a run killed after epoch k and resumed ends exactly like an uninterrupted one."""

import json

import pytest
import torch
from torch_geometric.loader import DataLoader

from mmre_cli.errors import MmreError
from mmre_cli.learn.gnn import RelationGNN
from mmre_cli.learn.trainer import fit_classifier
from mmre_cli.reporting import NullReporter
from tests.learn.test_trainer import F_IN, NUM_CLASSES, synthetic


class Killed(Exception):
    pass


class KillAfter(NullReporter):
    """Raises at the given epoch's summary line, which comes just before that epoch's state is saved."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def info(self, message: str) -> None:
        if message.startswith(f"epoch {self.epoch}:"):
            raise Killed(message)  # before this epoch's state is saved: the last whole state is epoch-1


def _model(seed):
    torch.manual_seed(seed)
    return RelationGNN(F_IN, NUM_CLASSES, hidden=16, heads=2, dropout=0.3)


def _fit(model, state_dir, **kw):
    train, val = synthetic(96, 0), synthetic(40, 1)
    args = dict(
        epochs=4,
        lr=3e-3,
        weight_decay=1e-4,
        class_weights="inverse_sqrt",
        none_id=0,
        seed=5,
        patience=0,
        warmup=0.2,
        state_dir=state_dir,
        fingerprint="params-A",
    )
    args.update(kw)
    return fit_classifier(model, DataLoader(train, batch_size=16, shuffle=True), DataLoader(val, batch_size=64), **args)


def _same(h1, h2):
    drop = ("seconds", "train_seconds")
    return [{k: v for k, v in h.items() if k not in drop} for h in h1] == [
        {k: v for k, v in h.items() if k not in drop} for h in h2
    ]


@pytest.mark.parametrize("ema", [0.0, 0.9], ids=["live", "ema"])
@pytest.mark.parametrize("kill_at", [2, 4])
def test_resume_after_a_kill_gives_the_uninterrupted_run(tmp_path, kill_at, ema):
    torch.set_num_threads(1)
    whole = _model(0)
    best_whole, history_whole = _fit(whole, tmp_path / "a", ema=ema)
    with pytest.raises(Killed):
        _fit(_model(0), tmp_path / "b", reporter=KillAfter(kill_at), ema=ema)
    saved = json.loads((tmp_path / "b" / "state.json").read_text())
    assert saved["meta"]["epoch"] == kill_at - 1 and len(saved["meta"]["history"]) == kill_at - 1
    resumed = _model(99)  # another init: everything comes from the state
    best_resumed, history_resumed = _fit(resumed, tmp_path / "b", resume=True, ema=ema)  # the average too
    assert _same(history_whole, history_resumed)
    assert all(torch.equal(best_whole[k], best_resumed[k]) for k in best_whole)
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))


def test_resume_without_a_state_starts_fresh_and_other_params_are_refused(tmp_path):
    torch.set_num_threads(1)
    _, history = _fit(_model(0), tmp_path / "s", epochs=1, resume=True)  # nothing saved yet: epoch 1
    assert [h["epoch"] for h in history] == [1]
    with pytest.raises(MmreError, match="other params"):
        _fit(_model(0), tmp_path / "s", epochs=2, resume=True, fingerprint="params-B")


def test_the_state_holds_no_pickle(tmp_path):
    torch.set_num_threads(1)
    _fit(_model(0), tmp_path / "s", epochs=1)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["state.json", "state.safetensors"]
    assert not list(tmp_path.glob(".s.*"))  # no temporary folder left behind
