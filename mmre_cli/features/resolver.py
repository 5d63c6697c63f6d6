"""One place that decides where model weights come from.

Every model loader in :mod:`mmre_cli.features` calls :func:`resolve_weights`. The order is fixed:

1. **Explicit path** — a path the user passed (CLI option / Python argument). It must exist;
   a missing one is an :class:`~mmre_cli.errors.MmreError` naming it, never a silent fallback.
2. **Environment variable** — e.g. ``MMRE_CLIP_WEIGHTS``, ``MMRE_YOLO_WEIGHTS``, ``MMRE_MINILM``.
   If set (non-empty) it must point at an existing file/directory, else MmreError naming the
   variable.
3. **Local cache** — the mmre cache directory (``$MMRE_CACHE``, default ``~/.cache/mmre/``),
   looked up by each of ``cache_names`` in turn, both directly in the cache directory and in a
   ``<kind>/`` sub-directory (lower-cased ``kind``), e.g. ``~/.cache/mmre/clip/ViT-B-32.safetensors``.
4. **Fallback locations** — optional extra local places the caller knows about (e.g. the model
   directory a pip-installed weights package ships); the first that exists wins.
5. **Download** — :func:`resolve_weights` returns ``None``, meaning "let the library download its
   default weights". When offline (``offline=True``, or ``MMRE_OFFLINE=1`` / ``HF_HUB_OFFLINE=1`` in
   the environment) it raises MmreError instead, saying exactly how to supply the weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from mmre_cli.errors import MmreError

_TRUE = {"1", "true", "yes", "on", "y", "t"}


def cache_dir() -> Path:
    """The mmre cache directory: ``$MMRE_CACHE`` or ``~/.cache/mmre`` (not created here)."""
    env = os.environ.get("MMRE_CACHE")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/mmre").expanduser()


def is_offline() -> bool:
    """True when ``MMRE_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to a true value."""
    return any(
        os.environ.get(var, "").strip().lower() in _TRUE for var in ("MMRE_OFFLINE", "HF_HUB_OFFLINE")
    )


def resolve_weights(
    kind: str,
    explicit: str | Path | None = None,
    *,
    env_var: str,
    cache_names: list[str],
    offline: bool | None = None,
    fallbacks: Sequence[str | Path] = (),
    option_hint: str | None = None,
) -> Path | None:
    """Find local weights for a model, or ``None`` to let the library download them.

    Args:
        kind: human name of the model, used in messages and as the cache sub-directory
            (lower-cased), e.g. ``"CLIP"``, ``"YOLO"``, ``"MiniLM"``.
        explicit: a user-given path; must exist.
        env_var: the environment variable consulted second.
        cache_names: file or directory names looked up in the cache directory.
        offline: force offline (True) / online (False); ``None`` reads ``MMRE_OFFLINE`` /
            ``HF_HUB_OFFLINE``.
        fallbacks: extra local paths tried after the cache (the first existing one wins).
        option_hint: how the user passes an explicit path (e.g. ``"--clip-weights PATH"``),
            used in the offline error message.

    Returns:
        The absolute path of the weights, or ``None`` (download allowed).

    Raises:
        MmreError: explicit path or env var path missing, or offline with nothing found.
    """
    if explicit is not None and str(explicit) != "":
        p = Path(explicit).expanduser()
        if not p.exists():
            raise MmreError(f"{kind} weights not found: {p} (given explicitly)")
        return p.resolve()

    env_val = os.environ.get(env_var, "").strip()
    if env_val:
        p = Path(env_val).expanduser()
        if not p.exists():
            raise MmreError(f"{kind} weights not found: {p} (from environment variable {env_var})")
        return p.resolve()

    root = cache_dir()
    for name in cache_names:
        for cand in (root / name, root / kind.lower() / name):
            if cand.exists():
                return cand.resolve()

    for fb in fallbacks:
        if fb is not None and Path(fb).exists():
            return Path(fb).resolve()

    if offline is None:
        offline = is_offline()
    if offline:
        how = option_hint or "an explicit weights path"
        names = ", ".join(cache_names) if cache_names else "<weights file>"
        raise MmreError(
            f"{kind} weights are needed but none are available offline: pass {how}, "
            f"or set {env_var}=/path/to/weights, or put {names} in {root} "
            f"(or {root / kind.lower()}; override the directory with MMRE_CACHE)"
        )
    return None
