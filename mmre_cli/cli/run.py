"""``mmre run RECIPE``: the whole chain with one params file, resuming what is already done."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import CaptionCacheOpt, GpusOpt, QuietOpt, SetOpt, handle_errors, resolve_params


@handle_errors
def run(
    recipe: Annotated[
        Path,
        typer.Argument(
            help="A params file (e.g. configs/mnre_cpu.yaml); keys it omits keep the built-in defaults.",
            exists=True,
            dir_okay=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Folder for every stage's output (DIR/features, DIR/graphs, …, DIR/model, DIR/eval)."
        ),
    ] = Path("runs/recipe"),
    rerun_from: Annotated[
        Optional[str],
        typer.Option(
            "--from", help="Rerun this stage and all after it even if up to date (e.g. train_gnn).", show_default=False
        ),
    ] = None,
    dry: Annotated[
        bool,
        typer.Option(
            "--dry",
            help="Only list the stages that would run (one per line) and exit; "
            "as `dvc repro --dry`, from the same per-stage params.",
        ),
    ] = False,
    gpus: GpusOpt = 0,
    set_: SetOpt = None,
    caption_cache: CaptionCacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run extract-features → … → evaluate with RECIPE into --out; print the val metrics and wall times.

    A stage whose output already holds the same effective params is skipped, so a killed run resumes, and a changed key reruns the first stage that reads it and what follows (each stage reads the keys dvc.yaml lists for it; `mmre params` shows them all). Wall times and metrics go to OUT/recipe.json.
    """
    from rich.table import Table

    from mmre_cli.cli import recipe as stage
    from mmre_cli.cli.console import RichReporter
    from mmre_cli.cli.console import out as stdout_console

    params = resolve_params(recipe, {}, set_)
    if dry:
        for name in stage.plan(params=params, out=out, rerun_from=rerun_from):
            stdout_console.print(name, highlight=False)
        return
    log = stage.run(
        params=params,
        out=out,
        gpus=gpus,
        rerun_from=rerun_from,
        reporter=RichReporter(quiet),
        caption_cache=caption_cache,
    )
    table = Table(title=f"{recipe} → {out}")
    for col in ("stage", "seconds", ""):
        table.add_column(col)
    for name in log["order"]:
        info = log["stages"][name]
        secs = info.get("seconds")
        table.add_row(name, "-" if secs is None else f"{secs:.0f}", "skipped (up to date)" if info["skipped"] else "")
    m = log["metrics"]
    table.caption = (
        f"{m['split']}: Acc {m['acc']:.4f}  micro P {m['micro_p']:.4f}  R {m['micro_r']:.4f}  "
        f"F1 {m['micro_f1']:.4f}  (n = {m['n']})"
    )
    stdout_console.print(table)
