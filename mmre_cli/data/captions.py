"""Per-image captions: a text view of the image, attached to ``Instance.caption`` by ``img_id``.

Accepted files:

* lines of Python literals or JSON objects ``{'img_id': ..., 'text': ...}`` (the CAMIM files,
  e.g. ``cogvlm_val.txt``);
* a ``.json`` file holding either ``{img_id: text}`` or a list of ``{"img_id", "text"}`` objects.

Rows with an empty text (some BLIP rows) are dropped and counted; stray ids that match no
instance (CAMIM's ``inf.png`` row) are harmless. A later row for the same ``img_id`` wins, and
is counted as a duplicate.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from mmre_cli.data.mnre import RecordError, iter_text_lines, parse_literal
from mmre_cli.errors import InputError

#: what joins several captioners' captions of one image into one text (``train_gnn.pair_captions``
#: as a list, ``mmre predict --image-caption "a ; b"``); ``caption_parts: separate`` splits at it.
#: No caption of the six MNRE captioners contains it.
CAPTION_JOIN = " ; "

#: where :func:`split_captions` cuts: a ``;`` with white space (or the text's start) before it and
#: white space (or the end) after it, so an empty slot survives the white-space folding of
#: ``mmre predict`` ("a ;  ; c" and "a ; ; c" both read as three slots).
_SLOT_CUT = re.compile(r"(?:^|\s);(?=\s|$)")


def join_captions(texts: Sequence[str | None]) -> str | None:
    """Several captioners' captions of one image as one text, one slot per captioner in order.

    A captioner without a caption keeps its slot, empty (``["a", None, "c"]`` -> ``"a ;  ; c"``), so
    :func:`split_captions` gives every later captioner its own position back; ``None`` when no
    captioner has one."""
    slots = [str(t) if t else "" for t in texts]
    return CAPTION_JOIN.join(slots) if any(slots) else None


def split_captions(text: str | None) -> list[str | None]:
    """The slots of a :func:`join_captions` text, in order (an empty slot: ``None``); ``[]`` for
    no text. One caption without a separator is one slot."""
    text = str(text or "").strip()
    if not text:
        return []
    return [part.strip() or None for part in _SLOT_CUT.split(text)]


@dataclass
class CaptionStats:
    """Counts from reading one captions file."""

    path: str
    rows: int = 0
    empty: int = 0
    duplicates: int = 0
    bad: dict[str, int] = field(default_factory=dict)


def caption_path(source: str | Path, split: str) -> Path:
    """Resolve a captions source: a path, or a template containing ``{split}``.

    Raises:
        InputError: the resulting file does not exist.
    """
    text = str(source)
    path = Path(text.replace("{split}", split)) if "{split}" in text else Path(text)
    if not path.is_file():
        raise InputError(f"captions file not found (split {split!r})", str(path))
    return path


def _row(obj: object) -> tuple[str, str]:
    if not isinstance(obj, dict):
        raise RecordError("not a dict", f"expected a dict with 'img_id' and 'text', got {type(obj).__name__}")
    for key in ("img_id", "text"):
        if key not in obj:
            raise RecordError("missing key", f"missing key {key!r}")
    img_id, text = obj["img_id"], obj["text"]
    if not isinstance(img_id, str) or not isinstance(text, str):
        raise RecordError("bad caption", "'img_id' and 'text' must be strings")
    return img_id, text


def read_captions(path: str | Path, *, on_error: str = "raise") -> tuple[dict[str, str], CaptionStats]:
    """Read a captions file into ``{img_id: text}``.

    Args:
        path: the file.
        on_error: ``'raise'``: a bad row raises :class:`InputError` naming file and line;
            ``'skip'``: bad rows are counted in ``stats.bad``.

    Returns:
        The captions (empty texts dropped, text stripped) and the counts.
    """
    path = Path(path)
    stats = CaptionStats(str(path))
    out: dict[str, str] = {}

    def add(img_id: str, text: str) -> None:
        stats.rows += 1
        text = text.strip()
        if not text:
            stats.empty += 1
            return
        if img_id in out:
            stats.duplicates += 1
        out[img_id] = text

    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise InputError(f"invalid JSON: {err.msg}", str(path), err.lineno) from None
        except UnicodeDecodeError:
            raise InputError("captions file is not UTF-8", str(path)) from None
        if isinstance(obj, dict):
            for img_id, text in obj.items():
                if not isinstance(text, str):
                    raise InputError(f"caption for {img_id!r} is not a string", str(path))
                add(img_id, text)
        elif isinstance(obj, list):
            for i, row in enumerate(obj):
                try:
                    add(*_row(row))
                except RecordError as err:
                    raise InputError(f"item {i}: {err.message}", str(path)) from None
        else:
            raise InputError("captions JSON must be an object or a list", str(path))
        return out, stats

    for lineno, item in iter_text_lines(path):
        try:
            if isinstance(item, RecordError):
                raise item
            add(*_row(parse_literal(item)))
        except RecordError as err:
            if on_error == "raise":
                raise InputError(err.message, str(path), lineno) from None
            stats.bad[err.reason] = stats.bad.get(err.reason, 0) + 1
    return out, stats


def load_captions(path: str | Path, *, on_error: str = "raise") -> dict[str, str]:
    """Read a captions file into ``{img_id: text}`` (see :func:`read_captions`)."""
    return read_captions(path, on_error=on_error)[0]


def resolve_captions(
    captions: str | Path | Mapping[str, str] | None, split: str, *, on_error: str = "raise"
) -> tuple[Mapping[str, str] | None, CaptionStats | None]:
    """Turn the ``captions`` argument of the loaders into a mapping.

    ``captions`` may be ``None``, a ready mapping, a path, or a template with ``{split}``.
    """
    if captions is None:
        return None, None
    if isinstance(captions, Mapping):
        return captions, None
    return read_captions(caption_path(captions, split), on_error=on_error)
