"""`mmre train-gnn` SIGKILLed mid-training and rerun with --resume ends with the uninterrupted run's model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmre_cli.hashing import sha256_file

EPOCHS = 40


def _cmd(trained, out: Path, *extra: str) -> list[str]:
    mmre = Path(sys.executable).with_name("mmre")
    return [
        str(mmre),
        "train-gnn",
        "--graphs",
        str(trained["diffused"]),
        "--agent",
        str(trained["root"] / "agent"),
        "--out",
        str(out),
        "-S",
        f"train_gnn.epochs={EPOCHS}",
        "-S",
        "train_gnn.patience=0",
        "-S",
        "train_gnn.hidden=32",
        "-S",
        "train_gnn.heads=2",
        *extra,
    ]


def _env() -> dict:
    return {**os.environ, "MMRE_TORCH_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _history(out: Path) -> list[dict]:
    rows = json.loads((out / "model.json").read_text())["history"]
    return [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds")} for r in rows]


@pytest.mark.slow
def test_sigkill_then_resume_equals_the_uninterrupted_run(trained, tmp_path):
    whole = tmp_path / "whole"
    done = subprocess.run(_cmd(trained, whole), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(trained, killed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = killed / "checkpoint" / "state.json"
    deadline = time.time() + 300
    epoch = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            epoch = json.loads(state.read_text())["meta"]["epoch"]
        except (OSError, ValueError, KeyError):
            epoch = 0
        if epoch >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; raise EPOCHS"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (killed / "model.safetensors").exists()  # nothing half-written looks whole

    resumed = subprocess.run(_cmd(trained, killed, "--resume"), env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch" in resumed.stderr
    assert _history(killed) == _history(whole)
    assert sha256_file(killed / "model.safetensors") == sha256_file(whole / "model.safetensors")
    assert not (killed / "checkpoint").exists()  # removed once the model folder is whole
