"""``mmre train-agent``: the RL graph editor (delete node / delete edge / add edge)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import (
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
def train_agent(
    cmg: Annotated[Path, typer.Option("--cmg", help="Output of merge-cmg.")] = Path("out/cmg"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (agent + its reward classifier).")] = Path(
        "out/agent"
    ),
    episodes: Annotated[
        Optional[int], typer.Option(min=0, help="Passes over the training graphs.", show_default=False)
    ] = None,
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
            help="Continue a killed run from the state saved after its last warm-up epoch, episode or "
            "round (OUT/checkpoint); on CPU the result equals an uninterrupted run's. Refused if the "
            "state was written with other params or another CMG.",
        ),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Train the editor with reward R = λ·Acc(G') − μ·Complexity(G') and a TD(0) critic.

    The reward classifier is a GATv2 fitted for train_agent.warmup_epochs on the unedited graphs, or, with -S train_agent.reward_model=FOLDER, a trained train-gnn model such as the fine-tuned classifier of a first run (docs/usage.md, 'The editor rewarded by your trained classifier').

    Logs the node-filter ratio, edge-adjust ratio and F1 per step (DVC plots). The training state is saved after every warm-up epoch, episode and round under OUT/checkpoint (removed when the outputs are written), so a killed run continues with --resume.
    """
    from mmre_cli.cli.console import RichReporter
    from stages import train_agent as stage

    params = resolve_params(params_file, {"train_agent.episodes": episodes}, set_)
    stage.run(
        cmg=cmg,
        out=out,
        params=params,
        gpus=gpus,
        nodes=nodes,
        stats=stats,
        plots=plots,
        reporter=RichReporter(quiet),
        resume=resume,
    )
