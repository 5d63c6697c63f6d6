"""Kill harness: each of the seven stages is SIGKILLed at a random moment and rerun.

After every kill the stage's output is either absent (no manifest / sidecar: not an artifact) or
whole (``mmre validate`` passes); the rerun — ``--resume`` for train-agent and train-gnn,
extract-features resumes on its own, the others start over — gives byte-identical outputs to an uninterrupted run
(Parquet
shards, safetensors, predictions, metrics). 21 trials, 3 per stage; the moments are drawn from
``random.Random(MMRE_KILL_SEED)`` (default below) so a failure replays with the same seed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mmre_cli.hashing import sha256_file

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
SEED = int(os.environ.get("MMRE_KILL_SEED", "20261202"))
TRIALS_PER_STAGE = 3
#: stage -> (its output folder, its inputs as CLI options on the reference run's folders)
STAGES = {
    "extract-features": ("features", lambda r: [str(SAMPLE)]),
    "build-graphs": ("graphs", lambda r: [str(SAMPLE), "--features", str(r / "features")]),
    "merge-cmg": ("cmg", lambda r: ["--features", str(r / "features"), "--graphs", str(r / "graphs")]),
    "train-agent": ("agent", lambda r: ["--cmg", str(r / "cmg")]),
    "diffuse": ("diffused", lambda r: ["--cmg", str(r / "cmg"), "--agent", str(r / "agent")]),
    "train-gnn": ("model", lambda r: ["--graphs", str(r / "diffused"), "--agent", str(r / "agent")]),
    "evaluate": ("eval", lambda r: ["--model", str(r / "model"), "--graphs", str(r / "diffused")]),
}
#: the file whose presence makes an output folder an artifact that must be whole
MARKERS = {
    "features": "manifest.json",
    "graphs": "manifest.json",
    "cmg": "manifest.json",
    "diffused": "manifest.json",
    "agent": "agent.json",
    "model": "pipeline.json",
    "eval": "stats.json",
}


OUTCOMES: dict[tuple[int, str], bool] = {}  # (trial, stage) -> killed before it finished, per trial run here
FINISHED_IN: dict[str, list[float]] = {}  # stage -> walls of its trials that finished before their kill


def _mmre() -> str:
    return str(Path(sys.executable).with_name("mmre"))


def _env() -> dict:
    return {**os.environ, "MMRE_TORCH_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _command(stage: str, ref: Path, out: Path, params: Path, *extra: str) -> list[str]:
    return [_mmre(), stage, *STAGES[stage][1](ref), "--out", str(out), "--params", str(params), "-q", *extra]


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every output file that must not depend on the run (timings and logs left out)."""
    out = {}
    for f in sorted(folder.rglob("*")):
        if not f.is_file() or f.suffix not in (".parquet", ".safetensors", ".jsonl") and f.name != "stats.json":
            continue
        if f.name == "stats.json":  # the metrics, not the wall times
            stats = json.loads(f.read_text())
            if "micro_f1" not in stats:
                continue
            out[str(f.relative_to(folder))] = json.dumps(
                {k: stats[k] for k in ("acc", "micro_p", "micro_r", "micro_f1", "n")}
            )
            continue
        out[str(f.relative_to(folder))] = sha256_file(f)
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted chain through the CLI: folders, per-stage wall time, per-stage digests."""
    root = tmp_path_factory.mktemp("kill_ref")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(root=str(SAMPLE), captions=str(SAMPLE / "captions_{split}.txt"))
    params["extract_features"].update(workers=0)
    params["train_agent"].update(episodes=1, warmup_epochs=1)
    params["train_gnn"].update(epochs=3, hidden=32, heads=2, patience=0)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    walls, sums = {}, {}
    for stage, (folder, _) in STAGES.items():
        t0 = time.time()
        run = subprocess.run(_command(stage, root, root / folder, path), env=_env(), capture_output=True, text=True)
        assert run.returncode == 0, (stage, run.stderr[-2000:])
        walls[stage] = time.time() - t0
        sums[stage] = digests(root / folder)
        assert sums[stage], stage
    return {"root": root, "params": path, "walls": walls, "digests": sums}


def _trials() -> list[tuple[int, str]]:
    return [(k, stage) for k in range(TRIALS_PER_STAGE) for stage in STAGES]


@pytest.mark.slow
@pytest.mark.parametrize("trial,stage", _trials(), ids=[f"{s}-{k}" for k, s in _trials()])
def test_kill_then_rerun_leaves_whole_artifacts_and_the_same_outputs(reference, tmp_path, trial, stage):
    _trial(reference, tmp_path, trial, stage)


def _trial(reference: dict, tmp_path: Path, trial: int, stage: str, delay: float | None = None) -> None:
    """Start ``stage``, kill it at a point, rerun it: whole artifacts, the reference's outputs.

    The moment is ``delay`` seconds, by default a random fraction of the reference run's wall time.
    """
    rng = random.Random(f"{SEED}:{stage}:{trial}")
    folder = STAGES[stage][0]
    out = tmp_path / folder
    if delay is None:  # sometimes past the end: a finished run
        delay = rng.uniform(0.2, 1.1) * reference["walls"][stage]
    t0 = time.time()
    proc = subprocess.Popen(
        _command(stage, reference["root"], out, reference["params"]),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    killed = proc.returncode == -signal.SIGKILL
    OUTCOMES[trial, stage] = killed
    if not killed:
        FINISHED_IN.setdefault(stage, []).append(time.time() - t0)

    # absent or whole: a folder that claims to be an artifact validates
    if (out / MARKERS[folder]).exists():
        checked = subprocess.run([_mmre(), "validate", str(out)], env=_env(), capture_output=True, text=True)
        assert checked.returncode == 0, (stage, delay, killed, checked.stderr[-2000:])

    extra = ["--resume"] if stage in ("train-gnn", "train-agent") else []
    rerun = subprocess.run(
        _command(stage, reference["root"], out, reference["params"], *extra), env=_env(), capture_output=True, text=True
    )
    assert rerun.returncode == 0, (stage, delay, killed, rerun.stderr[-2000:])
    assert digests(out) == reference["digests"][stage], (
        stage,
        f"seed {SEED}",
        f"killed at {delay:.2f}s" if killed else "finished before the kill",
    )


@pytest.mark.slow
def test_most_trials_really_killed_a_running_stage(reference, tmp_path_factory):
    # after the harness (same process: --dist loadfile keeps a file together) its outcomes are in
    # OUTCOMES; run alone or with part of it (-k), this test runs the missing trials itself
    for trial, stage in _trials():
        if (trial, stage) not in OUTCOMES:
            _trial(reference, tmp_path_factory.mktemp(f"{stage}-{trial}"), trial, stage)
    # a stage none of whose trials was killed ran faster than in the reference run (the load of the
    # moment differs, and a stage's wall varies with it): more trials, each at half the moment of the
    # one before, starting from half the shortest wall a trial just took, until one is killed
    for stage in sorted(set(STAGES) - {stage for (_, stage), k in OUTCOMES.items() if k}):
        delay = 0.5 * min(FINISHED_IN[stage])
        for extra in range(4):
            _trial(reference, tmp_path_factory.mktemp(f"{stage}-again"), TRIALS_PER_STAGE + extra, stage, delay)
            if OUTCOMES[TRIALS_PER_STAGE + extra, stage]:
                break
            delay /= 2
    killed = {stage for (_, stage), k in OUTCOMES.items() if k}
    assert sum(OUTCOMES.values()) >= 14 and killed == set(STAGES), OUTCOMES
