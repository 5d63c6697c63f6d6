"""Embedding one chunk of instances: the rows of the ``features`` table (extract-features, predict).

:class:`FeatureExtractor` holds the encoder, the detector and spaCy, and turns a chunk of
instances into its feature rows (tokens, entities, caption phrases, image and objects), each
under its owner (:mod:`mmre_cli.pipeline.owners`).
"""

from __future__ import annotations

import numpy as np

from mmre_cli.data.instance import Instance
from mmre_cli.pipeline.owners import caption_owner, chunk_captions, image_owner, text_owner
from mmre_cli.reporting import Reporter


class _FeatureRows:
    """Accumulates rows of the ``features`` table for one chunk, in blocks of rows."""

    def __init__(self) -> None:
        self.owner: list[str] = []
        self.unit: list[str] = []
        self.kind: list[str] = []
        self.text: list[str | None] = []
        self.box: list[np.ndarray] = []  # blocks [n, 4]
        self.emb: list[np.ndarray] = []  # blocks [n, D]

    def add_many(
        self, owner: str, units: list[str], kind: str, texts: list, emb: np.ndarray, boxes: np.ndarray | None = None
    ) -> None:
        """``len(units)`` rows of one owner and kind; ``emb`` ``[n, D]``, ``boxes`` ``[n, 4]`` or NaN."""
        n = len(units)
        self.owner.extend([owner] * n)
        self.unit.extend(units)
        self.kind.extend([kind] * n)
        self.text.extend(texts)
        self.emb.append(np.asarray(emb, np.float32).reshape(n, -1))
        self.box.append(
            np.full((n, 4), np.nan, np.float32) if boxes is None else np.asarray(boxes, np.float32).reshape(n, 4)
        )

    def add(self, owner: str, unit: str, kind: str, text: str | None, emb: np.ndarray, box=None) -> None:
        self.add_many(owner, [unit], kind, [text], np.asarray(emb)[None], None if box is None else [box])

    def table(self, dim: int):
        from mmre_cli.store.tables import features_to_table

        emb = np.concatenate(self.emb) if self.emb else np.zeros((0, dim), np.float32)
        boxes = np.concatenate(self.box) if self.box else np.zeros((0, 4), np.float32)
        return features_to_table(self.owner, self.unit, self.kind, emb, texts=self.text, boxes=boxes)


def _normalise(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(norm, 1e-12)).astype(np.float32)


class FeatureExtractor:
    """Embeds one chunk of instances (the library calls the stage makes, in one place)."""

    def __init__(self, params: dict, gpus: int, reporter: Reporter) -> None:
        from mmre_cli.features.detect import build_detector
        from mmre_cli.features.encoders import build_encoder
        from mmre_cli.graphs.nlp import load_spacy

        cfg = params["extract_features"]
        self.cfg = cfg
        self.reporter = reporter
        device = "cuda" if gpus > 0 else "cpu"
        self.encoder = build_encoder(cfg["encoder"], weights=cfg["weights"], device=device)
        self.detector = None
        if cfg["detector"] not in (None, "none", "dataset"):
            self.detector = build_detector(
                cfg["detector"], conf=cfg["det_conf"], max_det=cfg["max_objects"], device=device
            )
        self.dataset_boxes = cfg["detector"] == "dataset"
        self.nlp = load_spacy(params["build_graphs"]["spacy_model"])
        self.use_pixels = self.encoder.supports_images

    # -- text ---------------------------------------------------------------------------
    def _text(self, chunk: list[Instance], rows: _FeatureRows) -> None:
        owners: dict[str, tuple[str, ...]] = {}
        for inst in chunk:
            owners.setdefault(text_owner(inst.tokens), inst.tokens)
        keys = list(owners)
        vectors = dict(zip(keys, self.encoder.encode_words([list(owners[k]) for k in keys])))
        for key in keys:
            words = owners[key]
            rows.add_many(key, [f"token:{i}" for i in range(len(words))], "token", list(words), vectors[key])
        for inst in chunk:
            words = vectors[text_owner(inst.tokens)]
            for role, ent in (("head", inst.head), ("tail", inst.tail)):
                if ent.is_visual:
                    continue
                rows.add(
                    inst.sample_id,
                    f"entity:{role}",
                    "entity",
                    ent.name,
                    _normalise(words[ent.start : ent.end].mean(axis=0)),
                )

    # -- captions -----------------------------------------------------------------------
    def _caption_docs(self, chunk: list[Instance]) -> tuple[list[str], list]:
        """The chunk's distinct captions (owner keys) and their spaCy parses."""
        from mmre_cli.graphs.nlp import parse_texts

        owners = chunk_captions(chunk)
        keys = list(owners)
        # only the noun-chunk spans matter here (lemmas are build-graphs' business): skip the
        # lemmatizer, a quarter of the parse time; the chunks are the same (noun_chunks needs
        # tags and the parse only)
        skip = [p for p in ("lemmatizer",) if p in self.nlp.pipe_names]
        with self.nlp.select_pipes(disable=skip):
            docs = list(parse_texts(self.nlp, [owners[k] for k in keys], batch_size=self.cfg["batch_size"]))
        return keys, docs

    def _captions(self, keys: list[str], docs: list, rows: _FeatureRows) -> None:
        from mmre_cli.graphs.cmg import pool_spans
        from mmre_cli.graphs.nlp import doc_words
        from mmre_cli.graphs.textual import caption_phrases

        word_vecs = self.encoder.encode_words([doc_words(doc) for doc in docs])
        for key, doc, vecs in zip(keys, docs, word_vecs):
            phrases = caption_phrases(doc)  # node k of build-graphs' caption graph
            if not phrases:
                continue
            rows.add_many(
                key,
                [f"caption:{k}" for k in range(len(phrases))],
                "caption_phrase",
                [text for text, _ in phrases],
                pool_spans([span for _, span in phrases], vecs),
            )

    # -- pixels -------------------------------------------------------------------------
    def _objects(self, inst: Instance):
        from mmre_cli.features.detect import boxes_from_dataset

        if self.dataset_boxes:
            objects = inst.extra.get("objects") or {}
            items = list(objects.items()) if isinstance(objects, dict) else list(objects)
            return boxes_from_dataset(items)[: self.cfg["max_objects"]]
        return None

    def _images(self, chunk: list[Instance], rows: _FeatureRows) -> None:
        from mmre_cli.features.imageio import crop, decode_images

        need_pixels = self.use_pixels or self.detector is not None
        wanted: dict[str, Instance] = {}
        for inst in chunk:
            key = image_owner(inst)
            if key is not None and (need_pixels or self.dataset_boxes):
                wanted.setdefault(key, inst)
        if not wanted:
            return
        keys = list(wanted)
        images, kept = [], []
        if need_pixels:
            decoded = decode_images(
                [wanted[k].image_path for k in keys],
                workers=self.cfg["workers"],
                max_pixels=self.cfg["max_image_pixels"],
            )
            for key, (path, image) in zip(keys, decoded):
                if isinstance(image, Exception):
                    self.reporter.warn(f"{path}: {image}; image skipped (text only)")
                    continue
                images.append(image)
                kept.append(key)
        else:  # dataset boxes embedded by their names: no pixels needed
            images, kept = [None] * len(keys), keys
        if not kept:
            return
        if self.detector is not None:
            detections = self.detector.detect(images)
        else:
            detections = [self._objects(wanted[k]) or [] for k in kept]
        if self.use_pixels:
            whole = self.encoder.encode_images(images)
            crops = []
            for i, dets in enumerate(detections):
                for det in dets:
                    crops.append(crop(images[i], det.box))
            crop_vecs = self.encoder.encode_images(crops) if crops else np.zeros((0, self.encoder.dim), np.float32)
        else:  # a text encoder embeds an object by its label, the image has no vector
            whole = None
            labels = [d.label for dets in detections for d in dets]
            crop_vecs = self.encoder.encode_texts(labels) if labels else np.zeros((0, self.encoder.dim), np.float32)
        cursor = 0
        for i, key in enumerate(kept):
            if whole is not None:
                rows.add(key, "image", "image", None, whole[i], box=(0.0, 0.0, 1.0, 1.0))
            for j, det in enumerate(detections[i]):
                rows.add(key, f"object:{j}", "object", det.label, crop_vecs[cursor], box=det.box)
                cursor += 1

    def chunk_rows(self, chunk: list[Instance], task=None) -> _FeatureRows:
        """All feature rows of one chunk (a second thread parsing captions during the sentence
        encoding was measured: no gain, torch already keeps both cores busy). ``task`` (a
        progress task counting instances) moves as the encoder finishes each batch: the
        sentences are 60 % of the chunk's share, the captions 40 %."""
        rows = _FeatureRows()
        moved = _ChunkProgress(task, len(chunk))
        self.encoder.on_batch = moved
        try:
            moved.phase(0.6, len({text_owner(inst.tokens) for inst in chunk}))
            self._text(chunk, rows)
            moved.phase(0.4, len({k for k in map(caption_owner, chunk) if k is not None}))
            self._captions(*self._caption_docs(chunk), rows)
            self._images(chunk, rows)
        finally:
            self.encoder.on_batch = None
            moved.finish()
        return rows


class _ChunkProgress:
    """Advances a progress task by parts of one chunk's ``size`` as encoder batches finish."""

    def __init__(self, task, size: int) -> None:
        self.task, self.size, self.moved, self.step = task, float(size), 0.0, 0.0

    def phase(self, share: float, items: int) -> None:
        self.step = share * self.size / max(1, items)

    def __call__(self, k: int) -> None:
        inc = min(self.size - self.moved, k * self.step)
        if self.task is not None and inc > 0:
            self.task.advance(inc)
        self.moved += inc

    def finish(self) -> None:
        if self.task is not None and self.size - self.moved > 0:
            self.task.advance(self.size - self.moved)
        self.moved = self.size
