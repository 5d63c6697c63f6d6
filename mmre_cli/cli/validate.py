"""``mmre validate PATH``: check an artifact against its schema."""

from __future__ import annotations

from pathlib import Path

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import handle_errors

#: how each folder kind is named in the one-line verdict
KIND_LABELS = {
    "model": "model folder (train-gnn)",
    "editor": "editor folder (train-agent)",
    "evaluation": "evaluation (evaluate)",
}


@handle_errors
def validate(
    path: Annotated[
        Path,
        typer.Argument(
            help="Any stage output: a Parquet artifact folder (features, graphs, cmg, diffused: "
            "manifest.json), a model folder (train-gnn), an editor folder (train-agent), an "
            "evaluation folder (evaluate), or a single .parquet shard."
        ),
    ],
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the result as JSON on stdout: path, kind, ok, problems (one line each) and checks "
            "(what was checked, one phrase each).",
        ),
    ] = False,
) -> None:
    """Check a stage output and say what kind it is. Exit 1 on any problem; a PATH that does not exist is a usage error (exit 2).

    Parquet artifacts: manifest, checksums, schemas and schema version, row counts, graph consistency. Model and editor folders: each checkpoint's sidecar, its weights' sha256 and safetensors header, pipeline.json's versions and labels. Evaluations: the metric keys and ranges, and one prediction line per scored instance.
    """
    import json

    from mmre_cli.cli.console import err, out, styled
    from mmre_cli.errors import MmreError
    from mmre_cli.store.validate import check

    if not path.exists():
        raise MmreError(f"{path}: no such file or directory")
    report = check(path)
    problems, kind = report.problems, report.kind or "unknown"
    shown = KIND_LABELS.get(kind, kind)
    for warning in report.warnings:
        err.print(styled("!", "yellow", warning), soft_wrap=True)
    if json_out:
        out.print_json(
            json.dumps(
                {"path": str(path), "kind": kind, "ok": not problems, "problems": problems, "checks": report.checks}
            )
        )
    elif problems:
        for problem in problems:
            err.print(styled("✗", "red", problem), soft_wrap=True)
        err.print(f"{path}: {len(problems)} problem(s) ({shown})", highlight=False, soft_wrap=True)
    else:
        err.print(styled("✓", "green", f"{path}: valid {shown}"), soft_wrap=True)
    raise typer.Exit(1 if problems else 0)
