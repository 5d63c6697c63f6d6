"""Each command's docstring is its `--help`, and Typer keeps the docstring's line breaks: a
paragraph wrapped in the source prints broken mid-sentence. So each paragraph is one line."""

from __future__ import annotations

import inspect

import pytest

from mmre_cli.cli.app import app

COMMANDS = {c.name or c.callback.__name__: c.callback for c in app.registered_commands}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_paragraph_of_a_commands_help_is_one_line(name):
    doc = inspect.getdoc(COMMANDS[name]) or ""
    assert doc, f"mmre {name} has no help text"
    for paragraph in doc.split("\n\n"):
        lines = paragraph.strip().splitlines()
        if any(line.lstrip().startswith(("-", "*", "\b")) for line in lines):
            continue  # a list, or a block Typer prints as it is
        assert len(lines) == 1, f"mmre {name}: a paragraph wrapped over {len(lines)} lines: {paragraph!r}"
