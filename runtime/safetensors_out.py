"""A weights-only .dcz back out: tensors one at a time, and safetensors files written as a stream.

`iter_tensors` decodes one tensor per step (memory: that tensor), restoring each tensor's
checkpoint dtype recorded in `source.dtypes` (bfloat16 rounded to nearest even from the decoded
float32, returned as uint16 bit patterns with `bf16_bits=True`, else as float32: numpy has no
bf16). `export_safetensors` writes the safetensors header first (shapes and dtypes are known
from the .dcz header), then each tensor's bytes as it is decoded, into one file or shards of at
most `max_shard_bytes` with a `model.safetensors.index.json`, each published atomically.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from dcz.formats import open as open_dcz
from dcz.formats.atomic import atomic_output
from dcz.formats.layout import DEFAULT_MAX_DENSE_BYTES

from .errors import DczRuntimeError

ST_DTYPE = {
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
    "float64": "F64",
}


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (nearest, ties to even), as uint16 bit patterns; NaN stays NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def _restore(arr: np.ndarray, dtype: str, bf16_bits: bool) -> np.ndarray:
    if dtype == "bfloat16":
        return f32_to_bf16_bits(arr) if bf16_bits else arr.astype(np.float32, copy=False)
    if dtype in ST_DTYPE and arr.dtype.name != dtype:
        return arr.astype(dtype)
    return arr


def iter_tensors(path, bf16_bits: bool = False, *, max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES):
    """(name, array) for each tensor of the .dcz at `path`, decoded one at a time (each at most
    `max_dense_bytes`: formats.open's budget)."""
    with open_dcz(path, max_dense_bytes=max_dense_bytes) as f:
        dtypes = f.metadata.get("source.dtypes") or {}
        sides = outlier_sides(f)
        for name in checkpoint_names(f):
            arr = f.tensor(name)
            if name in sides:
                _overwrite_outliers(arr, f, name, sides[name])
            yield name, _restore(arr, dtypes.get(name, f.info(name).dtype), bf16_bits)
            f.drop_pages()  # resident memory: one tensor's sections at a time, not the whole file


def outlier_sides(f) -> dict:
    """tensor -> side tensor of exact outliers (metadata `checkpoint.outliers`), checked against the file."""
    sides = f.metadata.get("checkpoint.outliers") or {}
    names = set(f.names)
    if not isinstance(sides, dict):
        raise DczRuntimeError("metadata checkpoint.outliers must map tensor names to side tensor names")
    for name, side in sides.items():
        if name not in names or not isinstance(side, str) or side not in names or side in sides or side == name:
            raise DczRuntimeError(f"metadata checkpoint.outliers: {name!r} -> {side!r} does not name two tensors")
        if f.info(side).encoding != "sparse" or list(f.info(side).shape) != list(f.info(name).shape):
            raise DczRuntimeError(f"outlier tensor {side!r} must be sparse with the shape of {name!r}")
    if len(set(sides.values())) != len(sides):
        raise DczRuntimeError("metadata checkpoint.outliers: a side tensor serves two tensors")
    return sides


def checkpoint_names(f) -> list[str]:
    """The checkpoint's own tensors, in file order (side tensors of outliers are not among them)."""
    sides = set(outlier_sides(f).values())
    return [name for name in f.names if name not in sides]


def _overwrite_outliers(arr: np.ndarray, f, name: str, side: str) -> None:
    """Write the side tensor's exact values over the palettized ones, from its CSR (no dense copy)."""
    indptr, cols, values = f.csr(side)
    if values.size:
        rows = len(indptr) - 1
        view = arr.reshape(rows, arr.size // rows)
        view[np.repeat(np.arange(rows), np.diff(indptr)), cols] = values


def _plan(path, max_shard_bytes: int | None, max_dense_bytes: int):
    """Shards as lists of (name, st dtype, shape, nbytes), from the .dcz header alone."""
    with open_dcz(path, max_dense_bytes=max_dense_bytes) as f:
        dtypes = f.metadata.get("source.dtypes") or {}
        items = []
        for name in checkpoint_names(f):
            info = f.info(name)
            dtype = dtypes.get(name, info.dtype)
            if dtype not in ST_DTYPE:
                raise DczRuntimeError(f"tensor {name!r}: dtype {dtype} has no safetensors equivalent")
            numel = int(np.prod(info.shape, dtype=np.int64))
            size = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
            items.append((name, dtype, list(info.shape), numel * size))
    shards, current, used = [], [], 0
    for item in items:
        if current and max_shard_bytes and used + item[3] > max_shard_bytes:
            shards.append(current)
            current, used = [], 0
        current.append(item)
        used += item[3]
    shards.append(current)
    return shards


def _header(items) -> bytes:
    doc, pos = {}, 0
    for name, dtype, shape, nbytes in items:
        doc[name] = {"dtype": ST_DTYPE[dtype], "shape": shape, "data_offsets": [pos, pos + nbytes]}
        pos += nbytes
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header with spaces to 8 bytes
    return struct.pack("<Q", len(text)) + text


def export_safetensors(
    path, out, max_shard_bytes: int | None = None, *, max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES
) -> list[Path]:
    """Write the .dcz at `path` as safetensors at `out` (sharded when it exceeds max_shard_bytes;
    each tensor at most `max_dense_bytes` decoded: formats.open's budget)."""
    out = Path(out)
    shards = _plan(path, max_shard_bytes, max_dense_bytes)
    if len(shards) == 1:
        targets = [out]
    else:
        stem = out.name.removesuffix(".safetensors")
        targets = [out.with_name(f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors") for i in range(len(shards))]
    decoded = iter_tensors(path, bf16_bits=True, max_dense_bytes=max_dense_bytes)
    for target, items in zip(targets, shards):
        _write_atomic(target, _header(items), (next(decoded)[1] for _ in items))
    if len(shards) > 1:
        weight_map = {name: t.name for t, items in zip(targets, shards) for name, *_ in items}
        total = sum(nbytes for items in shards for *_, nbytes in items)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        _write_atomic(out.with_name(f"{stem}.safetensors.index.json"), json.dumps(index, indent=2).encode(), [])
    return targets


def _write_atomic(target: Path, head: bytes, arrays) -> None:
    with atomic_output(target) as f:
        f.write(head)
        for arr in arrays:
            f.write(np.ascontiguousarray(arr).view(np.uint8).reshape(-1).data)
