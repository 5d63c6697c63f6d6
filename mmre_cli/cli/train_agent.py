"""``mmre train-agent``: the RL graph editor (delete node / delete edge / add edge)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import GpusOpt, NodesOpt, ParamsOpt, QuietOpt, SetOpt, PlotsOpt, StatsOpt, handle_errors, resolve_params


@handle_errors
def train_agent(
    cmg: Annotated[Path, typer.Option("--cmg", help="Output of merge-cmg.")] = Path("out/cmg"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (agent + its reward classifier).")] = Path("out/agent"),
    episodes: Annotated[Optional[int], typer.Option(min=0, help="Passes over the training graphs.", show_default=False)] = None,
    gpus: GpusOpt = 0,
    nodes: NodesOpt = 1,
    stats: StatsOpt = None,
    plots: PlotsOpt = None,
    params_file: ParamsOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train the editor with reward R = λ·Acc(G') − μ·Complexity(G') and a TD(0) critic.

    Logs the node-filter ratio, edge-adjust ratio and F1 per step (DVC plots).
    """
    from mmre_cli.cli.console import RichReporter
    from stages import train_agent as stage

    params = resolve_params(params_file, {"train_agent.episodes": episodes}, set_)
    stage.run(cmg=cmg, out=out, params=params, gpus=gpus, nodes=nodes, stats=stats, plots=plots, reporter=RichReporter(quiet))
