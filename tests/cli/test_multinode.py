"""`--nodes 2`: two "machines" (two torchrun launchers on 127.0.0.1, one CPU process each, gloo)
train one classifier together; the model equals in kind what one process trains, and scores."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_train_gnn_on_two_nodes_over_gloo(trained, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    port = _free_port()
    env = {**os.environ, "MMRE_TORCH_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    out = tmp_path / "model2"
    args = [
        "-m",
        "mmre_cli",
        "train-gnn",
        "--nodes",
        "2",
        "--graphs",
        str(trained["diffused"]),
        "--agent",
        str(trained["root"] / "agent"),
        "--out",
        str(out),
        "--stats",
        str(tmp_path / "stats.json"),
        "-S",
        "train_gnn.epochs=2",
        "-S",
        "train_gnn.hidden=32",
        "-S",
        "train_gnn.heads=2",
        "-S",
        "train_gnn.batch_size=16",
    ]
    procs = [
        subprocess.Popen(
            [
                str(torchrun),
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--node-rank",
                str(rank),
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                str(port),
                *args,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n----\n".join(log[-3000:] for log in logs)
    assert any("MEMBER: 1/2" in log for log in logs) and any("MEMBER: 2/2" in log for log in logs), logs[0][-2000:]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["train_graphs"] == 64 and stats["epochs_run"] == 2 and stats["processes"] == 2
    # batch_size is the global batch: 8 graphs per process per step, 32 per process -> the 4 steps
    # an epoch of 64 graphs in batches of 16 takes on one process
    assert stats["steps_per_epoch"] == 4
    mmre = Path(sys.executable).with_name("mmre")
    checked = subprocess.run([str(mmre), "validate", str(out)], env=env, capture_output=True, text=True)
    assert checked.returncode == 0 and "valid model folder" in checked.stderr, checked.stderr
    ev = subprocess.run(
        [
            str(mmre),
            "evaluate",
            "--model",
            str(out),
            "--graphs",
            str(trained["diffused"]),
            "--out",
            str(tmp_path / "eval"),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert 0.0 <= json.loads((tmp_path / "eval" / "stats.json").read_text())["micro_f1"] <= 1.0
