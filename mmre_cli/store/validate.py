"""Check an artifact directory (or a single shard file) for integrity and consistency.

``validate(path)`` returns a list of problems, one line each (empty list = OK); warnings
(stray ``.tmp`` files, shards not in the manifest) go to the reporter instead, and are also in
:func:`check`'s :class:`ValidationReport`.

Checks, for a directory:
    * ``manifest.json`` present, parseable, of this schema version;
    * every listed shard exists, has the listed size and sha256;
    * every shard is readable Parquet (all pages decoded, page checksums verified), its schema
      equals the expected schema of its table for the ``mmre.dim`` in its metadata, its
      ``mmre.table``/``mmre.schema_version``/``mmre.dim`` metadata agree with the manifest,
      its row count equals the manifest's;
    * ``graphs``/``nodes``/``edges``: aligned shards, unique graph ids, node ids exactly
      ``0..num_nodes-1``, edge endpoints in ``[0, num_nodes)``, counts as the graphs table says,
      kind/modality/type ids inside their vocabularies;
    * ``samples``: unique ``sample_id``, ``label >= -1``.

A folder without a manifest is checked as what it holds (:mod:`mmre_cli.store.folders`): a model
folder (train-gnn), an editor folder (train-agent) or an evaluation (evaluate).

For a single ``.parquet`` file: readable, metadata present, schema as expected, in-table checks;
if the file sits in an artifact whose manifest lists it, size/sha256/rows are compared too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmre_cli import SCHEMA_VERSION
from mmre_cli.graphs.graph import EDGE_TYPES, MODALITIES, NODE_KINDS
from mmre_cli.hashing import sha256_file
from mmre_cli.store.manifest import FORMAT, MANIFEST, SHARD_RE, list_shard_files, list_tmp_files
from mmre_cli.store.schemas import GRAPH_TABLES, SCHEMAS, decode_metadata, schema_diff, schema_for

MAX_PER_KIND = 5  # row-level problems reported per shard and check
SAMPLES_CHECK = "samples: unique sample ids, labels >= -1"


@dataclass
class ValidationReport:
    path: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: what was checked: ``"<stage> artifact"`` (Parquet + manifest), ``"Parquet shard"``,
    #: ``"model"``, ``"editor"``, ``"evaluation"`` (see :mod:`mmre_cli.store.folders`), or ``None``
    kind: str | None = None
    #: what was checked, one short phrase each, in order (``mmre validate --json`` lists them)
    checks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(path: str | os.PathLike, reporter=None) -> list[str]:
    """Problems found in the artifact or shard at ``path`` (empty list = valid).

    Warnings go to ``reporter.warn`` when a reporter is given.
    """
    report = check(path)
    if reporter is not None:
        for w in report.warnings:
            reporter.warn(w)
    return report.problems


def check(path: str | os.PathLike) -> ValidationReport:
    """Full :class:`ValidationReport` (problems and warnings) for ``path``."""
    p = Path(path)
    report = ValidationReport(str(p))
    if p.is_dir():
        _check_dir(p, report)
    elif p.is_file():
        _check_file(p, report)
    else:
        report.problems.append(f"{p}: no such file or directory")
    return report


# ---------------------------------------------------------------------------- shards


def _read_shard(path: Path, report: ValidationReport) -> tuple[pa.Schema | None, int | None]:
    """Decode every page of a shard; returns (schema, rows) or (None, None) if unreadable."""
    try:
        pf = pq.ParquetFile(path, page_checksum_verification=True)
        schema = pf.schema_arrow
        rows = 0
        for i in range(pf.num_row_groups):
            rows += pf.read_row_group(i).num_rows
        if rows != pf.metadata.num_rows:
            report.problems.append(f"{path}: footer says {pf.metadata.num_rows} rows, row groups hold {rows}")
        pf.close()
        return schema, rows
    except Exception as exc:  # noqa: BLE001 - any failure means unreadable
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        report.problems.append(f"{path}: not readable Parquet ({msg})")
        return None, None


def _check_schema(
    path: Path, schema: pa.Schema, table: str | None, report: ValidationReport, dim_expected: int | None = None
) -> None:
    meta = decode_metadata(schema)
    if "table" not in meta:
        report.problems.append(f"{path}: no mmre.table in the schema metadata (not an mmre shard?)")
    elif table is not None and meta["table"] != table:
        report.problems.append(f"{path}: mmre.table is {meta['table']!r}, manifest lists it under {table!r}")
    table = table or meta.get("table")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        report.problems.append(f"{path}: mmre.schema_version is {version!r}, expected {SCHEMA_VERSION}")
    for key in ("encoder", "stage", "params_hash"):
        if key not in meta:
            report.problems.append(f"{path}: no mmre.{key} in the schema metadata")
    dim = meta.get("dim")
    if not isinstance(dim, int) or dim < 0:
        report.problems.append(f"{path}: mmre.dim is {dim!r}, expected an integer >= 0")
        return
    if dim_expected is not None and dim != dim_expected:
        report.problems.append(f"{path}: mmre.dim is {dim}, manifest says {dim_expected}")
    if table in SCHEMAS:
        try:
            want = schema_for(table, dim)
        except ValueError as exc:
            report.problems.append(f"{path}: {exc}")
            return
        diff = schema_diff(schema, want)
        if diff:
            report.problems.append(f"{path}: schema of table {table!r} is wrong: {diff}")


def _rows_problem(report: ValidationReport, path: Path, what: str, count: int, examples) -> None:
    if count:
        ex = ", ".join(str(e) for e in list(examples)[:MAX_PER_KIND])
        report.problems.append(f"{path}: {count} {what} (e.g. {ex})")


def _duplicates(ids: list, seen: set) -> list:
    """Ids already in ``seen`` (which is updated)."""
    dups = []
    for i in ids:
        if i in seen:
            dups.append(i)
        else:
            seen.add(i)
    return dups


def _check_samples(paths: list[Path], report: ValidationReport) -> None:
    seen: set[str] = set()
    for path in paths:
        t = pq.read_table(path, columns=["sample_id", "label"])
        ids = t.column("sample_id").to_pylist()
        dups = _duplicates(ids, seen)
        _rows_problem(report, path, "duplicate sample_id values", len(dups), dups)
        labels = t.column("label").to_numpy()
        bad = labels[labels < -1]
        _rows_problem(report, path, "labels < -1", len(bad), bad)


def _vocab_problem(report, path, name, values: np.ndarray, size: int) -> None:
    bad = values[(values < 0) | (values >= size)]
    _rows_problem(report, path, f"{name} ids outside [0, {size})", len(bad), bad)


def _check_graph_shards(triples: list[tuple[Path, Path, Path]], report: ValidationReport) -> None:
    seen: set[str] = set()
    for gp, np_, ep in triples:
        try:
            g = pq.read_table(gp, columns=["graph_id", "num_nodes", "num_edges"])
            n = pq.read_table(np_, columns=["graph_id", "node", "kind", "modality"])
            e = pq.read_table(ep, columns=["graph_id", "src", "dst", "type"])
        except Exception as exc:  # noqa: BLE001 - already reported as unreadable / wrong schema
            report.problems.append(f"{gp}: cannot check graph consistency ({str(exc).splitlines()[0]})")
            continue
        gids = g.column("graph_id").to_pylist()
        index = {gid: i for i, gid in enumerate(gids)}
        dups = _duplicates(gids, seen)
        _rows_problem(report, gp, "duplicate graph_id values", len(dups), dups)
        nn = g.column("num_nodes").to_numpy().astype(np.int64)
        ne = g.column("num_edges").to_numpy().astype(np.int64)
        _rows_problem(report, gp, "negative num_nodes/num_edges", int(((nn < 0) | (ne < 0)).sum()), gids)

        def group(tbl: pa.Table, path: Path, what: str, index=index, gp=gp):
            keys = tbl.column("graph_id").to_pylist()
            idx = np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
            foreign = [k for k, i in zip(keys, idx) if i < 0]
            _rows_problem(
                report, path, f"{what} rows whose graph_id is not in {gp.name}", len(foreign), dict.fromkeys(foreign)
            )
            return idx

        # nodes
        ni = group(n, np_, "node")
        ok = ni >= 0
        counts = np.bincount(ni[ok], minlength=len(gids)) if len(gids) else np.zeros(0, np.int64)
        bad = np.nonzero(counts != nn)[0]
        _rows_problem(
            report,
            np_,
            "graphs whose node row count differs from num_nodes",
            len(bad),
            (f"{gids[i]}: {counts[i]} rows, num_nodes {nn[i]}" for i in bad),
        )
        node = n.column("node").to_numpy().astype(np.int64)
        lim = np.where(ok, nn[np.where(ok, ni, 0)] if len(gids) else 0, 0)
        out = ok & ((node < 0) | (node >= lim))
        _rows_problem(
            report,
            np_,
            "node ids outside [0, num_nodes)",
            int(out.sum()),
            (f"{n.column('graph_id')[int(i)].as_py()}#{node[i]}" for i in np.nonzero(out)[0]),
        )
        inr = ok & ~out
        if inr.any():
            n_off = np.concatenate([[0], np.cumsum(nn)])
            key = n_off[ni[inr]] + node[inr]
            ndup = len(key) - len(np.unique(key))
            _rows_problem(report, np_, "duplicate (graph_id, node) rows", ndup, ["see shard"])
        _vocab_problem(report, np_, "node kind", n.column("kind").to_numpy().astype(np.int64), len(NODE_KINDS))
        _vocab_problem(report, np_, "modality", n.column("modality").to_numpy().astype(np.int64), len(MODALITIES))

        # edges
        ei = group(e, ep, "edge")
        ok = ei >= 0
        counts = np.bincount(ei[ok], minlength=len(gids)) if len(gids) else np.zeros(0, np.int64)
        bad = np.nonzero(counts != ne)[0]
        _rows_problem(
            report,
            ep,
            "graphs whose edge row count differs from num_edges",
            len(bad),
            (f"{gids[i]}: {counts[i]} rows, num_edges {ne[i]}" for i in bad),
        )
        src = e.column("src").to_numpy().astype(np.int64)
        dst = e.column("dst").to_numpy().astype(np.int64)
        lim = np.where(ok, nn[np.where(ok, ei, 0)] if len(gids) else 0, 0)
        out = ok & ((src < 0) | (src >= lim) | (dst < 0) | (dst >= lim))
        _rows_problem(
            report,
            ep,
            "edge endpoints outside [0, num_nodes)",
            int(out.sum()),
            (
                f"{e.column('graph_id')[int(i)].as_py()}: {src[i]}->{dst[i]} with {lim[i]} nodes"
                for i in np.nonzero(out)[0]
            ),
        )
        _vocab_problem(report, ep, "edge type", e.column("type").to_numpy().astype(np.int64), len(EDGE_TYPES))


# ---------------------------------------------------------------------------- directory


def _check_dir(d: Path, report: ValidationReport) -> None:
    for tmp in list_tmp_files(d):
        report.warnings.append(f"{tmp}: stray temp file (left by a killed writer; ignored)")
    mpath = d / MANIFEST
    if not mpath.is_file():
        from mmre_cli.store.folders import check_folder, folder_checks, folder_kind

        kind = folder_kind(d)
        if kind is None:
            report.problems.append(
                f"{d}: no {MANIFEST}, and not a model, editor or evaluation folder (not an "
                "artifact, or its stage did not finish)"
            )
            return
        report.kind = kind
        report.problems.extend(check_folder(d, kind))
        report.checks.extend(folder_checks(d, kind))
        return
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        report.problems.append(f"{mpath}: unreadable manifest ({exc})")
        return
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tables"), dict):
        report.problems.append(f"{mpath}: manifest has no 'tables' object")
        return
    report.kind = f"{manifest.get('stage') or 'Parquet'} artifact"
    report.checks += [
        "manifest: format and schema version",
        "shards: each listed file present, its size and sha256 as the manifest says",
        "shards: every page decoded with its checksum verified",
        "shards: schema and mmre metadata (table, schema version, dim), row counts",
    ]
    if manifest.get("format") != FORMAT:
        report.problems.append(f"{mpath}: format is {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        report.problems.append(
            f"{mpath}: schema_version is {manifest.get('schema_version')!r}, expected {SCHEMA_VERSION}"
        )
    dim = manifest.get("dim")
    dim = dim if isinstance(dim, int) else None

    listed: set[str] = set()
    readable: dict[str, list[Path | None]] = {}
    for table, entry in sorted(manifest["tables"].items()):
        shards = entry.get("shards") if isinstance(entry, dict) else None
        if not isinstance(shards, list):
            report.problems.append(f"{mpath}: table {table!r} has no shard list")
            continue
        total = 0
        first_schema: pa.Schema | None = None
        readable[table] = []
        for s in shards:
            try:
                name, rows, size, digest = s["file"], int(s["num_rows"]), int(s["bytes"]), s["sha256"]
            except (KeyError, TypeError, ValueError):
                report.problems.append(f"{mpath}: bad shard entry {s!r} in table {table!r}")
                readable[table].append(None)
                continue
            listed.add(name)
            total += rows
            path = d / name
            if Path(name).name != name or not path.is_file():
                report.problems.append(f"{path}: shard listed in the manifest is missing")
                readable[table].append(None)
                continue
            good = True
            actual = path.stat().st_size
            if actual != size:
                report.problems.append(f"{path}: {actual} bytes, manifest says {size} (truncated or rewritten)")
                good = False
            if sha256_file(path) != digest:
                report.problems.append(f"{path}: sha256 does not match the manifest (corrupted or rewritten)")
                good = False
            schema, got_rows = _read_shard(path, report)
            if schema is None:
                readable[table].append(None)
                continue
            n_before = len(report.problems)
            _check_schema(path, schema, table, report, dim)
            if table not in SCHEMAS:
                if first_schema is None:
                    first_schema = schema
                elif not schema.equals(first_schema, check_metadata=False):
                    report.problems.append(
                        f"{path}: schema differs from the table's first shard: {schema_diff(schema, first_schema)}"
                    )
            if got_rows != rows:
                report.problems.append(f"{path}: {got_rows} rows, manifest says {rows}")
            good = good and len(report.problems) == n_before
            readable[table].append(path if good else None)
        if isinstance(entry.get("num_rows"), int) and entry["num_rows"] != total:
            report.problems.append(f"{mpath}: table {table!r} num_rows {entry['num_rows']} != sum of shards {total}")

    for _, _, p in list_shard_files(d):
        if p.name not in listed:
            report.warnings.append(f"{p}: shard not listed in the manifest (ignored by readers)")

    if "samples" in readable and all(readable["samples"]):
        report.checks.append(SAMPLES_CHECK)
        _check_samples(readable["samples"], report)  # type: ignore[arg-type]

    present = [t for t in GRAPH_TABLES if t in readable]
    if present and len(present) != len(GRAPH_TABLES):
        missing = [t for t in GRAPH_TABLES if t not in readable]
        report.problems.append(f"{mpath}: graph tables incomplete: missing {', '.join(missing)}")
    elif present:
        lists = [readable[t] for t in GRAPH_TABLES]
        if len({len(x) for x in lists}) != 1:
            report.problems.append(
                f"{mpath}: graphs/nodes/edges are not aligned: " + "/".join(str(len(x)) for x in lists) + " shards"
            )
        else:
            triples = [t for t in zip(*lists) if all(t)]
            report.checks.append(
                "graphs/nodes/edges: aligned shards, unique graph ids, node ids 0..n-1, "
                "edge endpoints and counts, kind/modality/type vocabularies"
            )
            _check_graph_shards(triples, report)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- single file


def _check_file(p: Path, report: ValidationReport) -> None:
    if p.name == MANIFEST:
        _check_dir(p.parent, report)
        return
    report.kind = "Parquet shard"
    report.checks += ["every page decoded with its checksum verified", "schema and mmre metadata"]
    schema, rows = _read_shard(p, report)
    if schema is None:
        return
    _check_schema(p, schema, None, report)
    meta = decode_metadata(schema)
    table = meta.get("table")
    # Compare with the manifest next to it, if any lists this file.
    mpath = p.parent / MANIFEST
    if SHARD_RE.match(p.name) and mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
            entries = [
                s for e in manifest.get("tables", {}).values() for s in e.get("shards", []) if s.get("file") == p.name
            ]
        except (OSError, ValueError, AttributeError):
            entries = []
        for s in entries[:1]:
            report.checks.append("size, sha256 and rows as the manifest beside it says")
            if s.get("bytes") != p.stat().st_size:
                report.problems.append(f"{p}: {p.stat().st_size} bytes, manifest says {s.get('bytes')}")
            if s.get("sha256") != sha256_file(p):
                report.problems.append(f"{p}: sha256 does not match the manifest")
            if s.get("num_rows") != rows:
                report.problems.append(f"{p}: {rows} rows, manifest says {s.get('num_rows')}")
    if report.problems:
        return
    if table in ("samples", "nodes", "edges", "graphs"):
        report.checks.append(SAMPLES_CHECK if table == "samples" else f"{table}: ids and vocabularies")
    try:
        if table == "samples":
            _check_samples([p], report)
        elif table == "nodes":
            t = pq.read_table(p, columns=["node", "kind", "modality"])
            node = t.column("node").to_numpy().astype(np.int64)
            _rows_problem(report, p, "negative node ids", int((node < 0).sum()), node[node < 0])
            _vocab_problem(report, p, "node kind", t.column("kind").to_numpy().astype(np.int64), len(NODE_KINDS))
            _vocab_problem(report, p, "modality", t.column("modality").to_numpy().astype(np.int64), len(MODALITIES))
        elif table == "edges":
            t = pq.read_table(p, columns=["src", "dst", "type"])
            neg = pc.sum(pc.or_(pc.less(t.column("src"), 0), pc.less(t.column("dst"), 0))).as_py() or 0
            _rows_problem(report, p, "negative edge endpoints", int(neg), ["see shard"])
            _vocab_problem(report, p, "edge type", t.column("type").to_numpy().astype(np.int64), len(EDGE_TYPES))
        elif table == "graphs":
            t = pq.read_table(p, columns=["graph_id"])
            ids = t.column("graph_id").to_pylist()
            if len(set(ids)) != len(ids):
                report.problems.append(f"{p}: duplicate graph_id values")
    except Exception as exc:  # noqa: BLE001
        report.problems.append(f"{p}: {exc}")
