"""The budget solver's error: compressor.CompressError (the package's one error type)."""

from __future__ import annotations

from dcz.compressor.errors import CompressError


def budget_error(message: str) -> CompressError:
    """A CompressError carrying `message` (one line: what is wrong and what is reachable)."""
    return CompressError(message)
