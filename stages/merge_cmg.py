"""DVC stage `merge_cmg` (not implemented yet)."""

from __future__ import annotations

from mmre_cli.errors import NotReadyError


def run(**kwargs):
    raise NotReadyError("'merge_cmg' cannot run yet: this stage lands with a later issue")
