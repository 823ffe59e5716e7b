"""Op registry of the NumPy executor: one small function per ONNX op (onnx.reference style).

An op function takes `(ctx, *inputs, **attributes)` and returns one array or a tuple of arrays.
Missing optional inputs arrive as None. `ctx.opset` is the model's default-domain opset, for ops
whose signature changed across opsets (Softmax, Unsqueeze, Clip, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import DczRuntimeError

OpFunction = Callable[..., object]

_OPS: dict[str, OpFunction] = {}


@dataclass(frozen=True)
class OpContext:
    """What an op may need beyond its inputs and attributes."""

    opset: int
    node: str  # node name (or op type + index) for error messages


def register(*op_types: str) -> Callable[[OpFunction], OpFunction]:
    """Decorator: register `fn` as the implementation of the given ONNX op types."""

    def add(fn: OpFunction) -> OpFunction:
        for op_type in op_types:
            if op_type in _OPS:
                raise RuntimeError(f"op {op_type} registered twice")
            _OPS[op_type] = fn
        return fn

    return add


def supported_ops() -> list[str]:
    """Sorted names of every op the NumPy executor implements."""
    return sorted(_OPS)


def lookup(op_type: str, domain: str, node: str) -> OpFunction:
    """The implementation of `op_type`, or an error naming it and listing what is supported."""
    if domain not in ("", "ai.onnx") or op_type not in _OPS:
        qualified = f"{domain}::{op_type}" if domain not in ("", "ai.onnx") else op_type
        raise DczRuntimeError(
            f"the NumPy backend does not implement op {qualified} (node {node!r}); "
            f"supported ops: {', '.join(supported_ops())}. Run this model with the ONNX Runtime backend ('ort')."
        )
    return _OPS[op_type]


def op_error(ctx: OpContext, message: str) -> DczRuntimeError:
    """An error for an op that cannot run as configured, naming the node."""
    return DczRuntimeError(f"node {ctx.node!r}: {message}")
