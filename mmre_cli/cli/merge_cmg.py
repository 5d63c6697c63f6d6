"""``mmre merge-cmg``: cross-modal graphs, one per instance, as Parquet shards."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import ParamsOpt, QuietOpt, SetOpt, StatsOpt, handle_errors, resolve_params


@handle_errors
def merge_cmg(
    features: Annotated[Path, typer.Option("--features", help="Output of extract-features.")] = Path("out/features"),
    graphs: Annotated[Path, typer.Option("--graphs", help="Output of build-graphs.")] = Path("out/graphs"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Output artifact folder.")] = Path("out/cmg"),
    top_k: Annotated[
        Optional[int], typer.Option(min=0, help="Similarity edges per text node.", show_default=False)
    ] = None,
    threshold: Annotated[
        Optional[float], typer.Option(help="Minimum cosine for a similarity edge.", show_default=False)
    ] = None,
    hops: Annotated[
        Optional[int], typer.Option(min=1, help="Context hops kept around head and tail.", show_default=False)
    ] = None,
    stats: StatsOpt = None,
    params_file: ParamsOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Union of the scene graphs and inter-modal edges, cut to the context around head and tail.

    Inter-modal edges come from co-occurrence and embedding similarity; the result is the graphs / nodes / edges tables of the cross-modal graphs (CMGs), one per instance."""
    from mmre_cli.cli.console import RichReporter
    from stages import merge_cmg as stage

    params = resolve_params(
        params_file, {"merge_cmg.top_k": top_k, "merge_cmg.threshold": threshold, "merge_cmg.hops": hops}, set_
    )
    stage.run(features=features, graphs=graphs, out=out, params=params, stats=stats, reporter=RichReporter(quiet))
