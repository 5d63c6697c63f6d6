"""Shared option types and the wrapper that turns user errors into one-line messages."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from typing_extensions import Annotated

ParamsOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--params",
        help="params.yaml to read (default: ./params.yaml if present, else built-in defaults).",
        show_default=False,
    ),
]
SetOpt = Annotated[
    Optional[List[str]],
    typer.Option(
        "--set",
        "-S",
        help="Override one parameter, as section.key=value (repeatable), e.g. -S train_gnn.lr=0.0005; "
        "`mmre params` lists every key with its type and help.",
        show_default=False,
    ),
]
NodesOpt = Annotated[
    int,
    typer.Option(
        "--nodes",
        min=1,
        help="Machines for DDP (Lightning Fabric num_nodes), each with --gpus devices (one CPU "
        "process with --gpus 0). Start the command on every machine with torchrun (--nnodes M "
        "--node-rank R --master-addr HOST --master-port PORT -m mmre_cli ...) or srun under "
        "SLURM; docs/usage.md 'Training on several machines'.",
    ),
]
GpusOpt = Annotated[
    int,
    typer.Option(
        "--gpus",
        min=0,
        help="Devices on this machine: 0 = CPU; N > 0 = N CUDA devices (DDP via Lightning Fabric when N > 1).",
    ),
]
StatsOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--stats",
        help="Also write the stage's statistics JSON here (dvc.yaml keeps these under stats/: outputs, not metrics).",
        show_default=False,
    ),
]
PlotsOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--plots",
        help="Also write the stage's curves into this folder: CSV (DVC's linear / confusion "
        "templates) and PNG (shown on `dvc plots show`'s page with no network).",
        show_default=False,
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr; no progress bars.")]
CaptionCacheOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--caption-cache",
        help="Folder that keeps the frozen caption pass's states (train_gnn.caption_pass) between runs: "
        "the first run writes them, later runs, other seeds and evaluations read them instead of encoding "
        "every caption again. Keyed by the encoder's weights, the piece limit and the precision; results "
        "do not change.",
        envvar="MMRE_CAPTION_CACHE",
        show_default=False,
    ),
]


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


def resolve_params(
    params_file: Path | None, overrides: dict[str, Any], sets: list[str] | None, quiet: bool = False
) -> dict:
    """Load params, apply ``--set`` items, then the command's own options (which win).

    A ``data.root`` override (a DATASET argument) naming another folder than the params file's
    drops that file's dataset files (:func:`_leave_the_other_dataset`; a note unless ``quiet``)."""
    from mmre_cli.params import apply_overrides, load_params, parse_set_options

    params = load_params(params_file)
    if overrides.get("data.root") is not None:
        _leave_the_other_dataset(params, Path(overrides["data.root"]), overrides, quiet)
    params = apply_overrides(params, parse_set_options(sets), skip_none=False)
    return apply_overrides(params, overrides)


#: keys that name files of one dataset (a params file sets them for its own data.root)
DATASET_FILE_KEYS = ("data.captions", "train_gnn.pair_captions", "data.label_map", "data.image_root")


def _leave_the_other_dataset(params: dict, dataset: Path, overrides: dict[str, Any], quiet: bool) -> None:
    """A DATASET argument other than the params file's ``data.root``: that file's captions, label
    map and image folder inside its own root belong to its dataset, not to this one, so they are
    dropped (with a note on stderr) instead of being looked for and reported missing. ``--set``
    and the command's own options still set them."""
    data = params["data"]
    root = Path(str(data["root"])).expanduser().resolve()
    if dataset.expanduser().resolve() == root:
        return

    def inside(value) -> bool:
        values = value if isinstance(value, list) else [value]
        return any(isinstance(v, str) and root in Path(v).expanduser().resolve().parents for v in values)

    def value(dotted: str):
        section, _, key = dotted.partition(".")
        return params[section][key]

    dropped = [key for key in DATASET_FILE_KEYS if value(key) is not None and inside(value(key))]
    for dotted in dropped:
        section, _, key = dotted.partition(".")
        params[section][key] = None
    dropped = [key for key in dropped if overrides.get(key) is None]  # the command sets it
    if dropped and not quiet:
        from mmre_cli.cli.console import err

        err.print(
            f"note: {dataset} is not the params' data.root ({data['root']}): its "
            + ", ".join(dropped)
            + " not used (give --captions / -S data.KEY=... "
            "for this dataset)",
            soft_wrap=True,
        )
