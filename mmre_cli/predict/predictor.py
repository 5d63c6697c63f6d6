"""The whole trained pipeline on new input (``mmre predict``, ``mmre serve``), with the library
functions the stages run.

A :class:`Predictor` loads a model folder written by train-gnn once (``pipeline.json`` gives
every stage's params, :mod:`mmre_cli.predict.folder`; ``./params.yaml`` is never read) and then
runs, chunk by chunk, exactly what the stages run on a dataset:

1. :meth:`mmre_cli.pipeline.features.FeatureExtractor.chunk_rows` →
   :class:`mmre_cli.pipeline.chunks.OwnerFeatures` (token, entity, caption-phrase, image and
   object vectors);
2. :func:`mmre_cli.pipeline.scene.chunk_graphs` (sentence, caption and visual scene graphs);
3. :func:`mmre_cli.pipeline.merge.instance_cmg` (the cross-modal graph of each instance);
4. :func:`mmre_cli.pipeline.editor.refine` (the RL editor's edits, then diffusion with pruning);
5. :func:`mmre_cli.learn.trainer.predict` with the classifier of ``model.safetensors``.

Input comes as :class:`Query` objects (image, text, optional head/tail strings, optional
caption). :meth:`Predictor.instances` tokenises the text with the model's spaCy tokenizer and
locates ``head``/``tail`` as token spans (case-sensitive first, then case-insensitive); without
them spaCy's NER proposes entities and every ordered pair of distinct entities (by text) is an
instance, at most ``max_pairs`` per query. Numeric entity types (dates, amounts, ordinals, …)
are not proposed: no relation of MNRE holds between them.

The image is checked with :func:`mmre_cli.features.imageio.open_image` (missing file, not an
image, too many pixels → one clear error). Its pixels are used only if the model's encoder
embeds images (CLIP), its objects only through the model's detector
(``extract_features.detector``). A model trained with captions as the image's view takes a
caption per query; none can be generated offline, so without one the query runs text-only
(with a warning). Errors a user can cause raise :class:`~mmre_cli.errors.MmreError`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from mmre_cli.data.instance import Entity, Instance
from mmre_cli.errors import InputError, MmreError
from mmre_cli.pipeline.chunks import OwnerFeatures
from mmre_cli.pipeline.devices import cpu_threads
from mmre_cli.pipeline.editor import load_editor, refine
from mmre_cli.pipeline.features import FeatureExtractor
from mmre_cli.pipeline.learning import needs_words
from mmre_cli.pipeline.merge import instance_cmg
from mmre_cli.pipeline.scene import chunk_graphs
from mmre_cli.predict.folder import ensemble_folders, model_params, read_pipeline
from mmre_cli.predict.prediction import Prediction
from mmre_cli.predict.queries import Query, Skipped, check_query, find_span
from mmre_cli.reporting import Reporter, reporter_or_null

#: spaCy NER types never proposed as entities (no MNRE relation holds between them).
SKIP_ENTITY_TYPES = frozenset({"DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL"})
DEFAULT_MAX_PAIRS = 20
DEFAULT_CHUNK = 64


def max_pixels(params: dict) -> int:
    from mmre_cli.features.imageio import DEFAULT_MAX_PIXELS

    return int(params["extract_features"].get("max_image_pixels") or DEFAULT_MAX_PIXELS)


def trained_with_captions(params: dict) -> bool:
    return bool(params["data"].get("captions")) and bool(params["build_graphs"].get("caption_graph", True))


class Predictor:
    r"""A loaded model: encoder, detector, spaCy, the editor and the classifier, ready to predict.

    Args:
        model: the model folder written by train-gnn.
        encoder: encoder name to build instead of the recorded one (it must give the same
            fingerprint as the model's, else MmreError naming both).
        encoder_weights: weights path for the encoder instead of the recorded one (same check).
        max_pairs: most NER pairs per query when no head/tail is given (default 20).
        chunk_size: instances per pass through the pipeline (default 64).
        reporter: progress and warnings (default: none).
        captioner: image-to-text model that captions an image given without a caption, for a
            model that reads captions (default: ``$MMRE_CAPTIONER``, else ``data.captioner``;
            :mod:`mmre_cli.features.captioner`).
        members: more model folders (besides those of a ``train_gnn.ensemble`` model, which are
            always used), trained on the same labels, for a mean-probability ensemble
            :math:`\frac1M \sum_m p_m(c \mid x)` (as ``mmre evaluate --model A --model B``): each
            classifies its graphs of the instances this model parses (this model's graphs when
            its upstream params, encoder and editor are the same, else its own); the
            probabilities are averaged. ``--explain`` draws this (the first) model's graph and
            attribution.
    """

    def __init__(
        self,
        model: Path,
        *,
        encoder: str | None = None,
        encoder_weights: str | Path | None = None,
        max_pairs: int = DEFAULT_MAX_PAIRS,
        chunk_size: int = DEFAULT_CHUNK,
        reporter: Reporter | None = None,
        captioner: str | Path | None = None,
        members: Iterable[Path] = (),
    ) -> None:
        self.reporter = reporter_or_null(reporter)
        self.model_dir = Path(model)
        self.pipeline = read_pipeline(self.model_dir)
        self.params = model_params(self.pipeline)
        cfg = self.params["extract_features"]
        if encoder is not None:
            cfg["encoder"] = encoder
        if encoder_weights is not None:
            cfg["weights"] = str(encoder_weights)
        self.max_pairs = int(max_pairs)
        self.chunk_size = max(1, int(chunk_size))
        self.max_pixels = max_pixels(self.params)
        self.captions = trained_with_captions(self.params)
        from mmre_cli.features.captioner import captioner_source

        self.captioner_source = captioner_source(captioner, self.params) if self.captions else None
        #: how a message says to set a captioner (``mmre serve`` words it for its API clients)
        self.captioner_hint = "--captioner MODEL, $MMRE_CAPTIONER"
        self._captioner = None
        cpu_threads()
        self._load()
        self._ner = None
        self._noted: set[str] = set()
        members = [*ensemble_folders(self.model_dir)[1:], *members]  # a train_gnn.ensemble folder's own first
        self.members = [
            Predictor(m, encoder=encoder, encoder_weights=encoder_weights, chunk_size=chunk_size, reporter=reporter)
            for m in members
        ]
        for member in self.members:
            if member.labels != self.labels:
                raise MmreError(
                    f"{member.model_dir} was trained on other labels than {self.model_dir}; "
                    "an ensemble's models must share the label map"
                )

    def _load(self) -> None:
        from mmre_cli.learn.checkpoint import load_checkpoint

        self.extractor = FeatureExtractor(self.params, 0, self.reporter)
        built = self.extractor.encoder.fingerprint()
        recorded = self.pipeline["encoder"]
        if built != recorded:
            raise MmreError(
                f"encoder mismatch: the model was trained with encoder {recorded!r} "
                f"({self.pipeline.get('encoder_name')}) but this run builds {built!r} "
                f"({self.extractor.encoder.name}); point --encoder-weights (or $MMRE_MINILM / "
                "$MMRE_CLIP_WEIGHTS) at the weights the model was trained with"
            )
        self.nlp = self.extractor.nlp
        self.model, meta = load_checkpoint(self.model_dir, "model")
        tuned_encoder = getattr(self.model, "encoder", None)
        if hasattr(tuned_encoder, "cache_lower"):
            tuned_encoder.cache_lower = False  # each query is seen once: a cache would only grow
        tuned = getattr(tuned_encoder, "fingerprint", None)
        if tuned is not None and self.pipeline.get("finetune_encoder") not in (None, tuned):
            raise MmreError(
                f"fine-tuned encoder mismatch: the model was trained on {self.pipeline['finetune_encoder']!r} "
                f"but this machine resolves {tuned!r}; install the same encoder "
                "($MMRE_MINILM / $MMRE_MPNET or the model folder it was trained from)"
            )
        self.labels = list(meta.get("labels") or self.pipeline["labels"])
        if len(self.labels) != int(self.model.config.get("num_classes", len(self.labels))):
            raise MmreError(
                f"{self.model_dir}: {len(self.labels)} labels for a classifier of "
                f"{self.model.config.get('num_classes')} classes; retrain the model"
            )
        self.editor, self.editor_cfg = load_editor(self.model_dir, self.params)
        self.graph_source = self._graph_source()
        self.uses_pixels = bool(self.extractor.use_pixels)
        self.uses_objects = self.extractor.detector is not None

    def _graph_source(self) -> str:
        """What this model's graphs of an instance depend on: every stage's params but the
        classifier's, the encoder fingerprint and the editor's weights. Ensemble members with the
        same source (the seeds of a ``train_gnn.ensemble`` model) reuse the first model's graphs."""
        from mmre_cli.hashing import sha256_file

        upstream = {k: v for k, v in self.params.items() if k != "train_gnn"}
        editor = self.model_dir / "agent.safetensors"
        digest = sha256_file(editor) if self.editor is not None and editor.is_file() else None
        return json.dumps([upstream, self.pipeline["encoder"], digest], sort_keys=True, default=str)

    # -- input ------------------------------------------------------------------------------
    @property
    def ner(self):
        if self._ner is None:
            from mmre_cli.graphs.nlp import load_spacy

            self._ner = load_spacy(self.params["build_graphs"]["spacy_model"], ner=True)
        return self._ner

    def instances(self, query: Query, index: int) -> list[tuple[Instance, str]]:
        """The instances of one query, each with where its pair came from (``given`` / ``ner``).

        Raises:
            InputError: empty text, only one of head/tail, a head/tail not in the text, a bad image.
        """
        where = f"{query.where}: " if query.where else ""
        check_query(query, self.max_pixels)
        text = " ".join(query.text.split())
        image = None if query.image is None else str(query.image)
        if query.head_span is not None:
            tokens = [t.text for t in self.nlp.make_doc(text)]
            for flag, (start, end) in (("head", query.head_span), ("tail", query.tail_span)):
                if end > len(tokens):
                    raise InputError(
                        f"{where}{flag} span [{start}, {end}] is past the text's {len(tokens)} tokens "
                        f"({' '.join(f'{i}:{t}' for i, t in enumerate(tokens))})"
                    )
            spans = [query.head_span, query.tail_span]
            if spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]:
                raise InputError(f"{where}the head span {list(spans[0])} and tail span {list(spans[1])} overlap")
            pairs, source = [tuple(spans)], "given"
        elif query.head is not None:
            doc = self.nlp.make_doc(text)
            tokens = [t.text for t in doc]
            spans = []
            for flag, name in zip(query.names(), (query.head, query.tail)):
                words = [t.text for t in self.nlp.make_doc(" ".join(name.split()))]
                span = find_span(tokens, words, avoid=spans[0] if spans else None)
                if span is None:
                    raise InputError(f"{where}{flag} {name!r} is not in the text (tokens: {' '.join(tokens)})")
                spans.append(span)
            if spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]:
                head_flag, tail_flag = query.names()
                raise InputError(
                    f"{where}{tail_flag} {query.tail!r} occurs only inside {head_flag} {query.head!r}; "
                    + ("give" if query.from_record else "in --batch give")
                    + ' token spans ("head": [start, end])'
                    if spans[0] != spans[1]
                    else f"{where}{head_flag} and {tail_flag} name the same words ({query.head!r})"
                )
            pairs, source = [tuple(spans)], "given"
        else:
            doc = self.ner(text)
            tokens = [t.text for t in doc]
            seen, ents = set(), []
            for ent in doc.ents:
                if ent.label_ in SKIP_ENTITY_TYPES or ent.text in seen:
                    continue
                seen.add(ent.text)
                ents.append((ent.start, ent.end))
            pairs = [(a, b) for a in ents for b in ents if a != b]
            if len(pairs) > self.max_pairs:
                self.reporter.warn(
                    f"{where}{len(pairs)} entity pairs, only the first {self.max_pairs} are predicted (--max-pairs)"
                )
                pairs = pairs[: self.max_pairs]
            source = "ner"
            if not pairs:
                found = ", ".join(f"{doc[s:e].text!r}" for s, e in ents) or "none"
                raise NoPairs(
                    f"{where}spaCy found fewer than two named entities (found: {found}); "
                    f"give {' and '.join(query.names())}"
                )
        caption = " ".join(str(query.caption or "").split()) or None
        if caption and not self.captions:
            self._note("uncaptioned_model", f"{where}this model was trained without captions; the caption is ignored")
            caption = None
        if self.captions and not caption and image is not None and self.captioner_source:
            caption = self.caption_image(image)
            self.reporter.info(f"{where}caption by {self.captioner_source}: {caption!r}")
        if self.captions and not caption:
            given = '"caption"' if query.from_record else "--image-caption"
            self._note(
                "no_caption",
                f"{where}this model was trained with captions as the image's view but no "
                f"caption was given ({given}) and no captioner is set ({self.captioner_hint}); predicting "
                "from the text alone",
            )
        img_id = None
        if image is not None:
            # one owner per (image, caption): two captions of one image are two different views
            img_id = image if caption is None else f"{image}#{hashlib.sha1(caption.encode()).hexdigest()[:8]}"
        out = []
        for k, ((hs, he), (ts, te)) in enumerate(pairs):
            inst = Instance(
                sample_id=f"predict-{index:06d}-{k:03d}",
                split="predict",
                tokens=tuple(tokens),
                head=Entity(" ".join(tokens[hs:he]), hs, he),
                tail=Entity(" ".join(tokens[ts:te]), ts, te),
                relation=None,
                img_id=img_id,
                image_path=image,
                image_status="ok" if image else "none",
                caption=caption,
                source=query.where,
            )
            out.append((inst, source))
        return out

    def caption_image(self, image: str | Path) -> str:
        """The caption of ``image`` by the captioner (loaded on first use)."""
        if self._captioner is None:
            from mmre_cli.features.captioner import Captioner

            self._captioner = Captioner(self.captioner_source)
        return self._captioner(image)

    def _note(self, key: str, message: str) -> None:
        """A warning given once per :meth:`predict` call (a batch does not repeat it per line)."""
        if key not in self._noted:
            self._noted.add(key)
            self.reporter.warn(message)

    # -- the pipeline -----------------------------------------------------------------------
    def graphs(self, chunk: list[Instance]) -> tuple[list, list]:
        """``(cmgs, refined)`` of a chunk, through the stages' library functions."""
        cfg = self.extractor.cfg
        workers = cfg["workers"]
        n_images = len({inst.img_id for inst in chunk if inst.image_path})
        if n_images < 8:  # worker processes cost more than they save for a few images
            cfg["workers"] = 0
        try:
            rows = self.extractor.chunk_rows(chunk)
        finally:
            cfg["workers"] = workers
        feats = OwnerFeatures(rows.table(self.extractor.encoder.dim))
        scene = {g.graph_id: g for g in chunk_graphs(chunk, feats, self.nlp, self.params["build_graphs"])}
        cmgs = []
        for inst in chunk:
            cmg = instance_cmg(inst, -1, feats, scene, self.params["merge_cmg"])
            cmg.meta["sample_id"] = inst.sample_id
            cmg.meta["split"] = inst.split
            cmgs.append(cmg)
        refined = refine(cmgs, self.editor, self.editor_cfg, self.params["diffuse"])
        return cmgs, refined

    def classify(self, refined: list) -> tuple[np.ndarray, np.ndarray]:
        """``(pred [N], prob [N, C])`` of the refined graphs."""
        from mmre_cli.graphs.pyg import graphs_to_batches
        from mmre_cli.learn.trainer import predict

        if not refined:
            return np.zeros(0, np.int64), np.zeros((0, len(self.labels)), np.float32)
        return predict(self.model, graphs_to_batches(refined, self.chunk_size, words=needs_words(self.model)))

    def predict_instances(self, items: list[tuple[Instance, str]], keep_graphs: bool = False) -> Iterator[Prediction]:
        """Predictions for ``(instance, pairs_from)`` items, in order, ``chunk_size`` at a time."""
        for start in range(0, len(items), self.chunk_size):
            part = items[start : start + self.chunk_size]
            chunk = [inst for inst, _ in part]
            cmgs, refined = self.graphs(chunk)
            _, prob = self.classify(refined)
            if self.members:  # the ensemble: each member's graphs of the same instances (built once if alike)
                prob = np.mean(
                    [
                        prob,
                        *(
                            m.classify(refined if m.graph_source == self.graph_source else m.graphs(chunk)[1])[1]
                            for m in self.members
                        ),
                    ],
                    axis=0,
                )
            for (inst, source), cmg, ref, p in zip(part, cmgs, refined, prob):
                order = np.argsort(-p, kind="stable")[:3]
                top3 = [(self.labels[int(i)], float(p[int(i)])) for i in order]
                yield Prediction(
                    head=inst.head.name,
                    tail=inst.tail.name,
                    relation=top3[0][0],
                    probability=top3[0][1],
                    top3=top3,
                    text=inst.text,
                    image=inst.image_path,
                    caption=inst.caption,
                    pairs_from=source,
                    where=inst.source,
                    cmg=cmg if keep_graphs else None,
                    refined=ref if keep_graphs else None,
                )

    def predict(
        self,
        queries: Iterable[Query],
        *,
        keep_graphs: bool = False,
        skip_no_pairs: bool = False,
        skipped: list[Skipped] | None = None,
    ) -> list[Prediction]:
        """Check every query first (so bad input fails before any work), then predict them all.

        Args:
            queries: the inputs.
            keep_graphs: keep each prediction's CMG and refined graph (for ``--explain``).
            skip_no_pairs: a query without head/tail whose text has fewer than two entities is
                skipped with a warning (batch use) instead of raising :class:`NoPairs`.
            skipped: given, a bad query (:class:`InputError`: a span past the text, a head that
                is not a token span, a bad image) is appended to it and left out instead of
                raising; the others are predicted.
        """
        self._noted = set()
        items: list[tuple[Instance, str]] = []
        for index, query in enumerate(queries):
            try:
                items.extend(self.instances(query, index))
            except NoPairs as err:
                if not skip_no_pairs:
                    raise
                self.reporter.warn(f"{err}; nothing predicted for it")
            except InputError as err:
                if skipped is None:
                    raise
                where = f"{query.where}: " if query.where else ""
                skipped.append(Skipped(query.where or f"input {index}", str(err.reason).removeprefix(where)))
        if len(items) <= self.chunk_size:
            return list(self.predict_instances(items, keep_graphs=keep_graphs))
        out: list[Prediction] = []
        with self.reporter.progress("predict", total=len(items)) as task:  # a --batch file: show progress
            for prediction in self.predict_instances(items, keep_graphs=keep_graphs):
                out.append(prediction)
                task.advance(1)
        return out


def explain(
    predictor: Predictor, results: list[Prediction], path: str | Path, image_name: str | None = None
) -> Prediction:
    """Draw the explanation of one of ``results`` (predicted with ``keep_graphs=True``) to ``path``:
    the most probable non-``None`` prediction, else the first, with the Integrated-Gradients
    attribution of its class (:mod:`mmre_cli.attribution`). ``image_name`` titles the image
    (default: its file name). Returns the one drawn."""
    from mmre_cli.explain.draw import draw_explanation

    none = predictor.pipeline["labels"][int(predictor.pipeline["none_id"])]
    pick = next((r for r in sorted(results, key=lambda r: -r.probability) if r.relation != none), results[0])
    note = (
        None
        if (predictor.uses_pixels or predictor.uses_objects)
        else f"not used by this model ({predictor.extractor.encoder.name} text encoder, no detector)"
    )
    from mmre_cli.attribution import attribute

    attribution = attribute(predictor.model, pick.refined, target=predictor.labels.index(pick.relation))
    draw_explanation(
        path,
        cmg=pick.cmg,
        refined=pick.refined,
        image=pick.image,
        relation=pick.relation,
        probability=pick.probability,
        top3=pick.top3,
        head=pick.head,
        tail=pick.tail,
        image_note=note,
        attribution=attribution,
        image_name=image_name,
    )
    return pick


class NoPairs(InputError):
    """A query without head/tail whose text gives spaCy fewer than two entities."""


def run(
    *,
    model: Path,
    queries: list[Query],
    encoder: str | None = None,
    encoder_weights: str | Path | None = None,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    chunk_size: int = DEFAULT_CHUNK,
    keep_graphs: bool = False,
    skip_no_pairs: bool = False,
    reporter: Reporter | None = None,
) -> list[Prediction]:
    """Load the model in ``model`` and predict every query (see :class:`Predictor`)."""
    predictor = Predictor(
        model,
        encoder=encoder,
        encoder_weights=encoder_weights,
        max_pairs=max_pairs,
        chunk_size=chunk_size,
        reporter=reporter,
    )
    return predictor.predict(queries, keep_graphs=keep_graphs, skip_no_pairs=skip_no_pairs)
