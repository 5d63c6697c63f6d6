"""User-facing errors.

Anything a user can cause (bad input file, bad option, missing model) raises :class:`MmreError`
(or a subclass). The CLI prints its message as one line on stderr and exits with ``exit_code``;
it never shows a traceback for these. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations


class MmreError(Exception):
    """An error the user can fix. ``str(err)`` is the one-line message shown."""

    exit_code = 2


class InputError(MmreError):
    """A bad input file or record: the message names the file and, where known, the line.

    Args:
        message: what is wrong, e.g. ``"entity span [3, 9) out of range for 5 tokens"``.
        path: the file that holds the bad record.
        line: 1-based line number inside ``path``.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.reason = message
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(where + message)
