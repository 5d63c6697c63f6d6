"""Shared builders for the artifact store tests: small deterministic instances, graphs and feature rows."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest

from mmre_cli.data.instance import Entity, Instance
from mmre_cli.graphs.graph import EDGE_ATTR_DIM, Graph, empty_graph
from mmre_cli.store.manifest import read_manifest
from mmre_cli.store.tables import features_to_table
from mmre_cli.store.writers import ArtifactWriter

LABELS = {"None": 0, "/per/per/parent": 1, "/org/loc/locate_at": 2}


def make_instances(n: int = 5) -> list[Instance]:
    out = []
    for i in range(n):
        visual = i % 3 == 2
        out.append(
            Instance(
                sample_id=f"train-{i + 1:06d}",
                split="train",
                tokens=tuple(f"w{i}_{j}" for j in range(4 + i % 3)) + ("ünï",),
                head=Entity(f"head{i}", 0, 1),
                # boxes exactly representable in float32, so the round trip is exact
                tail=Entity(f"tail{i}", -1, -1, (0.5, 0.25, 0.125, 1.0)) if visual else Entity(f"tail{i}", 2, 4),
                relation=[None, "None", "/per/per/parent", "/org/loc/locate_at"][i % 4],
                img_id=None if i % 2 else f"img{i}.jpg",
                image_path=None if i % 2 else f"/data/img{i}.jpg",
                image_status="none" if i % 2 else "ok",
                caption=None if i % 3 else f"a caption {i}",
                source=f"train.txt:{i + 1}",
            )
        )
    return out


def make_graph(gid: str, n: int, e: int, dim: int | None, seed: int = 0, label: int = 1) -> Graph:
    rng = np.random.default_rng(seed)
    box = rng.random((n, 4), dtype=np.float32)
    box[::2] = np.nan  # non-visual nodes
    return Graph(
        graph_id=gid,
        node_kind=rng.integers(0, 6, n).astype(np.int8),
        node_modality=rng.integers(0, 3, n).astype(np.int8),
        node_role=(np.arange(n) % 3).astype(np.int8),
        node_text=[f"{gid}-n{i}" for i in range(n)],
        box=box,
        edge_index=rng.integers(0, max(n, 1), (2, e)).astype(np.int64) if n else np.zeros((2, 0), np.int64),
        edge_type=rng.integers(0, 7, e).astype(np.int8),
        edge_label=[f"l{i % 4}" if i % 2 else "" for i in range(e)],
        edge_attr=rng.standard_normal((e, EDGE_ATTR_DIM)).astype(np.float32),
        x=None if dim is None else rng.standard_normal((n, dim)).astype(np.float32),
        label=label,
        meta={"sample_id": f"s-{gid}", "hops": 2, "kept": [1, 2, 3], "note": "ok"},
    )


def make_graphs(count: int = 7, dim: int = 8) -> list[Graph]:
    out = []
    for i in range(count):
        x_dim = None if i % 3 == 1 else dim
        out.append(make_graph(f"g{i:03d}", n=3 + i % 4, e=2 + (i * 5) % 7, dim=x_dim, seed=i, label=i % 3 - 1))
    g = empty_graph("g-empty")
    g.meta = {}
    out.append(g)
    return out


def assert_graphs_equal(a: Graph, b: Graph) -> None:
    assert a.graph_id == b.graph_id
    assert a.label == b.label
    assert a.meta == b.meta
    assert a.node_text == b.node_text
    assert a.edge_label == b.edge_label
    for name, dtype in [
        ("node_kind", np.int8),
        ("node_modality", np.int8),
        ("node_role", np.int8),
        ("box", np.float32),
        ("edge_index", np.int64),
        ("edge_type", np.int8),
        ("edge_attr", np.float32),
    ]:
        va, vb = getattr(a, name), getattr(b, name)
        assert vb.dtype == dtype, (name, vb.dtype)
        assert va.shape == vb.shape, (name, va.shape, vb.shape)
        np.testing.assert_array_equal(va, vb, err_msg=name)  # NaN == NaN here
    if a.x is None or a.num_nodes == 0:
        assert b.x is None
    else:
        assert b.x is not None and b.x.dtype == np.float32
        np.testing.assert_array_equal(a.x, b.x)


@pytest.fixture
def instances() -> list[Instance]:
    return make_instances(9)


@pytest.fixture
def graphs() -> list[Graph]:
    return make_graphs(10, dim=8)


def feats(start: int, stop: int, dim: int = 8) -> pa.Table:
    """Deterministic features rows start..stop-1 (row i has emb = i + arange(dim)/10)."""
    idx = np.arange(start, stop)
    emb = (idx[:, None] + np.arange(dim)[None, :] / 10).astype(np.float32)
    return features_to_table(
        [f"s{i:06d}" for i in idx],
        [f"token:{i % 5}" for i in idx],
        ["token"] * len(idx),
        emb,
        texts=[f"t{i}" for i in idx],
    )


def digests(d) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


def write_feats(out, total=1000, chunk=7, max_rows=128, **kw):
    with ArtifactWriter(
        out, stage="features", encoder="enc", dim=8, params_hash="h", max_rows_per_shard=max_rows, **kw
    ) as art:
        for a in range(0, total, chunk):
            art.write("features", feats(a, min(a + chunk, total)))
    return read_manifest(out)
