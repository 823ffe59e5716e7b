"""Checks made before any backend sees the graph: placeholders vs stored tensors, and run inputs.

Everything here raises `DczRuntimeError` naming the tensor at fault, so a mismatched file never
reaches ONNX Runtime (whose messages would name an internal node, or worse, crash).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .errors import DczRuntimeError
from .onnx_graph import Placeholder, ValueSpec


def check_placeholders(wanted: Mapping[str, Placeholder], stored: Mapping[str, object]) -> None:
    """Every placeholder has a stored tensor of the same dtype and shape, and every stored tensor is used.

    `stored` maps name -> formats TensorInfo (anything with `.shape` and `.dtype`).
    """
    # key=repr: a graph name with invalid UTF-8 comes out of protobuf as bytes (found by atheris), and bytes
    # do not sort with str
    missing = sorted(set(wanted) - set(stored), key=repr)
    if missing:
        raise DczRuntimeError(
            f"the graph uses tensor {missing[0]!r} but the .dcz file does not store it"
            + (f" (and {len(missing) - 1} more: {missing[1:6]})" if len(missing) > 1 else "")
        )
    unused = sorted(set(stored) - set(wanted), key=repr)
    if unused:
        raise DczRuntimeError(
            f"the .dcz file stores tensor {unused[0]!r} but the graph has no placeholder initializer for it"
            + (f" (and {len(unused) - 1} more: {unused[1:6]})" if len(unused) > 1 else "")
        )
    for name, ph in wanted.items():
        info = stored[name]
        shape = tuple(int(d) for d in info.shape)
        if shape != ph.shape:
            raise DczRuntimeError(f"tensor {name!r}: the .dcz stores shape {shape} but the graph declares {ph.shape}")
        dtype = np.dtype(info.dtype)
        if dtype != ph.dtype:
            raise DczRuntimeError(f"tensor {name!r}: the .dcz stores dtype {dtype} but the graph declares {ph.dtype}")


class InputChecker:
    """`normalize_inputs` for one graph, with the common case made cheap: it runs before every
    inference, where a microsecond shows on LeNet-size calls of ~35 us.

    Fast path (plain attribute compares, no per-call list/dict building): one ndarray for a
    single-input graph, or a dict holding exactly the graph's inputs as ndarrays, each with the
    graph's dtype (the same dtype object: native byte order) and, unless `engine_checks_shapes`,
    its rank and fixed dims. Anything else - casts, Python lists, wrong names, bad shapes - goes
    through `normalize_inputs`, whose errors name the input. Arrays pass as they are (no contiguous
    copy): ONNX Runtime copies a strided input itself, and NumPy ops read any strides.

    engine_checks_shapes: the backend refuses a wrong rank or fixed dim itself (ONNX Runtime does,
    before running anything), so the fast path leaves shapes to it; `Model.run` then calls
    `explain` when the backend fails, to raise the error naming the input. Measured on
    LeNet-300-100 batch 1 (paired samples): reading `x.shape` before `session.run` costs ~0.7 us of
    a ~33 us call, more than the compares themselves.
    """

    def __init__(self, specs: Sequence[ValueSpec], engine_checks_shapes: bool = False):
        self.specs = list(specs)
        fast = [_fast_spec(s, engine_checks_shapes) for s in self.specs]
        self._fast = tuple(fast) if fast and None not in fast else None
        self._single = self._fast[0] if self._fast is not None and len(self._fast) == 1 else None
        self._last_shape = None  # the shape last accepted by the single-array fast path
        # (name, dtype) when one ndarray of this dtype is all the fast path checks (shapes left to the engine)
        self.dtype_only_single = self._single[:2] if self._single is not None and self._single[2] is None else None

    def __call__(self, inputs) -> dict[str, np.ndarray]:
        single = self._single
        if single is not None and type(inputs) is _NDARRAY:
            if inputs.dtype is single[1]:
                if single[2] is None:  # shapes are the engine's to check
                    return {single[0]: inputs}
                shape = inputs.shape
                if shape == self._last_shape or _fits(shape, single):
                    self._last_shape = shape  # next call with this batch size: one tuple compare
                    return {single[0]: inputs}
        elif type(inputs) is dict and self._fast is not None and len(inputs) == len(self._fast):
            for spec in self._fast:
                value = inputs.get(spec[0])
                if not (
                    type(value) is _NDARRAY and value.dtype is spec[1] and (spec[2] is None or _fits(value.shape, spec))
                ):
                    break
            else:
                return inputs  # exactly the graph's inputs, all well-formed: backends only read it
        return normalize_inputs(inputs, self.specs)

    def explain(self, inputs) -> None:
        """Check `inputs` fully (what the fast path may have left to the engine): raises the
        DczRuntimeError naming the input at fault, returns if the inputs are fine."""
        normalize_inputs(inputs, self.specs)


_NDARRAY = np.ndarray


def _fits(shape: tuple, fast_spec: tuple) -> bool:
    _, _, ndim, lead, tail = fast_spec
    return len(shape) == ndim and shape[1:] == tail and (lead is None or shape[0] == lead)


def _fast_spec(spec: ValueSpec, dtype_only: bool) -> tuple | None:
    """(name, dtype, rank, fixed dim 0 or None, dims 1..), or (name, dtype, None, None, None) if
    `dtype_only`; None when the fast path cannot decide (unknown dtype, or free dims past dim 0)."""
    if spec.dtype is None:
        return None
    if dtype_only:
        return spec.name, spec.dtype, None, None, None
    if not spec.shape or any(d in (None, 0) for d in spec.shape[1:]):
        return None
    lead = spec.shape[0] if spec.shape[0] not in (None, 0) else None
    return spec.name, spec.dtype, len(spec.shape), lead, tuple(spec.shape[1:])


def normalize_inputs(inputs, specs: Sequence[ValueSpec]) -> dict[str, np.ndarray]:
    """Turn `run`'s argument (dict, or one array for single-input graphs) into checked arrays.

    Names must match exactly; an ndarray's dtype is converted only when lossless (float64 -> float32
    is refused, as ONNX Runtime does), Python lists are cast; rank and fixed dims must agree.
    """
    if not isinstance(inputs, Mapping):
        if len(specs) != 1:
            raise DczRuntimeError(
                f"the graph has {len(specs)} inputs {[s.name for s in specs]}: pass a dict name -> array"
            )
        inputs = {specs[0].name: inputs}
    names = [s.name for s in specs]
    unknown = sorted(set(inputs) - set(names))
    if unknown:
        raise DczRuntimeError(f"unknown input {unknown[0]!r}; the graph's inputs are {names}")
    missing = [n for n in names if n not in inputs]
    if missing:
        raise DczRuntimeError(f"missing input {missing[0]!r}; the graph's inputs are {names}")
    return {s.name: _check_one(inputs[s.name], s) for s in specs}


def _check_one(value, spec: ValueSpec) -> np.ndarray:
    arr = np.asarray(value)
    if spec.dtype is not None and arr.dtype != spec.dtype:
        # Python lists/scalars carry no dtype of their own, so any same-kind cast is what was meant;
        # an ndarray is only converted when no precision can be lost (float64 -> float32 is refused).
        from_python = not isinstance(value, np.ndarray)
        casting = "same_kind" if from_python else "safe"
        if not np.can_cast(arr.dtype, spec.dtype, casting=casting):
            raise DczRuntimeError(f"input {spec.name!r}: got dtype {arr.dtype}, the graph wants {spec.dtype}")
        arr = arr.astype(spec.dtype)
    if spec.shape is not None:
        if arr.ndim != len(spec.shape):
            raise DczRuntimeError(
                f"input {spec.name!r}: got {arr.ndim}-D shape {arr.shape}, the graph wants rank {len(spec.shape)} {_dims(spec.shape)}"
            )
        for axis, (got, want) in enumerate(zip(arr.shape, spec.shape)):
            if want not in (None, 0) and got != want:
                raise DczRuntimeError(
                    f"input {spec.name!r}: dim {axis} is {got}, the graph wants {want} (shape {_dims(spec.shape)})"
                )
    return np.ascontiguousarray(arr)


def _dims(shape) -> str:
    return "(" + ", ".join("?" if d in (None, 0) else str(d) for d in shape) + ")"
