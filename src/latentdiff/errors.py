"""Errors a user can cause.

A `UserError` carries one sentence that says what went wrong and what to do about it. The CLI prints
that sentence (no traceback) and exits with status 2; library callers can catch it like any exception.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a missing file, a wrong format, an impossible size.

    `field`: the setting at fault by its option name (`width`, `steps`), when there is one, so a caller
    with other names for its settings (the server's APIs) can say which of its fields it was.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field
