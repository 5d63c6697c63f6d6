"""Features: encoders (text / words / images), object detection, image decoding, weight resolution.

Public API (imported lazily: importing this package never imports torch or ultralytics):

* :mod:`~mmre_cli.features.resolver` — :func:`resolve_weights` (explicit → env var → cache →
  download unless offline), :func:`cache_dir`, :func:`is_offline`.
* :mod:`~mmre_cli.features.encoders` — :func:`build_encoder`, :data:`KNOWN_ENCODERS`; the
  encoders one per module: :class:`Encoder` (:mod:`~mmre_cli.features.base`, the contract),
  :class:`MiniLMEncoder` (:mod:`~mmre_cli.features.minilm`), :class:`HFEncoder`
  (:mod:`~mmre_cli.features.hf_encoder`), :class:`ClipEncoder` (:mod:`~mmre_cli.features.clip`).
* :mod:`~mmre_cli.features.detect` — :class:`Detection`, :class:`YoloDetector`,
  :func:`boxes_from_dataset`, :func:`build_detector`.
* :mod:`~mmre_cli.features.imageio` — :func:`open_image`, :func:`decode_images`, :func:`crop`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "resolve_weights": "resolver",
    "cache_dir": "resolver",
    "is_offline": "resolver",
    "Encoder": "base",
    "MiniLMEncoder": "minilm",
    "HFEncoder": "hf_encoder",
    "ClipEncoder": "clip",
    "build_encoder": "encoders",
    "KNOWN_ENCODERS": "encoders",
    "Detection": "detect",
    "YoloDetector": "detect",
    "boxes_from_dataset": "detect",
    "build_detector": "detect",
    "open_image": "imageio",
    "decode_images": "imageio",
    "crop": "imageio",
    "DEFAULT_MAX_PIXELS": "imageio",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
