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
    missing = sorted(set(wanted) - set(stored))
    if missing:
        raise DczRuntimeError(
            f"the graph uses tensor {missing[0]!r} but the .dcz file does not store it"
            + (f" (and {len(missing) - 1} more: {missing[1:6]})" if len(missing) > 1 else "")
        )
    unused = sorted(set(stored) - set(wanted))
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
    """`normalize_inputs` for one graph, with the common case (one well-formed array) made cheap:
    it runs before every inference, where a few microseconds show on small models."""

    def __init__(self, specs: Sequence[ValueSpec]):
        self.specs = list(specs)
        self._single = None
        if len(self.specs) == 1 and self.specs[0].dtype is not None and self.specs[0].shape is not None:
            spec = self.specs[0]
            fixed = tuple((axis, dim) for axis, dim in enumerate(spec.shape) if dim)
            self._single = (spec.name, spec.dtype, len(spec.shape), fixed)

    def __call__(self, inputs) -> dict[str, np.ndarray]:
        if self._single is not None and type(inputs) is np.ndarray:
            name, dtype, ndim, fixed = self._single
            shape = inputs.shape
            if (inputs.dtype == dtype and inputs.ndim == ndim and inputs.flags.c_contiguous
                    and all(shape[axis] == dim for axis, dim in fixed)):
                return {name: inputs}
        return normalize_inputs(inputs, self.specs)


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
