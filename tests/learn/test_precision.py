"""mmre_cli.learn.precision: ``auto`` picks bfloat16 only where the device runs it natively."""

from __future__ import annotations

import pytest
import torch


def test_auto_precision_is_bf16_only_where_it_is_native(monkeypatch):
    from mmre_cli.learn import precision

    for native, expect in ((True, "bf16"), (False, "32")):
        monkeypatch.setattr(precision, "bf16_is_native", lambda device="cpu", n=native: n)
        assert precision.resolve_precision("auto", "cpu") == expect
        assert precision.resolve_precision("32") == "32" and precision.resolve_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve_precision("fp16")


def test_train_gnn_says_which_precision_auto_chose_and_warns_on_emulated_bf16(monkeypatch):
    from mmre_cli.errors import MmreError
    from mmre_cli.learn import precision
    from mmre_cli.reporting import NullReporter
    from stages.train_gnn import _precision

    class Said(NullReporter):
        def __init__(self):
            super().__init__()
            self.info_lines, self.warnings = [], []

        def info(self, message):
            self.info_lines.append(message)

        def warn(self, message):
            self.warnings.append(message)

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "bf16_is_native", lambda device="cpu": False)
    said = Said()
    assert _precision("auto", cpu, said) == "32" and "float32" in said.info_lines[0] and not said.warnings
    assert _precision("bf16", cpu, said) == "bf16" and "emulated" in said.warnings[0]
    monkeypatch.setattr(precision, "bf16_is_native", lambda device="cpu": True)
    said = Said()
    assert _precision("auto", cpu, said) == "bf16" and "bfloat16 autocast" in said.info_lines[0]
    assert _precision("bf16", cpu, said) == "bf16" and not said.warnings
    with pytest.raises(MmreError, match="train_gnn.precision must be one of"):
        _precision("half", cpu, said)


def test_bf16_is_native_answers_for_this_machine():
    from mmre_cli.learn.precision import bf16_is_native

    assert isinstance(bf16_is_native("cpu"), bool)
    assert bf16_is_native("meta") is False
