"""The one error type the runtime raises.

Policy: a problem *inside the .dcz container* (truncated, bad CRC, malformed stream) is the
format's business and surfaces as `formats.FormatError`, unchanged, so callers see the same error
whether they use `formats` or `runtime`. Everything the runtime itself checks (graph placeholders vs
stored tensors, shapes and dtypes, unsupported ops, bad inputs to `run`, backend failures) raises
`DczRuntimeError`. Both are `ValueError` subclasses, so `except ValueError` catches either.
A model whose tensors together declare more dense bytes than `max_dense_bytes` raises
`ModelDenseBudgetError`: a DczRuntimeError that is also a `formats.DenseBudgetError`, so one
`except DenseBudgetError` (the command line's) reads the figures whichever limit was hit.
"""

from __future__ import annotations

from dcz.formats.errors import DczError, DenseBudgetError


class DczRuntimeError(DczError):
    """A .dcz that is well formed but cannot be run as asked, or bad arguments to the runtime."""


class ModelDenseBudgetError(DczRuntimeError, DenseBudgetError):
    """The sum of a model's decoded dense bytes is over `max_dense_bytes` (formats caps each tensor)."""


def run_error(exc: Exception) -> DczRuntimeError:
    """An exception ONNX Runtime raised while running (its own pybind types) as the runtime's error."""
    return DczRuntimeError(f"ONNX Runtime failed while running: {exc}")
