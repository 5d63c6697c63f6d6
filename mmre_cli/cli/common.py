"""Shared option types and the wrapper that turns user errors into one-line messages."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from typing_extensions import Annotated

ParamsOpt = Annotated[Optional[Path], typer.Option("--params", help="params.yaml to read (default: ./params.yaml if present, else built-in defaults).", show_default=False)]
SetOpt = Annotated[Optional[List[str]], typer.Option("--set", "-S", help="Override one parameter, as section.key=value (repeatable), e.g. -S train_gnn.lr=0.0005.", show_default=False)]
NodesOpt = Annotated[int, typer.Option("--nodes", min=1, help="Machines for DDP (Lightning Fabric num_nodes), each with --gpus devices (one CPU process with --gpus 0). Start the command on every machine with torchrun (--nnodes M --node-rank R --master-addr HOST --master-port PORT -m mmre_cli ...) or srun under SLURM; README 'Training on several machines'.")]
GpusOpt = Annotated[int, typer.Option("--gpus", min=0, help="Devices on this machine: 0 = CPU; N > 0 = N CUDA devices (DDP via Lightning Fabric when N > 1).")]
StatsOpt = Annotated[Optional[Path], typer.Option("--stats", help="Also write the stage's statistics JSON here (dvc.yaml keeps these under stats/: outputs, not metrics).", show_default=False)]
PlotsOpt = Annotated[Optional[Path], typer.Option("--plots", help="Also write the stage's curves into this folder: CSV (DVC's linear / confusion templates) and PNG (shown on `dvc plots show`'s page with no network).", show_default=False)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr; no progress bars.")]


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command body; :class:`~mmre_cli.errors.MmreError` → one line on stderr + its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from mmre_cli.errors import MmreError

        try:
            return fn(*args, **kwargs)
        except MmreError as error:
            from mmre_cli.cli.console import fail

            fail(str(error), error.exit_code)
        except KeyboardInterrupt:
            from mmre_cli.cli.console import fail

            fail("interrupted; whole shards written so far are kept, rerun to resume", 130)

    return wrapper


def resolve_params(params_file: Path | None, overrides: dict[str, Any], sets: list[str] | None) -> dict:
    """Load params, apply ``--set`` items, then the command's own options (which win)."""
    from mmre_cli.params import apply_overrides, load_params, parse_set_options

    params = load_params(params_file)
    params = apply_overrides(params, parse_set_options(sets), skip_none=False)
    return apply_overrides(params, overrides)
