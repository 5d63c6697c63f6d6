"""Small pieces every stage uses: the reporter default, statistics JSON, effective params."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from mmre_cli.params import params_hash, write_effective
from mmre_cli.reporting import NullReporter, Reporter


def reporter_or_null(reporter: Reporter | None) -> Reporter:
    return reporter if reporter is not None else NullReporter()


def write_json(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Atomically write pretty, key-sorted JSON (stable bytes for DVC)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def upstream_params(*artifacts: str | Path) -> dict:
    """The effective params recorded beside input artifacts (each holds its own upstream's too)."""
    import yaml

    merged: dict = {}
    for artifact in artifacts:
        path = Path(artifact) / "params.effective.yaml"
        if path.exists():
            merged.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return merged


def effective_params(params: Mapping[str, Any], sections: list[str], upstream: tuple = ()) -> dict:
    """What a stage records as its effective params: its ``sections`` over the upstream records."""
    return {**upstream_params(*upstream), **{s: params[s] for s in sections}}


def finish(out: Path, params: Mapping[str, Any], sections: list[str], stats: dict, stats_path: str | Path | None,
           upstream: tuple = ()) -> dict:
    """Write ``params.effective.yaml`` and ``stats.json`` into ``out`` (and ``stats_path`` if given).

    The effective params hold this stage's ``sections`` plus everything recorded beside the
    ``upstream`` artifacts, so the last artifact of the chain describes the whole run.
    """
    merged = effective_params(params, sections, upstream)
    write_effective(out, merged, list(merged))
    stats = {**stats, "params_hash": params_hash(params, sections)}
    write_json(Path(out) / "stats.json", stats)
    if stats_path is not None:
        write_json(stats_path, stats)
    return stats
