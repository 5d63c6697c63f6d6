"""Owner keys of the ``features`` table: what several instances share is embedded once, under one owner.

``text:<hash>`` owns a token sequence's vectors, ``caption:<img>`` an image's caption phrases,
``image:<img>`` an image's whole and object vectors; an instance's own entity vectors sit under its
``sample_id``.
"""

from __future__ import annotations

import hashlib

from mmre_cli.data.instance import Instance


def text_owner(tokens: tuple[str, ...]) -> str:
    """Owner key of a token sequence: ``text:`` + 16 hex of sha1 over the tokens."""
    return "text:" + hashlib.sha1("\x1f".join(tokens).encode("utf-8")).hexdigest()[:16]


def caption_owner(inst: Instance) -> str | None:
    if not inst.caption:
        return None
    return f"caption:{inst.img_id or inst.sample_id}"


def image_owner(inst: Instance) -> str | None:
    return f"image:{inst.img_id}" if inst.image_path else None


def chunk_captions(chunk: list[Instance]) -> dict[str, str]:
    """``caption owner -> caption`` of a chunk's captioned instances, each once, in first-use order
    (extract-features embeds and build-graphs parses each caption once per chunk)."""
    captions: dict[str, str] = {}
    for inst in chunk:
        key = caption_owner(inst)
        if key is not None:
            captions.setdefault(key, inst.caption)
    return captions
