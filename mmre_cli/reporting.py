"""Progress reporting: the one small object the CLI hands to stages and library loops.

Library and stage code never prints. Long loops call ``reporter.progress(...)`` and messages go
through ``reporter.info/warn``. The CLI passes a Rich-backed reporter (stderr); tests and Python
users get :class:`NullReporter` by default.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Protocol


class Task(Protocol):
    def advance(self, n: int = 1) -> None: ...


class Reporter(Protocol):
    def info(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...

    def progress(self, description: str, total: int | None = None) -> "contextmanager[Task]": ...


class _NullTask:
    def advance(self, n: int = 1) -> None:  # noqa: D401 - trivial
        pass


class NullReporter:
    """Swallows everything. Collects warnings so tests can assert on them."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.warnings: list[str] = []

    def info(self, message: str) -> None:
        self.messages.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    @contextmanager
    def progress(self, description: str, total: int | None = None) -> Iterator[Task]:
        yield _NullTask()


def reporter_or_null(reporter: Reporter | None) -> Reporter:
    """``reporter``, or a :class:`NullReporter` when none is given (a stage's or library loop's default)."""
    return reporter if reporter is not None else NullReporter()
