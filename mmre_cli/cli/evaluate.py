"""``mmre evaluate``: the peers' metric, per-class report, confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import (
    CaptionCacheOpt,
    ParamsOpt,
    PlotsOpt,
    QuietOpt,
    SetOpt,
    StatsOpt,
    handle_errors,
    resolve_params,
)


@handle_errors
def evaluate(
    model: Annotated[
        list[Path],
        typer.Option(
            "--model",
            help="Output of train-gnn. Repeat it for an ensemble: the mean of the models' class "
            "probabilities (e.g. several seeds or captioners; stats.json lists each member's own "
            "scores too).",
        ),
    ] = [Path("out/model")],  # noqa: B006 (Typer reads the default; never mutated)
    graphs: Annotated[Path, typer.Option("--graphs", help="Refined graphs to score.")] = Path("out/diffused"),
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder for stats.json (the metrics), per_class.json, predictions.jsonl and the "
            "confusion matrix (CSV + PNG).",
        ),
    ] = Path("out/eval"),
    split: Annotated[
        Optional[str], typer.Option(help="Split to score (any name: val, test, ...).", show_default=False)
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print metrics as JSON on stdout.")] = False,
    stats: StatsOpt = None,
    plots: PlotsOpt = None,
    metrics: Annotated[
        Optional[Path],
        typer.Option(
            "--metrics",
            help="Write the few numbers to compare across runs here (acc, micro_p, micro_r, micro_f1, n, "
            "train_s: training seconds, best_epoch: the kept epoch, nodes, edges: the scored graphs' "
            "mean node and edge counts): dvc.yaml's one metrics file.",
            show_default=False,
        ),
    ] = None,
    params_file: ParamsOpt = None,
    set_: SetOpt = None,
    caption_cache: CaptionCacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Accuracy over all instances; micro P/R/F1 over non-None classes (HVPNeT/MKGformer/MORE).

    With several --model folders, scores their mean-probability ensemble and lists each member.
    """
    from mmre_cli.cli.console import RichReporter
    from stages import evaluate as stage

    params = resolve_params(params_file, {"evaluate.split": split}, set_)
    result = stage.run(
        model=model,
        graphs=graphs,
        out=out,
        params=params,
        stats=stats,
        plots=plots,
        reporter=RichReporter(quiet),
        metrics=metrics,
        caption_cache=caption_cache,
    )
    show_scores(result, json_out)


def show_scores(result: dict, json_out: bool) -> None:
    """The metrics on stdout: a Rich table of the classes with support, or one JSON object."""
    import json

    from rich.table import Table

    from mmre_cli.cli.console import out

    summary = {k: v for k, v in result.items() if k != "per_class"}
    if json_out:
        out.print(json.dumps(summary), highlight=False)
        return
    if result.get("members"):
        members = Table(title=f"ensemble of {len(result['members'])} (mean probability)")
        for col in ("model", "Acc", "micro P", "micro R", "micro F1"):
            members.add_column(col, justify="left" if col == "model" else "right")
        for row in result["members"]:
            members.add_row(row["model"], *(f"{row[k]:.4f}" for k in ("acc", "micro_p", "micro_r", "micro_f1")))
        members.add_row(
            "ensemble", *(f"{result[k]:.4f}" for k in ("acc", "micro_p", "micro_r", "micro_f1")), style="bold"
        )
        out.print(members)
    table = Table(
        title=f"{result['split']}: Acc {result['acc']:.4f}  micro P {result['micro_p']:.4f}  "
        f"R {result['micro_r']:.4f}  F1 {result['micro_f1']:.4f}  (n={result['n']})"
    )
    for col in ("relation", "support", "predicted", "P", "R", "F1"):
        table.add_column(col, justify="left" if col == "relation" else "right")
    for row in result["per_class"]:
        if row["support"] or row["predicted"]:
            table.add_row(
                row["label"],
                str(row["support"]),
                str(row["predicted"]),
                f"{row['p']:.3f}",
                f"{row['r']:.3f}",
                f"{row['f1']:.3f}",
            )
    out.print(table)
