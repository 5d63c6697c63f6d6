"""DVC stage `train_gnn` (not implemented yet)."""

from __future__ import annotations

from mmre_cli.errors import NotReadyError


def run(**kwargs):
    raise NotReadyError("'train_gnn' cannot run yet: this stage lands with a later issue")
