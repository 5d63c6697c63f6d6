"""Validation of model, editor and evaluation folders (the stage outputs without a manifest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmre_cli import SCHEMA_VERSION, __version__
from mmre_cli.learn.checkpoint import save_checkpoint
from mmre_cli.learn.gnn import RelationGNN
from mmre_cli.store.folders import check_folder, folder_kind
from mmre_cli.store.validate import check


@pytest.fixture
def model_dir(tmp_path) -> Path:
    d = tmp_path / "model"
    save_checkpoint(d, "model", RelationGNN(8, 3, hidden=8, heads=2), {"labels": ["None", "a", "b"], "none_id": 0})
    save_checkpoint(d, "agent", RelationGNN(8, 3, hidden=8, heads=2), {})
    (d / "pipeline.json").write_text(
        json.dumps(
            {
                "mmre_version": __version__,
                "schema_version": SCHEMA_VERSION,
                "labels": ["None", "a", "b"],
                "none_id": 0,
                "params": {},
            }
        )
    )
    return d


@pytest.fixture
def eval_dir(tmp_path) -> Path:
    d = tmp_path / "eval"
    d.mkdir()
    rows = [{"sample_id": f"val-{i}", "gold": "a", "pred": "a", "prob": 0.9} for i in range(3)]
    (d / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "stats.json").write_text(
        json.dumps({"split": "val", "acc": 1.0, "micro_p": 1.0, "micro_r": 1.0, "micro_f1": 1.0, "n": 3})
    )
    return d


def test_kinds_and_valid_folders(model_dir, eval_dir, tmp_path):
    editor = tmp_path / "agent"
    save_checkpoint(editor, "classifier", RelationGNN(8, 3, hidden=8, heads=2), {})
    assert [folder_kind(d) for d in (model_dir, editor, eval_dir, tmp_path)] == ["model", "editor", "evaluation", None]
    for d in (model_dir, editor, eval_dir):
        report = check(d)
        assert report.ok, report.problems
        assert report.kind == folder_kind(d)


def test_truncated_weights_are_caught(model_dir):
    w = model_dir / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-10])
    (problem,) = check_folder(model_dir, "model")
    assert "sha256 does not match model.json" in problem


def test_garbage_with_a_matching_checksum_is_not_a_safetensors_file(model_dir):
    from mmre_cli.hashing import sha256_file

    w = model_dir / "agent.safetensors"
    w.write_bytes(b"\xff" * 64)
    meta = json.loads((model_dir / "agent.json").read_text())
    meta["weights_sha256"] = sha256_file(w)
    (model_dir / "agent.json").write_text(json.dumps(meta))
    (problem,) = check_folder(model_dir, "model")
    assert "not a readable safetensors file" in problem


def test_pipeline_problems(model_dir):
    p = model_dir / "pipeline.json"
    p.write_text(
        json.dumps(
            {"mmre_version": "9.0.0", "schema_version": SCHEMA_VERSION, "labels": ["None"], "none_id": 4, "params": {}}
        )
    )
    problems = check_folder(model_dir, "model")
    assert any("written by mmre 9.0.0" in x for x in problems) and any("none_id 4" in x for x in problems)
    (model_dir / "pipeline.json").unlink()
    assert any("pipeline.json: missing" in x for x in check_folder(model_dir, "model"))


def test_evaluation_problems(eval_dir):
    stats = json.loads((eval_dir / "stats.json").read_text())
    (eval_dir / "stats.json").write_text(json.dumps({**stats, "n": 5, "micro_f1": 1.5}))
    problems = check_folder(eval_dir, "evaluation")
    assert any("micro_f1 = 1.5 is not in [0, 1]" in x for x in problems)
    assert any("3 predictions, stats.json says n = 5" in x for x in problems)
    (eval_dir / "stats.json").write_text(json.dumps({"split": "val"}))
    assert "missing acc, micro_p, micro_r, micro_f1, n" in check_folder(eval_dir, "evaluation")[0]
