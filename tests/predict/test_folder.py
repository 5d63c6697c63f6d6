"""The model folder's params as predict reads them back (`mmre_cli/predict/folder.py`)."""

from __future__ import annotations

from mmre_cli.params import DEFAULTS
from mmre_cli.predict.folder import model_params


def test_missing_keys_come_from_the_defaults():
    params = model_params({"params": {"train_gnn": {"lr": 0.5, "pair_captions": None}}})
    assert params["train_gnn"]["lr"] == 0.5
    assert params["train_gnn"]["hidden"] == DEFAULTS["train_gnn"]["hidden"]
    assert "pair_captions" not in params["data"]


def test_a_folder_from_before_the_move_is_read_as_it_was_meant():
    """`data.pair_captions` moved to `train_gnn`, and `graph_encoder: gat` then named GATv2."""
    old = {"params": {"data": {"pair_captions": "qwen"}, "train_gnn": {"graph_encoder": "gat"}}}
    params = model_params(old)
    assert params["train_gnn"]["pair_captions"] == "qwen"
    assert params["train_gnn"]["graph_encoder"] == "gatv2"
    assert "pair_captions" not in params["data"]


def test_a_current_folder_keeps_the_real_gat():
    params = model_params({"params": {"train_gnn": {"graph_encoder": "gat", "pair_captions": None}}})
    assert params["train_gnn"]["graph_encoder"] == "gat"
