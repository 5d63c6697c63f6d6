"""safetensors + JSON sidecar checkpoints: round trip and refusals."""

import json

import pytest
import torch
from torch_geometric.data import Batch, Data

import mmre_cli
from mmre_cli.errors import MmreError
from mmre_cli.learn.checkpoint import load_checkpoint, read_sidecar, save_checkpoint
from mmre_cli.learn.gnn import PooledMLP, RelationGNN


def _batch():
    g = torch.Generator().manual_seed(0)
    datas = [
        Data(
            x=torch.randn(5, 8, generator=g),
            edge_index=torch.randint(0, 5, (2, 7), generator=g),
            edge_type=torch.zeros(7, dtype=torch.long),
            edge_attr=torch.randn(7, 7, generator=g),
            head_index=torch.tensor([0]),
            tail_index=torch.tensor([2]),
            num_nodes=5,
        )
        for _ in range(3)
    ]
    return Batch.from_data_list(datas)


@pytest.mark.parametrize("cls", [RelationGNN, PooledMLP])
def test_round_trip_exact_logits(tmp_path, cls):
    torch.manual_seed(0)
    model = cls(8, 4, hidden=16).eval() if cls is PooledMLP else cls(8, 4, hidden=16, heads=2).eval()
    meta = {
        "label_map": {"None": 0, "a": 1, "b": 2, "c": 3},
        "encoder": "test-random",
        "metrics": {"val_micro_f1": 0.5},
    }
    w, s = save_checkpoint(tmp_path, "best", model, meta)
    assert w.name == "best.safetensors" and s.name == "best.json"
    side = json.loads(s.read_text())
    assert side["model_class"] == cls.__name__ and side["mmre_version"] == mmre_cli.__version__
    assert side["label_map"]["b"] == 2 and side["encoder"] == "test-random"
    loaded, meta2 = load_checkpoint(tmp_path, "best")
    assert type(loaded) is cls and not loaded.training
    assert meta2["metrics"] == {"val_micro_f1": 0.5}
    b = _batch()
    assert torch.equal(model(b), loaded(b))
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temp files


def test_missing_files(tmp_path):
    with pytest.raises(MmreError, match="sidecar not found"):
        load_checkpoint(tmp_path, "nope")
    save_checkpoint(tmp_path, "m", PooledMLP(8, 2, hidden=4), {})
    (tmp_path / "m.safetensors").unlink()
    with pytest.raises(MmreError, match="weights not found"):
        load_checkpoint(tmp_path, "m")


def test_incompatible_major_version(tmp_path):
    save_checkpoint(tmp_path, "m", PooledMLP(8, 2, hidden=4), {})
    side = tmp_path / "m.json"
    rec = json.loads(side.read_text())
    major = int(mmre_cli.__version__.split(".")[0])
    rec["mmre_version"] = f"{major + 1}.0.0"
    side.write_text(json.dumps(rec))
    with pytest.raises(MmreError, match="incompatible"):
        load_checkpoint(tmp_path, "m")
    rec["mmre_version"] = f"{major}.99.0"  # same major: fine
    side.write_text(json.dumps(rec))
    assert read_sidecar(tmp_path, "m")["model_class"] == "PooledMLP"


def test_tampered_weights_and_unknown_class(tmp_path):
    save_checkpoint(tmp_path, "m", PooledMLP(8, 2, hidden=4), {})
    other = tmp_path / "other"
    save_checkpoint(other, "m", PooledMLP(8, 2, hidden=4), {})
    (tmp_path / "m.safetensors").write_bytes((other / "m.safetensors").read_bytes())
    with pytest.raises(MmreError, match="checksum"):
        load_checkpoint(tmp_path, "m")
    rec = json.loads((other / "m.json").read_text())
    rec["model_class"] = "Nope"
    (other / "m.json").write_text(json.dumps(rec))
    with pytest.raises(MmreError, match="unknown model class"):
        load_checkpoint(other, "m")


def test_bad_name(tmp_path):
    with pytest.raises(MmreError):
        save_checkpoint(tmp_path, "../evil", PooledMLP(8, 2, hidden=4), {})
