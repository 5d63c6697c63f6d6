"""The documented JSONL format for users' own data (see ``docs/data-formats.md``).

One JSON object per line::

    {"id": "ex1", "tokens": ["Ada", "joined", "Acme"], "head": {"name": "Ada", "pos": [0, 1]},
     "tail": {"name": "Acme"}, "image": "img/ex1.jpg", "caption": "a woman at a desk",
     "relation": "/per/org/member_of"}

* ``tokens`` (list of strings) or ``text`` (a string, split on whitespace); ``tokens`` wins if
  both are given.
* ``head`` / ``tail``: ``{"name": str, "pos": [start, end)}``; ``pos`` is optional: without it the
  name's whitespace tokens are looked up in the tokens (first exact match, then first
  case-insensitive match) and a name that is not there is an error. A visual tail is
  ``{"name": str, "box": [cx, cy, w, h]}`` normalised to [0, 1].
* ``image`` (optional): path relative to the JSONL file's folder (or to ``image_root`` when given),
  or absolute. A relative path must not leave that folder.
* ``caption``, ``relation``, ``id`` (optional). Ids must be unique in a file; without ``id`` the
  sample id is ``{split}-{line:06d}``.
* Other keys are kept in ``Instance.extra``.
"""

from __future__ import annotations

import json
from typing import Any

from mmre_cli.data.instance import Entity
from mmre_cli.data.mnre import Record, RecordError, check_name, check_relation, check_tokens, text_entity
from mmre_cli.data.more import visual_entity

_KNOWN = {"id", "tokens", "text", "head", "tail", "image", "caption", "relation"}


def parse_json_line(text: str) -> dict:
    """Parse one line as a JSON object.

    Raises:
        RecordError: ``invalid JSON`` or ``not a dict``.
    """
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise RecordError("invalid JSON", f"invalid JSON: {err.msg} at column {err.colno}") from None
    except RecursionError:
        raise RecordError("invalid JSON", "invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise RecordError("not a dict", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def locate(name: str, tokens: tuple[str, ...]) -> tuple[int, int] | None:
    """Find ``name`` (split on whitespace) as a run of tokens: first exact, then case-insensitive."""
    parts = name.split()
    n = len(parts)
    if not n:
        return None
    for fold in (False, True):
        want = [p.casefold() for p in parts] if fold else parts
        for i in range(len(tokens) - n + 1):
            window = tokens[i : i + n]
            if fold:
                window = tuple(t.casefold() for t in window)
            if list(window) == want:
                return i, i + n
    return None


def _entity(value: Any, key: str, tokens: tuple[str, ...], *, allow_box: bool) -> Entity:
    if not isinstance(value, dict):
        raise RecordError("bad entity", f"{key!r} must be an object with 'name' (and 'pos' or 'box')")
    if allow_box and "box" in value:
        if "pos" in value:
            raise RecordError("bad entity", f"{key!r} has both 'pos' and 'box'; give one")
        return visual_entity(value, key)
    if "pos" in value:
        return text_entity(value, key, tokens)
    name = check_name(value.get("name"), key)
    span = locate(name, tokens)
    if span is None:
        raise RecordError("entity not found", f"{key!r}: name {name!r} not found in the tokens; give 'pos'")
    return Entity(name, span[0], span[1])


def parse_jsonl_record(obj: dict) -> Record:
    """Validate one parsed JSONL object and return a :class:`~mmre_cli.data.mnre.Record`."""
    if "tokens" in obj:
        tokens = check_tokens(obj["tokens"], "tokens")
    elif "text" in obj:
        if not isinstance(obj["text"], str):
            raise RecordError("bad tokens", "'text' must be a string")
        tokens = check_tokens(obj["text"].split(), "text")
    else:
        raise RecordError("missing key", "needs 'tokens' (list of strings) or 'text' (string)")
    for key in ("head", "tail"):
        if key not in obj:
            raise RecordError("missing key", f"missing key {key!r}")
    head = _entity(obj["head"], "head", tokens, allow_box=False)
    tail = _entity(obj["tail"], "tail", tokens, allow_box=True)
    relation = obj.get("relation")
    if relation is not None:
        relation = check_relation(relation)
    image = obj.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise RecordError("bad img_id", f"'image' must be a non-empty string path, got {image!r}")
    caption = obj.get("caption")
    if caption is not None and not isinstance(caption, str):
        raise RecordError("bad caption", "'caption' must be a string")
    sample_id = obj.get("id")
    if sample_id is not None:
        if isinstance(sample_id, bool) or not isinstance(sample_id, (str, int)) or str(sample_id) == "":
            raise RecordError("bad id", f"'id' must be a non-empty string or an int, got {sample_id!r}")
        sample_id = str(sample_id)
    extra = {k: v for k, v in obj.items() if k not in _KNOWN}
    return Record(
        tokens, head, tail, relation, image, extra, caption=caption or None, sample_id=sample_id, image_is_path=True
    )


def parse_jsonl_line(text: str) -> Record:
    """Parse and validate one JSONL line of text."""
    return parse_jsonl_record(parse_json_line(text))
