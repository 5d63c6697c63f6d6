"""One entry point for all dataset readers: detect the format, find the split, load it.

>>> from mmre_cli.data.load import load_split
>>> instances, report = load_split("data/mnre", "val", captions="captions/cogvlm_{split}.txt")

The format, the split file and the label map are found by :mod:`mmre_cli.data.locate`. Errors
are :class:`InputError` with ``path:line``; with ``on_error='skip'`` bad records are counted in
:class:`LoadReport` instead. Input files are only ever opened for reading.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

from mmre_cli.data.captions import resolve_captions
from mmre_cli.data.images import ImageResolver, find_image_root
from mmre_cli.data.instance import Instance
from mmre_cli.data.jsonl import parse_jsonl_line
from mmre_cli.data.labels import LabelMap
from mmre_cli.data.locate import FORMATS, TXT_SUBDIRS, base_dir, detect_format, find_split_file, resolve_label_map
from mmre_cli.data.mnre import Record, RecordError, iter_text_lines, parse_mnre_line
from mmre_cli.data.more import load_object_dict, parse_more_line
from mmre_cli.errors import InputError, MmreError
from mmre_cli.reporting import NullReporter, Reporter

IMAGE_POLICIES = ("error", "skip", "text-only")
ON_ERROR = ("raise", "skip")
MAX_PROBLEMS = 10


@dataclass
class LoadReport:
    """What happened while loading one split; the CLI prints it as a summary table.

    Attributes:
        path: the split file read.
        split: the split name as asked.
        format: ``'mnre'``, ``'mnre-v1'``, ``'more'`` or ``'jsonl'``.
        read: non-blank lines read (good and bad).
        kept: instances returned.
        skipped: reason -> count of records dropped (``on_error='skip'`` or ``image_policy='skip'``).
        text_only: kept instances without an image (image missing under ``'text-only'``, or the
            record names no image).
        captioned: kept instances with a caption attached.
        label_counts: relation label -> count over kept instances (unlabelled ones not counted).
        first_problems: up to 10 ``'path:line: reason'`` strings (skipped records and images
            missing under ``'text-only'``).
        skipped_records: every skipped record, ``{"where": "path:line", "reason", "message"}``
            (extract-features writes them to ``skipped.jsonl``).
    """

    path: str
    split: str
    format: str
    read: int = 0
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    text_only: int = 0
    captioned: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)
    first_problems: list[str] = field(default_factory=list)
    skipped_records: list[dict] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        """Total records skipped, all reasons."""
        return sum(self.skipped.values())

    def to_dict(self) -> dict:
        """A JSON-ready dict (for ``--json`` output)."""
        return asdict(self)


class SplitReader:
    """Streaming reader for one split; iterate it for :class:`Instance` records.

    Everything that can fail before the first record (format, split file, label map, captions,
    object boxes) is resolved in the constructor. ``report`` is filled in while iterating and is
    complete once the iterator is exhausted. See :func:`load_split` for the arguments.
    """

    def __init__(
        self,
        dataset_dir: str | Path,
        split: str,
        *,
        fmt: str | None = None,
        captions: str | Path | Mapping[str, str] | None = None,
        image_root: str | Path | None = None,
        image_policy: str = "text-only",
        label_map: LabelMap | str | Path | Mapping[str, int] | None = None,
        on_error: str = "raise",
        reporter: Reporter | None = None,
        verify_images: bool = False,
    ):
        if image_policy not in IMAGE_POLICIES:
            raise MmreError(f"image_policy must be one of {IMAGE_POLICIES}, got {image_policy!r}")
        if on_error not in ON_ERROR:
            raise MmreError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        p = Path(dataset_dir)
        if not p.exists():
            raise InputError("dataset path does not exist", str(p))
        fmt = fmt or detect_format(p)
        if fmt not in FORMATS:
            raise MmreError(f"unknown format {fmt!r}; expected one of {FORMATS}")
        self.fmt, self.split, self.on_error, self.image_policy = fmt, split, on_error, image_policy
        self.reporter = reporter or NullReporter()
        self.path, file_split = find_split_file(p, fmt, split)
        self.report = LoadReport(path=str(self.path), split=split, format=fmt)
        # reading train itself when labels come from train: nothing to check, no second pass
        self.labels, self.label_source = resolve_label_map(p, fmt, label_map, _reading=self.path)
        self.captions, self.caption_stats = resolve_captions(captions, split, on_error=on_error)

        # where images and aux files live: the dataset folder (or the file's) and its parent
        base = base_dir(p)
        if base.name in TXT_SUBDIRS or self.path.parent.name in TXT_SUBDIRS:
            bases = [self.path.parent.parent, base, base.parent]
        else:
            bases = [base, base.parent]
        bases = list(dict.fromkeys(bases))
        if fmt == "jsonl":
            root = None if image_root is None else find_image_root([], file_split, image_root)
        else:
            root = find_image_root(bases, file_split, image_root)
        self.image_root = root
        self.images = ImageResolver(root, verify=verify_images)
        if fmt != "jsonl" and root is None:
            self.reporter.info(f"no image folder img_org/{file_split} found near {base}; images count as missing")

        self.objects = None
        if fmt == "more":
            for b in bases:
                cand = b / f"ent_{file_split}_dict.pth"
                if cand.is_file():
                    self.objects = load_object_dict(cand)
                    break

        parsers: dict[str, Callable[[str], Record]] = {
            "mnre": parse_mnre_line,
            "mnre-v1": parse_mnre_line,
            "more": lambda text: parse_more_line(text, self.objects),
            "jsonl": parse_jsonl_line,
        }
        self._parse = parsers[fmt]
        self._seen_ids: dict[str, int] = {}
        self._gen = self._run()

    def __iter__(self) -> "SplitReader":
        return self

    def __next__(self) -> Instance:
        return next(self._gen)

    # -- internals ---------------------------------------------------------------------------
    def _problem(self, lineno: int | None, reason: str) -> None:
        if len(self.report.first_problems) < MAX_PROBLEMS:
            where = self.report.path if lineno is None else f"{self.report.path}:{lineno}"
            self.report.first_problems.append(f"{where}: {reason}")

    def _skip(self, lineno: int | None, reason: str, message: str) -> None:
        self.report.skipped[reason] = self.report.skipped.get(reason, 0) + 1
        where = self.report.path if lineno is None else f"{self.report.path}:{lineno}"
        self.report.skipped_records.append({"where": where, "reason": reason, "message": message})
        self._problem(lineno, message)

    def _bad(self, lineno: int, err: RecordError) -> None:
        if self.on_error == "raise":
            raise InputError(err.message, self.report.path, lineno)
        self._skip(lineno, err.reason, err.message)

    def _record(self, lineno: int, text: str) -> tuple[Record, str]:
        rec = self._parse(text)
        if rec.relation is not None and self.labels is not None and rec.relation not in self.labels:
            raise RecordError(
                "unknown relation", f"unknown relation label {rec.relation!r} (not in {self.label_source})"
            )
        sid = rec.sample_id or f"{self.split}-{lineno:06d}"
        if sid in self._seen_ids:
            raise RecordError("duplicate id", f"duplicate sample id {sid!r} (first on line {self._seen_ids[sid]})")
        return rec, sid

    def _run(self) -> Iterator[Instance]:
        report, labels = self.report, Counter()
        any_line = False
        file_dir = self.path.parent
        with self.reporter.progress(f"reading {self.path.name}") as task:
            for lineno, item in iter_text_lines(self.path):
                any_line = True
                report.read += 1
                task.advance()
                try:
                    if isinstance(item, RecordError):
                        raise item
                    rec, sid = self._record(lineno, item)
                    check = None
                    if rec.img_id is not None:
                        check = self.images.resolve(rec.img_id, as_path=rec.image_is_path, base=file_dir)
                except RecordError as err:
                    self._bad(lineno, err)
                    continue
                self._seen_ids[sid] = lineno
                image_path, status = None, "none"
                if check is not None:
                    if check.status == "ok":
                        image_path, status = check.path, "ok"
                    else:
                        reason = "missing image" if check.status == "missing" else "unreadable image"
                        if self.image_policy == "error":
                            raise InputError(check.detail, report.path, lineno)
                        if self.image_policy == "skip":
                            self._skip(lineno, reason, check.detail)
                            continue
                        status = "missing"
                        if self.images.root_exists or rec.image_is_path:  # else said once, below
                            self._problem(lineno, check.detail)
                caption = rec.caption
                if caption is None and self.captions is not None and rec.img_id is not None:
                    caption = self.captions.get(rec.img_id) or None
                inst = Instance(
                    sample_id=sid,
                    split=self.split,
                    tokens=rec.tokens,
                    head=rec.head,
                    tail=rec.tail,
                    relation=rec.relation,
                    img_id=rec.img_id,
                    image_path=image_path,
                    image_status=status,
                    caption=caption,
                    source=f"{report.path}:{lineno}",
                    extra=rec.extra,
                )
                report.kept += 1
                if status != "ok":
                    report.text_only += 1
                if caption:
                    report.captioned += 1
                if rec.relation is not None:
                    labels[rec.relation] += 1
                yield inst
        report.label_counts = dict(labels)
        if not any_line:
            if self.on_error == "raise":
                raise InputError("file is empty (no records)", report.path, 1)
            self._skip(None, "empty file", "file is empty (no records)")
        self._finish()

    def _finish(self) -> None:
        r = self.report
        if r.skipped:
            parts = ", ".join(f"{k}: {v}" for k, v in sorted(r.skipped.items()))
            self.reporter.warn(f"{r.path}: skipped {r.n_skipped} of {r.read} records ({parts})")
        if self.fmt != "jsonl" and not self.images.root_exists and r.kept:
            self._problem(None, f"no image folder found (looked for img_org/{r.split} near the data)")
        if r.text_only and self.image_policy == "text-only" and r.text_only < r.kept:
            self.reporter.warn(f"{r.path}: {r.text_only} of {r.kept} instances have no image (kept as text-only)")
        if self.captions is not None:
            self.reporter.info(f"{r.path}: captions attached to {r.captioned} of {r.kept} instances")


def iter_split(
    dataset_dir: str | Path,
    split: str,
    *,
    fmt: str | None = None,
    captions: str | Path | Mapping[str, str] | None = None,
    image_root: str | Path | None = None,
    image_policy: str = "text-only",
    label_map: LabelMap | str | Path | Mapping[str, int] | None = None,
    on_error: str = "raise",
    reporter: Reporter | None = None,
    verify_images: bool = False,
) -> SplitReader:
    """Stream one split's instances; same arguments as :func:`load_split`.

    Returns a :class:`SplitReader`: an iterator of :class:`Instance` whose ``.report``
    (:class:`LoadReport`) is complete once it is exhausted.
    """
    return SplitReader(
        dataset_dir,
        split,
        fmt=fmt,
        captions=captions,
        image_root=image_root,
        image_policy=image_policy,
        label_map=label_map,
        on_error=on_error,
        reporter=reporter,
        verify_images=verify_images,
    )


def load_split(
    dataset_dir: str | Path,
    split: str,
    *,
    fmt: str | None = None,
    captions: str | Path | Mapping[str, str] | None = None,
    image_root: str | Path | None = None,
    image_policy: str = "text-only",
    label_map: LabelMap | str | Path | Mapping[str, int] | None = None,
    on_error: str = "raise",
    reporter: Reporter | None = None,
    verify_images: bool = False,
) -> tuple[list[Instance], LoadReport]:
    """Load one split of a dataset.

    Args:
        dataset_dir: the dataset folder (or a split file).
        split: any split name (``train``, ``val``, ``test``...); ``val``/``valid``/``dev`` stand
            in for each other when only one exists.
        fmt: ``'mnre'``, ``'mnre-v1'``, ``'more'``, ``'jsonl'``; default :func:`detect_format`.
        captions: a captions file, a template with ``{split}``, or a ready ``{img_id: text}``.
        image_root: the image folder (``{image_root}/{split}`` if that exists); default
            ``img_org/{split}`` in the dataset folder or its parent. For JSONL, relative
            ``image`` paths are taken from here, else from the JSONL file's folder.
        image_policy: a missing/unreadable image: ``'error'`` raises, ``'skip'`` drops the
            instance (``skipped['missing image']`` / ``['unreadable image']``), ``'text-only'``
            keeps it with ``image_path=None, image_status='missing'``.
        label_map: explicit label map (``LabelMap``, rel2id path or dict); default
            :func:`resolve_label_map`. Relations not in it are errors (``unknown relation``).
        on_error: ``'raise'``: the first bad record raises :class:`InputError` (``path:line:
            reason``); ``'skip'``: bad records are counted in ``report.skipped``.
        reporter: progress and warnings (default: silent).
        verify_images: also open each image header with PIL (no pixel decode).

    Returns:
        ``(instances, report)``.
    """
    reader = iter_split(
        dataset_dir,
        split,
        fmt=fmt,
        captions=captions,
        image_root=image_root,
        image_policy=image_policy,
        label_map=label_map,
        on_error=on_error,
        reporter=reporter,
        verify_images=verify_images,
    )
    instances = list(reader)
    return instances, reader.report
