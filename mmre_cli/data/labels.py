"""Relation label maps (``rel2id``) and the negative ("no relation") label.

The peers (HVPNeT, MKGformer, MORE, TMR) read a ``rel2id.json`` object ``{label: id}`` and take as
negative label the first of ``['NA', 'na', 'no_relation', 'Other', 'Others', 'none', 'None']``
present in it. MNRE-2 ships ``ours_rel2id.json`` (23 labels, ``"None": 0``); MNRE-1 ships none, so
:meth:`LabelMap.from_labels` builds one from the labels seen in train, negative label first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from mmre_cli.errors import InputError

#: Candidate negative labels, in the order the peers' ``eval_result`` tries them.
NONE_CANDIDATES: tuple[str, ...] = ("NA", "na", "no_relation", "Other", "Others", "none", "None")

#: The negative label used when a label set holds none of :data:`NONE_CANDIDATES`.
DEFAULT_NONE_LABEL = "None"


def find_none_label(labels: Iterable[str]) -> str:
    """Return the negative label among ``labels``, as the peers pick it.

    Args:
        labels: label strings (any iterable; a ``rel2id`` dict works too).

    Returns:
        The first of :data:`NONE_CANDIDATES` that occurs in ``labels``.

    Raises:
        ValueError: when none of the candidates occurs.
    """
    present = set(labels)
    for cand in NONE_CANDIDATES:
        if cand in present:
            return cand
    raise ValueError(f"no negative label among the labels (expected one of {list(NONE_CANDIDATES)})")


@dataclass(frozen=True)
class LabelMap:
    """An ordered label set: ``labels[i]`` has id ``i``.

    Attributes:
        labels: the labels in id order.
        none_label: the negative label (must be one of ``labels``).
    """

    labels: tuple[str, ...]
    none_label: str
    _index: dict = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        labels = tuple(self.labels)
        object.__setattr__(self, "labels", labels)
        if len(set(labels)) != len(labels):
            raise ValueError("duplicate labels in label map")
        if self.none_label not in labels:
            raise ValueError(f"negative label {self.none_label!r} is not one of the labels")
        object.__setattr__(self, "_index", {lab: i for i, lab in enumerate(labels)})

    # -- lookups -------------------------------------------------------------------------------
    def id(self, label: str) -> int:
        """Id of ``label``; ``KeyError`` if unknown."""
        return self._index[label]

    def label(self, idx: int) -> str:
        """Label with id ``idx``; ``IndexError`` if out of range."""
        if idx < 0:
            raise IndexError(idx)
        return self.labels[idx]

    @property
    def none_id(self) -> int:
        """Id of the negative label."""
        return self._index[self.none_label]

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: object) -> bool:
        return label in self._index

    def __iter__(self):
        return iter(self.labels)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, rel2id: Mapping[str, int], *, source: str | None = None) -> "LabelMap":
        """Build from a ``{label: id}`` mapping whose ids are exactly ``0..n-1``.

        Raises:
            InputError: ids not ints, not contiguous from 0, or no negative label
                (``source`` names the file in the message).
        """
        where = source or "<label map>"
        if not isinstance(rel2id, Mapping) or not rel2id:
            raise InputError("label map must be a non-empty JSON object {label: id}", where)
        by_id: dict[int, str] = {}
        for lab, idx in rel2id.items():
            if not isinstance(lab, str) or isinstance(idx, bool) or not isinstance(idx, int):
                raise InputError(f"label map entry {lab!r}: {idx!r} is not a string -> int pair", where)
            if idx in by_id:
                raise InputError(f"labels {by_id[idx]!r} and {lab!r} share id {idx}", where)
            by_id[idx] = lab
        if sorted(by_id) != list(range(len(by_id))):
            raise InputError(f"label ids must be 0..{len(by_id) - 1} without gaps", where)
        labels = tuple(by_id[i] for i in range(len(by_id)))
        try:
            none = find_none_label(labels)
        except ValueError as err:
            raise InputError(str(err), where) from None
        return cls(labels, none)

    @classmethod
    def from_file(cls, path: str | Path) -> "LabelMap":
        """Read a ``rel2id.json`` file (a JSON object ``{label: id}``).

        Raises:
            InputError: unreadable file, invalid JSON (with its line), not a JSON object, bad ids.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError("label map file not found", str(path)) from None
        except UnicodeDecodeError as err:
            raise InputError(f"label map is not UTF-8 text (byte {err.start})", str(path)) from None
        except OSError as err:
            raise InputError(f"cannot read label map: {err.strerror}", str(path)) from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"invalid JSON in label map: {err.msg}", str(path), err.lineno) from None
        if not isinstance(obj, dict):
            raise InputError(f"label map must be a JSON object {{label: id}}, got {type(obj).__name__}", str(path), 1)
        return cls.from_dict(obj, source=str(path))

    @classmethod
    def from_labels(cls, labels: Iterable[str], none_label: str | None = None) -> "LabelMap":
        """Build from observed labels: the negative label gets id 0, the others follow sorted.

        Args:
            labels: observed label strings (duplicates fine).
            none_label: the negative label; default :func:`find_none_label`, or
                :data:`DEFAULT_NONE_LABEL` (added) when none of the candidates occurs.
        """
        seen = set(labels)
        if none_label is None:
            try:
                none_label = find_none_label(seen)
            except ValueError:
                none_label = DEFAULT_NONE_LABEL
        rest = sorted(lab for lab in seen if lab != none_label)
        return cls((none_label, *rest), none_label)

    # -- output --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, int]:
        """``{label: id}`` in id order."""
        return {lab: i for i, lab in enumerate(self.labels)}

    def to_json(self) -> str:
        """The ``rel2id.json`` text (one line, like the shipped files)."""
        return json.dumps(self.to_dict(), ensure_ascii=False)
