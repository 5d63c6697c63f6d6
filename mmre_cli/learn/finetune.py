r"""End-to-end fine-tuning of a text encoder together with the relation GNN (issues 4 and 10).

The pipeline's CMG node features are *frozen* vectors. :class:`FinetunedRelationModel`
recomputes the features of the *text-modality* nodes of every batch with a trainable
:class:`TextNodeEncoder` — MiniLM on :class:`mmre_cli.features.bert.BertModel`, or MPNet / any
BERT-like Hugging Face encoder on :class:`mmre_cli.features.hf.HFTransformer` — so the relation
loss reaches the encoder's weights. Caption (and visual) nodes keep their frozen features, mapped
by a learned ``Linear`` when their width differs from the encoder's.

**Encoder.** For a sentence :math:`w_1 \dots w_T` with head span :math:`[h_s, h_e)` and tail span
:math:`[t_s, t_e)`, typed entity markers are inserted as extra *words*,

.. math::
    \dots\ \langle h\rangle\ w_{h_s} \dots w_{h_e - 1}\ \langle /h\rangle\ \dots\
    \langle t\rangle\ w_{t_s} \dots w_{t_e - 1}\ \langle /t\rangle\ \dots

the marked sentence is tokenised as words (at most ``max_length`` = 128 word pieces,
``[CLS]``/``[SEP]`` included) and run through the transformer; the contextual vector
of word :math:`i` is the mean of the last hidden states of its word pieces (``word_ids``), the
same pooling as :class:`~mmre_cli.features.encoders.MiniLMEncoder`. Marker words are dropped from
the output, so row :math:`i` of the result is still dataset token :math:`i`. Marker styles
(``markers``):

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

A word that gets no word piece (cut off by ``max_length``, or a zero-width character) gets a zero
row and is left out of the span means below.

**Node features.** With :math:`\mathbf{u}_i` the L2-normalised vector of word :math:`i` and a
text node :math:`n` spanning words :math:`[s_n, e_n)` (``meta["spans"]``: tokens, entities, noun
phrases),

.. math::
    \mathbf{x}_n = \frac{\bar{\mathbf{u}}_n}{\lVert \bar{\mathbf{u}}_n \rVert},\qquad
    \bar{\mathbf{u}}_n = \mathrm{mean}_{i \in [s_n, e_n),\ i \text{ has pieces}}\ \mathbf{u}_i

exactly how the frozen features were made (``encode_words`` normalises each word,
:func:`~mmre_cli.graphs.cmg.pool_span_features` means over the span and normalises again); these
rows replace the text nodes' rows in a copy of ``batch.x`` and the
:class:`~mmre_cli.learn.gnn.RelationGNN` runs on the result.

**Readouts** (``readout``): ``"gnn"`` — the GNN's own readout and classifier;
``"gnn_markers"`` — the GNN readout :math:`\mathbf{z}_g` concatenated with the encoder's
(layer-normalised) hidden states at the ``<h>`` and ``<t>`` opening markers (entity-start pooling,
Baldini Soares et al. 2019; the mean of the entity's words where there is no marker), then a
two-layer MLP; ``"markers"`` — the marker states alone and the same MLP, no graph at all (the
plain fine-tuned baseline: what the graph adds is ``gnn_markers`` minus ``markers``). With
``caption_pass`` the caption's own-pass features (:mod:`mmre_cli.learn.caption_fusion`) join the
marker states; with ``relation_descriptions`` the MLP's last layer scores the pair against the
encoded relation descriptions (:mod:`mmre_cli.learn.relation_text`).

**Data.** The model reads ``node_span [N, 2]``, ``ent_span [1, 4]`` and ``words`` from its
batches: :func:`~mmre_cli.graphs.pyg.graph_to_data` adds them with ``words=True`` (from what
merge-cmg records in each graph's meta), and every stage asks for them when the model's
``needs_words`` is true.

**Caption pair.** With ``caption_tokens = K > 0`` the image's caption (``data.caption``) follows
the marked sentence as the second segment, ``[CLS] marked sentence [SEP] caption[:K] [SEP]`` in
the model's own template (:meth:`mmre_cli.features.bert.WordPieces.pairs`); word ids, and so the
pooling below, index the sentence only.

**Cached lower layers.** With ``train_layers = k`` below the depth :math:`L`, the embeddings and
layers :math:`[0, L-k)` are frozen and in eval mode, so their output for an input never changes:
it is computed once (``lower``), cached per input, and only layers :math:`[L-k, L)` run every
step (``upper``); ``precision="bf16"`` runs the transformer under bfloat16 autocast.

**Training.** :func:`fit_finetuned` is :func:`~mmre_cli.learn.trainer.fit_classifier` with two
learning rates (:func:`param_groups`: ``enc_lr`` for the transformer, no weight decay on its biases
and LayerNorms; ``head_lr`` for the GNN and classifier), linear warm-up then linear decay, the
same class weights, the same val micro-F1 model selection and the same history keys.

Shapes:
    TextNodeEncoder: ``token_lists`` B lists of :math:`T_b` words -> B tensors ``[T_b, D]``
    FinetunedRelationModel: a batch of ``graph_to_data(g, words=True)`` -> logits ``[B, C]``
"""

from __future__ import annotations

import contextlib
import copy
from typing import Iterable, Literal, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmre_cli.graphs.graph import EDGE_ATTR_DIM, EDGE_TYPES, MODALITIES
from mmre_cli.learn.gnn import RelationGNN, register_model

__all__ = [
    "MARKER_STYLES",
    "READOUTS",
    "TextNodeEncoder",
    "FinetunedRelationModel",
    "insert_markers",
    "param_groups",
    "fit_finetuned",
    "resolve_precision",
]

MARKER_STYLES = ("special", "typed", "punct", "none")
#: what the classifier reads: the GNN alone, the GNN + the entity-start marker states, the markers alone
READOUTS = ("gnn", "gnn_markers", "markers")
PRECISIONS = ("32", "bf16")
#: what ``train_gnn.precision`` may say: a precision, or ``auto`` (:func:`resolve_precision`)
PRECISION_CHOICES = ("auto", *PRECISIONS)
#: marker words per style: (head open, head close, tail open, tail close)
_MARKER_WORDS = {"special": ("<h>", "</h>", "<t>", "</t>"), "typed": ("<h>", "</h>", "<t>", "</t>"),
                 "punct": ("@", "@", "#", "#")}
#: existing pieces whose input embeddings initialise the special markers (head open, head close,
#: tail open, tail close): none occurs in MNRE-2 train/val text or captions (tests/learn/test_finetune.py)
_SPECIAL_INIT = ("⟨", "⟩", "「", "」")
_TEXT = MODALITIES.index("text")

Span = Sequence[int] | None


def _valid_span(span: Span, n: int) -> tuple[int, int] | None:
    if span is None:
        return None
    s, e = int(span[0]), int(span[1])
    if s < 0 or e <= s or s >= n:
        return None
    return s, min(e, n)


def insert_markers(tokens: Sequence[str], head: Span, tail: Span, marker_words: Sequence[str],
                   types: Sequence[str] | None = None) -> tuple[list[str], list[int]]:
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

    def __init__(self, weights: str | None = None, markers: Literal["special", "typed", "punct", "none"] = "special",
                 max_length: int = 128, train_layers: int | None = None, encoder: str = "minilm",
                 caption_tokens: int = 0, cache_lower: bool = True, precision: str = "32"):
        super().__init__()
        if str(precision) not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.precision = str(precision)
        from mmre_cli.features.encoders import load_text_network

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

    def _hidden(self, enc, marked: list[list[str]], captions: list[str | None],
                tags: Sequence[str] | None = None) -> Tensor:
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
        autocast = (torch.autocast(device_type=dev.type, dtype=torch.bfloat16) if bf16
                    else contextlib.nullcontext())
        m = self.frozen_below
        if m == 0:
            with autocast:
                return self.transformer(ids, mask, types).float()
        lengths = mask.sum(1).tolist()
        tags = tags or [""] * len(marked)
        keys = (["\x1f".join(w) + "\x1e" + ((c or "") if self.caption_tokens else "") + t
                 for w, c, t in zip(marked, captions, tags)] if self.cache_lower else None)
        rows: list[Tensor | None] = [self._lower_cache.get(k) for k in keys] if keys else [None] * len(lengths)
        todo = [i for i, r in enumerate(rows) if r is None or r.device != dev]
        if todo:
            width = max(lengths[i] for i in todo)
            sel = torch.tensor(todo, device=dev)
            with torch.no_grad(), autocast:
                low = self.transformer.lower(ids[sel, :width], mask[sel, :width],
                                             None if types is None else types[sel, :width], stop=m)
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

    def entity_types(self, token_lists: Sequence[Sequence[str]], head_spans: Sequence[Span],
                     tail_spans: Sequence[Span]) -> list[tuple[str, str]]:
        """``(head type, tail type)`` per sentence from spaCy's NER (module docstring, ``"typed"``);
        sentences not seen before are parsed as one batch, then cached."""
        from mmre_cli.graphs.nlp import UNKNOWN_TYPE, load_spacy, parse_pretokenized, span_entity_type

        keys = [(tuple(str(t) for t in toks), _valid_span(h, len(toks)), _valid_span(t, len(toks)))
                for toks, h, t in zip(token_lists, head_spans, tail_spans)]
        todo = list(dict.fromkeys(k for k in keys if k not in self._types_cache))
        if todo:
            docs = parse_pretokenized(load_spacy(ner=True), [k[0] for k in todo])
            for key, doc in zip(todo, docs):
                self._types_cache[key] = tuple(UNKNOWN_TYPE if sp is None else span_entity_type(doc, *sp)
                                               for sp in key[1:])
        return [self._types_cache[k] for k in keys]

    def mark(self, token_lists: Sequence[Sequence[str]], head_spans: Sequence[Span], tail_spans: Sequence[Span]
             ) -> tuple[list[list[str]], list[list[int]]]:
        """The words the transformer reads (markers and, for ``"typed"``, type words inserted) and,
        per marked word, its source (:func:`insert_markers`)."""
        types = (self.entity_types(token_lists, head_spans, tail_spans) if self.markers == "typed"
                 else [None] * len(token_lists))
        marked, sources = [], []
        for toks, hs, ts, ty in zip(token_lists, head_spans, tail_spans, types):
            if self.marker_words is None:
                words, src = [str(t) for t in toks], list(range(len(toks)))
            else:
                words, src = insert_markers(toks, hs, ts, self.marker_words, ty)
            marked.append(words)
            sources.append(src)
        return marked, sources

    def encode(self, token_lists: Sequence[Sequence[str]], head_spans: Sequence[Span],
               tail_spans: Sequence[Span], captions: Sequence[str | None] | None = None,
               deleted: Sequence[Iterable[int]] | None = None) -> tuple[list[Tensor], list[Tensor], Tensor]:
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
                if sp is not None and bool(has_list[i][sp[0]:sp[1]].any()):
                    sel = has_list[i][sp[0]:sp[1]]
                    row.append(vectors[i][sp[0]:sp[1]][sel].mean(0))
                else:
                    row.append(hidden[i, 0])
            ents.append(torch.stack(row))
        return vectors, has_list, torch.stack(ents)

    def forward(self, token_lists: Sequence[Sequence[str]], head_spans: Sequence[Span],
                tail_spans: Sequence[Span], captions: Sequence[str | None] | None = None) -> list[Tensor]:
        """Contextual word vectors, one ``[T_b, D]`` tensor per sentence (markers removed)."""
        return self.encode(token_lists, head_spans, tail_spans, captions)[0]


# --------------------------------------------------------------------------------------------
# data


def _batch_deleted(data, words: list[list[str]]) -> list[list[int]] | None:
    """Per graph, the sentence token indices the editor deleted (``data.word_keep`` false), or
    ``None`` when the batch carries no such mask or nothing was deleted."""
    keep = getattr(data, "word_keep", None)
    if keep is None or bool(keep.all()):
        return None
    out, at = [], 0
    for w in words:
        part = keep[at:at + len(w)]
        out.append((~part).nonzero().reshape(-1).tolist())
        at += len(w)
    return out


def _batch_words(data) -> tuple[list[list[str]], list[Span], list[Span], list[str | None]]:
    words = data.words
    single = words and isinstance(words[0], str) or len(words) == 0
    if single:
        words = [words]  # a single Data, not a Batch
    ent = data.ent_span.reshape(-1, 4).tolist()
    heads = [(h0, h1) if h0 >= 0 else None for h0, h1, _, _ in ent]
    tails = [(t0, t1) if t0 >= 0 else None for _, _, t0, t1 in ent]
    captions = getattr(data, "caption", None)
    if captions is None:
        captions = [None] * len(words)
    elif single or isinstance(captions, str):
        captions = [captions]
    captions = [c or None for c in captions]
    return words, heads, tails, captions


# --------------------------------------------------------------------------------------------
# model


@register_model
class FinetunedRelationModel(nn.Module):
    r""":class:`TextNodeEncoder` + :class:`~mmre_cli.learn.gnn.RelationGNN`, trained end to end.

    Args:
        in_dim (int): node feature size F of the frozen features; when it differs from the
            encoder's hidden size D (frozen MiniLM features, MPNet fine-tuned), a learned
            ``Linear(F, D)`` maps every node's frozen row first and the text rows are then replaced.
        num_classes (int): number of relation labels C.
        markers (str, optional): entity marker style of the encoder. (default: ``"special"``)
        readout (str, optional): ``"gnn"``, ``"gnn_markers"`` or ``"markers"`` (module docstring).
            (default: ``"gnn"``)
        encoder_weights (str, optional): the encoder's model folder; ``None`` resolves it. (default: ``None``)
        encoder (str, optional): ``minilm``, ``mpnet`` or ``hf``. (default: ``"minilm"``)
        caption_tokens (int, optional): caption word pieces in the second segment (0: none).
            (default: ``0``)
        precision (str, optional): ``"32"`` or ``"bf16"`` for the encoder (:class:`TextNodeEncoder`).
            (default: ``"32"``)
        max_length (int, optional): word-piece limit. (default: ``128``)
        train_layers (int, optional): top transformer layers to fine-tune, ``None`` all.
            (default: ``None``)
        hidden, layers, heads, edge_dim, num_edge_types, conv, dropout, gnn_readout,
            use_node_types, hop_alpha, hop_k, fusion, queries: passed to :class:`RelationGNN`
            (``gnn_readout`` as its ``readout``).
        loss, nl_weight: ``"ce+negative_learning"`` adds the branches of
            :mod:`mmre_cli.learn.negative`, the text view being the marker states (the
            ``"markers"`` readout has no graph branches: it trains with cross-entropy).
        caption_pass (int, optional): word pieces of the caption read in its own pass and fused
            with the marker states (:mod:`mmre_cli.learn.caption_fusion`; needs a marker readout);
            ``0``: off. (default: ``0``)
        relation_descriptions (list of str, optional): one description per label; the last
            layer becomes :class:`~mmre_cli.learn.relation_text.RelationTextHead` (relations as
            text). ``None``: a linear last layer. (default: ``None``)

    Shapes:
        - **input:** a ``Batch`` of ``graph_to_data(g, words=True)`` graphs
        - **output:** logits ``[B, C]``
    """

    #: batches must carry the sentence words and spans (``graph_to_data(..., words=True)``)
    needs_words = True

    def __init__(self, in_dim: int, num_classes: int, markers: str = "special", readout: str = "gnn",
                 encoder_weights: str | None = None, max_length: int = 128, train_layers: int | None = None,
                 encoder: str = "minilm", caption_tokens: int = 0, precision: str = "32",
                 hidden: int = 256, layers: int = 2,
                 heads: int = 4, edge_dim: int = EDGE_ATTR_DIM, num_edge_types: int = len(EDGE_TYPES),
                 conv: str = "gatv2", dropout: float = 0.2, gnn_readout: str = "head_tail_pool",
                 use_node_types: bool = True, hop_alpha: float = 0.1, hop_k: int = 4, fusion: str = "none",
                 queries: int = 8, loss: str = "ce", nl_weight: float = 0.5, caption_pass: int = 0,
                 relation_descriptions: Sequence[str] | None = None):
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, not {readout!r}")
        caption_pass = max(0, int(caption_pass or 0))
        if caption_pass and readout == "gnn":
            raise ValueError("caption_pass needs a readout that reads the marker states (gnn_markers or markers)")
        if readout == "markers":
            loss = "ce"  # no graph: no structure/visual branches to teach each other
        if relation_descriptions is not None:
            from mmre_cli.learn.relation_text import check_descriptions

            relation_descriptions = check_descriptions(relation_descriptions, num_classes)
        self.config = dict(in_dim=in_dim, num_classes=num_classes, markers=markers, readout=readout,
                           encoder_weights=None if encoder_weights is None else str(encoder_weights),
                           max_length=max_length, train_layers=train_layers, encoder=encoder,
                           caption_tokens=caption_tokens, precision=precision, hidden=hidden, layers=layers,
                           heads=heads, edge_dim=edge_dim,
                           num_edge_types=num_edge_types, conv=conv, dropout=dropout, gnn_readout=gnn_readout,
                           use_node_types=use_node_types, hop_alpha=hop_alpha, hop_k=hop_k, fusion=fusion,
                           queries=queries, loss=loss, nl_weight=nl_weight, caption_pass=caption_pass,
                           relation_descriptions=relation_descriptions)
        self.encoder = TextNodeEncoder(encoder_weights, markers=markers, max_length=max_length,
                                       train_layers=train_layers, encoder=encoder, caption_tokens=caption_tokens,
                                       precision=precision)
        dim = self.encoder.dim
        self.readout = readout
        self.project = self.gnn = None
        if readout != "markers":
            # frozen rows of another width (e.g. MiniLM features under a fine-tuned MPNet) are mapped in
            self.project = nn.Linear(in_dim, dim) if in_dim != dim else None
            self.gnn = RelationGNN(dim, num_classes, hidden=hidden, layers=layers, heads=heads, edge_dim=edge_dim,
                                   num_edge_types=num_edge_types, conv=conv, dropout=dropout, readout=gnn_readout,
                                   use_node_types=use_node_types, hop_alpha=hop_alpha, hop_k=hop_k, fusion=fusion,
                                   queries=queries)
        self.caption_reader = self.caption_fusion = None
        if caption_pass:
            from mmre_cli.learn.caption_fusion import CaptionFusion, CaptionReader

            self.caption_reader = CaptionReader(self.encoder.tokenizer, self.encoder.transformer, caption_pass,
                                                bf16=self.encoder.precision == "bf16")
            self.caption_fusion = CaptionFusion(dim)
        self.descriptions = relation_descriptions
        self._desc_cache: tuple[tuple[str, ...], Tensor] | None = None  # eval only: see description_vectors
        last = None
        if relation_descriptions is not None:
            from mmre_cli.learn.relation_text import RelationTextHead

            last = RelationTextHead(hidden, dim, num_classes)
        if readout != "gnn":
            z_dim = self.gnn.z_dim if self.gnn is not None else 0
            if self.gnn is not None:
                self.gnn.classifier = nn.Identity()  # the GNN's readout z goes to self.classifier with the markers
            self.marker_norm = nn.LayerNorm(dim)
            extra = self.caption_fusion.out_dim if self.caption_fusion is not None else 0
            self.classifier = nn.Sequential(nn.Linear(z_dim + 2 * dim + extra, hidden), nn.GELU(),
                                            nn.Dropout(dropout), last or nn.Linear(hidden, num_classes))
        elif last is not None:
            head = self.gnn.classifier  # RelationGNN's MLP: swap its last Linear for the text head
            head[-1] = RelationTextHead(head[-1].in_features, dim, num_classes)
        self.branch_heads = None
        if loss == "ce+negative_learning":  # text view: the marker states (gnn_markers) or the GNN's
            from mmre_cli.learn.negative import BranchHeads

            text_dim = 2 * dim if readout != "gnn" else 4 * hidden
            self.branch_heads = BranchHeads(text_dim, 3 * hidden, self.gnn.z_dim, num_classes, hidden, dropout,
                                            nl_weight=nl_weight)

    def text_features(self, data, vectors: list[Tensor], has: list[Tensor]) -> Tensor:
        """``data.x`` with the text nodes' rows replaced by span means of the fresh word vectors.

        Shapes:
            ``[N, F]``
        """
        x = data.x if self.project is None else self.project(data.x.to(self.project.weight.device))
        dev = vectors[0].device if vectors else x.device
        flat = torch.cat(vectors) if vectors else x.new_zeros(0, x.size(1))
        flat = F.normalize(flat, p=2, dim=-1, eps=1e-12)
        has_flat = torch.cat(has) if has else torch.zeros(0, dtype=torch.bool, device=dev)
        lengths = torch.tensor([v.size(0) for v in vectors], dtype=torch.long, device=dev)
        offsets = torch.cumsum(lengths, 0) - lengths
        ns = data.node_span.to(dev).reshape(-1, 2)
        batch = getattr(data, "batch", None)
        batch = torch.zeros(x.size(0), dtype=torch.long, device=dev) if batch is None else batch.to(dev)
        mod = data.node_modality.to(dev)
        s = ns[:, 0]
        e = torch.minimum(ns[:, 1], lengths[batch])
        valid = (mod == _TEXT) & (s >= 0) & (e > s)
        nodes = valid.nonzero().reshape(-1)
        if nodes.numel() == 0:
            return x
        s, e = s[nodes], e[nodes]
        span_len = e - s
        rep = torch.repeat_interleave(torch.arange(nodes.numel(), device=dev), span_len)
        start_of = torch.cumsum(span_len, 0) - span_len
        pos = s[rep] + torch.arange(rep.numel(), device=dev) - start_of[rep]
        word = offsets[batch[nodes]][rep] + pos
        w = has_flat[word].to(flat.dtype)
        sums = flat.new_zeros(nodes.numel(), flat.size(1)).index_add(0, rep, flat[word] * w.unsqueeze(-1))
        cnt = flat.new_zeros(nodes.numel()).index_add(0, rep, w)
        fresh = F.normalize(sums / cnt.clamp(min=1.0).unsqueeze(-1), p=2, dim=-1, eps=1e-12)
        ok = cnt > 0
        out = x.to(dev, flat.dtype).clone()
        out[nodes[ok]] = fresh[ok]
        return out

    def marker_states(self, ents: Tensor) -> Tensor | None:
        """The layer-normalised ``<h>``/``<t>`` states ``[B, 2D]`` the marker readouts read
        (``None`` for the ``gnn`` readout)."""
        return None if self.readout == "gnn" else self.marker_norm(ents).reshape(ents.size(0), -1)

    def caption_features(self, ents: Tensor, words, heads, tails, captions) -> Tensor:
        """:class:`~mmre_cli.learn.caption_fusion.CaptionFusion` of each graph's caption, ``[B, 2D + 2]``."""
        from mmre_cli.learn.caption_fusion import entity_words

        if self.caption_reader.device != ents.device:
            self.caption_reader.to(ents.device)
        states, mask, match = self.caption_reader.read(
            captions, [entity_words(w, h) for w, h in zip(words, heads)],
            [entity_words(w, t) for w, t in zip(words, tails)])
        return self.caption_fusion(self.marker_norm(ents), states, mask, match)

    def description_vectors(self) -> Tensor:
        """The relation descriptions through the (fine-tuned) encoder, mean of their pieces' last
        hidden states, ``[C, D]`` (:mod:`mmre_cli.learn.relation_text`). In eval mode without
        gradients they are computed once per description list and kept until the next ``train()``
        (evaluation and prediction would otherwise re-encode the same C texts for every batch)."""
        key = tuple(self.descriptions)
        frozen = not self.training and not torch.is_grad_enabled()
        if frozen and self._desc_cache is not None and self._desc_cache[0] == key:
            return self._desc_cache[1]
        enc = self.encoder
        marked = [d.split() for d in self.descriptions]
        tok = enc.tokenizer.pairs(marked, [None] * len(marked), 0)
        hidden = enc._hidden(tok, marked, [None] * len(marked))
        keep = torch.tensor([[w is not None for w in row] for row in tok.word_ids], device=hidden.device)
        keep = keep.to(hidden.dtype).unsqueeze(-1)
        vectors = (hidden * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        self._desc_cache = (key, vectors) if frozen else None
        return vectors

    def train(self, mode: bool = True):
        """As ``nn.Module.train``; also forgets the description vectors kept for evaluation."""
        self._desc_cache = None
        return super().train(mode)

    def _last_layers(self, seq: nn.Module, x: Tensor) -> Tensor:
        if self.descriptions is None:
            return seq(x)
        return seq[-1](seq[:-1](x), self.description_vectors())

    def readout_inputs(self, data):
        """``(run, markers)``: a copy of the batch whose text rows are re-encoded (``run.x``; the
        batch itself for the ``markers`` readout), and the marker features the classifier reads
        (marker states, plus the caption pass's features when on; ``None`` for ``gnn``)."""
        words, heads, tails, captions = _batch_words(data)
        pair = captions if self.encoder.caption_tokens else [None] * len(words)
        vectors, has, ents = self.encoder.encode(words, heads, tails, pair, deleted=_batch_deleted(data, words))
        run = copy.copy(data)
        if self.gnn is not None:
            run.x = self.text_features(data, vectors, has)
        markers = self.marker_states(ents)
        if self.caption_fusion is not None:
            markers = torch.cat([markers, self.caption_features(ents, words, heads, tails, captions)], dim=-1)
        return run, markers

    def classify(self, run, markers: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``(logits [B, C], h0 [N, H], z [B, z_dim])`` of a batch whose text rows are already
        re-encoded (``run.x``), given the marker features (``h0``/``z`` are ``None`` without a graph)."""
        if self.gnn is None:
            return self._last_layers(self.classifier, markers), None, None
        h0, h = self.gnn.encode(run)
        z = self.gnn.readout_vector(run, h)
        if markers is None:
            return self._last_layers(self.gnn.classifier, z), h0, z
        return self._last_layers(self.classifier, torch.cat([z, markers.expand(z.size(0), -1)], dim=-1)), h0, z

    def forward(self, data) -> Tensor:
        """Relation logits, one row per graph.

        Shapes:
            data (``N`` nodes, ``B`` graphs) -> ``[B, C]``
        """
        run, markers = self.readout_inputs(data)
        logits, h0, z = self.classify(run, markers)
        if self.branch_heads is None or not self.training:
            return logits
        views, has_image = self.gnn.views(run, h0, z)
        if markers is not None:
            views["text"] = markers[:, : 2 * self.encoder.dim]
        return self.branch_heads(logits, views, has_image)


# --------------------------------------------------------------------------------------------
# training


def param_groups(model: FinetunedRelationModel, enc_lr: float, head_lr: float, weight_decay: float = 0.01,
                 layer_decay: float = 1.0) -> list[dict]:
    r"""AdamW parameter groups: encoder (``enc_lr``; no decay on biases / LayerNorms) and the rest.

    With ``layer_decay`` :math:`\xi < 1` (layer-wise learning-rate decay, LLRD), transformer
    layer :math:`l` of :math:`L` learns at :math:`\text{enc\_lr} \cdot \xi^{L-1-l}` and the
    embeddings at :math:`\text{enc\_lr} \cdot \xi^{L}`: the top layer at ``enc_lr``, lower,
    more general layers slower.

    Returns:
        groups ``{"params", "lr", "weight_decay", "name"}``: ``encoder``, ``encoder_no_decay``
        (one pair per depth, named ``encoder.l{l}`` / ``encoder_no_decay.l{l}``, under LLRD),
        ``head``.
    """
    depth_of: dict[int, int] = {}
    n_layers = 0
    if layer_decay != 1.0 and hasattr(model, "encoder"):
        layers = list(model.encoder.transformer.layers)
        n_layers = len(layers)
        for depth, layer in enumerate(layers):
            for p in layer.parameters():
                depth_of[id(p)] = depth
    groups: dict[tuple[str, int], dict] = {}
    head = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if not name.startswith("encoder."):
            head.append(p)
            continue
        plain = p.ndim < 2 or "LayerNorm" in name or "norm" in name.lower()
        depth = depth_of.get(id(p), -1 if n_layers else 0)  # -1: embeddings (and markers) under LLRD
        key = ("encoder_no_decay" if plain else "encoder", depth)
        if key not in groups:
            lr = enc_lr * (layer_decay ** (n_layers - 1 - depth) if n_layers else 1.0)
            suffix = f".l{depth}" if n_layers else ""
            groups[key] = {"params": [], "lr": lr, "weight_decay": 0.0 if plain else weight_decay,
                           "name": key[0] + suffix}
        groups[key]["params"].append(p)
    out = [groups[k] for k in sorted(groups, key=lambda k: (k[0] != "encoder", k[1]))]
    out.append({"params": head, "lr": head_lr, "weight_decay": weight_decay, "name": "head"})
    return [g for g in out if g["params"]]


def fit_finetuned(model: nn.Module, train_loader: Iterable, val_loader: Iterable, *, epochs: int,
                  enc_lr: float = 3e-5, head_lr: float = 1e-3, weight_decay: float = 0.01,
                  class_weights: str = "inverse_sqrt", none_id: int = 0, seed: int = 0, patience: int | None = None,
                  reporter=None, grad_clip: float | None = 1.0, warmup: float = 0.1,
                  num_classes: int | None = None, fabric=None, layer_decay: float = 1.0,
                  **resume) -> tuple[dict[str, Tensor], list[dict]]:
    """Train a :class:`FinetunedRelationModel` with two learning rates; keep the best val micro-F1 epoch.

    Like :func:`~mmre_cli.learn.trainer.fit_classifier` (same class weights, same selection —
    val micro-F1, ties to the lower val loss —, same ``history`` keys), but with
    :func:`param_groups` and a schedule: linear warm-up over the first ``warmup`` fraction of all
    steps, then linear decay to 0 at the end of ``epochs`` (both groups). Runs on the device of
    the model's parameters, or on ``fabric``'s devices (Lightning Fabric, as ``fit_classifier``).

    ``resume`` passes ``state_dir`` / ``resume`` / ``fingerprint`` through (per-epoch training
    state, :mod:`mmre_cli.learn.resume`).

    Returns:
        ``(best_state, history)`` as :func:`fit_classifier`.
    """
    from mmre_cli.learn.trainer import fit_classifier

    groups = param_groups(model, enc_lr, head_lr, weight_decay, layer_decay) if hasattr(model, "encoder") else None
    return fit_classifier(model, train_loader, val_loader, epochs=epochs, lr=head_lr, weight_decay=weight_decay,
                          class_weights=class_weights, none_id=none_id, seed=seed, patience=patience,
                          reporter=reporter, grad_clip=grad_clip, num_classes=num_classes, param_groups=groups,
                          warmup=warmup, fabric=fabric, **resume)


def bf16_is_native(device: torch.device | str = "cpu") -> bool:
    """Whether bfloat16 matmuls run natively on ``device``: a CUDA device that supports them, or a
    CPU on which oneDNN runs bf16 kernels (AVX512 / AMX). On an AVX2-only CPU bfloat16 autocast is
    emulated — 14x *slower* than float32 for MiniLM's forward+backward on an AMD EPYC (AVX2;
    ``bench/precision_probe.py``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``auto`` → ``"bf16"`` where :func:`bf16_is_native` on ``device``, else ``"32"``; ``"32"`` and
    ``"bf16"`` pass through.

    Raises:
        ValueError: not one of :data:`PRECISION_CHOICES`.
    """
    precision = str(precision)
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, not {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_is_native(device) else "32"
    return precision
