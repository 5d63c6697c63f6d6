"""``mmre train-gnn``: the GAT relation classifier over the refined graphs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import (
    CaptionCacheOpt,
    GpusOpt,
    NodesOpt,
    ParamsOpt,
    PlotsOpt,
    QuietOpt,
    SetOpt,
    StatsOpt,
    handle_errors,
    resolve_params,
)


@handle_errors
def train_gnn(
    graphs: Annotated[Path, typer.Option("--graphs", help="Output of diffuse (refined graphs).")] = Path(
        "out/diffused"
    ),
    agent: Annotated[
        Path, typer.Option("--agent", help="Output of train-agent; its editor is copied into the model folder.")
    ] = Path("out/agent"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder (checkpoints, label map, params).")] = Path(
        "out/model"
    ),
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Training epochs.", show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate.", show_default=False)] = None,
    gpus: GpusOpt = 0,
    nodes: NodesOpt = 1,
    stats: StatsOpt = None,
    plots: PlotsOpt = None,
    params_file: ParamsOpt = None,
    set_: SetOpt = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue a killed run from the training state saved after its last whole epoch "
            "(OUT/checkpoint: weights, optimizer, schedule, random states); on CPU the result equals "
            "an uninterrupted run's. Refused if the state was written with other params or graphs.",
        ),
    ] = False,
    caption_cache: CaptionCacheOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train the classifier; the checkpoint kept is the best on val micro-F1 (peer metric).

    After every epoch the whole training state is saved under OUT/checkpoint (removed when the model folder is written), so a killed run continues with --resume."""
    from mmre_cli.cli.console import RichReporter
    from stages import train_gnn as stage

    params = resolve_params(params_file, {"train_gnn.epochs": epochs, "train_gnn.lr": lr}, set_)
    stage.run(
        graphs=graphs,
        agent=agent,
        out=out,
        params=params,
        gpus=gpus,
        nodes=nodes,
        stats=stats,
        plots=plots,
        reporter=RichReporter(quiet),
        resume=resume,
        caption_cache=caption_cache,
    )
