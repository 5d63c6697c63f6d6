"""DVC stage ``extract_features``: the samples table and every node feature.

Reads the dataset with the pipeline's readers and writes one artifact with two tables:

* ``samples`` — one row per instance (all splits, in file order).
* ``features`` — one row per embedded unit, keyed by an *owner* in the ``sample_id`` column so
  that what several instances share is embedded once:

  ====================  ==========================  =========================================
  owner                 units                       vector
  ====================  ==========================  =========================================
  ``text:<hash>``       ``token:i``                 contextual word vector of token i
  ``<sample_id>``       ``entity:head/tail``        mean of the entity's token vectors
  ``caption:<img>``     ``caption:k``               mean of the caption's word vectors over
                                                    noun phrase k (the caption graph's node k)
  ``image:<img>``       ``image``, ``object:j``     image / object-crop embedding (box = the
                                                    object's normalised (x1, y1, x2, y2))
  ====================  ==========================  =========================================

  Owners appear in the order of first use, each once per chunk, so later stages read features
  in step with the samples (bounded memory, no random access).

Work is done in chunks of ``extract_features.shard_instances`` instances; each chunk ends one
``samples`` shard and one ``features`` shard, so a killed run resumes after the last whole
chunk and gives the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

from mmre_cli.data.instance import Instance
from mmre_cli.data.load import load_split
from mmre_cli.data.locate import detect_format, resolve_label_map
from mmre_cli.params import declared, params_hash, stage_view
from mmre_cli.pipeline.features import FeatureExtractor
from mmre_cli.pipeline.records import finish
from mmre_cli.reporting import Reporter, reporter_or_null
from mmre_cli.store.tables import instances_to_table
from mmre_cli.store.writers import ArtifactWriter

#: the params this stage reads (dvc.yaml lists the same; tests/test_params_declared.py);
#: the dataset and the encoder; build_graphs.spacy_model parses the captions into the phrases it encodes
PARAMS = declared(
    "data.root",
    "data.format",
    "data.splits",
    "data.captions",
    "data.image_root",
    "data.image_policy",
    "data.on_error",
    "data.label_map",
    "extract_features.encoder",
    "extract_features.weights",
    "extract_features.detector",
    "extract_features.max_objects",
    "extract_features.det_conf",
    "extract_features.batch_size",
    "extract_features.workers",
    "extract_features.shard_instances",
    "extract_features.max_image_pixels",
    "build_graphs.spacy_model",
)


def iter_dataset(params: dict, reporter: Reporter) -> Iterator[tuple[list[Instance], object]]:
    """Yield ``(instances, LoadReport)`` per split named in ``data.splits``."""
    data = params["data"]
    root = Path(data["root"])
    fmt = detect_format(root) if data["format"] == "auto" else data["format"]
    for split in data["splits"]:
        instances, report = load_split(
            root,
            split,
            fmt=fmt,
            captions=data["captions"],
            image_root=data["image_root"],
            image_policy=data["image_policy"],
            on_error=data["on_error"],
            label_map=data["label_map"],
            reporter=reporter,
            verify_images=data["image_policy"] == "skip",  # skip: the broken ones too
        )
        yield instances, report


def data_fingerprint(instances: list[Instance]) -> str:
    """16 hex of sha256 over everything the stage reads from each instance."""
    digest = hashlib.sha256()
    for inst in instances:
        digest.update(
            repr(
                (
                    inst.sample_id,
                    inst.tokens,
                    inst.head,
                    inst.tail,
                    inst.relation,
                    inst.img_id,
                    inst.image_path,
                    inst.caption,
                )
            ).encode("utf-8")
        )
    return digest.hexdigest()[:16]


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


#: every record left out under ``data.on_error: skip`` / ``image_policy: skip``, one JSON line each
SKIPPED_FILE = "skipped.jsonl"


def write_skipped(path: Path, records: list[dict]) -> None:
    """``skipped.jsonl``: ``{"where", "reason", "message"}`` per skipped record (empty file: none)."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def run(*, out: Path, params: dict, gpus: int = 0, stats: Path | None = None, reporter: Reporter | None = None) -> dict:
    """Run the stage; returns (and writes) its statistics."""
    reporter = reporter_or_null(reporter)
    out = Path(out)
    params = stage_view(params, PARAMS)
    cfg = params["extract_features"]
    chunk_size = int(cfg["shard_instances"])
    extractor = FeatureExtractor(params, gpus, reporter)
    instances: list[Instance] = []
    reports = []
    for split_instances, report in iter_dataset(params, reporter):
        instances.extend(split_instances)
        reports.append(report)

    labels, _ = resolve_label_map(Path(params["data"]["root"]), None, params["data"]["label_map"])
    lookup = (lambda rel: labels.id(rel) if rel is not None else -1) if labels is not None else None
    # the params hash + a fingerprint of the data decide whether whole shards can be reused
    phash = params_hash(params, PARAMS) + "-" + data_fingerprint(instances)
    unit_counts: dict[str, int] = {}
    writer = ArtifactWriter(
        out,
        stage="extract_features",
        encoder=extractor.encoder.fingerprint(),
        dim=extractor.encoder.dim,
        params_hash=phash,
        resume=True,
        max_rows_per_shard=None,
        max_bytes_per_shard=None,
        info={
            "encoder": extractor.encoder.name,
            "labels": list(labels.labels) if labels else None,
            "none_label": labels.none_label if labels else None,
        },
    )
    with writer:
        samples, features = writer.table("samples"), writer.table("features")
        done = min(len(samples.shards), len(features.shards))
        samples.truncate(done)
        features.truncate(done)
        if done:
            reporter.info(f"resuming after {done} whole shard(s) ({min(done * chunk_size, len(instances))} instances)")
        with reporter.progress("extract-features", total=len(instances)) as task:
            task.advance(min(done * chunk_size, len(instances)))
            for index, chunk in enumerate(_chunks(instances, chunk_size)):
                if index < done:
                    continue
                rows = extractor.chunk_rows(chunk, task)  # moves the bar per encoder batch
                samples.write(instances_to_table(chunk, lookup))
                features.write(rows.table(extractor.encoder.dim))
                samples.roll(allow_empty=True)
                features.roll(allow_empty=True)
                for kind in rows.kind:
                    unit_counts[kind] = unit_counts.get(kind, 0) + 1
    skipped = [r for report in reports for r in report.skipped_records]
    write_skipped(out / SKIPPED_FILE, skipped)
    result = {
        "instances": len(instances),
        "skipped": len(skipped),
        "encoder": extractor.encoder.name,
        "dim": extractor.encoder.dim,
        "splits": {
            r.split: {
                "read": r.read,
                "kept": r.kept,
                "skipped": r.skipped,
                "text_only": r.text_only,
                "captioned": r.captioned,
            }
            for r in reports
        },
        "units_this_run": unit_counts,
    }
    return finish(out, params, PARAMS, result, stats)
