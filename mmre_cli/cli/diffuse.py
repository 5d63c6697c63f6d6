"""``mmre diffuse``: feature diffusion with edge pruning over the edited graphs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import ParamsOpt, QuietOpt, SetOpt, StatsOpt, handle_errors, resolve_params


@handle_errors
def diffuse(
    cmg: Annotated[Path, typer.Option("--cmg", help="Output of merge-cmg.")] = Path("out/cmg"),
    agent: Annotated[Path, typer.Option("--agent", help="Output of train-agent (its edits are applied first).")] = Path(
        "out/agent"
    ),
    out: Annotated[Path, typer.Option("--out", "-o", help="Output artifact folder (refined graphs).")] = Path(
        "out/diffused"
    ),
    alpha: Annotated[
        Optional[float], typer.Option(help="Propagation weight α in v ← αÂv + (1−α)v₀.", show_default=False)
    ] = None,
    tau: Annotated[
        Optional[float], typer.Option(help="Prune edges whose weight (v_i+v_j)/2 < τ.", show_default=False)
    ] = None,
    stats: StatsOpt = None,
    params_file: ParamsOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Apply the trained editor, diffuse node relevance and prune weak edges."""
    from mmre_cli.cli.console import RichReporter
    from stages import diffuse as stage

    params = resolve_params(params_file, {"diffuse.alpha": alpha, "diffuse.tau": tau}, set_)
    stage.run(cmg=cmg, agent=agent, out=out, params=params, stats=stats, reporter=RichReporter(quiet))
