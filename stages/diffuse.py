"""DVC stage `diffuse` (not implemented yet)."""

from __future__ import annotations

from mmre_cli.errors import NotReadyError


def run(**kwargs):
    raise NotReadyError("'diffuse' cannot run yet: this stage lands with a later issue")
