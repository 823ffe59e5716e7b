"""Calibration data for an ONNX model: arrays named after its inputs, optional integer labels `y`.

`load_calib(source, model)` reads an .npz (never a pickle: np.load(allow_pickle=False)) or takes a
{name: array} mapping, and checks every array against the model's input it feeds (name, dtype kind,
rank and fixed dimensions, one row count for all). Anything wrong is one CompressError line naming
the array and what to do, before any compression work starts. numpy + onnx only.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from dcz.compressor.errors import CompressError

LABELS = "y"
SINGLE_INPUT_ALIAS = "x"


@dataclass(frozen=True)
class InputSpec:
    """One graph input: name, numpy dtype and dims (int for fixed, str for symbolic)."""

    name: str
    dtype: np.dtype
    dims: tuple

    def describe(self) -> str:
        dims = ", ".join(str(d) if d not in ("", None) else "?" for d in self.dims)
        return f"{self.dtype.name} [{dims}]"


@dataclass
class Calibration:
    """Checked calibration arrays: `inputs` by model input name, `labels` int64 (N,) or None."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    where: str

    @property
    def rows(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def head(self, rows: int) -> Calibration:
        """The first `rows` samples (the data's own order: the caller shuffles if it must)."""
        labels = None if self.labels is None else self.labels[:rows]
        return Calibration({k: v[:rows] for k, v in self.inputs.items()}, labels, self.where)


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """The graph inputs the caller must feed (initializers listed as inputs are not among them)."""
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        tensor = value.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
        specs.append(InputSpec(value.name, dtype, dims))
    return specs


def load_calib(source, model: onnx.ModelProto) -> Calibration:
    """Checked calibration data for `model` from an .npz path or a {name: array} mapping."""
    specs = input_specs(model)
    where = "calibration data" if isinstance(source, Mapping) else str(source)
    arrays = dict(source) if isinstance(source, Mapping) else _read_npz(Path(source))
    arrays = _rename_single(arrays, specs)
    _refuse_unknown(arrays, specs, where)
    inputs = {spec.name: _checked_input(arrays, spec, where) for spec in specs}
    rows = _common_rows(inputs, where)
    labels = _checked_labels(arrays.get(LABELS), rows, where)
    return Calibration(inputs, labels, where)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise CompressError(f"--calib {path}: no such file; give an .npz of arrays named after the model's inputs")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        hint = "pickled data is refused" if "pickle" in str(error) else "not a readable .npz"
        raise CompressError(
            f"--calib {path}: {hint} ({error}); save arrays with np.savez(path, x=..., y=...)".splitlines()[0]
        ) from None
    if isinstance(data, np.ndarray):  # an .npy: the one input's samples
        return {SINGLE_INPUT_ALIAS: data}
    arrays = {}
    with data:
        for name in data.files:
            try:
                arrays[name] = np.asarray(data[name])
            except ValueError as error:  # object arrays need pickle, which is never loaded
                raise CompressError(
                    f"--calib {path}: array {name!r} is pickled (an object array: {error}); "
                    "save plain numeric arrays, e.g. np.savez(path, x=x.astype(np.float32), y=y)"
                ) from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
                raise CompressError(f"--calib {path}: array {name!r} is unreadable ({error})") from None
    return arrays


def _rename_single(arrays: dict[str, np.ndarray], specs: list[InputSpec]) -> dict[str, np.ndarray]:
    """`x` feeds a single-input model whatever its input is called."""
    if len(specs) == 1 and specs[0].name not in arrays and SINGLE_INPUT_ALIAS in arrays:
        arrays = dict(arrays)
        arrays[specs[0].name] = arrays.pop(SINGLE_INPUT_ALIAS)
    return arrays


def _expected(specs: list[InputSpec]) -> str:
    return ", ".join(f"{s.name!r} ({s.describe()})" for s in specs)


def _refuse_unknown(arrays: Mapping, specs: list[InputSpec], where: str) -> None:
    known = {s.name for s in specs} | {LABELS}
    for name in arrays:
        if name not in known:
            alias = f", or {SINGLE_INPUT_ALIAS!r} for its only input" if len(specs) == 1 else ""
            raise CompressError(
                f"--calib {where}: array {name!r} is not a model input; name arrays after the inputs "
                f"{_expected(specs)}{alias}, labels {LABELS!r}"
            )


def _checked_input(arrays: Mapping, spec: InputSpec, where: str) -> np.ndarray:
    if spec.name not in arrays:
        present = ", ".join(repr(n) for n in arrays) or "none"
        raise CompressError(
            f"--calib {where}: no array for model input {spec.name!r} ({spec.describe()}); arrays present: {present}"
        )
    array = np.asarray(arrays[spec.name])
    label = f"--calib {where}: array {spec.name!r}"
    if array.dtype.kind != spec.dtype.kind and not (array.dtype.kind in "iu" and spec.dtype.kind in "iu"):
        raise CompressError(
            f"{label} is {array.dtype.name} but the model input takes {spec.dtype.name}; "
            f"convert it ({spec.name}.astype(np.{spec.dtype.name}))"
        )
    _check_shape(array, spec, label)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise CompressError(f"{label} holds NaN or infinite values; calibration samples must be finite")
    return np.ascontiguousarray(array, dtype=spec.dtype)


def _check_shape(array: np.ndarray, spec: InputSpec, label: str) -> None:
    wanted = "(N, " + ", ".join(str(d) if isinstance(d, int) else "?" for d in spec.dims[1:]) + ")"
    if spec.dims and array.ndim != len(spec.dims):
        raise CompressError(
            f"{label} has shape {array.shape} but the model input is {spec.describe()}; reshape it to {wanted}"
        )
    for axis, (have, want) in enumerate(zip(array.shape[1:], spec.dims[1:]), start=1):
        if isinstance(want, int) and want > 0 and have != want:
            raise CompressError(
                f"{label} has shape {array.shape} but the model input is {spec.describe()} (axis {axis}: "
                f"{have} != {want}); reshape it to {wanted}"
            )
    if array.ndim == 0 or array.shape[0] == 0:
        raise CompressError(f"{label} holds no samples (shape {array.shape}); give at least one row")


def _common_rows(inputs: Mapping[str, np.ndarray], where: str) -> int:
    rows = {name: a.shape[0] for name, a in inputs.items()}
    if len(set(rows.values())) > 1:
        listed = ", ".join(f"{n!r} {r}" for n, r in rows.items())
        raise CompressError(f"--calib {where}: arrays differ in sample count ({listed}); give one row per sample each")
    return next(iter(rows.values()))


def _checked_labels(labels, rows: int, where: str) -> np.ndarray | None:
    if labels is None:
        return None
    labels = np.asarray(labels)
    label = f"--calib {where}: array {LABELS!r}"
    if labels.dtype.kind not in "iu":
        raise CompressError(f"{label} must hold integer class labels, got {labels.dtype.name}; use y.astype(np.int64)")
    if labels.shape != (rows,):
        raise CompressError(f"{label} has shape {labels.shape}; give one label per sample, shape ({rows},)")
    if labels.size and labels.min() < 0:
        raise CompressError(f"{label} holds a negative label ({int(labels.min())}); labels are class indices >= 0")
    return labels.astype(np.int64)
