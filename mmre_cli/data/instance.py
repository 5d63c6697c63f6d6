"""The one in-memory record every reader produces and every stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entity:
    """An entity mention.

    Attributes:
        name: surface string as the dataset gives it.
        start: first token index (inclusive); ``-1`` for a purely visual entity (MORE tails).
        end: token index one past the last token (exclusive); ``-1`` for a visual entity.
        box: for a visual entity, the box as normalised ``(cx, cy, w, h)`` in [0, 1]
            (MORE's convention); ``None`` for a text entity.
    """

    name: str
    start: int
    end: int
    box: tuple[float, float, float, float] | None = None

    @property
    def is_visual(self) -> bool:
        return self.box is not None


@dataclass(frozen=True)
class Instance:
    """One (sentence, head, tail, image) relation instance.

    Attributes:
        sample_id: stable id ``"{split}-{line:06d}"`` (line is 1-based within the split file).
        split: split name as given (``train``, ``val``, ``test``, or any other).
        tokens: the sentence tokens.
        head, tail: the two entities.
        relation: gold relation label string, or ``None`` when unlabelled (prediction input).
            Note the MNRE negative label is the *string* ``"None"`` (v1: ``"none"``).
        img_id: the image id/file name as the dataset gives it, or ``None``.
        image_path: resolved absolute path of an image that exists and is readable, else ``None``.
        image_status: ``"ok"``, ``"missing"`` (no file; kept as text-only by policy),
            or ``"none"`` (the record names no image).
        caption: a text view of the image (from a captions file), or ``None``.
        source: where it came from, ``"path:line"``.
    """

    sample_id: str
    split: str
    tokens: tuple[str, ...]
    head: Entity
    tail: Entity
    relation: str | None
    img_id: str | None = None
    image_path: str | None = None
    image_status: str = "none"
    caption: str | None = None
    source: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def text(self) -> str:
        return " ".join(self.tokens)
