r"""Any Hugging Face text encoder (``transformers.AutoModel`` / ``AutoTokenizer``), split at a layer.

:class:`HFTransformer` gives a ``transformers`` encoder (BERT, RoBERTa, MPNet, ELECTRA, …: any
model whose ``encoder.layer`` is its list of transformer blocks) the interface of
:class:`mmre_cli.features.bert.BertModel`, so the frozen-feature encoder and the fine-tuned
:class:`~mmre_cli.learn.text_encoder.TextNodeEncoder` treat MiniLM and any other encoder alike:

* ``forward(input_ids, attention_mask, token_type_ids)`` — last hidden states ``[B, L, H]``,
  padded rows zero;
* ``lower(..., stop=m)`` — the hidden states entering layer ``m`` (embeddings + layers
  ``[0, m)``), and ``upper(hidden, mask, start=m)`` — layers ``[m, L)`` on them, so that

  .. math:: \mathrm{upper}(\mathrm{lower}(x, m), m) = \mathrm{forward}(x)

  which is what lets fine-tuning with ``train_layers = k`` compute the frozen ``L − k`` lower
  layers once per instance and cache them.

The split runs the model's own ``forward`` with its ``encoder.layer`` list cut to the wanted
range (and, for ``upper``, its embedding module replaced by a pass-through of
``inputs_embeds``), so everything the model does between its embeddings and its first block
(MPNet's relative position bias, the attention-mask format) stays the model's own code. Models
with a final norm after the last block are outside this contract (none of BERT / RoBERTa /
MPNet has one).

The tokenizer is the fast tokenizer's ``tokenizers`` backend, wrapped by
:class:`~mmre_cli.features.bert.WordPieces` (word ids, pairs, padding) — one tokenisation path for
every encoder.

Shapes:
    ``input_ids [B, L]``, ``attention_mask [B, L]`` -> ``[B, L, H]``
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["HFTransformer", "load_hf"]


class _PassThrough(nn.Module):
    """An embedding module that returns the ``inputs_embeds`` it is given."""

    def forward(self, *args, inputs_embeds: Tensor | None = None, **kwargs) -> Tensor:  # noqa: D102
        if inputs_embeds is None:  # pragma: no cover - upper() always passes them
            raise ValueError("pass-through embeddings need inputs_embeds")
        return inputs_embeds


class HFTransformer(nn.Module):
    """A ``transformers`` encoder with :class:`~mmre_cli.features.bert.BertModel`'s interface.

    Args:
        model: a ``transformers`` ``PreTrainedModel`` (``AutoModel.from_pretrained``).

    Shapes:
        - **input:** ``input_ids [B, L]`` int64, ``attention_mask [B, L]`` (1 token, 0 padding),
          optional ``token_type_ids [B, L]``
        - **output:** last hidden states ``[B, L, H]``
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.config = model.config
        encoder = getattr(model, "encoder", None)
        blocks = getattr(encoder, "layer", None)
        if not isinstance(blocks, nn.ModuleList):
            raise ValueError(
                f"{type(model).__name__}: no encoder.layer list of transformer blocks; "
                "only BERT-like encoders (BERT, RoBERTa, MPNet, ELECTRA, …) are supported"
            )
        self._blocks = blocks
        params = inspect.signature(model.forward).parameters
        self._uses_types = "token_type_ids" in params and int(getattr(self.config, "type_vocab_size", 0) or 0) > 1

    @property
    def layers(self) -> nn.ModuleList:
        return self._blocks

    @property
    def num_layers(self) -> int:
        return len(self._blocks)

    def embedding_modules(self) -> list[nn.Module]:
        """The modules below the first block (frozen with the lower layers)."""
        mods = [self.model.embeddings]
        bias = getattr(self.model.encoder, "relative_attention_bias", None)  # MPNet's position bias
        if bias is not None:
            mods.append(bias)
        return mods

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def resize_token_embeddings(self, n: int) -> None:
        """Grow the word-embedding table to ``n`` rows (old rows kept)."""
        if n > self.get_input_embeddings().num_embeddings:
            self.model.resize_token_embeddings(n)

    @contextlib.contextmanager
    def _span(self, start: int, stop: int, passthrough: bool):
        encoder = self.model.encoder
        saved_emb = self.model.embeddings
        encoder.layer = nn.ModuleList(list(self._blocks)[start:stop])
        if passthrough:
            self.model.embeddings = _PassThrough()
        try:
            yield
        finally:
            encoder.layer = self._blocks
            self.model.embeddings = saved_emb

    def _run(self, attention_mask: Tensor | None, **inputs) -> Tensor:
        out = self.model(attention_mask=attention_mask, return_dict=True, **inputs).last_hidden_state
        if attention_mask is not None:
            out = out.masked_fill((attention_mask == 0).unsqueeze(-1), 0.0)
        return out

    def lower(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        stop: int | None = None,
    ) -> Tensor:
        """Embeddings and blocks ``[0, stop)`` (``None``: all): the hidden states entering ``stop``."""
        stop = self.num_layers if stop is None else int(stop)
        inputs = {"input_ids": input_ids}
        if self._uses_types and token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        with self._span(0, stop, passthrough=False):
            return self._run(attention_mask, **inputs)

    def upper(
        self, hidden: Tensor, attention_mask: Tensor | None = None, start: int = 0, stop: int | None = None
    ) -> Tensor:
        """Blocks ``[start, stop)`` on hidden states; padded rows zero."""
        stop = self.num_layers if stop is None else int(stop)
        with self._span(int(start), stop, passthrough=True):
            return self._run(attention_mask, inputs_embeds=hidden)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        return self.lower(input_ids, attention_mask, token_type_ids, stop=None)


def load_hf(path: str | Path, max_length: int = 512):
    """``(WordPieces, HFTransformer)`` of a local Hugging Face model folder (or a cached hub id), in eval mode.

    The tokenizer must be a fast one (it is the ``tokenizers`` backend that gives word ids).

    Raises:
        ValueError: no fast tokenizer, or not a BERT-like encoder.
    """
    from transformers import AutoModel, AutoTokenizer

    from mmre_cli.features.bert import WordPieces

    hf_tok = AutoTokenizer.from_pretrained(str(path))
    backend = getattr(hf_tok, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"{path}: the tokenizer has no fast (tokenizers) backend; word ids need one")
    tok = WordPieces(backend, max_length, pad_token=hf_tok.pad_token, unk_token=hf_tok.unk_token)
    model = AutoModel.from_pretrained(str(path), dtype=torch.float32)
    return tok, HFTransformer(model).eval()
