"""DVC stage `build_graphs` (not implemented yet)."""

from __future__ import annotations

from mmre_cli.errors import NotReadyError


def run(**kwargs):
    raise NotReadyError("'build_graphs' cannot run yet: this stage lands with a later issue")
