"""The whole chain as users run it: `dvc repro` on the shipped sample, epochs cut to 1.

Every Python process here (dvc, each stage, predict) runs with the network blocked by
``tests/netguard/sitecustomize.py`` and without any offline variable set: the default itself must
reach nothing, and the guard's log must stay empty.

Also the DDP path of train-agent: 2 CPU processes over gloo (MMRE_CPU_DDP=2), a few steps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
NET_LOG = Path(tempfile.gettempdir()) / f"mmre-netguard-{os.getpid()}.log"
EVAL_KEYS = {"split", "acc", "micro_p", "micro_r", "micro_f1", "n", "params_hash"}


def _bin(name: str) -> str:
    found = Path(sys.executable).with_name(name)
    return str(found) if found.exists() else name


def _env() -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MMRE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MMRE_ALLOW_DOWNLOAD")
    }
    env.update(PYTHONWARNINGS="ignore", DVC_NO_ANALYTICS="1", MMRE_NET_GUARD_LOG=str(NET_LOG))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "tests" / "netguard"), env.get("PYTHONPATH")]))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A fresh git+DVC project holding the repo's pipeline files and the sample, epochs at 1."""
    root = tmp_path_factory.mktemp("project")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for item in ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(REPO / item, root / item)
    for folder in ("stages", "mmre_cli", "data/sample"):
        shutil.copytree(REPO / folder, root / folder, ignore=ignore)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train_agent"].update(warmup_epochs=1, episodes=1)
    params["train_gnn"].update(epochs=1, hidden=32)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = _env()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=env)
    subprocess.run([_bin("dvc"), "init", "-q"], cwd=root, check=True, env=env)
    return root


@pytest.mark.slow
def test_dvc_repro_runs_the_whole_chain(project):
    env = _env()
    # the guard is live in child processes: a lookup fails and is logged (then the log is reset)
    probe = subprocess.run(
        [sys.executable, "-c", "import socket; socket.getaddrinfo('pypi.org', 443)"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0 and "pypi.org" in NET_LOG.read_text(), probe.stderr
    NET_LOG.unlink()
    dry = subprocess.run(
        [_bin("dvc"), "repro", "--dry", "--force"], cwd=project, env=env, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    order = [line.split("'")[1] for line in dry.stdout.splitlines() if line.startswith("Running stage")]
    assert order == ["extract_features", "build_graphs", "merge_cmg", "train_agent", "diffuse", "train_gnn", "evaluate"]

    run = subprocess.run([_bin("dvc"), "repro"], cwd=project, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    stats = json.loads((project / "stats" / "evaluate.json").read_text())
    assert EVAL_KEYS <= set(stats)
    assert stats["split"] == "val" and stats["n"] == 24
    assert 0.0 <= stats["micro_f1"] <= 1.0 and 0.0 <= stats["acc"] <= 1.0
    metrics = json.loads((project / "metrics" / "eval.json").read_text())  # the one metrics file
    assert set(metrics) == {"acc", "micro_p", "micro_r", "micro_f1", "n", "train_s", "best_epoch", "nodes", "edges"}
    assert metrics["micro_f1"] == round(stats["micro_f1"], 4) and metrics["n"] == 24 and metrics["best_epoch"] == 1
    for name in ("extract_features", "build_graphs", "merge_cmg", "train_agent", "diffuse", "train_gnn"):
        assert (project / "stats" / f"{name}.json").exists(), name
    for plot in ("agent_steps", "train_curve", "confusion"):
        assert (project / "plots" / f"{plot}.csv").read_text().count("\n") >= 2, plot
        assert (project / "plots" / f"{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
    model = project / "out" / "model"
    pipeline = json.loads((model / "pipeline.json").read_text())
    assert {"extract_features", "merge_cmg", "diffuse", "train_gnn"} <= set(pipeline["params"])
    assert (model / "model.safetensors").exists() and (model / "agent.safetensors").exists()

    # every stage output validates, and validate names what it checked
    kinds = {
        "features": "extract_features artifact",
        "graphs": "build_graphs artifact",
        "cmg": "merge_cmg artifact",
        "agent": "editor folder (train-agent)",
        "diffused": "diffuse artifact",
        "model": "model folder (train-gnn)",
        "eval": "evaluation (evaluate)",
    }
    for name, kind in kinds.items():
        checked = subprocess.run(
            [_bin("mmre"), "validate", f"out/{name}"], cwd=project, env=env, capture_output=True, text=True
        )
        assert checked.returncode == 0 and f"valid {kind}" in checked.stderr, (name, checked.stderr)

    shown = subprocess.run(
        [_bin("dvc"), "metrics", "show", "--json"], cwd=project, env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0 and "micro_f1" in shown.stdout
    table = subprocess.run([_bin("dvc"), "metrics", "show"], cwd=project, env=env, capture_output=True, text=True)
    assert table.returncode == 0 and "micro_f1" in table.stdout
    width = max(len(line) for line in table.stdout.splitlines())
    assert width <= 120, table.stdout  # one narrow row, not one column per stage statistic

    # the plots page: each plot once, and the PNG pictures load with the network blocked
    page = subprocess.run([_bin("dvc"), "plots", "show"], cwd=project, env=env, capture_output=True, text=True)
    assert page.returncode == 0, page.stderr
    index = project / "dvc_plots" / "index.html"
    html = index.read_text()
    for name in ("agent_steps", "train_curve", "confusion"):
        assert html.count(f"plots/{name}.png") >= 1 and html.count(f"plots/{name}.csv") <= 1, name

    # predict with the trained model, the network still blocked
    import ast

    sample = ast.literal_eval((project / "data" / "sample" / "ours_val.txt").read_text().splitlines()[0])
    words = sample["token"]
    head = " ".join(words[sample["h"]["pos"][0] : sample["h"]["pos"][1]])
    tail = " ".join(words[sample["t"]["pos"][0] : sample["t"]["pos"][1]])
    image = next((project / "data" / "sample" / "img_org").rglob(sample["img_id"]))
    pred = subprocess.run(
        [
            _bin("mmre"),
            "predict",
            str(image),
            " ".join(words),
            "--head",
            head,
            "--tail",
            tail,
            "--model",
            "out/model",
            "--json",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert pred.returncode == 0 and json.loads(pred.stdout.splitlines()[0])["head"] == head, pred.stderr[-2000:]
    assert not NET_LOG.exists(), NET_LOG.read_text()  # nothing tried to reach the network

    # nothing changed: nothing reruns, and `dvc repro` says so in seconds
    again = subprocess.run([_bin("dvc"), "status"], cwd=project, env=env, capture_output=True, text=True)
    assert "up to date" in again.stdout.lower(), again.stdout
    noop = subprocess.run([_bin("dvc"), "repro"], cwd=project, env=env, capture_output=True, text=True)
    assert noop.returncode == 0 and "Running stage" not in noop.stdout, noop.stdout

    def would_run() -> list[str]:
        dry = subprocess.run([_bin("dvc"), "repro", "--dry"], cwd=project, env=env, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr
        return [line.split("'")[1] for line in dry.stdout.splitlines() if line.startswith("Running stage")]

    def edited(path: Path, change):
        original = path.read_bytes()
        path.write_bytes(change(original))
        try:
            return would_run()
        finally:
            path.write_bytes(original)

    comment = lambda b: b + b"\n# a comment\n"  # noqa: E731
    assert edited(project / "mmre_cli" / "serve.py", comment) == []  # imported by no stage
    assert edited(project / "mmre_cli" / "data" / "sample.py", comment) == []  # a library module no stage uses
    # the stages that run the training loops (diffuse runs the editor, not them: it imports no other stage)
    assert edited(project / "mmre_cli" / "learn" / "trainer.py", comment) == ["train_agent", "train_gnn", "evaluate"]

    def mmre_would_run() -> list[str]:
        dry = subprocess.run(
            [_bin("mmre"), "run", "params.yaml", "--out", "out", "--dry"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
        )
        assert dry.returncode == 0, dry.stderr
        return dry.stdout.split()

    assert mmre_would_run() == []  # `mmre run` reads DVC's outputs as its own: nothing to do either

    def params_edit(section: str, key: str, change):
        def edit(b: bytes) -> bytes:
            p = yaml.safe_load(b)
            p[section][key] = change(p[section][key])
            return yaml.safe_dump(p, sort_keys=False).encode()

        return edit

    def downstream(first: list[str]) -> list[str]:  # what a real `dvc repro` runs: the first changed stage on
        return order[min(order.index(s) for s in first) :] if first else []

    # a key two stages read (the reward classifier trains with train_gnn.lr), and one only train_gnn reads:
    # dvc (key by key, from dvc.yaml) and `mmre run` (from each stage's PARAMS) rerun the same stages
    path = project / "params.yaml"
    for section, key, change, first in (
        ("train_gnn", "lr", lambda v: v * 2, ["train_agent", "train_gnn"]),
        ("train_gnn", "epochs", lambda v: v + 1, ["train_gnn"]),
        ("merge_cmg", "top_k", lambda v: v + 1, ["merge_cmg"]),
    ):
        original = path.read_bytes()
        path.write_bytes(params_edit(section, key, change)(original))
        try:
            assert would_run() == first, (section, key)
            assert mmre_would_run() == downstream(first), (section, key)
        finally:
            path.write_bytes(original)
    assert would_run() == [] and mmre_would_run() == []  # every edit undone

    # a file of the dataset: a real run reruns every stage (a dry run lists only the first two, whose
    # deps changed directly) and changes what reads the train split, the model above all (the val
    # features, for one, do not depend on the train file). (That the same inputs and seed give the
    # same bytes, stage by stage, is the kill harness's check: tests/stages/test_kill_resume.py.)
    def digests() -> dict[str, str]:
        from mmre_cli.hashing import sha256_file

        files = [f for d in ("features", "graphs", "cmg", "diffused") for f in (project / "out" / d).rglob("*.parquet")]
        files += [
            project / "out" / "model" / "model.safetensors",
            project / "out" / "agent" / "agent.safetensors",
            project / "out" / "eval" / "predictions.jsonl",
        ]
        return {str(f.relative_to(project)): sha256_file(f) for f in files if f.exists()}

    before = digests()
    assert len(before) > 8
    data_file = project / "data" / "sample" / "ours_train.txt"
    data_file.write_bytes(data_file.read_bytes().replace(b"scores", b"scored", 1))  # kept for the experiments below
    rerun = subprocess.run([_bin("dvc"), "repro"], cwd=project, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    ran = [line.split("'")[1] for line in rerun.stdout.splitlines() if line.startswith("Running stage")]
    assert ran == order, rerun.stdout
    after = digests()
    assert after != before and after["out/model/model.safetensors"] != before["out/model/model.safetensors"]
    assert would_run() == []

    # an experiment with one param changed reruns only what depends on it
    git = ["git", "-c", "user.email=ci@mmre", "-c", "user.name=ci"]
    subprocess.run(["git", "add", "-A"], cwd=project, env=env, check=True)
    subprocess.run([*git, "commit", "-qm", "sample run"], cwd=project, env=env, check=True)
    exp = subprocess.run(
        [_bin("dvc"), "exp", "run", "-S", "train_gnn.patience=3"], cwd=project, env=env, capture_output=True, text=True
    )
    assert exp.returncode == 0, exp.stdout[-2000:] + exp.stderr[-2000:]
    reran = [line.split("'")[1] for line in exp.stdout.splitlines() if line.startswith("Running stage")]
    assert reran == ["train_gnn", "evaluate"], exp.stdout

    # issue 12: the classifier switches are experiment params like any other
    switches = [
        "train_gnn.graph_encoder=hop_attention",
        "train_gnn.fusion=mm_qformer",
        "train_gnn.loss=ce+negative_learning",
    ]
    exp = subprocess.run(
        [_bin("dvc"), "exp", "run", *(a for s in switches for a in ("-S", s))],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert exp.returncode == 0, exp.stdout[-2000:] + exp.stderr[-2000:]
    reran = [line.split("'")[1] for line in exp.stdout.splitlines() if line.startswith("Running stage")]
    assert reran == ["train_gnn", "evaluate"], exp.stdout
    kwargs = json.loads((model / "model.json").read_text())["model_kwargs"]
    assert (kwargs["conv"], kwargs["fusion"], kwargs["loss"]) == ("hop_attention", "mm_qformer", "ce+negative_learning")

    # last, as it skips where no headless browser exists: the plots page's PNGs load offline
    from tests.browser import browser, images_loaded

    with browser(offline=True) as driver:
        driver.get(index.as_uri())
        images = images_loaded(driver)
    assert len(images) == 3, images
    assert all(i["complete"] and i["width"] > 100 and i["height"] > 100 for i in images), images


@pytest.mark.slow
def test_train_agent_ddp_two_cpu_processes(project, tmp_path):
    """`--gpus 0` with MMRE_CPU_DDP=2: Lightning Fabric DDP over gloo, gradients averaged."""
    env = _env()
    cmg = project / "out" / "cmg"
    if not (cmg / "manifest.json").exists():  # run alone: make the CMG the dvc repro test makes
        made = subprocess.run([_bin("dvc"), "repro", "merge_cmg"], cwd=project, env=env, capture_output=True, text=True)
        assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    env["MMRE_CPU_DDP"] = "2"
    out, stats = tmp_path / "agent", tmp_path / "m" / "train_agent.json"
    run = subprocess.run(
        [
            _bin("mmre"),
            "train-agent",
            "--cmg",
            str(cmg),
            "--out",
            str(out),
            "--stats",
            str(stats),
            "-S",
            "train_agent.warmup_epochs=1",
            "-S",
            "train_agent.episodes=1",
            "-S",
            "train_agent.batch_size=16",
            "-S",
            "train_gnn.hidden=32",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Starting with 2 processes" in run.stdout + run.stderr
    result = json.loads(stats.read_text())
    # 64 train graphs, 2 ranks, a global batch of 16 (8 per rank) → 4 agent steps per rank, as on one process
    assert result["agent_steps"] == 4
    assert (out / "agent.safetensors").exists() and (out / "classifier.safetensors").exists()
