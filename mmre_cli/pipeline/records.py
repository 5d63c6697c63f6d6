"""What a stage writes beside its artifact: statistics JSON, effective params, CSV logs and plots.

Every file is written atomically (a temporary file, then a rename) with stable bytes, so DVC sees
the same output for the same run.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from mmre_cli.params import params_hash, select, write_effective


def write_json(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Atomically write pretty, key-sorted JSON (stable bytes for DVC)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def merge_records(*records: Mapping[str, Any]) -> dict:
    """Params records merged key by key (a later record's key wins; sections are united)."""
    merged: dict = {}
    for record in records:
        for section, values in record.items():
            merged.setdefault(section, {}).update(values or {})
    return merged


def upstream_params(*artifacts: str | Path) -> dict:
    """The effective params recorded beside input artifacts (each holds its own upstream's too)."""
    import yaml

    found = []
    for artifact in artifacts:
        path = Path(artifact) / "params.effective.yaml"
        if path.exists():
            found.append(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return merge_records(*found)


def effective_params(params: Mapping[str, Any], keys: Sequence[str], upstream: tuple = ()) -> dict:
    """What a stage records as its effective params: its declared ``keys`` over the upstream records."""
    return merge_records(upstream_params(*upstream), select(params, keys))


def finish(
    out: Path,
    params: Mapping[str, Any],
    keys: Sequence[str],
    stats: dict,
    stats_path: str | Path | None,
    upstream: tuple = (),
    recorded: Mapping[str, Any] | None = None,
) -> dict:
    """Write ``params.effective.yaml`` and ``stats.json`` into ``out`` (and ``stats_path`` if given).

    The effective params hold the keys this stage declares (``keys``, its ``PARAMS``) over
    everything recorded beside the ``upstream`` artifacts, so the last artifact of the chain
    describes the whole run; ``recorded`` replaces that record where a stage writes its own.
    """
    write_effective(out, recorded if recorded is not None else effective_params(params, keys, upstream))
    stats = {**stats, "params_hash": params_hash(params, keys)}
    write_json(Path(out) / "stats.json", stats)
    if stats_path is not None:
        write_json(stats_path, stats)
    return stats


def write_plots(folders: list[Path | None], name: str, rows: list[dict], draw) -> None:
    """``name.csv`` (``rows``) and ``name.png`` (``draw(rows, path)``) into each folder given.

    The PNG is drawn once and copied, so every folder holds the same picture.
    """
    import shutil

    folders = [Path(f) for f in folders if f is not None]
    if not folders:
        return
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(folder / f"{name}.csv", rows)
    first = draw(rows, folders[0] / f"{name}.png")
    for folder in folders[1:]:
        shutil.copyfile(first, folder / f"{name}.png")


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """Write rows (same keys) as CSV atomically; DVC reads it as plots."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    keys = list(rows[0]) if rows else []
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
    os.replace(tmp, path)
