"""What the CLI tests share: a sample val line as a query, `mmre predict` through Typer's runner,
its --json lines, a --batch file, and train-gnn params for a tiny fine-tuned model."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

from typer.testing import CliRunner

from mmre_cli.cli.app import app

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
runner = CliRunner()


def val_query(i: int) -> dict:
    """Line ``i`` of the sample's val split with its caption: image, text, head, tail, caption."""
    rec = ast.literal_eval((SAMPLE / "ours_val.txt").read_text().splitlines()[i])
    caps = {
        d["img_id"]: d["text"] for d in map(ast.literal_eval, (SAMPLE / "captions_val.txt").read_text().splitlines())
    }
    return {
        "image": str(SAMPLE / "img_org" / "val" / rec["img_id"]),
        "text": " ".join(rec["token"]),
        "head": rec["h"]["name"],
        "tail": rec["t"]["name"],
        "caption": caps[rec["img_id"]],
    }


def run_predict(*argv: str):
    return runner.invoke(app, ["predict", *argv])


def json_lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def write_lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def query_args(v: dict, caption: bool = True) -> list[str]:
    """``IMAGE TEXT --head H --tail T [--image-caption C]`` of a :func:`val_query` record."""
    args = [v["image"], v["text"], "--head", v["head"], "--tail", v["tail"]]
    return [*args, "--image-caption", v["caption"]] if caption else args


def tiny_finetune_params(tiny_bert, **overrides) -> dict:
    """The default params with train-gnn fine-tuning the tiny random BERT folder ``tiny_bert``
    (``train_gnn.encoder=hf``, its top layer, one epoch, a small GNN) and ``overrides``."""
    from mmre_cli.params import DEFAULTS

    params = copy.deepcopy(DEFAULTS)
    params["train_gnn"].update(
        model="finetune",
        epochs=1,
        hidden=16,
        heads=2,
        batch_size=16,
        encoder="hf",
        encoder_weights=str(tiny_bert),
        train_layers=1,
    )
    params["train_gnn"].update(overrides)
    return params
