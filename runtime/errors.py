"""The one error type the runtime raises.

Policy: a problem *inside the .dcz container* (truncated, bad CRC, malformed stream) is the
format's business and surfaces as `formats.FormatError`, unchanged, so callers see the same error
whether they use `formats` or `runtime`. Everything the runtime itself checks (graph placeholders vs
stored tensors, shapes and dtypes, unsupported ops, bad inputs to `run`, backend failures) raises
`DczRuntimeError`. Both are `ValueError` subclasses, so `except ValueError` catches either.
"""

from __future__ import annotations

from dcz.formats.errors import DczError


class DczRuntimeError(DczError):
    """A .dcz that is well formed but cannot be run as asked, or bad arguments to the runtime."""


def run_error(exc: Exception) -> DczRuntimeError:
    """An exception ONNX Runtime raised while running (its own pybind types) as the runtime's error."""
    return DczRuntimeError(f"ONNX Runtime failed while running: {exc}")
