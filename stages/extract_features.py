"""DVC stage `extract_features` (not implemented yet)."""

from __future__ import annotations

from mmre_cli.errors import NotReadyError


def run(**kwargs):
    raise NotReadyError("'extract_features' cannot run yet: this stage lands with a later issue")
