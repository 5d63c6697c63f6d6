"""``mmre evaluate``: the peers' metric, per-class report, confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import ParamsOpt, QuietOpt, SetOpt, StatsOpt, handle_errors, resolve_params


@handle_errors
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="Output of train-gnn.")] = Path("out/model"),
    graphs: Annotated[Path, typer.Option("--graphs", help="Refined graphs to score.")] = Path("out/diffused"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for metrics.json, the report and plots.")] = Path("out/eval"),
    split: Annotated[Optional[str], typer.Option(help="Split to score (any name: val, test, ...).", show_default=False)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print metrics as JSON on stdout.")] = False,
    stats: StatsOpt = None,
    params_file: ParamsOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Accuracy over all instances; micro P/R/F1 over non-None classes (HVPNeT/MKGformer/MORE)."""
    from mmre_cli.cli.console import RichReporter
    from stages import evaluate as stage

    params = resolve_params(params_file, {"evaluate.split": split}, set_)
    stage.run(model=model, graphs=graphs, out=out, params=params, json_out=json_out, stats=stats, reporter=RichReporter(quiet))
