"""The encoder contract every text / image encoder implements, and the helpers they share.

Every encoder implements :class:`Encoder`:

* ``encode_texts(texts) -> float32 [N, D]`` — one pooled vector per text.
* ``encode_words(sentences) -> list of float32 [len(words), D]`` — one vector per given word.
* ``encode_images(images) -> float32 [N, D]`` — only where ``supports_images``; text-only
  encoders raise :class:`~mmre_cli.errors.MmreError`.
* ``fingerprint() -> str`` — encoder name + weights hash/size, recorded in artifacts.

All outputs are float32 numpy arrays whose rows are L2-normalised, computed under
``torch.no_grad`` in eval mode (deterministic), in batches of ``batch_size``.

The encoders: :class:`~mmre_cli.features.minilm.MiniLMEncoder`,
:class:`~mmre_cli.features.hf_encoder.HFEncoder`, :class:`~mmre_cli.features.clip.ClipEncoder`;
:func:`~mmre_cli.features.encoders.build_encoder` builds one by name. Importing this module does
not import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from mmre_cli.errors import MmreError
from mmre_cli.hashing import sha256_file

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

_WEIGHT_FILE_NAMES = (
    "model.safetensors",
    "open_clip_model.safetensors",
    "pytorch_model.bin",
    "open_clip_pytorch_model.bin",
)


def weights_file_in(path: Path) -> Path | None:
    """The main weights file of a model path (the path itself if it is a file)."""
    if path.is_file():
        return path
    for name in _WEIGHT_FILE_NAMES:
        if (path / name).is_file():
            return path / name
    for pattern in ("*.safetensors", "*.bin", "*.pt", "*.pth"):
        found = sorted(path.glob(pattern))
        if found:
            return found[0]
    return None


def file_fingerprint(path: Path) -> str:
    f = weights_file_in(path)
    if f is None:
        return f"path={path}"
    return f"sha256={sha256_file(f)[:16]}:size={f.stat().st_size}"


def as_float32_normalised(x: Any) -> np.ndarray:
    """torch tensor [N, D] -> L2-normalised float32 numpy (rows of zeros stay zero)."""
    import torch

    x = x.detach().to(dtype=torch.float32)
    x = torch.nn.functional.normalize(x, p=2, dim=-1, eps=1e-12)
    return x.cpu().numpy().astype(np.float32, copy=False)


def batches(seq: Sequence, size: int):
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def max_seq_length(path: Path | None) -> int | None:
    """``max_seq_length`` of a sentence-transformers model folder (``sentence_bert_config.json``)."""
    import json

    cfg = None if path is None else Path(path) / "sentence_bert_config.json"
    if cfg is None or not cfg.is_file():
        return None
    return json.loads(cfg.read_text(encoding="utf-8")).get("max_seq_length")


class Encoder:
    """Base class of all encoders. See the module docstring for the contract.

    Attributes:
        name: short encoder name (``"minilm"``, ``"clip:ViT-B-32"``...).
        dim: embedding dimension D.
        supports_images: whether :meth:`encode_images` works.
        batch_size: rows per forward pass.
        device: torch device string.
    """

    name: str = "encoder"
    #: called with the number of sentences after each batch :meth:`encode_words` finishes (progress)
    on_batch = None
    dim: int = 0
    supports_images: bool = False
    batch_size: int = 64
    device: str = "cpu"

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Pooled sentence / phrase embeddings, float32 ``[N, D]``, rows L2-normalised."""
        raise NotImplementedError

    def encode_words(self, sentences: list[list[str]]) -> list[np.ndarray]:
        """One vector per given word: a list of float32 ``[len(words), D]`` arrays."""
        raise NotImplementedError

    def encode_images(self, images: list["Image.Image"]) -> np.ndarray:
        """Image embeddings, float32 ``[N, D]``, rows L2-normalised."""
        raise MmreError(
            f"encoder {self.name!r} is text-only and cannot embed images; use an image-capable "
            "encoder (e.g. 'clip') or run without images (captions as the visual view)"
        )

    def fingerprint(self) -> str:
        """Identity of the encoder and its weights, recorded in artifact metadata."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """``{"encoder": name, "dim": D, "fingerprint": ...}`` for artifact metadata."""
        return {"encoder": self.name, "dim": int(self.dim), "fingerprint": self.fingerprint()}

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.dim), dtype=np.float32)
