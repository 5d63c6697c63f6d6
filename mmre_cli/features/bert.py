r"""BERT encoders (all-MiniLM-L6-v2) on ``torch.nn.TransformerEncoderLayer`` and ``tokenizers``.

all-MiniLM-L6-v2 is a plain post-LayerNorm BERT. Loading it through ``transformers`` costs
3–4 s of imports on 2 CPU cores (its model code pulls in ``torch._dynamo``, ``sympy``,
``scipy``, …), most of ``mmre predict``'s cold start. The same network is PyTorch's own
encoder layer, so the model folder's ``config.json`` + ``model.safetensors`` are loaded into:

.. math::
    \mathbf{h}^{(0)} = \mathrm{LN}(E_{\text{word}}[t_i] + E_{\text{pos}}[i] + E_{\text{type}}[0]),\qquad
    \mathbf{h}^{(l)} = \mathrm{LN}_2\big(\mathbf{a} + \mathrm{FFN}(\mathbf{a})\big),\quad
    \mathbf{a} = \mathrm{LN}_1\big(\mathbf{h}^{(l-1)} + \mathrm{MHA}(\mathbf{h}^{(l-1)})\big)

with :math:`\mathrm{FFN}(x) = W_2\,\mathrm{GELU}(W_1 x)` (exact GELU), padded keys masked out —
``nn.TransformerEncoderLayer(norm_first=False, activation="gelu", batch_first=True)`` exactly.
Weight names map one to one (``query``/``key``/``value`` are stacked into ``in_proj``); a test
checks the outputs against ``transformers.BertModel`` when that is installed.

The word-piece tokenizer is the folder's ``tokenizer.json`` run by the ``tokenizers`` library
(what ``transformers``' fast tokenizer wraps): lower-casing, ``[CLS] … [SEP]``, truncation to
``max_length``, padding to the longest sequence of a batch.

Shapes:
    :class:`BertModel`: ``input_ids [B, L]``, ``attention_mask [B, L]`` (1 = token) -> ``[B, L, H]``
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["BertConfig", "BertModel", "WordPieces", "Tokenized", "load_bert"]


@dataclass(frozen=True)
class BertConfig:
    """The fields of a BERT ``config.json`` the network needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    pad_token_id: int = 0

    @classmethod
    def from_file(cls, path: str | Path) -> "BertConfig":
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        if raw.get("model_type", "bert") != "bert" or raw.get("hidden_act", "gelu") != "gelu":
            raise ValueError(
                f"{path}: not a BERT config with GELU (model_type={raw.get('model_type')!r}, "
                f"hidden_act={raw.get('hidden_act')!r})"
            )
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only absolute position embeddings are supported")
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


class BertModel(nn.Module):
    """BERT's encoder on ``nn.TransformerEncoderLayer`` (see the module docstring).

    Args:
        config (BertConfig): sizes.

    Shapes:
        - **input:** ``input_ids [B, L]`` int64, ``attention_mask [B, L]`` (1 token, 0 padding)
        - **output:** last hidden states ``[B, L, H]``
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, h, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, h)
        self.embedding_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.embedding_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                h,
                config.num_attention_heads,
                config.intermediate_size,
                dropout=config.hidden_dropout_prob,
                activation="gelu",
                layer_norm_eps=config.layer_norm_eps,
                batch_first=True,
                norm_first=False,
            )
            for _ in range(config.num_hidden_layers)
        )

    def get_input_embeddings(self) -> nn.Embedding:
        return self.word_embeddings

    def resize_token_embeddings(self, n: int) -> None:
        """Grow the word-embedding table to ``n`` rows (old rows kept, new rows zero)."""
        old = self.word_embeddings
        if n <= old.num_embeddings:
            return
        new = nn.Embedding(n, old.embedding_dim, padding_idx=old.padding_idx).to(old.weight.device, old.weight.dtype)
        with torch.no_grad():
            new.weight.zero_()
            new.weight[: old.num_embeddings] = old.weight
        self.word_embeddings = new

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def embedding_modules(self) -> list[nn.Module]:
        """The modules below the first transformer layer (frozen with the lower layers, and kept in
        eval mode with them: the embedding dropout included, so cached lower states hold no
        dropout sample)."""
        return [
            self.word_embeddings,
            self.position_embeddings,
            self.token_type_embeddings,
            self.embedding_norm,
            self.embedding_dropout,
        ]

    def lower(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        stop: int | None = None,
    ) -> Tensor:
        """Embeddings and layers ``[0, stop)``: the hidden states entering layer ``stop``.

        Shapes:
            ``input_ids [B, L]`` -> ``[B, L, H]``
        """
        length = input_ids.shape[1]
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence of {length} word pieces > max_position_embeddings {self.config.max_position_embeddings}"
            )
        pos = torch.arange(length, device=input_ids.device)
        types = (
            self.token_type_embeddings.weight[0]
            if token_type_ids is None
            else self.token_type_embeddings(token_type_ids)
        )
        x = self.word_embeddings(input_ids) + self.position_embeddings(pos)[None] + types
        x = self.embedding_dropout(self.embedding_norm(x))
        return self.upper(x, attention_mask, 0, self.num_layers if stop is None else stop, zero_pad=False)

    def upper(
        self,
        hidden: Tensor,
        attention_mask: Tensor | None = None,
        start: int = 0,
        stop: int | None = None,
        zero_pad: bool = True,
    ) -> Tensor:
        """Layers ``[start, stop)`` on hidden states (``stop=None``: to the top); padded rows zeroed.

        Shapes:
            ``hidden [B, L, H]`` -> ``[B, L, H]``
        """
        pad = None if attention_mask is None else attention_mask == 0
        if pad is not None and not bool(pad.any()):
            pad = None
        x = hidden
        for layer in self.layers[start:stop]:
            x = layer(x, src_key_padding_mask=pad)
        if pad is not None and zero_pad:  # the fast path may leave padded rows as garbage: make them zeros
            x = x.masked_fill(pad.unsqueeze(-1), 0.0)
        return x

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        x = self.lower(input_ids, attention_mask, token_type_ids, stop=0)
        return self.upper(x, attention_mask, 0)

    def load_hf_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load a ``transformers`` BERT state dict (keys with or without the ``bert.`` prefix)."""
        state = {k.removeprefix("bert."): v for k, v in state.items()}
        mine: dict[str, Tensor] = {
            "word_embeddings.weight": state["embeddings.word_embeddings.weight"],
            "position_embeddings.weight": state["embeddings.position_embeddings.weight"],
            "token_type_embeddings.weight": state["embeddings.token_type_embeddings.weight"],
            "embedding_norm.weight": state["embeddings.LayerNorm.weight"],
            "embedding_norm.bias": state["embeddings.LayerNorm.bias"],
        }
        for i in range(self.config.num_hidden_layers):
            p = f"encoder.layer.{i}."
            att = p + "attention.self."
            mine.update(
                {
                    f"layers.{i}.self_attn.in_proj_weight": torch.cat(
                        [state[att + n + ".weight"] for n in ("query", "key", "value")]
                    ),
                    f"layers.{i}.self_attn.in_proj_bias": torch.cat(
                        [state[att + n + ".bias"] for n in ("query", "key", "value")]
                    ),
                    f"layers.{i}.self_attn.out_proj.weight": state[p + "attention.output.dense.weight"],
                    f"layers.{i}.self_attn.out_proj.bias": state[p + "attention.output.dense.bias"],
                    f"layers.{i}.norm1.weight": state[p + "attention.output.LayerNorm.weight"],
                    f"layers.{i}.norm1.bias": state[p + "attention.output.LayerNorm.bias"],
                    f"layers.{i}.linear1.weight": state[p + "intermediate.dense.weight"],
                    f"layers.{i}.linear1.bias": state[p + "intermediate.dense.bias"],
                    f"layers.{i}.linear2.weight": state[p + "output.dense.weight"],
                    f"layers.{i}.linear2.bias": state[p + "output.dense.bias"],
                    f"layers.{i}.norm2.weight": state[p + "output.LayerNorm.weight"],
                    f"layers.{i}.norm2.bias": state[p + "output.LayerNorm.bias"],
                }
            )
        self.load_state_dict(mine, strict=True)


@dataclass
class Tokenized:
    """A padded batch: ``input_ids``/``attention_mask``/``token_type_ids`` ``[B, L]`` and, per row,
    each piece's word in the *first* sequence (``None`` for special tokens, added special tokens,
    the second sequence of a pair and padding)."""

    input_ids: Tensor
    attention_mask: Tensor
    word_ids: list[list[int | None]]
    token_type_ids: Tensor | None = None


def _first_present(tok, names: Sequence[str]) -> str | None:
    return next((n for n in names if tok.token_to_id(n) is not None), None)


class WordPieces:
    """A ``tokenizers.Tokenizer`` (the folder's ``tokenizer.json``, or a Hugging Face fast
    tokenizer's backend) with the batching the encoders need.

    Single sequences are tokenised by the library with truncation to ``max_length``; every batch
    is padded to its longest row (:meth:`_collate`). Pairs (:meth:`pairs`) are built piece by piece: the second text
    is cut to its first ``second_tokens`` word pieces, the first sequence to what is left of
    ``max_length``, then the model's own template adds the special tokens (``[CLS] a [SEP] b
    [SEP]`` for BERT, ``<s> a </s></s> b </s>`` for MPNet/RoBERTa) and the token types.

    Args:
        path: the model folder (or the ``tokenizer.json`` itself), or a ``tokenizers.Tokenizer``
            (copied).
        max_length: word-piece limit per sequence, special tokens included.
        pad_token, unk_token: override the folder's (``tokenizer_config.json``) or the usual
            ``[PAD]``/``<pad>``, ``[UNK]``/``<unk>``.
    """

    def __init__(self, path, max_length: int = 512, pad_token: str | None = None, unk_token: str | None = None):
        from tokenizers import Tokenizer

        if isinstance(path, Tokenizer):
            self._tok = Tokenizer.from_str(path.to_str())  # a copy: truncation/padding are set here
        else:
            path = Path(path)
            file = path / "tokenizer.json" if path.is_dir() else path
            if not file.is_file():
                raise FileNotFoundError(f"{file}: no tokenizer.json")
            self._tok = Tokenizer.from_file(str(file))
        configured = pad_token or (self._tok.padding or {}).get("pad_token")
        if configured is None and not isinstance(path, Tokenizer):
            cfg = file.parent / "tokenizer_config.json"
            if cfg.is_file():
                import json

                configured = json.loads(cfg.read_text(encoding="utf-8")).get("pad_token")
                configured = configured.get("content") if isinstance(configured, dict) else configured
        if configured is None or self._tok.token_to_id(str(configured)) is None:
            configured = _first_present(self._tok, ("[PAD]", "<pad>")) or "[PAD]"
        self.pad_token = str(configured)
        self.pad_id = self._tok.token_to_id(self.pad_token) or 0
        self._tok.no_padding()  # :meth:`_collate` pads each batch to its longest row
        self.max_length = max_length
        self.unk_token = unk_token or _first_present(self._tok, ("[UNK]", "<unk>")) or "[UNK]"

    @property
    def max_length(self) -> int:
        return self._max_length

    @max_length.setter
    def max_length(self, n: int) -> None:
        self._max_length = int(n)
        self._tok.enable_truncation(self._max_length)

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def add_special_tokens(self, tokens: Sequence[str]) -> None:
        from tokenizers import AddedToken

        self._tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tokens])

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def __call__(self, batch: Sequence[str] | Sequence[Sequence[str]], pretokenized: bool = False) -> Tokenized:
        """Tokenise a batch of texts, or of word lists with ``pretokenized=True``; pad to the longest."""
        encs = self._tok.encode_batch([list(x) if pretokenized else x for x in batch], is_pretokenized=pretokenized)
        return self._collate(encs)

    def pairs(
        self, word_lists: Sequence[Sequence[str]], seconds: Sequence[str | None], second_tokens: int
    ) -> Tokenized:
        """Word lists (first sequence) paired with texts (second), padded to the longest.

        A ``None``/empty second text, or ``second_tokens <= 0``, gives the single-sequence form.
        ``word_ids`` index the words of the first sequence only.
        """
        firsts = self._tok.encode_batch([list(w) for w in word_lists], is_pretokenized=True, add_special_tokens=False)
        k = max(0, int(second_tokens))
        texts = [t if (k and t and str(t).strip()) else "" for t in seconds]
        seconds_enc = self._tok.encode_batch(texts, add_special_tokens=False)
        encs = []
        n_pair = self._tok.num_special_tokens_to_add(True)
        n_single = self._tok.num_special_tokens_to_add(False)
        for a, b, t in zip(firsts, seconds_enc, texts):
            if t:
                b.truncate(k)
                a.truncate(max(1, self._max_length - n_pair - len(b.ids)))
                encs.append(self._tok.post_process(a, b, add_special_tokens=True))
            else:
                a.truncate(max(1, self._max_length - n_single))
                encs.append(self._tok.post_process(a, None, add_special_tokens=True))
        return self._collate(encs, first_only=True)

    def texts(self, texts: Sequence[str], limit: int) -> tuple[Tokenized, list[list[str | None]]]:
        """Single texts cut to ``limit`` word pieces (special tokens included), padded to the longest,
        and per row each piece's word as written in the text, case-folded, ``@``/``#`` stripped
        (``None`` for special tokens and padding): what a caption's own pass reads
        (:mod:`mmre_cli.learn.caption_fusion`)."""
        encs = self._tok.encode_batch([str(t) for t in texts], add_special_tokens=False)
        n_single = self._tok.num_special_tokens_to_add(False)
        done, words = [], []
        for e, t in zip(encs, texts):
            e.truncate(max(1, int(limit) - n_single))
            spans: dict[int, list[int]] = {}
            for w, (a, b) in zip(e.word_ids, e.offsets):
                if w is not None:
                    spans.setdefault(w, [a, b])[1] = b
            e = self._tok.post_process(e, None, add_special_tokens=True)
            done.append(e)
            words.append(
                [
                    None if w is None or w not in spans else str(t)[spans[w][0] : spans[w][1]].lower().strip("@#")
                    for w in e.word_ids
                ]
            )
        tok = self._collate(done)
        width = tok.input_ids.size(1) if done else 0
        return tok, [w + [None] * (width - len(w)) for w in words]

    def _collate(self, encs, first_only: bool = False) -> Tokenized:
        if not encs:
            empty = torch.zeros((0, 0), dtype=torch.long)
            return Tokenized(empty, empty, [], empty)
        width = max(len(e.ids) for e in encs)
        ids = torch.full((len(encs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encs), width), dtype=torch.long)
        types = torch.zeros((len(encs), width), dtype=torch.long)
        word_ids = []
        for i, e in enumerate(encs):
            n = len(e.ids)
            ids[i, :n] = torch.tensor(e.ids, dtype=torch.long)
            mask[i, :n] = torch.tensor(e.attention_mask, dtype=torch.long)
            types[i, :n] = torch.tensor(e.type_ids, dtype=torch.long)
            wid = list(e.word_ids)
            if first_only:
                wid = [w if s == 0 else None for w, s in zip(wid, e.sequence_ids)]
            word_ids.append(wid + [None] * (width - n))
        return Tokenized(ids, mask, word_ids, types)


def load_bert(path: str | Path) -> BertModel:
    """:class:`BertModel` with the weights of a BERT model folder (``config.json`` + ``model.safetensors``
    or ``pytorch_model.bin``), in eval mode."""
    path = Path(path)
    model = BertModel(BertConfig.from_file(path / "config.json"))
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(path / "model.safetensors"))
    elif (path / "pytorch_model.bin").is_file():
        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin")
    model.load_hf_state_dict(state)
    return model.eval()
