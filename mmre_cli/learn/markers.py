r"""Entity markers: which words mark the head and tail in the sentence a text encoder reads.

Marker styles (``train_gnn.markers``):

* ``"special"`` (default): four new special tokens ``<h> </h> <t> </t>`` added to the tokenizer.
  Their input embeddings are initialised from four *different* existing pieces that occur nowhere
  in MNRE-2's text or its six captioners' captions (:data:`_SPECIAL_INIT`: ``⟨ ⟩ 「 」``, single
  pieces in both the MiniLM and the MPNet vocabulary; a vocabulary without them gets the mean
  embedding plus a seeded N(0, σ²) draw per marker, σ the embeddings' spread). So the four
  markers differ from each other and from every piece a tweet can produce (``@user`` and
  ``#hashtag`` fill 91 % of MNRE tweets: markers copied from ``@``/``#`` were those pieces), they
  train with the embeddings when ``train_layers`` is ``None``, and with ``train_layers`` set
  they stay frozen — still distinct, and never seen in the data.
* ``"typed"``: the ``"special"`` markers, each opening marker followed by the entity's coarse
  type as a word, ``<h> person David Bowie </h> … <t> location Earls Court </t>`` (Zhou & Chen
  2021's typed entity markers). The type is spaCy NER's label of the entity overlapping the
  mention the most, mapped by :data:`~mmre_cli.graphs.nlp.COARSE_TYPES` (``unknown`` when none
  overlaps); the sentences are parsed once and their types cached (not state). Type words, like
  markers, are dropped from the output rows.
* ``"punct"``: the existing words ``@ … @`` around the head and ``# … #`` around the tail
  (Zhou & Chen 2021's typed punctuation markers, without the type word).
* ``"none"``: no markers (ablation).

Shapes:
    :func:`insert_markers`: T words -> T + 4 (+ 2 type words) marked words and their sources
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["MARKER_STYLES", "Span", "insert_markers"]

MARKER_STYLES = ("special", "typed", "punct", "none")
#: marker words per style: (head open, head close, tail open, tail close)
_MARKER_WORDS = {
    "special": ("<h>", "</h>", "<t>", "</t>"),
    "typed": ("<h>", "</h>", "<t>", "</t>"),
    "punct": ("@", "@", "#", "#"),
}
#: existing pieces whose input embeddings initialise the special markers (head open, head close,
#: tail open, tail close): none occurs in MNRE-2 train/val text or captions (tests/learn/test_finetune.py)
_SPECIAL_INIT = ("⟨", "⟩", "「", "」")

Span = Sequence[int] | None


def _valid_span(span: Span, n: int) -> tuple[int, int] | None:
    if span is None:
        return None
    s, e = int(span[0]), int(span[1])
    if s < 0 or e <= s or s >= n:
        return None
    return s, min(e, n)


def insert_markers(
    tokens: Sequence[str], head: Span, tail: Span, marker_words: Sequence[str], types: Sequence[str] | None = None
) -> tuple[list[str], list[int]]:
    """Insert ``marker_words`` (head open, head close, tail open, tail close) around the spans.

    Args:
        tokens: the sentence words.
        head, tail: ``[start, end)`` word spans; ``None`` or a negative start (visual entity) puts
            no marker.
        marker_words: four words.
        types: optional ``(head type, tail type)`` words, each inserted right after its entity's
            opening marker.

    Returns:
        ``(words, source)``: the marked words, and per marked word its token index in ``tokens``
        or ``-1 - k`` for marker ``k`` (0 head open, 1 head close, 2 tail open, 3 tail close),
        ``-5`` / ``-6`` for the head / tail type word. Closing markers come before opening ones
        at the same position; nested spans nest.
    """
    n = len(tokens)
    events: list[tuple[int, int, int, int, int]] = []  # (pos, open?, order, -, marker id)
    for k, span in enumerate((head, tail)):
        sp = _valid_span(span, n)
        if sp is None:
            continue
        s, e = sp
        events.append((s, 1, -(e - s), k, 2 * k))  # opens: the outer (longer) span first
        events.append((e, 0, e - s, -k, 2 * k + 1))  # closes: the inner (shorter) span first
    events.sort()
    words: list[str] = []
    source: list[int] = []
    j = 0
    for i in range(n + 1):
        while j < len(events) and events[j][0] == i:
            m = events[j][4]
            words.append(marker_words[m])
            source.append(-1 - m)
            if types is not None and m % 2 == 0:
                words.append(str(types[m // 2]))
                source.append(-5 - m // 2)
            j += 1
        if i < n:
            words.append(str(tokens[i]))
            source.append(i)
    return words, source


def _init_markers(tokenizer, emb: Tensor, marker_words: Sequence[str], old_size: int) -> None:
    """Initialise the rows of the new marker tokens (module docstring, ``"special"``) in place:
    from the :data:`_SPECIAL_INIT` piece, or the mean row plus a seeded Gaussian draw where the
    vocabulary lacks it."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        base = emb[:old_size].float()
        mean, spread = base.mean(0), base.std(0)
        for word, init in zip(marker_words, _SPECIAL_INIT):
            new_id = tokenizer.token_to_id(word)
            if new_id is None or new_id < old_size:  # pragma: no cover - the vocabulary already had it
                continue
            src = tokenizer.token_to_id(init)
            if src is not None and src < old_size:
                emb[new_id] = emb[src]
            else:
                emb[new_id] = (mean + spread * torch.randn(mean.shape, generator=gen)).to(emb.dtype)
