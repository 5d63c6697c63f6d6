"""`mmre build-graphs data/more`: a MORE-layout dataset (visual tails, dataset boxes) through the
first three stages, with the MiniLM text encoder (objects embedded by their names)."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from mmre_cli.cli.app import app
from mmre_cli.store.readers import read_graphs

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "more"


@pytest.fixture(scope="module")
def more_run(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("more")
    data = root / "more"
    shutil.copytree(FIXTURE, data)
    for split in ("train", "valid"):
        objects: dict[str, dict] = {}
        (data / "img_org" / split).mkdir(parents=True)
        for line in (data / "txt" / f"{split}.txt").read_text().splitlines():
            rec = ast.literal_eval(line)
            objects.setdefault(rec["img_id"], {})[rec["t"]["name"]] = rec["t"]["box"]
            Image.new("RGB", (64, 48), (90, 120, 200)).save(data / "img_org" / split / rec["img_id"])
        torch.save(objects, data / f"ent_{split}_dict.pth")  # MORE ships these as torch zips
    common = ["-S", "data.captions=null", "-S", "data.splits=[train, val]", "-q"]
    runner = CliRunner()
    for argv in (
        ["extract-features", str(data), "--out", str(root / "features"), "-S", "extract_features.detector=dataset"],
        [
            "build-graphs",
            str(data),
            "--features",
            str(root / "features"),
            "--out",
            str(root / "graphs"),
            "--stats",
            str(root / "build_graphs.json"),
        ],
        [
            "merge-cmg",
            "--features",
            str(root / "features"),
            "--graphs",
            str(root / "graphs"),
            "--out",
            str(root / "cmg"),
            "--stats",
            str(root / "merge_cmg.json"),
        ],
    ):
        result = runner.invoke(app, argv + (common if argv[0] != "merge-cmg" else ["-q"]))
        assert result.exit_code == 0, (argv[0], result.output)
    return root


def test_visual_graphs_from_dataset_boxes(more_run):
    stats = json.loads((more_run / "build_graphs.json").read_text())
    # fixture: train m1.jpg (bike, dog), m2.jpg (cup); valid: one image, one object
    assert stats["visual"]["graphs"] == 3
    assert stats["visual"]["edges_by_type"] == {"spatial": 2}  # bike <-> dog


def test_visual_tail_is_marked_on_its_object(more_run):
    cmgs = read_graphs(more_run / "cmg")
    assert len(cmgs) == 4
    for g in cmgs:
        tails = [i for i, r in enumerate(g.node_role.tolist()) if r == 2]
        assert len(tails) == 1
        assert g.meta["modalities"][tails[0]] == "visual"
    stats = json.loads((more_run / "merge_cmg.json").read_text())
    assert stats["head_and_tail_present"] == 4
