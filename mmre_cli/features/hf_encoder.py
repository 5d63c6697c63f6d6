"""Any BERT-like Hugging Face text encoder as an encoder (``mpnet``, ``hf``): :class:`HFEncoder`.

Importing this module does not import torch or transformers; the model loads in the constructor.
"""

from __future__ import annotations

from pathlib import Path

from mmre_cli.errors import MmreError
from mmre_cli.features.base import file_fingerprint, max_seq_length
from mmre_cli.features.minilm import MiniLMEncoder
from mmre_cli.features.text_networks import load_text_network, text_encoder_folder


class HFEncoder(MiniLMEncoder):
    """Any BERT-like Hugging Face text encoder through ``transformers.AutoModel`` (``mpnet``, ``hf``).

    The same pooling as :class:`MiniLMEncoder` (mean of the word-piece states under the mask for
    texts, mean of each word's pieces for words, L2-normalised rows), on
    :class:`mmre_cli.features.hf.HFTransformer`.

    Args:
        name: ``"mpnet"`` (all-mpnet-base-v2, assembled offline from its part packages) or
            ``"hf"`` (``weights`` = a local model folder or a cached hub id).
        weights: the model folder; ``None`` for ``mpnet`` resolves it (:mod:`mmre_cli.features.mpnet`).
        device, batch_size, max_length: as :class:`MiniLMEncoder`.
    """

    def __init__(
        self,
        name: str = "mpnet",
        weights: str | Path | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        max_length: int | None = None,
    ) -> None:
        self.device = device
        self.batch_size = int(batch_size)
        self.name = name.strip().lower()
        try:
            path = text_encoder_folder(self.name, weights)
            limit = int(max_length or max_seq_length(path) or 384)
            self._tok, self._bert, _ = load_text_network(self.name, path, limit)
            self._bert.to(device)
        except MmreError:
            raise
        except Exception as e:  # noqa: BLE001 - turn any load failure into one clear line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MmreError(f"cannot load the {self.name} text encoder from {weights or self.name}: {first}") from e
        self.weights_path = path
        self.dim = int(self._bert.config.hidden_size)
        self._alone_cache = {}
        self._fp = None

    def fingerprint(self) -> str:
        if self._fp is None:
            self._fp = f"{self.name}:{Path(self.weights_path).name}:{file_fingerprint(Path(self.weights_path))}"
        return self._fp
