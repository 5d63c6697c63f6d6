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
5. **Download** — only when downloads are allowed (``MMRE_ALLOW_DOWNLOAD=1``, or ``offline=False``
   from the caller) :func:`resolve_weights` returns ``None``, meaning "let the library download its
   default weights". Otherwise — the default, and always under ``MMRE_OFFLINE=1`` /
   ``HF_HUB_OFFLINE=1`` — it raises MmreError, saying exactly how to supply the weights.

**Network policy.** Nothing reaches the network unless ``MMRE_ALLOW_DOWNLOAD=1``:
:func:`forbid_downloads` (run by every ``mmre`` command) also sets the libraries' own offline
switches (``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``, ``HF_DATASETS_OFFLINE``, ``YOLO_OFFLINE``)
where the user has not set them, so transformers, huggingface_hub and ultralytics load from local
files only and never call home.
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


#: the variable that allows downloads (model weights); unset, nothing is downloaded
ALLOW_DOWNLOAD_VAR = "MMRE_ALLOW_DOWNLOAD"
#: the libraries' own offline switches that :func:`forbid_downloads` turns on
LIBRARY_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "YOLO_OFFLINE")


def _true(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in _TRUE


def downloads_allowed() -> bool:
    """True only when ``MMRE_ALLOW_DOWNLOAD`` is true and neither ``MMRE_OFFLINE`` nor
    ``HF_HUB_OFFLINE`` forces offline."""
    return _true(ALLOW_DOWNLOAD_VAR) and not any(_true(v) for v in ("MMRE_OFFLINE", "HF_HUB_OFFLINE"))


def is_offline() -> bool:
    """True unless downloads are allowed (:func:`downloads_allowed`): offline is the default."""
    return not downloads_allowed()


def forbid_downloads() -> None:
    """Unless downloads are allowed, set the libraries' offline switches (:data:`LIBRARY_OFFLINE_VARS`)
    that the user has not set, so no library reaches the network on its own."""
    if downloads_allowed():
        return
    for var in LIBRARY_OFFLINE_VARS:
        os.environ.setdefault(var, "1")


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
        offline: force offline (True) / online (False); ``None``: :func:`is_offline` (offline
            unless ``MMRE_ALLOW_DOWNLOAD=1``).
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
            f"(or {root / kind.lower()}; override the directory with MMRE_CACHE), "
            f"or allow downloads with {ALLOW_DOWNLOAD_VAR}=1"
        )
    return None
