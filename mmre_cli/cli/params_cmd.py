"""``mmre params``: every params key with its type, default, allowed values, help and the stages
that read it (a change reruns the first of them and what follows)."""

from __future__ import annotations

from typing import Optional

import typer
from typing_extensions import Annotated

from mmre_cli.cli.common import handle_errors


def readers() -> dict[str, list[str]]:
    """``{"train_gnn.lr": ["train_agent", "train_gnn"], ...}``: the stages declaring each key."""
    import importlib

    from mmre_cli.cli.recipe import STAGE_NAMES

    found: dict[str, list[str]] = {}
    for stage in STAGE_NAMES:
        for key in importlib.import_module(f"stages.{stage}").PARAMS:
            found.setdefault(key, []).append(stage)
    return found


@handle_errors
def params(
    section: Annotated[
        Optional[str], typer.Argument(help="Only this section (e.g. train_gnn).", show_default=False)
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout: one object per key.")] = False,
) -> None:
    """List the params keys: type, default, allowed values, what each does and which stages read it.

    params.yaml (or a recipe in configs/) sets them; -S section.key=value overrides one for one command.
    """
    import json

    from rich.table import Table

    from mmre_cli.cli.console import out
    from mmre_cli.errors import MmreError
    from mmre_cli.param_sections import SECTIONS, fields

    if section is not None and section not in SECTIONS:
        raise MmreError(f"no params section {section!r} (sections: {', '.join(SECTIONS)})")
    read_by = readers()
    rows = []
    for name in [section] if section else list(SECTIONS):
        for f in fields(name):
            default = f.default_factory() if callable(f.default_factory) else f.default
            rows.append(
                {
                    "key": f"{name}.{f.name}",
                    "type": str(f.type),
                    "default": default,
                    "choices": list(f.metadata["choices"] or []),
                    "help": f.metadata["help"],
                    "read_by": read_by.get(f"{name}.{f.name}", ["predict/serve"]),
                }
            )
    if json_out:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="mmre params (params.yaml; -S section.key=value)", show_lines=False)
    table.add_column("key", no_wrap=True)
    table.add_column("type", overflow="fold", max_width=14)
    table.add_column("default", overflow="fold", max_width=16)
    table.add_column("read by", overflow="fold", max_width=16)
    table.add_column("what it does", overflow="fold", ratio=1, min_width=24)
    for r in rows:
        listed = all(choice in r["help"] for choice in r["choices"])  # the help names them already
        what = r["help"] + (f" [{' | '.join(r['choices'])}]" if r["choices"] and not listed else "")
        table.add_row(r["key"], r["type"], json.dumps(r["default"]), ", ".join(r["read_by"]), what)
    out.print(table)
