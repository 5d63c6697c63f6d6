"""``mmre validate PATH``: check an artifact against its schema."""

from __future__ import annotations

from pathlib import Path

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import handle_errors


@handle_errors
def validate(
    path: Annotated[Path, typer.Argument(help="An artifact folder (with manifest.json) or a single .parquet shard.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Checksums, schemas, schema version, row counts, graph consistency. Exit 1 on any problem."""
    import json

    from mmre_cli.cli.console import err, out
    from mmre_cli.store.validate import validate as check

    problems = check(path)
    if json_out:
        out.print_json(json.dumps({"path": str(path), "ok": not problems, "problems": problems}))
    elif problems:
        for problem in problems:
            err.print(f"[red]✗[/red] {problem}", markup=True, highlight=False, soft_wrap=True)
    else:
        err.print(f"[green]✓[/green] {path}: valid", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(1 if problems else 0)
