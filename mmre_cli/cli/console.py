"""One output object for all printing: results on stdout, messages and progress on stderr."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

#: Messages, warnings, progress bars.
err = Console(stderr=True, highlight=False)
#: Results (tables, JSON lines).
out = Console(highlight=False, soft_wrap=True)


class _RichTask:
    def __init__(self, progress: Progress, task_id) -> None:
        self._progress, self._id = progress, task_id

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._id, n)


class RichReporter:
    """The reporter the CLI hands to stages: Rich progress bars and messages on stderr."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.warnings: list[str] = []

    def info(self, message: str) -> None:
        if not self.quiet:
            err.print(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        err.print(f"[yellow]warning:[/yellow] {message}")

    @contextmanager
    def progress(self, description: str, total: int | None = None) -> Iterator[_RichTask]:
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=err, transient=False, disable=self.quiet or not err.is_terminal) as progress:
            task_id = progress.add_task(description, total=total)
            yield _RichTask(progress, task_id)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error on stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/bold red] {message}", markup=True, highlight=False, soft_wrap=True)
    sys.exit(code)
