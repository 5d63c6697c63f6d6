"""``mmre predict IMAGE TEXT``: relations for one image + text with a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import QuietOpt, handle_errors


@handle_errors
def predict(
    image: Annotated[Optional[Path], typer.Argument(help="Image file (jpg/png/...).", show_default=False)] = None,
    text: Annotated[Optional[str], typer.Argument(help="The sentence.", show_default=False)] = None,
    head: Annotated[Optional[str], typer.Option(help="Head entity text (must occur in TEXT). Without --head/--tail, every pair of spaCy entities.", show_default=False)] = None,
    tail: Annotated[Optional[str], typer.Option(help="Tail entity text (must occur in TEXT).", show_default=False)] = None,
    model: Annotated[Path, typer.Option("--model", help="Model folder written by train-gnn.")] = Path("out/model"),
    image_caption: Annotated[Optional[str], typer.Option(help="The image's caption, for models trained with captions as the image's view (no captioning model ships offline).", show_default=False)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON lines on stdout instead of a table.")] = False,
    batch: Annotated[Optional[Path], typer.Option("--batch", help="JSONL of instances (image, text, head, tail, caption) predicted with models loaded once.", show_default=False)] = None,
    explain: Annotated[Optional[Path], typer.Option("--explain", help="Write a picture (.png/.svg): image with boxes beside the edited, diffused graph.", show_default=False)] = None,
    quiet: QuietOpt = False,
) -> None:
    """Run the whole trained pipeline (features, graphs, RL edits, diffusion, GNN) on new input."""
    from mmre_cli.errors import NotReadyError

    raise NotReadyError("predict is not available yet: it needs the trained pipeline (issue 5)")
