"""Reading safetensors checkpoints lazily: one file, or shards listed by a `*.index.json`.

Only the headers are read up front; each tensor is read from disk when asked for, straight into
one numpy array (np.fromfile at its offset), so memory holds one tensor at a time. bfloat16 has
no numpy dtype: it is read as its uint16 bit patterns and widened to float32 exactly (bf16 is the
top half of an f32). The header layout (8-byte length, JSON, data) is the safetensors format;
the `safetensors` package reads the same files but cannot hand bf16 to numpy.
"""

from __future__ import annotations

import json
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CompressError

DTYPES = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F64": "float64",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}
ITEMSIZE = {"bfloat16": 2, "bool": 1}
MAX_HEADER = 100 << 20  # safetensors' own limit


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor lives: file, byte range, dtype name (numpy's, or 'bfloat16'), shape."""

    name: str
    path: str
    start: int
    end: int
    dtype: str
    shape: tuple

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def itemsize(dtype: str) -> int:
    return ITEMSIZE.get(dtype) or np.dtype(dtype).itemsize


def read_header(path: Path) -> list[TensorRef]:
    """The tensors of one .safetensors file, in the order of their data."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        if size < 8:
            raise CompressError(f"{path}: {size} bytes, too short for a safetensors file")
        (length,) = struct.unpack("<Q", f.read(8))
        if length > min(MAX_HEADER, size - 8):
            raise CompressError(f"{path}: header length {length} does not fit the {size}-byte file")
        try:
            doc = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CompressError(f"{path}: header is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise CompressError(f"{path}: header is not a JSON object")
    base, refs = 8 + length, []
    for name, info in doc.items():
        if name == "__metadata__":
            continue
        refs.append(_ref(path, name, info, base, size))
    return sorted(refs, key=lambda r: r.start)


def _ref(path: Path, name: str, info, base: int, size: int) -> TensorRef:
    where = f"{path}: tensor {name!r}"
    try:
        dtype, shape, (lo, hi) = DTYPES[info["dtype"]], tuple(int(d) for d in info["shape"]), info["data_offsets"]
    except (KeyError, TypeError, ValueError):
        raise CompressError(f"{where}: unsupported dtype or malformed entry {info!r}") from None
    if any(d < 0 for d in shape) or not (0 <= lo <= hi <= size - base):
        raise CompressError(f"{where}: shape {shape} / offsets {lo}..{hi} do not fit the file")
    ref = TensorRef(name, str(path), base + lo, base + hi, dtype, shape)
    if ref.numel * itemsize(dtype) != hi - lo:
        raise CompressError(f"{where}: {hi - lo} bytes for {dtype} {list(shape)}")
    return ref


def checkpoint_files(source) -> list[Path]:
    """The .safetensors files of a checkpoint: the file itself, the shards an index names, or a folder's."""
    source = Path(source)
    if source.is_dir():
        index = sorted(source.glob("*.safetensors.index.json"))
        if index:
            return checkpoint_files(index[0])
        files = sorted(source.glob("*.safetensors"))
        if not files:
            raise CompressError(f"{source}: no .safetensors file in this folder")
        return files
    if source.name.endswith(".index.json"):
        try:
            weight_map = json.loads(source.read_text())["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CompressError(f"{source}: not a safetensors index with a weight_map ({exc})") from None
        return [source.parent / s for s in shards]
    if not source.exists():
        raise CompressError(f"{source}: no such checkpoint")
    return [source]


def read_checkpoint(source) -> list[TensorRef]:
    """Every tensor of the checkpoint, shard by shard, in data order; names must be unique."""
    refs, seen = [], set()
    for path in checkpoint_files(source):
        for ref in read_header(path):
            if ref.name in seen:
                raise CompressError(f"{path}: tensor {ref.name!r} appears in two shards")
            seen.add(ref.name)
            refs.append(ref)
    return refs


def load(ref: TensorRef, scratch: Scratch | None = None) -> np.ndarray:
    """The tensor's array (bfloat16: its uint16 bit patterns); with `scratch`, read into the calling
    thread's reused buffer (valid until that thread's next load)."""
    dtype = _file_dtype(ref)
    if scratch is not None:
        return scratch.read(ref, dtype)
    with open(ref.path, "rb") as f:
        f.seek(ref.start)
        arr = np.fromfile(f, dtype=dtype, count=ref.numel)
    if arr.size != ref.numel:
        raise CompressError(f"{ref.path}: tensor {ref.name!r} is cut short")
    return arr.reshape(ref.shape)


def _file_dtype(ref: TensorRef) -> np.dtype:
    return np.dtype("<u2") if ref.dtype == "bfloat16" else np.dtype(ref.dtype).newbyteorder("<")


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """Exact: a bf16 is the upper 16 bits of an f32."""
    out = bits.astype(np.uint32)
    out <<= 16
    return out.view(np.float32)


class Scratch:
    """Per-thread buffers reused from tensor to tensor and block to block: a tensor's bytes as read
    from disk, its labels, and bf16 blocks (or codebook samples) widened to float32. Each fresh multi-megabyte numpy array costs its
    pages' faults and zeroing in the kernel (~2/3 of the bf16 widening's CPU) and a trip through the
    process's memory-map lock, which threads take in turn; a reused buffer costs neither.

    A buffer handed out stays valid until the same thread asks again: callers use each result before
    their next call (palettize's blocks, compress_tensor's tensor)."""

    def __init__(self):
        self._local = threading.local()

    def _buffer(self, name: str, nbytes: int) -> np.ndarray:
        buf = getattr(self._local, name, None)
        if buf is None or buf.size < nbytes:
            buf = np.empty(nbytes, dtype=np.uint8)
            setattr(self._local, name, buf)
        return buf[:nbytes]

    def read(self, ref: TensorRef, dtype: np.dtype) -> np.ndarray:
        nbytes = ref.end - ref.start
        buf = self._buffer("read", nbytes)
        view, done = memoryview(buf), 0
        with open(ref.path, "rb", buffering=0) as f:
            f.seek(ref.start)
            while done < nbytes:
                n = f.readinto(view[done:])
                if not n:
                    raise CompressError(f"{ref.path}: tensor {ref.name!r} is cut short")
                done += n
        return buf.view(dtype).reshape(ref.shape)

    def labels(self, rows: int, cols: int) -> np.ndarray:
        """A uint8 (rows, cols) array for a tensor's labels, in this thread's buffer."""
        return self._buffer("labels", rows * cols).reshape(rows, cols)

    def bf16_to_f32(self, bits: np.ndarray) -> np.ndarray:
        """bf16_to_f32's values, in this thread's buffer."""
        out = self._buffer("f32", 4 * bits.size).view(np.uint32).reshape(bits.shape)
        np.left_shift(bits, np.uint32(16), out=out, dtype=np.uint32)
        return out.view(np.float32)
