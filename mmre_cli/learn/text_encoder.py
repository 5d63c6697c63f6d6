r"""The trainable text encoder of the fine-tuned classifier: contextual word vectors of the marked
sentence (issues 4, 10 and 25).

**Encoder.** For a sentence :math:`w_1 \dots w_T` with head span :math:`[h_s, h_e)` and tail span
:math:`[t_s, t_e)`, typed entity markers are inserted as extra *words*,

.. math::
    \dots\ \langle h\rangle\ w_{h_s} \dots w_{h_e - 1}\ \langle /h\rangle\ \dots\
    \langle t\rangle\ w_{t_s} \dots w_{t_e - 1}\ \langle /t\rangle\ \dots

the marked sentence is tokenised as words (at most ``max_length`` = 128 word pieces,
``[CLS]``/``[SEP]`` included) and run through the transformer; the contextual vector
of word :math:`i` is the mean of the last hidden states of its word pieces (``word_ids``), the
same pooling as :class:`~mmre_cli.features.minilm.MiniLMEncoder`. Marker words are dropped from
the output, so row :math:`i` of the result is still dataset token :math:`i`. The marker styles are
:mod:`mmre_cli.learn.markers`'.

A word that gets no word piece (cut off by ``max_length``, or a zero-width character) gets a zero
row and is left out of the span means below.

**Caption pair.** With ``caption_tokens = K > 0`` the image's caption (``data.caption``) follows
the marked sentence as the second segment, ``[CLS] marked sentence [SEP] caption[:K] [SEP]`` in
the model's own template (:meth:`mmre_cli.features.bert.WordPieces.pairs`); word ids, and so the
pooling below, index the sentence only.

**Cached lower layers.** With ``train_layers = k`` below the depth :math:`L`, the embeddings and
layers :math:`[0, L-k)` are frozen and in eval mode, so their output for an input never changes:
it is computed once (``lower``), cached per input, and only layers :math:`[L-k, L)` run every
step (``upper``); ``precision="bf16"`` runs the transformer under bfloat16 autocast.

Shapes:
    TextNodeEncoder: ``token_lists`` B lists of :math:`T_b` words -> B tensors ``[T_b, D]``
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Literal, Sequence

import torch
from torch import Tensor, nn

from mmre_cli.learn.markers import _MARKER_WORDS, MARKER_STYLES, Span, _init_markers, _valid_span, insert_markers
from mmre_cli.learn.precision import PRECISIONS

__all__ = ["TextNodeEncoder", "tokenizer_fingerprint"]


def tokenizer_fingerprint(encoder: str, folder) -> str:
    """``name:folder:sha256(config.json + tokenizer.json)[:16]`` — what a fine-tuned encoder's
    checkpoint does not hold (its weights are in the checkpoint; its vocabulary and architecture
    come from the folder), recorded in ``pipeline.json`` and checked by ``mmre predict``."""
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256()
    for name in ("config.json", "tokenizer.json"):
        f = Path(folder) / name
        digest.update(f.read_bytes() if f.is_file() else name.encode())
    return f"{encoder}:{Path(folder).name}:{digest.hexdigest()[:16]}"


class TextNodeEncoder(nn.Module):
    r"""Trainable contextual word vectors from a pretrained text encoder, with typed entity markers.

    See the module docstring for the marking, the caption pair and the pooling.

    Args:
        weights (str, optional): the encoder's model folder; ``None`` resolves it like the
            frozen-feature encoder of the same name. (default: ``None``)
        markers (str, optional): ``"special"``, ``"typed"``, ``"punct"`` or ``"none"``.
            (default: ``"special"``)
        max_length (int, optional): word-piece limit, special tokens included. (default: ``128``)
        train_layers (int, optional): fine-tune only the top ``train_layers`` transformer layers;
            the input embeddings (marker embeddings included) and the layers below are frozen and
            kept in eval mode (no dropout), so their output for an input never changes. ``None``
            trains everything. (default: ``None``)
        encoder (str, optional): ``"minilm"``, ``"mpnet"`` or ``"hf"`` (``weights`` = a Hugging
            Face model folder). (default: ``"minilm"``)
        caption_tokens (int, optional): the caption enters as the second segment, cut to its first
            ``caption_tokens`` word pieces; ``0`` reads the sentence alone. (default: ``0``)
        cache_lower (bool, optional): with ``train_layers`` below the depth, keep the frozen lower
            layers' hidden states of every input seen (keyed by its marked words and caption) and
            reuse them instead of recomputing them every epoch. (default: ``True``)
        precision (str, optional): ``"32"``, or ``"bf16"``: the transformer runs under
            ``torch.autocast(bfloat16)`` (matrix products in bfloat16, norms and softmax in
            float32; 3-4x faster on CPUs with AVX512-BF16/AMX, and on GPUs), its output is cast
            back to float32 and the cache holds bfloat16. (default: ``"32"``)

    Shapes:
        - **input:** ``token_lists`` (B lists of :math:`T_b` words), ``head_spans``,
          ``tail_spans`` (B ``[start, end)`` pairs or ``None``), optional ``captions`` (B texts)
        - **output:** B tensors ``[T_b, D]``
    """

    def __init__(
        self,
        weights: str | None = None,
        markers: Literal["special", "typed", "punct", "none"] = "special",
        max_length: int = 128,
        train_layers: int | None = None,
        encoder: str = "minilm",
        caption_tokens: int = 0,
        cache_lower: bool = True,
        precision: str = "32",
    ):
        super().__init__()
        if str(precision) not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.precision = str(precision)
        from mmre_cli.features.text_networks import load_text_network

        if markers not in MARKER_STYLES:
            raise ValueError(f"markers must be one of {MARKER_STYLES}, not {markers!r}")
        self.tokenizer, self.transformer, folder = load_text_network(encoder, weights, max_length)
        self.encoder_name = encoder
        self.fingerprint = tokenizer_fingerprint(encoder, folder)
        self.markers = markers
        self.max_length = int(max_length)
        self.caption_tokens = max(0, int(caption_tokens or 0))
        self.marker_words = _MARKER_WORDS.get(markers)
        self._types_cache: dict[tuple, tuple[str, str]] = {}  # not state: recomputable, never saved
        if markers in ("special", "typed"):
            old = len(self.tokenizer)
            self.tokenizer.add_special_tokens(list(self.marker_words))
            self.transformer.resize_token_embeddings(len(self.tokenizer))
            _init_markers(self.tokenizer, self.transformer.get_input_embeddings().weight, self.marker_words, old)
        self.dim = int(self.transformer.config.hidden_size)
        n_layers = int(self.transformer.num_layers)
        self.frozen_below = 0
        if train_layers is not None:
            if not 0 <= int(train_layers) <= n_layers:
                raise ValueError(f"train_layers must be in [0, {n_layers}], not {train_layers}")
            self.frozen_below = n_layers - int(train_layers)
            for module in self._frozen_modules():
                module.requires_grad_(False)
        self.train_layers = train_layers
        self.cache_lower = bool(cache_lower) and self.frozen_below > 0
        self._lower_cache: dict[str, Tensor] = {}  # not state: recomputable, never saved

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_below == 0:
            return []
        return [*self.transformer.embedding_modules(), *self.transformer.layers[: self.frozen_below]]

    def train(self, mode: bool = True):
        """As ``nn.Module.train``, but the frozen embeddings and lower layers stay in eval mode."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.transformer.get_input_embeddings().weight.device

    def _hidden(
        self, enc, marked: list[list[str]], captions: list[str | None], tags: Sequence[str] | None = None
    ) -> Tensor:
        """Last hidden states ``[B, L, D]`` of a tokenised batch; the frozen lower layers from the cache.

        With ``frozen_below = m > 0`` the hidden states entering layer ``m`` are computed under
        ``no_grad`` (for the rows not cached yet, as their own sub-batch), stored per input
        (trimmed to its pieces) when ``cache_lower``, padded back to the batch and run through
        layers ``[m, L)``: ``upper(lower(x, m), m)`` — the same as the whole network.
        """
        dev = self.device
        ids, mask = enc.input_ids.to(dev), enc.attention_mask.to(dev)
        types = None if enc.token_type_ids is None else enc.token_type_ids.to(dev)
        bf16 = self.precision == "bf16"
        autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        m = self.frozen_below
        if m == 0:
            with autocast:
                return self.transformer(ids, mask, types).float()
        lengths = mask.sum(1).tolist()
        tags = tags or [""] * len(marked)
        keys = (
            [
                "\x1f".join(w) + "\x1e" + ((c or "") if self.caption_tokens else "") + t
                for w, c, t in zip(marked, captions, tags)
            ]
            if self.cache_lower
            else None
        )
        rows: list[Tensor | None] = [self._lower_cache.get(k) for k in keys] if keys else [None] * len(lengths)
        todo = [i for i, r in enumerate(rows) if r is None or r.device != dev]
        if todo:
            width = max(lengths[i] for i in todo)
            sel = torch.tensor(todo, device=dev)
            with torch.no_grad(), autocast:
                low = self.transformer.lower(
                    ids[sel, :width], mask[sel, :width], None if types is None else types[sel, :width], stop=m
                )
            low = low.to(torch.bfloat16 if bf16 else torch.float32)
            for j, i in enumerate(todo):
                rows[i] = low[j, : lengths[i]].clone()
                if keys:
                    self._lower_cache[keys[i]] = rows[i]
        hidden = torch.zeros((len(rows), ids.size(1), self.dim), dtype=rows[0].dtype, device=dev)
        for i, r in enumerate(rows):
            hidden[i, : r.size(0)] = r
        with autocast:
            return self.transformer.upper(hidden, mask, start=m).float()

    def entity_types(
        self, token_lists: Sequence[Sequence[str]], head_spans: Sequence[Span], tail_spans: Sequence[Span]
    ) -> list[tuple[str, str]]:
        """``(head type, tail type)`` per sentence from spaCy's NER (module docstring, ``"typed"``);
        sentences not seen before are parsed as one batch, then cached."""
        from mmre_cli.graphs.nlp import UNKNOWN_TYPE, load_spacy, parse_pretokenized, span_entity_type

        keys = [
            (tuple(str(t) for t in toks), _valid_span(h, len(toks)), _valid_span(t, len(toks)))
            for toks, h, t in zip(token_lists, head_spans, tail_spans)
        ]
        todo = list(dict.fromkeys(k for k in keys if k not in self._types_cache))
        if todo:
            docs = parse_pretokenized(load_spacy(ner=True), [k[0] for k in todo])
            for key, doc in zip(todo, docs):
                self._types_cache[key] = tuple(
                    UNKNOWN_TYPE if sp is None else span_entity_type(doc, *sp) for sp in key[1:]
                )
        return [self._types_cache[k] for k in keys]

    def mark(
        self, token_lists: Sequence[Sequence[str]], head_spans: Sequence[Span], tail_spans: Sequence[Span]
    ) -> tuple[list[list[str]], list[list[int]]]:
        """The words the transformer reads (markers and, for ``"typed"``, type words inserted) and,
        per marked word, its source (:func:`insert_markers`)."""
        types = (
            self.entity_types(token_lists, head_spans, tail_spans)
            if self.markers == "typed"
            else [None] * len(token_lists)
        )
        marked, sources = [], []
        for toks, hs, ts, ty in zip(token_lists, head_spans, tail_spans, types):
            if self.marker_words is None:
                words, src = [str(t) for t in toks], list(range(len(toks)))
            else:
                words, src = insert_markers(toks, hs, ts, self.marker_words, ty)
            marked.append(words)
            sources.append(src)
        return marked, sources

    def encode(
        self,
        token_lists: Sequence[Sequence[str]],
        head_spans: Sequence[Span],
        tail_spans: Sequence[Span],
        captions: Sequence[str | None] | None = None,
        deleted: Sequence[Iterable[int]] | None = None,
    ) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """Word vectors, which words got word pieces, and the entity-marker vectors.

        ``deleted`` (per sentence, token indices the RL editor removed — ``meta["deleted_words"]``)
        masks those words' pieces out of the attention of every layer: no other piece attends to
        them, they get no vector (``has_pieces`` false) and so leave every span mean, exactly as
        if the words were absent but with the positions of the others kept.

        Returns:
            ``(vectors, has_pieces, entities)``: B tensors ``[T_b, D]`` (mean of each word's
            pieces; zero rows where ``has_pieces`` is false), B bool tensors ``[T_b]``, and
            ``[B, 2, D]``: the hidden state at the head / tail opening marker (the mean of the
            entity's word vectors where it has no marker piece, ``[CLS]`` where it has no word
            either).
        """
        b = len(token_lists)
        if not (len(head_spans) == len(tail_spans) == b):
            raise ValueError("token_lists, head_spans and tail_spans must have the same length")
        marked, sources = self.mark(token_lists, head_spans, tail_spans)
        dev = self.device
        lengths = [len(t) for t in token_lists]
        total = sum(lengths)
        if b == 0:
            return [], [], torch.zeros(0, 2, self.dim, device=dev)
        caps = list(captions) if captions is not None else [None] * b
        if len(caps) != b:
            raise ValueError("captions must have one entry per sentence")
        enc = self.tokenizer.pairs(marked, caps, self.caption_tokens)
        gone = [set(int(k) for k in d) for d in deleted] if deleted is not None else [set()] * b
        if len(gone) != b:
            raise ValueError("deleted must have one entry per sentence")
        if any(gone):
            for i in range(b):
                if gone[i]:
                    src = sources[i]
                    for p, w in enumerate(enc.word_ids[i]):
                        if w is not None and src[w] in gone[i]:
                            enc.attention_mask[i, p] = 0
        tags = ["\x1d" + ",".join(map(str, sorted(g))) if g else "" for g in gone]
        hidden = self._hidden(enc, marked, caps, tags)  # [B, L, D]
        # pieces -> (flat word index) and the first piece of each opening marker
        pb, pp, pw = [], [], []
        marker_at = torch.full((b, 2), -1, dtype=torch.long)
        offset = 0
        for i in range(b):
            src = sources[i]
            for p, w in enumerate(enc.word_ids[i]):
                if w is None:
                    continue
                o = src[w]
                if o >= 0 and o in gone[i]:
                    continue
                if o >= 0:
                    pb.append(i)
                    pp.append(p)
                    pw.append(offset + o)
                elif o in (-1, -3) and marker_at[i, (-1 - o) // 2] < 0:
                    marker_at[i, (-1 - o) // 2] = p
            offset += lengths[i]
        d = hidden.size(-1)
        if pw:
            idx_b = torch.tensor(pb, device=dev)
            idx_p = torch.tensor(pp, device=dev)
            idx_w = torch.tensor(pw, device=dev)
            sums = hidden.new_zeros(total, d).index_add(0, idx_w, hidden[idx_b, idx_p])
            counts = torch.bincount(idx_w, minlength=total)
        else:
            sums = hidden.new_zeros(total, d)
            counts = torch.zeros(total, dtype=torch.long, device=dev)
        means = sums / counts.clamp(min=1).unsqueeze(-1).to(hidden.dtype)
        has = counts > 0
        vectors = list(torch.split(means, lengths))
        has_list = list(torch.split(has, lengths))
        ents = []
        for i in range(b):
            row = []
            for k, span in enumerate((head_spans[i], tail_spans[i])):
                p = int(marker_at[i, k])
                if p >= 0:
                    row.append(hidden[i, p])
                    continue
                sp = _valid_span(span, lengths[i])
                if sp is not None and bool(has_list[i][sp[0] : sp[1]].any()):
                    sel = has_list[i][sp[0] : sp[1]]
                    row.append(vectors[i][sp[0] : sp[1]][sel].mean(0))
                else:
                    row.append(hidden[i, 0])
            ents.append(torch.stack(row))
        return vectors, has_list, torch.stack(ents)

    def forward(
        self,
        token_lists: Sequence[Sequence[str]],
        head_spans: Sequence[Span],
        tail_spans: Sequence[Span],
        captions: Sequence[str | None] | None = None,
    ) -> list[Tensor]:
        """Contextual word vectors, one ``[T_b, D]`` tensor per sentence (markers removed)."""
        return self.encode(token_lists, head_spans, tail_spans, captions)[0]
