"""DVC stage `train_agent` (not implemented yet)."""

from __future__ import annotations

from mmre_cli.errors import NotReadyError


def run(**kwargs):
    raise NotReadyError("'train_agent' cannot run yet: this stage lands with a later issue")
