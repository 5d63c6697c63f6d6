"""What ``mmre predict`` and ``mmre serve`` take in: :class:`Query` objects, from options, ``--batch``
JSONL lines or API records, checked before any model loads (:func:`check_query`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mmre_cli.errors import InputError


@dataclass
class Query:
    """One user input: an image (or ``None``), a sentence, optional head/tail strings and caption.

    ``where`` names the input in messages (``"FILE:LINE"`` for batch lines, else empty).
    """

    text: str
    image: Path | None = None
    head: str | None = None
    tail: str | None = None
    caption: str | None = None
    where: str = ""
    #: token spans ``(start, end)`` over the spaCy tokens of ``text`` (``--batch`` lines may give
    #: ``"head": [s, e]``); when set they are used as they are, ``head``/``tail`` keep their words
    head_span: tuple[int, int] | None = None
    tail_span: tuple[int, int] | None = None
    #: made from a record (a ``--batch`` line, a ``mmre serve`` input): messages name its
    #: fields (``head``, ``"caption"``), not the command's options (``--head``, ``--image-caption``)
    from_record: bool = False
    checked: bool = field(default=False, repr=False)

    def names(self) -> tuple[str, str]:
        """How messages name the head and the tail: the record's fields or the options."""
        return ("head", "tail") if self.from_record else ("--head", "--tail")


#: the fields of a ``--batch`` line (and of a ``mmre serve`` input, which adds ``image_b64``)
QUERY_FIELDS = ("image", "text", "head", "tail", "caption")


def query_from_record(record: dict, where: str = "", image_base: Path | None = None) -> Query:
    """One :class:`Query` from a ``--batch`` record ``{"image"?, "text", "head"?, "tail"?, "caption"?}``;
    ``head``/``tail`` are the entities' words or token spans ``[start, end)``, a relative
    ``image`` is taken from ``image_base``.

    Raises:
        InputError: an unknown field, a wrong type, no text, only one of head/tail (the reason
            only: the caller says where).
    """
    unknown = sorted(set(record) - set(QUERY_FIELDS))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(QUERY_FIELDS)})")
    record, spans = dict(record), {}
    for key in ("head", "tail"):  # a token span [start, end) instead of the entity's words
        value = record.get(key)
        if isinstance(value, list):
            if (
                len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                or not 0 <= value[0] < value[1]
            ):
                raise InputError(f"field {key!r} as a token span must be [start, end] with 0 <= start < end")
            spans[key] = (value[0], value[1])
            record[key] = None
    for key in QUERY_FIELDS:
        if record.get(key) is not None and not isinstance(record[key], str):
            raise InputError(
                f"field {key!r} must be a string" + (" or a token span [start, end]" if key in ("head", "tail") else "")
            )
    if "text" not in record or record["text"] is None:
        raise InputError("field 'text' is missing")
    if (record.get("head") is not None or "head" in spans) != (record.get("tail") is not None or "tail" in spans):
        raise InputError("give both head and tail, or neither")
    if ("head" in spans) != ("tail" in spans):
        raise InputError("give head and tail both as words or both as token spans")
    image_path = None
    if record.get("image"):
        image_path = Path(record["image"]).expanduser()
        if not image_path.is_absolute() and image_base is not None:
            image_path = Path(image_base) / image_path
    return Query(
        text=record["text"],
        image=image_path,
        head=record.get("head"),
        tail=record.get("tail"),
        caption=record.get("caption"),
        where=where,
        head_span=spans.get("head"),
        tail_span=spans.get("tail"),
        from_record=True,
    )


@dataclass
class Skipped:
    """A ``--batch`` line left out under ``on_error: skip``: where it is and why."""

    where: str
    reason: str

    def to_json(self) -> dict:
        return {"where": self.where, "reason": self.reason}


def read_batch(path: Path, on_error: str = "fail") -> tuple[list[Query], list[Skipped]]:
    """Queries from a JSONL file: ``{"image"?, "text", "head"?, "tail"?, "caption"?}`` per line.

    Image paths are relative to the file's folder; blank lines are skipped.

    Args:
        path: the JSONL file.
        on_error: ``"fail"`` raises at the first bad line; ``"skip"`` leaves it out and returns it
            among the skipped lines (not JSON, not an object, a field of the wrong type).

    Returns:
        ``(queries, skipped)``.

    Raises:
        InputError: the file is missing or unreadable; with ``"fail"``, the first bad line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("batch file not found", path=str(path))
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the batch file ({err})", path=str(path)) from None
    queries: list[Query] = []
    skipped: list[Skipped] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"not valid JSON ({err.msg})", path=str(path), line=number) from None
            if not isinstance(record, dict):
                raise InputError(
                    'expected a JSON object {"image", "text", "head", "tail", "caption"}', path=str(path), line=number
                )
            try:
                queries.append(query_from_record(record, f"{path}:{number}", path.parent))
            except InputError as err:
                raise InputError(err.reason, path=str(path), line=number) from None
        except InputError as err:
            if on_error != "skip":
                raise
            skipped.append(Skipped(f"{path}:{number}", err.reason))
    return queries, skipped


def check_query(query: Query, max_pixels: int | None) -> None:
    """The checks that need no model: text not empty, head and tail both or neither, the image.

    The image is opened with :func:`~mmre_cli.features.imageio.open_image` (missing, not an
    image, too many pixels → InputError); ``query.image`` becomes its resolved path. A query is
    checked once (``query.checked``).

    Raises:
        InputError: one clear line naming the input.
    """
    from mmre_cli.features.imageio import open_image

    if query.checked:
        return
    where = f"{query.where}: " if query.where else ""
    if not str(query.text or "").strip():
        raise InputError(f"{where}the text is empty")
    if (query.head is None) != (query.tail is None):
        raise InputError(
            f"{where}give both {' and '.join(query.names())}, or neither (then spaCy's entities are paired)"
        )
    folded = " ".join(query.text.split()).casefold()
    for flag, name in zip(query.names(), (query.head, query.tail)):
        if name is not None and not name.strip():
            raise InputError(f"{where}{flag} is empty")
        # not even a substring: it cannot be a token span either (the token check needs spaCy,
        # which loads with the model; this one answers before anything loads)
        if name is not None and " ".join(name.split()).casefold() not in folded:
            raise InputError(f"{where}{flag} {name!r} is not in the text")
    if query.head is not None and query.head_span is None:
        same = " ".join(query.head.split()).casefold()
        # the same words as head and tail need two places in the text (the tail is looked for
        # away from the head); found once, no tokenizer can make it a pair
        if same == " ".join(query.tail.split()).casefold() and folded.count(same) < 2:
            raise InputError(f"{where}{' and '.join(query.names())} name the same words ({query.head!r})")
    if query.image is not None:
        path = Path(query.image).expanduser()
        try:
            open_image(path, max_pixels).close()
        except InputError as err:
            raise InputError(err.reason, path=f"{where}{path}") from None
        query.image = path.resolve()
    query.checked = True


def find_span(tokens: list[str], words: list[str], avoid: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """First ``[start, end)`` where ``words`` occur in ``tokens``: exact case first, then any case.

    An occurrence overlapping ``avoid`` (the head's span, when looking for the tail) is returned
    only when there is no other, in either case; the caller then refuses the overlap.
    """
    n = len(words)
    if n == 0:
        return None
    hits: list[int] = []
    for fold in (lambda s: s, str.casefold):
        want = [fold(w) for w in words]
        hits += [
            i for i in range(len(tokens) - n + 1) if [fold(t) for t in tokens[i : i + n]] == want and i not in hits
        ]
    if not hits:
        return None
    if avoid is not None:
        free = [i for i in hits if i + n <= avoid[0] or i >= avoid[1]]
        if free:
            return free[0], free[0] + n
    return hits[0], hits[0] + n
