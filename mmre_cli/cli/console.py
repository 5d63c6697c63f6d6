"""One output object for all printing: results on stdout, messages and progress on stderr.

Both consoles print text as it is: Rich markup is off (``markup=False``), so a user's text,
a file name or a help string with square brackets (``a[b].jpg``, ``'mmre[serve]'``,
``[label, probability]``) is never read as a style tag and lost. Styled prefixes are built as
:class:`rich.text.Text` pieces, never by formatting user text into a markup string.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

#: Messages, warnings, progress bars.
err = Console(stderr=True, highlight=False, markup=False)
#: Results (tables, JSON lines).
out = Console(highlight=False, soft_wrap=True, markup=False)


def styled(prefix: str, style: str, message: str) -> Text:
    """``prefix`` in ``style``, a space, then ``message`` verbatim (no markup read in either)."""
    return Text.assemble((prefix, style), " ", message)


class _RichTask:
    def __init__(self, progress: Progress, task_id) -> None:
        self._progress, self._id = progress, task_id

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._id, n)


class _LineTask:
    """Progress as plain periodic lines, for a stderr that is not a terminal (a log file, a job)."""

    def __init__(self, description: str, total: int | None, every: float) -> None:
        import time

        self.description, self.total, self.every = description, total, every
        self.done = 0
        self._clock = time.monotonic
        self.start = self._last = self._clock()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self._clock()
        if now - self._last >= self.every:
            self._last = now
            err.print(self.line(now), highlight=False, markup=False)

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        of = f"/{self.total}" if self.total else ""
        eta = ""
        if self.total and rate > 0:
            eta = f", ETA {int((self.total - self.done) / rate)} s"
        return f"{self.description}: {int(self.done)}{of} ({rate:.2f}/s, {int(elapsed)} s{eta})"


class RichReporter:
    """The reporter the CLI hands to stages: Rich progress bars and messages on stderr."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.warnings: list[str] = []

    def info(self, message: str) -> None:
        if not self.quiet:
            err.print(message)

    def warn(self, message: str, always: bool = False) -> None:
        """A warning on stderr (kept in :attr:`warnings`); ``--quiet`` hides it unless ``always``
        (a skipped input line is reported even then: the exit code's message points at it)."""
        self.warnings.append(message)
        if always or not self.quiet:
            err.print(styled("warning:", "yellow", message), soft_wrap=True)

    #: seconds between two progress lines when stderr is not a terminal
    line_every = 30.0

    @contextmanager
    def progress(self, description: str, total: int | None = None) -> Iterator[_RichTask]:
        """A progress bar (a nested one joins the live display as a second row and leaves with
        its block); plain periodic lines when stderr is not a terminal."""
        if not self.quiet and not err.is_terminal:
            yield _LineTask(description, total, self.line_every)
            return
        live = getattr(self, "_live", None)
        if live is not None:  # Rich allows one live display: nest as another task of it
            task_id = live.add_task(description, total=total)
            try:
                yield _RichTask(live, task_id)
            finally:
                live.remove_task(task_id)
            return
        columns = [
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=err, transient=False, disable=self.quiet or not err.is_terminal) as progress:
            self._live = progress
            try:
                task_id = progress.add_task(description, total=total)
                yield _RichTask(progress, task_id)
            finally:
                self._live = None


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error on stderr and exit with ``code``."""
    err.print(styled("error:", "bold red", message), highlight=False, soft_wrap=True)
    sys.exit(code)
