"""Errors a user can cause.

A `UserError` carries one sentence that says what went wrong and what to do about it. The CLI prints
that sentence (no traceback) and exits with status 2; library callers can catch it like any exception.
"""


class UserError(Exception):
    """Bad input from the user: a missing file, a wrong format, an impossible size."""
