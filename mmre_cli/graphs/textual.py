"""Textual scene graphs: the sentence graph and the caption graph, built from spaCy docs.

Sentence graph (:func:`text_graph`, modality ``text``). Nodes, in this fixed order:

1. token nodes ``0 .. T-1`` (kind ``token``), node ``i`` is dataset token ``i``;
2. the head entity node (kind ``entity``, role HEAD), then the tail entity node (role TAIL); a
   visual entity (MORE tails, ``Entity.is_visual``) gets no text node;
3. noun-phrase nodes from ``doc.noun_chunks`` (kind ``noun_phrase``), in document order, skipping a
   chunk whose span equals an entity span.

Edges: ``dep`` from a syntactic head token to its dependent (``edge_label`` = the dependency
label; ROOT self-loops skipped) and ``member`` from each token to every entity / noun-phrase node
whose span contains it. ``edge_attr``: weight 1, other columns 0.

Caption graph (:func:`caption_graph`, modality ``caption``): one ``caption_phrase`` node per noun
chunk of the caption; a ``dep`` edge joins two chunks (earlier -> later) whose root tokens are
linked in the dependency tree by a path whose inner tokens (at least one, at most
:data:`MAX_CONNECTOR_TOKENS`) are all verbs, auxiliaries, adpositions, adverbs or particles and
lie in no noun chunk; ``edge_label`` is the lemmas of those inner tokens in path order, e.g.
``"hold"``, ``"in"``, ``"sit next to"``. A caption with no noun chunk becomes one node spanning the
whole caption; an empty caption gives an empty graph.

Both graphs record, per node, ``meta["spans"]`` (``[start, end)`` in the doc's token positions;
``[i, i+1]`` for tokens) and ``meta["lemmas"]`` (lower-case lemma of the span's root token), so
features can be mean-pooled over spans (:func:`mmre_cli.graphs.cmg.pool_span_features`) and
co-occurrence found. ``meta["words"]`` holds the doc's token texts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..data.instance import Instance
from .graph import (
    EDGE_ATTR_DIM,
    EDGE_TYPES,
    MODALITIES,
    NODE_KINDS,
    ROLE_HEAD,
    ROLE_OTHER,
    ROLE_TAIL,
    Graph,
    empty_graph,
)
from .nlp import doc_words

if TYPE_CHECKING:  # pragma: no cover
    from spacy.tokens import Doc, Token

#: Coarse POS tags that may sit on the dependency path between two caption noun chunks
#: (ADV/PART admit "next to", "in front of" style connectors).
CONNECTOR_POS = frozenset({"VERB", "AUX", "ADP", "ADV", "PART"})
#: Longest connecting path (inner tokens) that still makes a caption edge.
MAX_CONNECTOR_TOKENS = 3

_K = {k: i for i, k in enumerate(NODE_KINDS)}
_M = {m: i for i, m in enumerate(MODALITIES)}
_E = {e: i for i, e in enumerate(EDGE_TYPES)}


class _Builder:
    """Accumulates nodes/edges of one scene graph and emits a :class:`Graph`."""

    def __init__(self, modality: str):
        self.modality = _M[modality]
        self.kind: list[int] = []
        self.role: list[int] = []
        self.text: list[str] = []
        self.spans: list[list[int]] = []
        self.lemmas: list[str] = []
        self.src: list[int] = []
        self.dst: list[int] = []
        self.etype: list[int] = []
        self.elabel: list[str] = []

    def node(self, kind: str, text: str, span: tuple[int, int], lemma: str, role: int = ROLE_OTHER) -> int:
        self.kind.append(_K[kind])
        self.role.append(role)
        self.text.append(text)
        self.spans.append([int(span[0]), int(span[1])])
        self.lemmas.append(lemma)
        return len(self.kind) - 1

    def edge(self, src: int, dst: int, etype: str, label: str = "") -> None:
        self.src.append(src)
        self.dst.append(dst)
        self.etype.append(_E[etype])
        self.elabel.append(label)

    def build(self, graph_id: str, meta: dict) -> Graph:
        n, e = len(self.kind), len(self.src)
        edge_attr = np.zeros((e, EDGE_ATTR_DIM), np.float32)
        edge_attr[:, 0] = 1.0
        g = Graph(
            graph_id=graph_id,
            node_kind=np.asarray(self.kind, np.int8),
            node_modality=np.full(n, self.modality, np.int8),
            node_role=np.asarray(self.role, np.int8),
            node_text=list(self.text),
            box=np.full((n, 4), np.nan, np.float32),
            edge_index=np.asarray([self.src, self.dst], np.int64).reshape(2, e),
            edge_type=np.asarray(self.etype, np.int8),
            edge_label=list(self.elabel),
            edge_attr=edge_attr,
            meta={"spans": self.spans, "lemmas": self.lemmas, **meta},
        )
        g.validate()
        return g


def _lemma(tok: "Token") -> str:
    return (tok.lemma_ or tok.text).lower()


def text_graph(graph_id: str, inst: Instance, doc: "Doc") -> Graph:
    """Build the sentence scene graph of one instance.

    Args:
        graph_id: id of the graph (usually ``inst.sample_id``).
        inst: the instance; its head/tail spans index ``inst.tokens``.
        doc: ``inst.tokens`` parsed by :func:`mmre_cli.graphs.nlp.parse_pretokenized`
            (``len(doc) == len(inst.tokens)``).

    Returns:
        A ``text`` graph; node order and edges as in the module docstring. ``meta`` holds
        ``spans``, ``lemmas``, ``words`` and ``entity_nodes`` (``{"head": i|None, "tail": i|None}``).

    Raises:
        ValueError: the doc is not aligned with the tokens, or a text entity span is out of range.
    """
    n_tok = len(doc)
    if n_tok != len(inst.tokens):
        raise ValueError(f"{graph_id}: doc has {n_tok} tokens, instance has {len(inst.tokens)}")
    b = _Builder("text")
    words = doc_words(doc)
    strings = doc.vocab.strings
    if n_tok:
        from spacy.attrs import DEP, HEAD, LEMMA

        arr = doc.to_array([HEAD, DEP, LEMMA])  # uint64; HEAD is a relative offset (wraps if < 0)
        heads = np.arange(n_tok) + arr[:, 0].astype(np.int64)
        deps = [strings[int(v)] for v in arr[:, 1]]
        lemmas = [(strings[int(v)] or w).lower() for v, w in zip(arr[:, 2], words)]
    else:
        heads, deps, lemmas = np.zeros(0, np.int64), [], []
    for i in range(n_tok):
        b.node("token", words[i], (i, i + 1), lemmas[i])

    entity_nodes: dict[str, int | None] = {"head": None, "tail": None}
    entity_spans: set[tuple[int, int]] = set()
    containers: list[tuple[int, int, int]] = []  # (node, start, end)
    for which, ent, role in (("head", inst.head, ROLE_HEAD), ("tail", inst.tail, ROLE_TAIL)):
        if ent.is_visual:
            continue
        s, e = int(ent.start), int(ent.end)
        if not (0 <= s < e <= n_tok):
            raise ValueError(f"{graph_id}: {which} span [{s}, {e}) out of range for {n_tok} tokens")
        span = doc[s:e]
        node = b.node("entity", ent.name or span.text, (s, e), _lemma(span.root), role)
        entity_nodes[which] = node
        entity_spans.add((s, e))
        containers.append((node, s, e))

    for chunk in doc.noun_chunks:
        if (chunk.start, chunk.end) in entity_spans:
            continue
        node = b.node("noun_phrase", chunk.text, (chunk.start, chunk.end), _lemma(chunk.root))
        containers.append((node, chunk.start, chunk.end))

    for i in range(n_tok):
        if heads[i] != i:
            b.edge(int(heads[i]), i, "dep", deps[i])
    for node, s, e in containers:
        for i in range(s, e):
            b.edge(i, node, "member")
    return b.build(graph_id, {"words": words, "entity_nodes": entity_nodes})


def _path_inner(a: "Token", b: "Token") -> list["Token"] | None:
    """Tokens strictly between ``a`` and ``b`` on their dependency-tree path (``None``: no path)."""
    up_a = [a]
    while up_a[-1].head.i != up_a[-1].i:
        up_a.append(up_a[-1].head)
    pos_a = {t.i: k for k, t in enumerate(up_a)}
    up_b = [b]
    while up_b[-1].i not in pos_a:
        if up_b[-1].head.i == up_b[-1].i:
            return None  # different sentences
        up_b.append(up_b[-1].head)
    lca_k = pos_a[up_b[-1].i]
    path = up_a[: lca_k + 1] + list(reversed(up_b[:-1]))
    return path[1:-1]


def caption_phrases(doc: "Doc") -> list[tuple[str, tuple[int, int]]]:
    """The caption graph's nodes without its edges: ``(text, (start, end))`` per node, in order.

    Node ``k`` of :func:`caption_graph` is entry ``k``: one per noun chunk, or the whole caption
    when it has none, nothing for an empty caption. The features stage needs only these spans,
    and skipping the dependency paths between chunks makes it cheaper than building the graph.
    """
    if len(doc) == 0:
        return []
    chunks = list(doc.noun_chunks)
    if not chunks:
        return [(doc.text, (0, len(doc)))]
    return [(c.text, (c.start, c.end)) for c in chunks]


def caption_graph(graph_id: str, doc: "Doc") -> Graph:
    """Build the compact scene graph of one caption (see the module docstring).

    Args:
        graph_id: id of the graph.
        doc: the caption parsed by :func:`mmre_cli.graphs.nlp.parse_texts`.

    Returns:
        A ``caption`` graph; ``meta`` holds ``spans`` (caption token positions), ``lemmas`` and
        ``words`` (the caption's token texts, for the features stage).
    """
    if len(doc) == 0:
        g = empty_graph(graph_id)
        g.meta.update({"spans": [], "lemmas": [], "words": []})
        return g
    b = _Builder("caption")
    chunks = list(doc.noun_chunks)
    if not chunks:
        root = doc[:].root
        b.node("caption_phrase", doc.text, (0, len(doc)), _lemma(root))
        return b.build(graph_id, {"words": doc_words(doc)})

    chunk_tokens = [set(range(c.start, c.end)) for c in chunks]
    in_chunk = set().union(*chunk_tokens)
    for c in chunks:
        b.node("caption_phrase", c.text, (c.start, c.end), _lemma(c.root))
    for i in range(len(chunks)):
        for j in range(i + 1, len(chunks)):
            inner = _path_inner(chunks[i].root, chunks[j].root)
            if not inner or len(inner) > MAX_CONNECTOR_TOKENS:
                continue
            if any(t.pos_ not in CONNECTOR_POS or t.i in in_chunk for t in inner):
                continue
            b.edge(i, j, "dep", " ".join(_lemma(t) for t in inner))
    return b.build(graph_id, {"words": doc_words(doc)})
