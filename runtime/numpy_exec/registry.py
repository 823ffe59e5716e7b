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
    op: str = ""  # the node's op type, also for error messages
    outputs: int = 1  # how many outputs the node names (Split without sizes splits into that many)


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


# The largest array one op may create (bytes). Shapes computed from the graph (Pad widths, a
# ConstantOfShape / Expand / Range target) are checked against it before numpy allocates, so a
# hostile graph gets a one-line error instead of a MemoryError or gigabytes of zeros.
MAX_OUTPUT_BYTES = 2 << 30


def check_output(ctx: OpContext, shape, itemsize: int) -> None:
    """Raise unless an array of `shape` x `itemsize` bytes (Python ints: no wrap) fits the cap."""
    total = itemsize
    for d in shape:
        if d < 0:
            raise op_error(ctx, f"output shape {tuple(shape)} has a negative dim")
        total *= int(d)
    if total > MAX_OUTPUT_BYTES:
        raise op_error(
            ctx, f"output of shape {tuple(shape)} would take {total:,} bytes, over the {MAX_OUTPUT_BYTES:,}-byte cap"
        )


def op_error(ctx: OpContext, message: str) -> DczRuntimeError:
    """An error for an op that cannot run as configured, naming the node."""
    where = f"node {ctx.node!r} ({ctx.op})" if ctx.op else f"node {ctx.node!r}"
    return DczRuntimeError(f"{where}: {message}")
