"""The one exception type for problems the user can fix (bad files, bad arguments)."""

from __future__ import annotations

from pathlib import Path


class NimosefInputError(Exception):
    """A user-facing input problem: names the file (or argument) and what is wrong with it.

    The CLI turns it into a one-line message and exit code 2, never a traceback.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class NimosefCancelled(Exception):
    """Raised when the user cancels a long operation (SIGINT/SIGTERM or a cancel callback)."""
