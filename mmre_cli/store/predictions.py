r"""``predictions.jsonl``, the per-instance output of ``mmre evaluate``: its one writer and reader.

One JSON object per scored instance::

    {"sample_id": "val-000515", "gold": "None", "pred": "/per/per/peer", "prob": 0.922,
     "probs": {"None": 0.061, "/per/per/peer": 0.922, ...}}

``prob`` is the probability of ``pred``; ``probs`` the whole distribution over the model's labels
(an ensemble's: the mean of its members'), keyed by label name so a reader never depends on the
label order. Files written before ``probs`` existed have only ``prob``.

:func:`read_probabilities` turns such a file into soft targets for knowledge distillation
(``train_gnn.distill_from``): ``mmre evaluate --model A --model B -S evaluate.split=train`` writes
the teachers' mean distribution for every training instance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from mmre_cli.errors import InputError

__all__ = ["PREDICTIONS_FILE", "ROW_KEYS", "predictions_path", "write_predictions", "iter_rows", "read_probabilities"]

PREDICTIONS_FILE = "predictions.jsonl"
#: the keys every line has (``probs`` only in files written since it exists)
ROW_KEYS = ("sample_id", "gold", "pred", "prob")


def predictions_path(source: str | Path) -> Path:
    """``source`` itself, or ``source/predictions.jsonl`` when it is an evaluate folder."""
    path = Path(source)
    return path / PREDICTIONS_FILE if path.is_dir() else path


def write_predictions(
    path: Path, ids: Iterable[str], gold: Iterable[int], pred: Iterable[int], prob: np.ndarray, labels: Sequence[str]
) -> None:
    """Write one line per instance (module docstring).

    Shapes:
        ``gold [N]``, ``pred [N]`` label ids, ``prob [N, C]`` with ``C = len(labels)``
    """
    with Path(path).open("w", encoding="utf-8") as fh:
        for sid, p, g, row in zip(ids, pred, gold, prob):
            line = {
                "sample_id": sid,
                "gold": labels[int(g)],
                "pred": labels[int(p)],
                "prob": round(float(row[int(p)]), 6),
                "probs": {label: round(float(v), 6) for label, v in zip(labels, row)},
            }
            fh.write(json.dumps(line) + "\n")


def iter_rows(path: Path) -> Iterator[tuple[int, object]]:
    """``(line number, parsed JSON)`` for every non-blank line of ``path``.

    Raises:
        InputError: ``PATH:LINE: not JSON`` at the first line that is not.
    """
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError:
                raise InputError(f"{path}:{number}: not JSON") from None


def read_probabilities(path: str | Path, labels: Sequence[str]) -> dict[str, np.ndarray]:
    """``sample_id -> [C]`` float32 distribution over ``labels`` (in that order), renormalised;
    ``path`` is the file or the evaluate folder holding it.

    Raises:
        InputError: the file is missing, a line is not JSON, a line has no ``probs`` (written by an
            older mmre: evaluate again), or names a label that ``labels`` lacks (another dataset).
    """
    path = predictions_path(path)
    if not path.is_file():
        raise InputError(f"{path}: predictions file not found (write one with `mmre evaluate`)")
    index = {label: i for i, label in enumerate(labels)}
    out: dict[str, np.ndarray] = {}
    for number, row in iter_rows(path):
        probs = row.get("probs") if isinstance(row, dict) else None
        if not isinstance(probs, dict):
            raise InputError(
                f"{path}:{number}: no 'probs' (the whole distribution); it was written by an older "
                "mmre: run `mmre evaluate` again"
            )
        unknown = sorted(set(probs) - set(index))
        if unknown:
            raise InputError(f"{path}:{number}: label {unknown[0]!r} is not one of this dataset's labels")
        vec = np.zeros(len(labels), np.float32)
        for label, v in probs.items():
            vec[index[label]] = float(v)
        total = float(vec.sum())
        if not total > 0:
            raise InputError(f"{path}:{number}: the probabilities sum to {total}")
        out[str(row["sample_id"])] = vec / total
    return out
