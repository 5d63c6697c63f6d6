"""Which precision the fine-tuned encoder runs in: float32, or bfloat16 autocast where the device
runs it natively (``train_gnn.precision: auto | 32 | bf16``)."""

from __future__ import annotations

import torch

__all__ = ["PRECISIONS", "PRECISION_CHOICES", "bf16_is_native", "resolve_precision"]

PRECISIONS = ("32", "bf16")
#: what ``train_gnn.precision`` may say: a precision, or ``auto`` (:func:`resolve_precision`)
PRECISION_CHOICES = ("auto", *PRECISIONS)


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
