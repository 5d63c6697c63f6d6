"""MNRE reader (v2 and v1): one Python-literal dict per line.

A line looks like (made-up example)::

    {'token': ['Ada', 'joined', 'Acme', '.'], 'h': {'name': 'Ada', 'pos': [0, 1]},
     't': {'name': 'Acme', 'pos': [2, 3]}, 'img_id': 'x.jpg', 'relation': '/per/org/member_of'}

Lines are read with :func:`ast.literal_eval` (never ``eval``, never ``json``: the files use single
quotes). Keys other than ``token``/``h``/``t``/``img_id``/``relation`` (MRE-ISE adds ``caption``
and ``entity``) are kept in ``Instance.extra``.

This module also holds the record-level helpers the MORE and JSONL readers share:
:class:`RecordError`, :func:`iter_text_lines`, :func:`parse_literal`, the token/span checks.
"""

from __future__ import annotations

import ast
import codecs
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from mmre_cli.data.instance import Entity

#: Lines longer than this many bytes are rejected as garbage (real MNRE lines are < 5 kB).
MAX_LINE_BYTES = 1 << 20

#: Keys an MNRE line must have (``img_id`` is optional: without it the instance has no image).
REQUIRED_KEYS = ("token", "h", "t", "relation")


class RecordError(Exception):
    """One bad record. ``reason`` is the short key counted in ``LoadReport.skipped``.

    The loader turns it into an :class:`~mmre_cli.errors.InputError` naming file and line.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Record:
    """A validated record, before image and caption resolution."""

    tokens: tuple[str, ...]
    head: Entity
    tail: Entity
    relation: str | None
    img_id: str | None
    extra: dict = field(default_factory=dict)
    caption: str | None = None
    sample_id: str | None = None
    image_is_path: bool = False  # JSONL: ``img_id`` is a user path (absolute allowed)


# -- raw lines ---------------------------------------------------------------------------------
def iter_text_lines(path: str | Path) -> Iterator[tuple[int, str | RecordError]]:
    """Yield ``(line_number, text)`` for every non-blank line of ``path`` (1-based numbers).

    The file is opened read-only in binary mode and decoded line by line, so one bad line does not
    spoil the rest. Instead of text, a :class:`RecordError` is yielded for a line that is longer
    than :data:`MAX_LINE_BYTES` (``line too long``), holds NUL bytes (``binary data``) or is not
    UTF-8 (``not UTF-8``). A UTF-8 BOM at the start is dropped; blank lines are skipped silently.
    """
    with open(path, "rb") as fh:
        lineno = 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while True:  # drain the rest of the overlong line
                    chunk = fh.readline(MAX_LINE_BYTES)
                    if not chunk or chunk.endswith(b"\n"):
                        break
                yield (
                    lineno,
                    RecordError("line too long", f"line longer than {MAX_LINE_BYTES} bytes (binary or garbage?)"),
                )
                continue
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            if b"\x00" in raw:
                yield lineno, RecordError("binary data", "line holds NUL bytes (binary data?)")
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield (
                    lineno,
                    RecordError("not UTF-8", f"invalid UTF-8 byte 0x{raw[err.start]:02x} at column {err.start + 1}"),
                )
                continue
            text = text.strip()
            if text:
                yield lineno, text


def parse_literal(text: str) -> dict:
    """Parse one line as a Python literal dict (``ast.literal_eval``).

    Raises:
        RecordError: ``syntax error`` or ``not a dict``.
    """
    try:
        obj = ast.literal_eval(text)
    except SyntaxError as err:
        raise RecordError("syntax error", f"not a Python literal: {err.msg} at column {err.offset}") from None
    except (ValueError, TypeError, MemoryError, RecursionError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RecordError("syntax error", f"not a Python literal: {msg[:120]}") from None
    if not isinstance(obj, dict):
        raise RecordError("not a dict", f"expected a dict, got {type(obj).__name__}")
    return obj


# -- field checks -----------------------------------------------------------------------------
def require_keys(obj: dict, keys: tuple[str, ...]) -> None:
    """Raise ``RecordError('missing key')`` naming the first absent key."""
    for key in keys:
        if key not in obj:
            raise RecordError("missing key", f"missing key {key!r} (has {sorted(map(str, obj))})")


def check_tokens(value: Any, key: str = "token") -> tuple[str, ...]:
    """Validate a token list: a non-empty list of strings."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        raise RecordError("bad tokens", f"{key!r} must be a list of strings")
    if not value:
        raise RecordError("empty tokens", f"{key!r} is an empty list")
    return tuple(value)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def names_match(name: str, span_tokens: tuple[str, ...] | list[str]) -> bool:
    """Whether an entity name agrees with its tokens.

    Whitespace and case are ignored: MNRE-1 writes ``'#MCFC'`` for the tokens ``['#', 'MCFC']``,
    so ``"".join(name.split()).casefold() == "".join(tokens).casefold()`` is the test.
    """
    return "".join(name.split()).casefold() == "".join(span_tokens).casefold()


def check_name(value: Any, key: str) -> str:
    """An entity name: a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise RecordError("bad entity", f"entity {key!r} needs a non-empty string 'name'")
    return value


def check_span(pos: Any, n_tokens: int, key: str) -> tuple[int, int]:
    """Validate ``pos = [start, end)`` against ``n_tokens``."""
    if not isinstance(pos, (list, tuple)) or len(pos) != 2 or not all(_is_int(p) for p in pos):
        raise RecordError("bad span", f"entity {key!r}: 'pos' must be two ints [start, end), got {pos!r}")
    start, end = pos
    if start >= end:
        raise RecordError("empty span", f"entity {key!r}: start {start} >= end {end}")
    if start < 0 or end > n_tokens:
        raise RecordError(
            "span out of range", f"entity {key!r}: span [{start}, {end}) out of range for {n_tokens} tokens"
        )
    return start, end


def text_entity(value: Any, key: str, tokens: tuple[str, ...], *, check_names: bool = True) -> Entity:
    """Validate a text entity ``{'name': str, 'pos': [s, e]}`` and build an :class:`Entity`.

    A name that contradicts its tokens (see :func:`names_match`) is an error (``name mismatch``):
    the span, not the name, is what models read, so a mismatch means the record is wrong.
    """
    if not isinstance(value, dict):
        raise RecordError("bad entity", f"entity {key!r} must be a dict with 'name' and 'pos'")
    if "pos" not in value:
        raise RecordError("missing key", f"entity {key!r} has no 'pos'")
    name = check_name(value.get("name"), key)
    start, end = check_span(value["pos"], len(tokens), key)
    if check_names and not names_match(name, tokens[start:end]):
        raise RecordError(
            "name mismatch", f"entity {key!r}: name {name!r} does not match its tokens {' '.join(tokens[start:end])!r}"
        )
    return Entity(name, start, end)


def check_relation(value: Any) -> str:
    """A relation label: a non-empty string."""
    if not isinstance(value, str) or not value:
        raise RecordError("bad relation", f"'relation' must be a non-empty string, got {value!r}")
    return value


def check_img_id(value: Any, key: str = "img_id") -> str | None:
    """An image id: a non-empty string or ``None``."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RecordError("bad img_id", f"{key!r} must be a non-empty string, got {value!r}")
    return value


# -- MNRE --------------------------------------------------------------------------------------
def parse_mnre_record(obj: dict) -> Record:
    """Validate one parsed MNRE line (v1 or v2) and return a :class:`Record`.

    Raises:
        RecordError: any problem, with a short ``reason``.
    """
    require_keys(obj, REQUIRED_KEYS)
    tokens = check_tokens(obj["token"])
    head = text_entity(obj["h"], "h", tokens)
    tail = text_entity(obj["t"], "t", tokens)
    relation = check_relation(obj["relation"])
    raw_img = obj.get("img_id")
    extra = {k: v for k, v in obj.items() if k not in ("token", "h", "t", "relation", "img_id")}
    if isinstance(raw_img, int) and not isinstance(raw_img, bool) and raw_img >= 0:
        # MNRE-1 quirk: 285 train lines give a Twitter-2015 id as a bare int (71532, meaning 71532.jpg)
        extra["img_id_raw"] = raw_img
        raw_img = f"{raw_img}.jpg"
    img_id = check_img_id(raw_img)
    return Record(tokens, head, tail, relation, img_id, extra)


def parse_mnre_line(text: str) -> Record:
    """Parse and validate one MNRE line of text."""
    return parse_mnre_record(parse_literal(text))
