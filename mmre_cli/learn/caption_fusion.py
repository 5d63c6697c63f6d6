r"""Captions through their own pass, fused with the entity states (issue 25, ``train_gnn.caption_pass``).

Read as the second segment of the marked sentence (``caption_tokens``), a caption shares the
encoder input with the marker states the classifier reads and is cut short; on MNRE-2 val it
*cost* 2–7 F1 points. Here, as in CAMIM (ACM MM 2024), the caption is encoded apart:

1. **Own pass** (:class:`CaptionReader`). The caption alone, ``[CLS] caption [SEP]`` cut to
   ``caption_pass`` word pieces (default 128: 74 % of CogVLM captions are longer than 40), runs
   through a *frozen copy of the pretrained encoder* taken before fine-tuning. Frozen, its last
   hidden states :math:`\mathbf{C} \in \mathbb{R}^{L\times D}` for a caption never change: they are
   computed once per caption text and cached (bfloat16 under ``precision="bf16"``; ``train-gnn``
   encodes every caption before epoch 1, :meth:`CaptionReader.prefill`), so training pays only for the
   fusion below; :meth:`CaptionReader.use_store` keeps them on disk for the next run
   (:mod:`mmre_cli.learn.caption_store`). The copy is not part of the
   checkpoint: it is rebuilt from the same pretrained folder when the model is.
2. **Entity match** signal. Each caption piece :math:`j` gets :math:`m_j \in \{0, 1, 2\}`: 1 when
   its word equals (case-folded, ``@``/``#`` stripped) a word of the head mention, 2 of the tail,
   0 otherwise (stop words and 1-letter words never match).
3. **Fusion** (:class:`CaptionFusion`). With the layer-normalised marker states
   :math:`\mathbf{q} = [\mathbf{h}; \mathbf{t}] \in \mathbb{R}^{2\times D}` as queries, keys and
   values :math:`\mathbf{K} = [\mathbf{n};\ \mathrm{LN}(W_c\mathbf{C}) + E_m[m]]` (a learned
   *null* key :math:`\mathbf{n}`, so a missing caption is a defined state),

   .. math::
       \mathbf{a} = \mathrm{MHA}(\mathbf{q}, \mathbf{K}, \mathbf{K}),\qquad
       \mathbf{g} = \sigma(W_g[\mathbf{q}; \mathbf{a}]),\qquad
       \mathbf{f} = [\mathbf{g}_h \odot \mathbf{a}_h;\ \mathbf{g}_t \odot \mathbf{a}_t;\
                     \max_j[m_j = 1];\ \max_j[m_j = 2]]

   :math:`\mathbf{f} \in \mathbb{R}^{2D+2}` is appended to the classifier's input.

Several captioners at once: ``train_gnn.pair_captions`` as a list joins an image's captions (in the
list's order, one slot per captioner: :func:`~mmre_cli.data.captions.join_captions`) into one text.
``caption_parts="joined"`` (the default) reads the captions present in one pass, cut to
``caption_pass`` pieces in all; ``"separate"`` splits it into its slots and reads each captioner's
caption in a pass of its own, each cut to ``caption_pass`` pieces, the parts' states then
concatenated along :math:`L` for the fusion (so a long first caption no longer crowds out the
others, and no caption's states attend to another's).
``"weighted"`` reads the parts as ``"separate"`` does but attends to each part on its own and lets
the queries weigh the captioners: with :math:`\mathbf{a}_p` the attention over part :math:`p`'s keys
(and the null key),

.. math::
    \mathbf{a} = \sum_p \operatorname{softmax}_p\big(\mathbf{w}^\top[\mathbf{q}; \mathbf{a}_p]\big)\, \mathbf{a}_p

over the parts a caption has (all parts absent: the null key's value), so many or long captions of a
generic captioner cannot dilute one softmax that an informative one shares.

4. **Pooled caption embeddings** (``train_gnn.caption_pool``, :class:`CaptionFusion` with
   ``pool_parts`` P > 0). The encoder is a sentence-embedding model (all-MiniLM-L6-v2,
   all-mpnet-base-v2: mean pooling, then L2 normalisation), so each caption part also gives its
   native embedding :math:`\mathbf{e}_p = \bar{\mathbf{C}}_p / \lVert\bar{\mathbf{C}}_p\rVert`,
   the mean of part :math:`p`'s piece states (a missing part: :math:`\mathbf{0}`), and

   .. math::
       \mathbf{f} \mathrel{+}= \mathrm{LN}\big(W_e[\mathbf{e}_1; \dots; \mathbf{e}_P]\big) \in \mathbb{R}^{D}

   a view of the whole image that does not depend on what the marker states ask for (a trophy, two
   people, a place: the relations the captions helped most with).
   Part :math:`p` is captioner :math:`p` of ``train_gnn.pair_captions``: the joined text keeps an
   empty slot for a caption a captioner lacks (:func:`~mmre_cli.data.captions.join_captions`), so
   its embedding is :math:`\mathbf{0}` and the later captioners keep their slots (typed in
   ``mmre predict``: ``"a ; ; c"``).

5. **Caption dropout** (``train_gnn.caption_dropout``, ``drop`` here): in training, each instance's
   whole caption is dropped with probability ``drop`` (its mask row emptied: only the null key is
   attended, no match flag, zero embeddings), so the classifier cannot lean on the caption where the
   sentence suffices and learns the null-key path that a prediction without a caption takes.

Shapes:
    :meth:`CaptionReader.read`: B captions -> states ``[B, L, D]``, mask ``[B, L]``, match ``[B, L]``
    :class:`CaptionFusion`: queries ``[B, 2, D]`` + the above (+ ``part [B, L]``, ``weighted`` or
    ``pool_parts``) -> ``[B, 2D + 2]`` (+ ``D`` with ``pool_parts``)
"""

from __future__ import annotations

import contextlib
import copy
from typing import Sequence

import torch
from torch import Tensor, nn

from mmre_cli.data.captions import CAPTION_JOIN, split_captions

__all__ = ["CAPTION_PARTS", "CaptionReader", "CaptionFusion", "entity_words"]

#: how several joined captions are read: in one pass, or one pass each
CAPTION_PARTS = ("joined", "separate", "weighted")

#: words that never count as an entity match
STOP_WORDS = frozenset("a an and the of in on at to for by with from is are was rt via amp".split())


def entity_words(tokens: Sequence[str], span) -> set[str]:
    """The case-folded words of a mention (``@``/``#`` stripped; stop words and 1-letter words left out)."""
    if span is None:
        return set()
    s, e = int(span[0]), int(span[1])
    out = set()
    for t in tokens[max(0, s) : max(0, e)]:
        w = str(t).lower().strip("@#")
        if len(w) > 1 and w not in STOP_WORDS:
            out.add(w)
    return out


class CaptionReader:
    """The frozen own pass over captions, cached per caption text (module docstring, 1 and 2).

    Deliberately not an ``nn.Module``: its network is a frozen copy of the pretrained encoder,
    rebuilt at model construction, so it never enters a state dict, an optimiser or a checkpoint.

    Args:
        tokenizer: the encoder's :class:`~mmre_cli.features.bert.WordPieces`.
        network: the encoder network *before* fine-tuning (copied here, frozen, eval mode).
        pieces: word-piece limit per caption, special tokens included.
        bf16: run under bfloat16 autocast and cache bfloat16.
        parts: ``"joined"`` reads a caption in one pass; ``"separate"`` and ``"weighted"`` read each
            :data:`CAPTION_JOIN`-separated part in its own pass of ``pieces`` (module docstring).
    """

    def __init__(self, tokenizer, network: nn.Module, pieces: int = 128, bf16: bool = False, parts: str = "joined"):
        if parts not in CAPTION_PARTS:
            raise ValueError(f"parts must be one of {CAPTION_PARTS}, not {parts!r}")
        self.tokenizer = tokenizer
        self.network = copy.deepcopy(network).eval().requires_grad_(False)
        self.pieces = int(pieces)
        self.bf16 = bool(bf16)
        self.parts = parts
        self._cache: dict[str, tuple[Tensor, list[str | None]]] = {}
        self.store = None  # a CaptionStateStore once use_store() is called

    def to(self, device) -> "CaptionReader":
        self.network.to(device)
        self._cache.clear()
        return self

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the states are cached in."""
        return torch.bfloat16 if self.bf16 else torch.float32

    def use_store(self, root) -> "CaptionReader":
        """Read and write the states through a :class:`~mmre_cli.learn.caption_store.CaptionStateStore`
        under ``root``, keyed by this reader's frozen weights, piece limit and dtype."""
        from mmre_cli.learn.caption_store import CaptionStateStore, network_key

        self.store = CaptionStateStore(root, network_key(self.network, self.pieces, self.dtype))
        return self

    def prefill(self, captions: Sequence[str | None], batch_size: int = 64, progress=None) -> int:
        """Encode every part of ``captions`` not yet cached, shortest first in batches of
        ``batch_size`` (little padding), before training reads them; with a store, stored states
        are read instead and new ones written. ``progress``: a task whose ``advance(n)`` is called
        per batch. Returns the number of parts encoded (not found in memory or the store)."""
        todo = list(dict.fromkeys(p for c in captions for p in self.split(c) if p and p not in self._cache))
        todo.sort(key=len)
        encoded = 0
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            encoded += self._encode_new(batch)
            if progress is not None:
                progress.advance(len(batch))
        if self.store is not None:
            self.store.flush()
        return encoded

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def _encode_new(self, texts: list[str]) -> int:
        """Cache ``texts``' states: from the store where it has them, else through the frozen
        network (then kept in the store too). Returns how many went through the network."""
        stored = self.store.get_many(texts) if self.store is not None else {}
        dev = self.device
        if stored:
            names = list(stored)
            _, words = self.tokenizer.texts(names, self.pieces)
            for t, w in zip(names, words):
                row = stored[t].to(dev)
                self._cache[t] = (row, w[: row.size(0)])
        texts = [t for t in texts if t not in stored]
        if not texts:
            return 0
        enc, words = self.tokenizer.texts(texts, self.pieces)
        autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with torch.no_grad(), autocast:
            out = self.network(enc.input_ids.to(dev), enc.attention_mask.to(dev))
        out = out.to(self.dtype)
        lengths = enc.attention_mask.sum(1).tolist()
        for i, t in enumerate(texts):
            self._cache[t] = (out[i, : lengths[i]].clone(), words[i][: lengths[i]])
            if self.store is not None:
                self.store.put(t, self._cache[t][0])
        return len(texts)

    def split(self, caption: str | None) -> list[str | None]:
        """The texts of one caption that get a pass each: the captioners' slots
        (:func:`~mmre_cli.data.captions.split_captions`) joined again without the empty ones
        (``joined``), or each slot (``separate``, ``weighted``: an empty slot stays as ``None``, so
        a part's index is its captioner's position); none for an empty caption."""
        slots = split_captions(caption)
        if self.parts == "joined":
            present = [p for p in slots if p]
            return [CAPTION_JOIN.join(present)] if present else []
        return slots if any(slots) else []

    def _states(self, parts: list[str | None], with_parts: bool) -> tuple[Tensor, list[str | None], list[int] | None]:
        """One caption's cached part states, concatenated: ``([L, D], L words, L part indices or None)``;
        a part's index is its slot (an empty slot adds no piece)."""
        slots = [(k, self._cache[p]) for k, p in enumerate(parts) if p]
        rows = [row for _, row in slots]
        index = [k for k, (r, _) in slots for _ in range(r.size(0))] if with_parts else None
        if len(rows) == 1:
            return rows[0][0], rows[0][1], index
        return torch.cat([r for r, _ in rows]), [w for _, words in rows for w in words], index

    def read(
        self,
        captions: Sequence[str | None],
        heads: Sequence[set[str]],
        tails: Sequence[set[str]],
        with_parts: bool = False,
    ) -> tuple[Tensor, ...]:
        """``(states [B, L, D] float32, mask [B, L] bool, match [B, L] long)``, and with ``with_parts``
        also ``part [B, L] long``, the index of the caption part each piece comes from (-1: padding);
        an empty or missing caption has an all-false mask row (only the null key is then attended)."""
        parts = [self.split(c) for c in captions]
        todo = list(dict.fromkeys(p for ps in parts for p in ps if p and p not in self._cache))
        if todo:
            self._encode_new(todo)
        read = [self._states(ps, with_parts) if ps else None for ps in parts]
        b = len(parts)
        width = max([r[0].size(0) for r in read if r is not None] or [1])
        dim = int(self.network.config.hidden_size)
        dev = self.device
        states = torch.zeros(b, width, dim, device=dev)
        mask = torch.zeros(b, width, dtype=torch.bool, device=dev)
        match = torch.zeros(b, width, dtype=torch.long, device=dev)
        part = torch.full((b, width), -1, dtype=torch.long, device=dev) if with_parts else None
        for i, r in enumerate(read):
            if r is None:
                continue
            row, words, index = r
            n = row.size(0)
            if with_parts:
                part[i, :n] = torch.tensor(index, dtype=torch.long, device=dev)
            states[i, :n] = row.float()
            flags = [(w is not None) for w in words]
            mask[i, :n] = torch.tensor(flags, dtype=torch.bool, device=dev)
            m = [1 if w in heads[i] else 2 if w in tails[i] else 0 for w in words]
            match[i, :n] = torch.tensor(m, dtype=torch.long, device=dev)
        return (states, mask, match, part) if with_parts else (states, mask, match)


class CaptionFusion(nn.Module):
    r"""Gated cross-attention from the marker states to a caption's pieces (module docstring, 3).

    Args:
        dim (int): D, the encoder width.
        heads (int, optional): attention heads. (default: ``4``)
        dropout (float, optional): attention dropout. (default: ``0.1``)
        per_part (bool, optional): attend to each caption part alone and weigh the parts
            (``caption_parts="weighted"``, module docstring). (default: ``False``)
        pool_parts (int, optional): P > 0 appends the projected mean-pooled embeddings of caption
            parts 0..P-1 (module docstring, 4); ``0``: off. (default: ``0``)
        drop (float, optional): in training, the probability that an instance's caption is dropped
            whole (module docstring, 5). (default: ``0``)

    Shapes:
        - **input:** queries ``[B, 2, D]``, states ``[B, L, D]``, mask ``[B, L]`` (True = piece),
          match ``[B, L]`` in {0, 1, 2}, part ``[B, L]`` (``per_part`` or ``pool_parts`` only; -1 = padding)
        - **output:** ``[B, 2D + 2]``, ``[B, 3D + 2]`` with ``pool_parts`` (:attr:`out_dim`)
    """

    def __init__(
        self,
        dim: int,
        heads: int = 4,
        dropout: float = 0.1,
        per_part: bool = False,
        pool_parts: int = 0,
        drop: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= float(drop) < 1.0:
            raise ValueError(f"caption dropout must be in [0, 1), not {drop}")
        self.drop = float(drop)
        self.per_part = bool(per_part)
        self.pool_parts = max(0, int(pool_parts))
        if self.pool_parts:
            self.pool_proj = nn.Sequential(nn.Linear(self.pool_parts * dim, dim), nn.LayerNorm(dim))
        if self.per_part:
            self.part_score = nn.Linear(2 * dim, 1)
        self.proj = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))
        self.match = nn.Embedding(3, dim)
        nn.init.normal_(self.match.weight, std=0.02)
        self.null = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.gate = nn.Linear(2 * dim, dim)
        self.out_dim = 2 * dim + 2 + (dim if self.pool_parts else 0)

    @property
    def needs_parts(self) -> bool:
        """Whether :meth:`forward` needs the ``part`` index (:meth:`CaptionReader.read` ``with_parts``)."""
        return self.per_part or self.pool_parts > 0

    def forward(
        self, queries: Tensor, states: Tensor, mask: Tensor, match: Tensor, part: Tensor | None = None
    ) -> Tensor:
        b = queries.size(0)
        if self.training and self.drop > 0:
            mask = mask & (torch.rand(b, 1, device=mask.device) >= self.drop)
        kv = self.proj(states.to(queries.dtype)) + self.match(match)
        kv = torch.cat([self.null.expand(b, 1, -1).to(kv.dtype), kv], dim=1)
        null = torch.zeros(b, 1, dtype=torch.bool, device=mask.device)
        if self.per_part:
            att = self._weighted(queries, kv, mask, part, null)
        else:
            pad = torch.cat([null, ~mask], dim=1)
            att, _ = self.attn(queries, kv, kv, key_padding_mask=pad, need_weights=False)
        gated = torch.sigmoid(self.gate(torch.cat([queries, att], dim=-1))) * att
        flags = torch.stack([((match == 1) & mask).any(1), ((match == 2) & mask).any(1)], dim=-1)
        out = [gated.reshape(b, -1), flags.to(gated.dtype)]
        if self.pool_parts:
            out.append(self.pool_proj(self.pooled(states, mask, part).reshape(b, -1).to(gated.dtype)))
        return torch.cat(out, dim=-1)

    def pooled(self, states: Tensor, mask: Tensor, part: Tensor | None) -> Tensor:
        """The L2-normalised mean of each part's piece states, ``[B, P, D]`` (a missing part: zeros)."""
        if part is None:
            raise ValueError("pool_parts needs the part index of every caption piece")
        onehot = (part.unsqueeze(-1) == torch.arange(self.pool_parts, device=part.device)) & mask.unsqueeze(-1)
        weights = onehot.to(states.dtype)  # [B, L, P]
        sums = torch.einsum("blp,bld->bpd", weights, states)
        means = sums / weights.sum(1).clamp(min=1.0).unsqueeze(-1)
        return nn.functional.normalize(means, dim=-1)

    def _weighted(self, queries: Tensor, kv: Tensor, mask: Tensor, part: Tensor, null: Tensor) -> Tensor:
        """Attention over each part's keys alone, ``[B, 2, P, D]``, weighed over the parts present -> ``[B, 2, D]``."""
        if part is None:
            raise ValueError("per_part fusion needs the part index of every caption piece")
        n_parts = max(int(part.max()) + 1, 1) if part.numel() else 1
        atts, present = [], []
        for p in range(n_parts):
            keep = mask & (part == p)
            att, _ = self.attn(queries, kv, kv, key_padding_mask=torch.cat([null, ~keep], dim=1), need_weights=False)
            atts.append(att)
            present.append(keep.any(1))
        stacked = torch.stack(atts, dim=2)  # [B, 2, P, D]
        has = torch.stack(present, dim=1)  # [B, P]
        has = has | ~has.any(1, keepdim=True)  # no caption: every part is the null key's value, weighed alike
        score = self.part_score(torch.cat([queries.unsqueeze(2).expand_as(stacked), stacked], dim=-1)).squeeze(-1)
        score = score.masked_fill(~has.unsqueeze(1), float("-inf"))
        return (torch.softmax(score, dim=-1).unsqueeze(-1) * stacked).sum(2)
