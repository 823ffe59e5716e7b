"""The budget solver's error: compressor.CompressError (the package's one error type)."""
from __future__ import annotations


def _error_type() -> type[ValueError]:
    try:
        from compressor.errors import CompressError
    except ImportError:  # compressor-ML's errors module not landed yet
        return ValueError
    return CompressError


def budget_error(message: str) -> ValueError:
    """A CompressError carrying `message` (one line: what is wrong and what is reachable)."""
    return _error_type()(message)
