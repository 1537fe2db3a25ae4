"""The library's user-facing errors: their message says what went wrong and what to do, and the
``davs`` command prints it as one line (exit code 1) instead of a traceback."""

from __future__ import annotations


class DavsError(Exception):
    """Base of every error whose message is meant for the user."""
