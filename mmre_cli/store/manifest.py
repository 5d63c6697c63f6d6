"""An artifact directory's layout: shard names, ``manifest.json``, and what a table's shards are.

Layout of an artifact directory::

    ART/
      manifest.json              written last, atomically, only when the writer succeeded
      samples-00000.parquet      shards of table ``samples``
      samples-00001.parquet
      graphs-00000.parquet       graphs/nodes/edges shards are *aligned*: shard k of nodes and
      nodes-00000.parquet        edges holds exactly the graph_ids of shard k of graphs
      edges-00000.parquet
      .samples-00002.parquet.tmp a shard being written (or left by a killed writer): ignored

``manifest.json``::

    {
      "format": "mmre-artifact",
      "schema_version": 1,
      "stage": "...", "encoder": "...", "dim": 512, "params_hash": "...",
      "info": {...},                       # free JSON from the stage (e.g. the label list)
      "tables": {
        "samples": {"num_rows": 1234,
                    "shards": [{"file": "samples-00000.parquet", "num_rows": 1000,
                                "bytes": 81234, "sha256": "..."}, ...]},
        ...
      }
    }

The writers (:mod:`.writers`) produce this layout, the readers (:mod:`.readers`) and
:mod:`.validate` find their shards through it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq

from mmre_cli import SCHEMA_VERSION
from mmre_cli.errors import InputError

MANIFEST = "manifest.json"
FORMAT = "mmre-artifact"
SHARD_RE = re.compile(r"^(?P<table>[A-Za-z0-9_]+)-(?P<index>\d{5})\.parquet$")
TMP_RE = re.compile(r"^\.(?P<table>[A-Za-z0-9_]+)-(?P<index>\d{5})\.parquet\.tmp$")
TABLE_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")


def shard_name(table: str, index: int) -> str:
    return f"{table}-{index:05d}.parquet"


def tmp_name(table: str, index: int) -> str:
    return f".{table}-{index:05d}.parquet.tmp"


@dataclass(frozen=True)
class ShardInfo:
    """One whole shard: file name (relative to the artifact), rows, size and sha256."""

    file: str
    num_rows: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict:
        return asdict(self)


def list_shard_files(out_dir: str | os.PathLike, table: str | None = None) -> list[tuple[str, int, Path]]:
    """(table, index, path) of every final-named shard in ``out_dir``, sorted."""
    out = []
    d = Path(out_dir)
    if not d.is_dir():
        return out
    for p in d.iterdir():
        m = SHARD_RE.match(p.name)
        if m and (table is None or m["table"] == table):
            out.append((m["table"], int(m["index"]), p))
    return sorted(out, key=lambda t: (t[0], t[1]))


def list_tmp_files(out_dir: str | os.PathLike, table: str | None = None) -> list[Path]:
    d = Path(out_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if (m := TMP_RE.match(p.name)) and (table is None or m["table"] == table))


def read_manifest(artifact_dir: str | os.PathLike) -> dict:
    """Parse ``manifest.json``; :class:`InputError` if it is missing (incomplete artifact) or bad."""
    path = Path(artifact_dir) / MANIFEST
    if not path.is_file():
        raise InputError(
            "no manifest.json: not an mmre artifact, or the stage that writes it did not finish", path=str(artifact_dir)
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable manifest: {exc}", path=str(path)) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tables"), dict):
        raise InputError("manifest has no 'tables' object", path=str(path))
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InputError(
            f"artifact schema version {version}, this mmre reads version {SCHEMA_VERSION}; re-run the stage",
            path=str(path),
        )
    return manifest


def table_names(artifact_dir: str | os.PathLike) -> list[str]:
    return sorted(read_manifest(artifact_dir)["tables"])


def shard_paths(artifact_dir: str | os.PathLike, table: str) -> list[Path]:
    """Paths of ``table``'s shards, in order. A path to a single ``.parquet`` file is its own shard."""
    p = Path(artifact_dir)
    if p.is_file():
        return [p]
    manifest = read_manifest(p)
    entry = manifest["tables"].get(table)
    if entry is None:
        raise InputError(
            f"artifact has no table {table!r} (tables: {', '.join(sorted(manifest['tables']))})", path=str(p)
        )
    return [p / s["file"] for s in entry["shards"]]


def num_rows(artifact_dir: str | os.PathLike, table: str) -> int:
    p = Path(artifact_dir)
    if p.is_file():
        return pq.ParquetFile(p).metadata.num_rows
    return int(read_manifest(p)["tables"][table]["num_rows"])
