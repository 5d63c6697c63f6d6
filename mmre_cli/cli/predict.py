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
    head: Annotated[
        Optional[str],
        typer.Option(
            help="Head entity text (must occur in TEXT). Without --head/--tail, every pair of spaCy entities.",
            show_default=False,
        ),
    ] = None,
    tail: Annotated[
        Optional[str], typer.Option(help="Tail entity text (must occur in TEXT).", show_default=False)
    ] = None,
    model: Annotated[
        list[Path],
        typer.Option(
            "--model",
            help="Model folder written by train-gnn. Repeat it for an ensemble (models trained on the "
            "same labels, e.g. several seeds): the mean of their class probabilities; --explain "
            "draws the first model's graph.",
        ),
    ] = [Path("out/model")],  # noqa: B006 (Typer reads the default; never mutated)
    image_caption: Annotated[
        Optional[str],
        typer.Option(
            help="The image's caption, for models trained with captions as the image's view. Without it, "
            "--captioner writes one.",
            show_default=False,
        ),
    ] = None,
    captioner: Annotated[
        Optional[str],
        typer.Option(
            "--captioner",
            help="Image-to-text model (a local folder such as a saved BLIP or GIT, or a hub id already in "
            "the Hugging Face cache) that captions the image when the model reads captions and none "
            "is given. Default: $MMRE_CAPTIONER, else the model's data.captioner.",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="JSON lines on stdout instead of a table, one per (head, tail) pair: head, tail (the "
            "entities' words), relation, probability, top3 (the three most probable [label, "
            "probability], the prediction first), text (the sentence as tokenised), image (its path, "
            "or null), caption (the caption read, when there is one), pairs_from (given: "
            "--head/--tail or the line's head/tail; ner: paired from spaCy's entities), source "
            "(--batch: FILE:LINE of the input).",
        ),
    ] = False,
    batch: Annotated[
        Optional[Path],
        typer.Option(
            "--batch",
            help='JSONL of instances {"image"?, "text", "head"?, "tail"?, "caption"?} (image paths '
            "relative to the file's folder; no image = text only; head/tail both as words or both "
            "as token spans [start, end) over spaCy's tokens, which pick one occurrence of repeated "
            'words, e.g. {"text": "Camila Cabello met Camila in Miami", "head": [0, 2], "tail": [3, 4]}), '
            "predicted with models loaded once.",
            show_default=False,
        ),
    ] = None,
    explain: Annotated[
        Optional[Path],
        typer.Option(
            "--explain",
            help="Write a picture (.png/.svg) of one prediction (the most probable non-None one, else the "
            "first): the image with its boxes beside the cross-modal graph as the editor and "
            "diffusion left it.",
            show_default=False,
        ),
    ] = None,
    on_error: Annotated[
        str,
        typer.Option(
            "--on-error",
            help="--batch only: 'skip' reports a bad line (not JSON, a wrong field, a span past the text, "
            "a bad image) on stderr, predicts the others and exits 2 at the end; 'fail' stops at the "
            "first, before any prediction.",
        ),
    ] = "skip",
    skipped_out: Annotated[
        Optional[Path],
        typer.Option(
            "--skipped",
            help='--batch only: write the skipped lines as JSONL ({"where": "FILE:LINE", "reason"}) to this file.',
            show_default=False,
        ),
    ] = None,
    max_pairs: Annotated[
        int, typer.Option("--max-pairs", min=1, help="Most entity pairs per input when no --head/--tail is given.")
    ] = 20,
    encoder_weights: Annotated[
        Optional[Path],
        typer.Option(
            "--encoder-weights",
            help="Encoder weights to use instead of those recorded in the model (must be the same "
            "weights: checked by fingerprint).",
            show_default=False,
        ),
    ] = None,
    encoder: Annotated[
        Optional[str],
        typer.Option(
            "--encoder",
            help="Encoder name instead of the recorded one (must match the model: checked by fingerprint).",
            show_default=False,
        ),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Run the whole trained pipeline (features, scene graphs, CMG, RL edits, diffusion, GNN) on new input.

    The model folder's pipeline.json gives every stage's params (./params.yaml is not read). TEXT is tokenised with spaCy; --head/--tail are found as token spans (exact case first, then any case). Without them spaCy's NER proposes entities (dates, numbers and amounts left out) and every ordered pair of distinct entities is classified, at most --max-pairs per input; if fewer than two entities are found the command says so and exits 2 (in --batch: a warning, the line is skipped, exit 0).

    In --batch, a bad line is reported on stderr (FILE:LINE: reason) and skipped (--on-error skip, the default): the other lines are predicted and printed, then the command exits 2 with the count (--skipped FILE writes them as JSONL). --on-error fail stops at the first bad line before anything is predicted.

    The image is always checked (missing, not an image, too many pixels: exit 2). Its pixels are used only by a model whose encoder embeds images (CLIP), its objects only through the model's detector. A model trained with captions as the image's view reads --image-caption, else the caption --captioner writes (a transformers image-to-text model, e.g. BLIP or GIT); with neither, a note on stderr and a text-only prediction.

    Results on stdout (a table, or --json lines: head, tail, relation, probability, top3 — the three most probable labels, the prediction first — text, image, and caption, pairs_from, source as --json says); messages on stderr. Bad input is one line on stderr and exit code 2.
    """
    from mmre_cli.cli.console import RichReporter
    from mmre_cli.errors import InputError, MmreError

    if explain is not None and explain.suffix.lower() not in (".png", ".svg"):
        raise MmreError(f"--explain {explain}: the picture must be .png or .svg")
    if explain is not None and not explain.expanduser().resolve().parent.is_dir():
        raise MmreError(f"--explain {explain}: the folder {explain.parent} does not exist (it is not created for you)")
    if on_error not in ("skip", "fail"):
        raise MmreError(f"--on-error must be 'skip' or 'fail', not {on_error!r}")
    if batch is None and skipped_out is not None:
        raise MmreError("--skipped is for --batch")
    if skipped_out is not None and not skipped_out.expanduser().resolve().parent.is_dir():
        raise MmreError(f"--skipped {skipped_out}: the folder {skipped_out.parent} does not exist")
    if batch is not None:
        if image is not None or text is not None or head is not None or tail is not None or image_caption is not None:
            raise MmreError(
                "--batch takes its inputs from the file: give no IMAGE/TEXT/--head/--tail/--image-caption with it"
            )
    elif image is None or text is None:
        raise MmreError("give IMAGE and TEXT (or --batch FILE.jsonl); see `mmre predict --help`")

    from mmre_cli.predict.folder import model_params, read_pipeline
    from mmre_cli.predict.predictor import Predictor, max_pixels
    from mmre_cli.predict.predictor import explain as draw_explanation
    from mmre_cli.predict.queries import Query, Skipped, check_query, read_batch

    reporter = RichReporter(quiet)
    pipeline = read_pipeline(model[0])  # cheap checks first: the model folders ...
    for member in model[1:]:
        read_pipeline(member)
    params = model_params(pipeline)
    skipped: list | None = None
    if batch is not None:
        queries, skipped = read_batch(batch, on_error)
        total = len(queries) + len(skipped)
        if not queries and not skipped:
            raise MmreError(f"{batch}: no instances in the batch file")
    else:
        queries = [Query(text=text, image=image, head=head, tail=tail, caption=image_caption)]
    limit = max_pixels(params)
    good = []
    for query in queries:  # ... and the input, before any model loads
        try:
            check_query(query, limit)
            good.append(query)
        except InputError as err:
            if skipped is None or on_error == "fail":
                raise
            skipped.append(Skipped(query.where, str(err.reason).removeprefix(f"{query.where}: ")))
    queries = good
    if batch is not None and not queries:
        _all_skipped(batch, skipped, skipped_out, reporter)

    predictor = Predictor(
        model[0],
        encoder=encoder,
        encoder_weights=encoder_weights,
        max_pairs=max_pairs,
        reporter=reporter,
        captioner=captioner,
        members=model[1:],
    )
    if any(q.image is not None for q in queries) and not (predictor.uses_pixels or predictor.uses_objects):
        reporter.info(
            f"note: this model ({predictor.extractor.encoder.name}, no detector) uses no pixels; "
            "the image was checked but not used"
        )
    results = predictor.predict(
        queries,
        keep_graphs=explain is not None,
        skip_no_pairs=batch is not None,
        skipped=skipped if on_error == "skip" else None,
    )
    if batch is not None and not results and skipped and len(skipped) == total:
        _all_skipped(batch, skipped, skipped_out, reporter)
    _print(results, json_out, several=batch is not None)
    if explain is not None and results:
        pick = draw_explanation(predictor, results, explain)
        reporter.info(f"explanation of {pick.head} → {pick.tail} written to {explain}")
    elif explain is not None:
        reporter.warn(f"nothing was predicted, so no picture was written to {explain}")
    if skipped:
        _report_skipped(skipped, skipped_out, reporter)
        raise MmreError(
            f"{len(skipped)} of {total} batch lines skipped as bad input (listed above); the others were predicted"
        )


def _all_skipped(batch: Path, skipped: list, path: Path | None, reporter) -> None:
    from mmre_cli.errors import MmreError

    _report_skipped(skipped, path, reporter)
    raise MmreError(f"{batch}: every line was skipped ({len(skipped)}); first: {skipped[0].where}: {skipped[0].reason}")


def _report_skipped(skipped: list, path: Path | None, reporter) -> None:
    """One stderr line per skipped batch line; the JSONL report when asked."""
    import json

    def line_of(s) -> int:
        tail = s.where.rsplit(":", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    skipped.sort(key=line_of)  # in file order, whichever check found them
    for s in skipped:
        reporter.warn(f"skipped {s.where}: {s.reason}", always=True)
    if path is not None:
        path.write_text("".join(json.dumps(s.to_json(), ensure_ascii=False) + "\n" for s in skipped), encoding="utf-8")


def _print(results: list, json_out: bool, several: bool) -> None:
    """Results on stdout: JSON lines, or one Rich table."""
    import json
    import sys

    if json_out:
        for r in results:
            sys.stdout.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return
    from rich.table import Table
    from rich.text import Text

    from mmre_cli.cli.console import out

    table = Table(show_lines=several)
    if several:  # the input's line in the --batch file, so a row is found after a skipped line
        table.add_column("line", justify="right")
    for col in ("head", "relation", "tail", "probability", "top-3 (label p)"):
        table.add_column(col, justify="right" if col == "probability" else "left", overflow="fold")
    sources, number = {}, 0
    for r in results:
        key = (r.where, r.text, r.image)
        if key not in sources:
            number += 1
            line = str(r.where).rsplit(":", 1)[-1]
            sources[key] = line if line.isdigit() else str(number)
        alts = "\n".join(f"{label} {p:.3f}" for label, p in r.top3)
        row = [Text(r.head), Text(r.relation, style="bold"), Text(r.tail), f"{r.probability:.3f}", Text(alts)]
        table.add_row(*([sources[key]] if several else []), *row)
    if not several and results:
        r = results[0]
        table.caption = Text(f"{r.text}" + (f"  [image: {Path(r.image).name}]" if r.image else "  [no image]"))
    out.print(table)
