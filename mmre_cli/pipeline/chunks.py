"""Walk artifacts chunk by chunk: shard k of every table of a stage holds the same instances.

extract-features writes ``samples`` and ``features`` one chunk (``shard_instances`` instances) per
shard; build-graphs and merge-cmg keep that alignment, so a later stage holds one chunk in memory
at a time (bounded memory) and resumes after its last whole shard.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq

from mmre_cli.data.instance import Instance
from mmre_cli.errors import MmreError


def require_artifact(path: Path, producer: str) -> None:
    """A clear error when an input artifact is missing or unfinished."""
    if not (Path(path) / "manifest.json").exists():
        raise MmreError(f"{path}: no finished artifact here (manifest.json missing); run `mmre {producer}` first")


def num_chunks(artifact: Path, table: str) -> int:
    from mmre_cli.store.manifest import shard_paths

    return len(shard_paths(artifact, table))


def read_chunk(artifact: Path, table: str, k: int):
    """Shard ``k`` of ``table`` as a pyarrow Table."""
    from mmre_cli.store.manifest import shard_paths

    return pq.read_table(shard_paths(artifact, table)[k])


def chunk_instances(features: Path, k: int) -> list[Instance]:
    from mmre_cli.store.tables import table_to_instances

    return table_to_instances(read_chunk(features, "samples", k))


def chunk_labels(features: Path, k: int) -> np.ndarray:
    from mmre_cli.store.tables import table_labels

    return table_labels(read_chunk(features, "samples", k))


class OwnerFeatures:
    """The ``features`` rows of one chunk, grouped by owner: ``owner -> {unit: (vector, text, box)}``."""

    def __init__(self, table) -> None:
        from mmre_cli.store.tables import array_to_vectors

        dim = table.schema.field("emb").type.list_size
        emb, _ = array_to_vectors(table.column("emb"), dim)
        boxes, box_valid = array_to_vectors(table.column("box"), 4)
        self.dim = dim
        self.rows: dict[str, dict[str, tuple[np.ndarray, str | None, np.ndarray | None]]] = defaultdict(dict)
        for i, (owner, unit, text) in enumerate(
            zip(
                table.column("sample_id").to_pylist(),
                table.column("unit").to_pylist(),
                table.column("text").to_pylist(),
            )
        ):
            self.rows[owner][unit] = (emb[i], text, boxes[i] if box_valid[i] else None)

    def units(self, owner: str | None, prefix: str) -> list[tuple[np.ndarray, str | None, np.ndarray | None]]:
        """Rows ``prefix:0, prefix:1, ...`` of ``owner`` in index order."""
        if owner is None or owner not in self.rows:
            return []
        found = self.rows[owner]
        out, i = [], 0
        while f"{prefix}:{i}" in found:
            out.append(found[f"{prefix}:{i}"])
            i += 1
        return out

    def get(self, owner: str | None, unit: str):
        if owner is None:
            return None
        return self.rows.get(owner, {}).get(unit)


def iter_feature_chunks(features: Path, start: int = 0) -> Iterator[tuple[int, list[Instance], OwnerFeatures]]:
    """``(k, instances, features)`` for chunks ``start ..``."""
    for k in range(start, num_chunks(features, "samples")):
        yield k, chunk_instances(features, k), OwnerFeatures(read_chunk(features, "features", k))
