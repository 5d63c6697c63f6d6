"""Where a dataset's pieces are: its format (:func:`detect_format`), its split files
(:func:`split_files`, :func:`find_split_file`) and the label map its relations are checked against
(:func:`resolve_label_map`). :mod:`mmre_cli.data.load` reads a split from what these find.

Formats (see ``docs/data-formats.md``): ``'mnre'`` (MNRE-2), ``'mnre-v1'`` (MNRE-1), ``'more'``
(MORE) and ``'jsonl'`` (the documented user format). Files are only ever opened for reading.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Mapping

from mmre_cli.data.labels import LabelMap
from mmre_cli.data.mnre import RecordError, iter_text_lines, parse_literal
from mmre_cli.errors import InputError

FORMATS = ("mnre", "mnre-v1", "more", "jsonl")

#: Split names that stand for each other when the asked one has no file (MORE uses ``valid``).
SPLIT_ALIASES = {"val": ("valid", "dev"), "valid": ("val", "dev"), "dev": ("val", "valid")}

_PREFIXES = ("ours_", "mnre_")
TXT_SUBDIRS = ("txt", "mnre_txt")
_REL2ID_NAMES = {
    "mnre": ("ours_rel2id.json", "mnre_rel2id.json", "rel2id.json"),
    "mnre-v1": ("ours_rel2id.json", "mnre_rel2id.json", "rel2id.json"),
    "more": ("rel2id.json", "ours_rel2id.json"),
    "jsonl": ("rel2id.json",),
}


def base_dir(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def _split_name(stem: str) -> str:
    for prefix in _PREFIXES:
        if stem.startswith(prefix):
            return stem[len(prefix) :].strip()
    return stem.strip()


def _literal_files(d: Path) -> dict[str, Path]:
    """Split files of the literal-line formats under ``d``.

    ``ours_{split}.txt`` / ``mnre_{split}.txt`` in ``d``, ``d/txt`` or ``d/mnre_txt`` win; failing
    those, any ``{split}.txt`` in ``d/txt`` or ``d/mnre_txt`` (MORE), failing those, in ``d``.
    """
    subs = [d] + [d / s for s in TXT_SUBDIRS]
    found: dict[str, Path] = {}
    for sub in subs:
        if sub.is_dir():
            for f in sorted(sub.glob("*.txt")):
                if f.stem.startswith(_PREFIXES) and f.is_file():
                    found.setdefault(_split_name(f.stem), f)
    if found:
        return found
    for sub in subs[1:] + [d]:
        if sub.is_dir():
            for f in sorted(sub.glob("*.txt")):
                if f.is_file():
                    found.setdefault(f.stem.strip(), f)
            if found:
                return found
    return found


def split_files(dataset_dir: str | Path, fmt: str | None = None) -> dict[str, Path]:
    """All split files of a dataset: ``{split name: text file}``.

    Args:
        dataset_dir: the dataset folder, or one split file (then its one split is returned,
            named after the file: ``ours_val.txt`` -> ``val``).
        fmt: the format (default: :func:`detect_format`).
    """
    p = Path(dataset_dir)
    if p.is_file():
        return {_split_name(p.stem): p}
    if not p.is_dir():
        raise InputError("dataset path does not exist", str(p))
    fmt = fmt or detect_format(p)
    if fmt == "jsonl":
        return {f.stem: f for f in sorted(p.glob("*.jsonl")) if f.is_file()}
    return _literal_files(p)


def _sniff(path: Path, max_lines: int = 2000) -> str:
    """Guess the literal-line format from the content of one file."""
    seen_none = None
    for i, (_, item) in enumerate(iter_text_lines(path)):
        if i >= max_lines:
            break
        if isinstance(item, RecordError):
            continue
        try:
            obj = parse_literal(item)
        except RecordError:
            continue
        tail = obj.get("t")
        if isinstance(tail, dict) and "box" in tail:
            return "more"
        rel = obj.get("relation")
        if rel in ("none", "None"):
            seen_none = rel
            break
    return "mnre-v1" if seen_none == "none" else "mnre"


def detect_format(dataset_dir: str | Path) -> str:
    """Detect a dataset's format: ``'mnre'``, ``'mnre-v1'``, ``'more'`` or ``'jsonl'``.

    ``*.jsonl`` files (or a ``.jsonl``/``.json`` file) mean JSONL; otherwise the literal-line split
    files are looked up (see :func:`split_files`) and the first is sniffed: a tail with a ``box``
    means MORE, a lowercase ``'none'`` label MNRE-1, anything else MNRE-2.

    Raises:
        InputError: the path does not exist or holds no recognisable split file.
    """
    p = Path(dataset_dir)
    if not p.exists():
        raise InputError("dataset path does not exist", str(p))
    if p.is_file():
        if p.suffix.lower() in (".jsonl", ".json"):
            return "jsonl"
        return _sniff(p)
    if any(f.is_file() for f in p.glob("*.jsonl")):
        return "jsonl"
    files = _literal_files(p)
    if not files:
        raise InputError(
            "cannot detect the dataset format: expected ours_{split}.txt (MNRE, also under txt/), "
            "txt/{split}.txt (MORE) or {split}.jsonl",
            str(p),
        )
    first = files.get("train") or next(iter(files.values()))
    return _sniff(first)


def find_split_file(p: Path, fmt: str, split: str) -> tuple[Path, str]:
    """The file for ``split`` and the split name as the files spell it (aliases: val/valid/dev)."""
    if p.is_file():
        return p, split
    files = split_files(p, fmt)
    for name in (split, *SPLIT_ALIASES.get(split, ())):
        if name in files:
            return files[name], name
    found = ", ".join(sorted(files)) or "none"
    raise InputError(f"no file for split {split!r} ({fmt} format; splits found: {found})", str(p))


# -- label maps --------------------------------------------------------------------------------
_LABEL_CACHE: dict[tuple, LabelMap] = {}


def _labels_seen(path: Path, fmt: str) -> LabelMap | None:
    st = path.stat()
    key = (str(path.absolute()), st.st_size, st.st_mtime_ns, fmt)
    if key in _LABEL_CACHE:
        return _LABEL_CACHE[key]
    import json

    labels: set[str] = set()
    for _, item in iter_text_lines(path):
        if isinstance(item, RecordError):
            continue
        try:
            obj = json.loads(item) if fmt == "jsonl" else ast.literal_eval(item)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(obj, dict) and isinstance(obj.get("relation"), str) and obj["relation"]:
            labels.add(obj["relation"])
    lm = LabelMap.from_labels(labels) if labels else None
    _LABEL_CACHE[key] = lm
    return lm


def resolve_label_map(
    dataset_dir: str | Path,
    fmt: str | None = None,
    label_map: LabelMap | str | Path | Mapping[str, int] | None = None,
    *,
    _reading: Path | None = None,
) -> tuple[LabelMap | None, str]:
    """The label map a split is checked against, and where it came from.

    Order: the explicit ``label_map`` (a :class:`LabelMap`, a ``rel2id.json`` path or a dict) ->
    a rel2id file in the dataset folder (MNRE-2/MORE/JSONL also its parent; MNRE-1 only the
    folder itself) -> the labels seen in the train split (negative label first, id 0) -> ``None``
    (labels are not checked).
    """
    if isinstance(label_map, LabelMap):
        return label_map, "the given label map"
    if isinstance(label_map, Mapping):
        return LabelMap.from_dict(label_map), "the given label map"
    if label_map is not None:
        return LabelMap.from_file(label_map), str(label_map)
    p = Path(dataset_dir)
    fmt = fmt or detect_format(p)
    base = base_dir(p)
    bases = [base] if fmt == "mnre-v1" else [base, base.parent]
    for b in bases:
        for name in _REL2ID_NAMES[fmt]:
            cand = b / name
            if cand.is_file():
                return LabelMap.from_file(cand), str(cand)
    if p.is_dir():
        files = split_files(p, fmt)
        train = files.get("train")
    else:
        train = None
        for f in p.parent.glob("*.jsonl") if fmt == "jsonl" else p.parent.glob("*.txt"):
            if _split_name(f.stem) == "train":
                train = f
    if train is not None and _reading is not None and Path(train).absolute() == Path(_reading).absolute():
        return None, "labels seen in this train file (not checked while reading it)"
    if train is not None:
        lm = _labels_seen(train, fmt)
        if lm is not None:
            return lm, f"labels seen in {train}"
    return None, "no label map"
