"""What the `mmre predict` tests share: a sample val line as a query, the command through Typer's
runner, its --json lines, a --batch file."""

from __future__ import annotations

import ast
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
