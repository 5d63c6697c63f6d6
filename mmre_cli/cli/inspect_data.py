"""``mmre inspect DATASET``: read a dataset and report what would be used or skipped."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import ParamsOpt, SetOpt, handle_errors, resolve_params


@handle_errors
def inspect_data(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (MNRE, MORE or JSONL layout).")],
    split: Annotated[
        Optional[List[str]],
        typer.Option("--split", help="Split(s) (repeatable); default: every split found.", show_default=False),
    ] = None,
    captions: Annotated[
        Optional[str], typer.Option(help="Captions file; may contain {split}.", show_default=False)
    ] = None,
    image_policy: Annotated[
        Optional[str], typer.Option(help="Missing or unreadable image: error | skip | text-only.", show_default=False)
    ] = None,
    on_error: Annotated[Optional[str], typer.Option(help="Malformed record: raise | skip.", show_default=False)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout instead of a table.")] = False,
    params_file: ParamsOpt = None,
    set_: SetOpt = None,
) -> None:
    """Load every split with the readers the pipeline uses and print a summary table."""
    import json
    from dataclasses import asdict

    from rich.table import Table

    from mmre_cli.cli.console import out
    from mmre_cli.data.load import load_split
    from mmre_cli.data.locate import detect_format, split_files

    params = resolve_params(
        params_file,
        {
            "data.root": str(dataset),
            "data.captions": captions,
            "data.image_policy": image_policy,
            "data.on_error": on_error,
        },
        set_,
    )
    data = params["data"]
    fmt = detect_format(dataset) if data["format"] == "auto" else data["format"]
    splits = split or list(split_files(dataset, fmt))
    reports = []
    for name in splits:
        _, report = load_split(
            dataset,
            name,
            fmt=fmt,
            captions=data["captions"],
            image_root=data["image_root"],
            image_policy=data["image_policy"],
            on_error=data["on_error"],
        )
        reports.append(report)
    if json_out:
        for report in reports:
            out.print(json.dumps(asdict(report)), highlight=False)
        return
    table = Table(title=f"{dataset} ({fmt})")
    for col in ("split", "read", "kept", "skipped", "text-only", "captioned", "labels"):
        table.add_column(col, justify="right" if col not in ("split", "skipped") else "left")
    for r in reports:
        skipped = ", ".join(f"{k}: {v}" for k, v in r.skipped.items()) or "0"
        table.add_row(
            r.split, str(r.read), str(r.kept), skipped, str(r.text_only), str(r.captioned), str(len(r.label_counts))
        )
    out.print(table)
    for r in reports:
        for problem in r.first_problems:
            out.print(f"  {problem}", highlight=False)
