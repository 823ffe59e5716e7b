"""The four tensor encodings: writer inputs (frozen dataclasses) and their encode/decode.

Every compressed encoding works on the tensor's 2-D view: rows = shape[0], cols = the product
of the rest (a 1-D or 0-D tensor is one row). Sparse encodings store CSR as a row-count stream
(entries per row, fillers included), a gap stream (b-bit relative column indices, symbol
2**b - 1 a filler that advances that many columns) and, per kept entry, a float32 value
(sparse) or an n-bit label into a float32 codebook (sparse_shared).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from . import codec, native
from .entry import TensorEntry, view_2d
from .errors import FormatError
from .layout import KIND_ARRAY, KIND_STREAM, MAX_NAME_BYTES, MAX_RANK, RAW_DTYPES


@dataclass(frozen=True, eq=False)
class Raw:
    """A tensor stored as-is, little endian (biases, norms, small tensors)."""

    name: str
    array: np.ndarray


@dataclass(frozen=True, eq=False)
class Sparse:
    """A pruned tensor: float32 values where `mask` is True, CSR with `gap_bits`-bit gaps."""

    name: str
    values: np.ndarray
    mask: np.ndarray
    gap_bits: int


@dataclass(frozen=True, eq=False)
class Shared:
    """A dense weight-shared tensor: `label_bits`-bit labels into a float32 codebook."""

    name: str
    labels: np.ndarray
    codebook: np.ndarray
    label_bits: int
    group_rows: int | None = None


@dataclass(frozen=True, eq=False)
class SparseShared:
    """The Deep Compression encoding: pruned CSR + shared labels (+ Huffman streams)."""

    name: str
    mask: np.ndarray
    labels: np.ndarray
    codebook: np.ndarray
    label_bits: int
    gap_bits: int
    group_rows: int | None = None


Tensor = Union[Raw, Sparse, Shared, SparseShared]  # noqa: UP007 - a runtime alias on Python 3.10 too


def groups_for(rows: int, group_rows: int | None) -> int:
    """Codebook groups a tensor of `rows` rows has with `group_rows` rows per group."""
    if group_rows is None:
        return 1
    return max(1, -(-rows // group_rows))


# ---------------------------------------------------------------- writer side


class Part:
    """One section a tensor contributes: role ('data', 'rows', 'gaps', 'labels', ...), kind, bytes."""

    __slots__ = ("role", "kind", "data")

    def __init__(self, role: str, kind: int, data: bytes):
        self.role, self.kind, self.data = role, kind, data


def _fail(name, message: str) -> FormatError:
    return FormatError(f"tensor {name!r}: {message}")


def _check_bits(name, field: str, bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= int(bits) <= 8:
        raise _fail(name, f"{field} must be an int in 1..8, got {bits!r}")
    return int(bits)


def _check_name(name) -> None:
    if not isinstance(name, str) or not name:
        raise FormatError(f"tensor name must be a non-empty str, got {name!r}")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise _fail(name, f"name longer than {MAX_NAME_BYTES} UTF-8 bytes")


def _check_shape(name, shape) -> tuple[int, ...]:
    if len(shape) > MAX_RANK:
        raise _fail(name, f"rank {len(shape)} exceeds the limit {MAX_RANK}")
    return tuple(int(d) for d in shape)


def _mask(name, mask, shape) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise _fail(name, f"mask must be bool, got {mask.dtype}")
    if mask.shape != shape:
        raise _fail(name, f"mask shape {mask.shape} differs from tensor shape {shape}")
    return mask


def _codebook(name, codebook, label_bits, rows, group_rows) -> tuple[np.ndarray, int | None]:
    book = np.asarray(codebook)
    if book.dtype.kind != "f":
        raise _fail(name, f"codebook must be floating point, got {book.dtype}")
    book = book.astype("<f4")
    if book.ndim == 1:
        book, group_rows = book[None, :], None
    elif book.ndim != 2:
        raise _fail(name, f"codebook must be 1-D or 2-D, got shape {book.shape}")
    if group_rows is not None:
        if isinstance(group_rows, bool) or not isinstance(group_rows, (int, np.integer)) or group_rows < 1:
            raise _fail(name, f"group_rows must be a positive int or None, got {group_rows!r}")
        group_rows = int(group_rows)
    groups, k = book.shape
    if group_rows is None and groups != 1:
        raise _fail(name, f"codebook has {groups} groups but group_rows is None")
    if groups != groups_for(rows, group_rows):
        raise _fail(
            name,
            f"codebook has {groups} groups, {rows} rows in groups of {group_rows} need {groups_for(rows, group_rows)}",
        )
    if not 1 <= k <= 1 << label_bits:
        raise _fail(name, f"codebook size {k} must be in 1..2**label_bits = {1 << label_bits}")
    return book, group_rows


def _labels(name, labels, shape, k, check: bool = True) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != shape:
        raise _fail(name, f"labels shape {labels.shape} differs from tensor shape {shape}")
    if labels.dtype.kind not in "iu":
        raise _fail(name, f"labels must be integers, got {labels.dtype}")
    if check:
        _check_label_range(name, labels, k)
    return labels


def _check_label_range(name, used: np.ndarray, k: int) -> None:
    if used.size and (used.min() < 0 or used.max() >= k):
        raise _fail(name, f"labels must lie in 0..{k - 1} (codebook size {k}), found {used.min()}..{used.max()}")


def csr_streams(mask2d: np.ndarray, gap_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row counts incl. fillers, gap symbols, flat indices of kept entries) of a 2-D mask."""
    rows, cols = mask2d.shape
    core = native.core()
    if core is not None and rows * cols:
        return _compiled_csr(core, mask2d, gap_bits)
    return csr_streams_of(np.flatnonzero(mask2d), rows, cols, gap_bits)


def _compiled_csr(core, mask2d: np.ndarray, gap_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """csr_streams through the compiled core: one pass over the mask, the same arrays."""
    rows, cols = mask2d.shape
    nnz = int(np.count_nonzero(mask2d))
    filler = (1 << gap_bits) - 1
    # Worst case: every kept entry after a run of fillers, each filler spanning `filler` columns.
    gaps = np.empty(nnz + rows * (cols // filler + 1), dtype=np.int64)
    flat = np.empty(nnz, dtype=np.int64)
    row_counts = np.empty(rows, dtype=np.int64)
    mask = np.ascontiguousarray(mask2d).view(np.uint8)
    n_gaps, kept = core.csr_encode(mask, rows, cols, gap_bits, row_counts, gaps, flat)
    assert kept == nnz  # the core found every kept entry count_nonzero counted
    return row_counts, gaps[:n_gaps].copy(), flat


# Label arrays csr_labels reads as they are (uint64 is not among them: its top bit would read as a sign).
_LABEL_DTYPES = tuple(np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64))


def _compiled_shared_csr(core, mask2d: np.ndarray, labels: np.ndarray, gap_bits: int):
    """(row counts, byte gaps, kept labels as bytes, lowest, highest kept label) of a pruned shared tensor
    in one compiled pass over mask and labels (the same streams as csr_streams + the label gather), or
    None when the labels' type is not one the core reads."""
    if labels.dtype not in _LABEL_DTYPES:
        return None
    rows, cols = mask2d.shape
    filler = (1 << gap_bits) - 1
    # Sized for every entry kept rather than counted first (a pass over the mask: ~5% of the writer's
    # time on a 10M-weight tensor): pages of np.empty that are never written are never touched, so the
    # bound costs address space, not memory.
    gaps = np.empty(rows * cols + rows * (cols // filler + 1), dtype=np.uint8)
    kept = np.empty(rows * cols, dtype=np.uint8)
    row_counts = np.empty(rows, dtype=np.int64)
    mask = np.ascontiguousarray(mask2d).view(np.uint8)
    flat_labels = np.ascontiguousarray(labels).reshape(-1)
    signed = labels.dtype.kind == "i"
    n_gaps, n_kept, lo, hi = core.csr_labels(
        mask, rows, cols, gap_bits, flat_labels, flat_labels.itemsize, signed, row_counts, gaps, kept
    )
    return row_counts, gaps[:n_gaps], kept[:n_kept], lo, hi


def csr_streams_of(flat: np.ndarray, rows: int, cols: int, gap_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """csr_streams from the kept entries' flat indices (ascending) in the 2-D view: no mask needed."""
    flat = np.asarray(flat, dtype=np.int64)
    row = flat // cols if cols else flat
    col = flat - row * cols
    prev = np.empty_like(col)
    prev[:1] = -1
    prev[1:] = np.where(row[1:] == row[:-1], col[:-1], -1)
    gap = col - prev - 1
    filler = (1 << gap_bits) - 1
    quot, rem = np.divmod(gap, filler)
    per_entry = quot + 1
    ends = np.cumsum(per_entry)
    symbols = np.full(int(ends[-1]) if ends.size else 0, filler, dtype=np.int64)
    symbols[ends - 1] = rem
    row_counts = (
        np.bincount(row, weights=per_entry, minlength=rows).astype(np.int64)
        if flat.size
        else np.zeros(rows, dtype=np.int64)
    )
    return row_counts, symbols, flat


def rows_stream(row_counts: np.ndarray, huffman: bool, chunk: int | None, range_coding: bool = False) -> bytes:
    width = max(1, int(row_counts.max()).bit_length()) if row_counts.size else 1
    if width > 32:
        raise FormatError(f"a row holds {int(row_counts.max())} entries, more than a 32-bit row count")
    return codec.encode_stream(row_counts, width, huffman, chunk, range_coding)


def encode_tensor(
    t: Tensor, huffman: bool, chunk: int | None = None, range_coding: bool = False
) -> tuple[TensorEntry, list[Part]]:
    """The tensor-table entry fields and the sections of one writer input (chunk, range_coding: see
    codec.encode_stream)."""
    _check_name(t.name)
    name = t.name
    if isinstance(t, Raw):
        arr = np.asarray(t.array)
        if arr.dtype.name not in RAW_DTYPES:
            raise _fail(name, f"raw dtype {arr.dtype} not one of {', '.join(RAW_DTYPES)}")
        shape = _check_shape(name, arr.shape)
        data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        entry = TensorEntry(name, shape, arr.dtype.name, "raw", int(arr.size))
        return entry, [Part("data", KIND_ARRAY, data)]
    if not isinstance(t, (Sparse, Shared, SparseShared)):
        raise FormatError(f"tensor {getattr(t, 'name', t)!r}: not a formats tensor ({type(t).__name__})")

    if isinstance(t, Sparse):
        values = np.asarray(t.values)
        shape = _check_shape(name, values.shape)
        if values.dtype.kind != "f":
            raise _fail(name, f"values must be floating point, got {values.dtype}")
    else:
        shape = _check_shape(name, np.shape(t.labels))
    rows, cols = view_2d(shape)
    fields: dict = {}  # of the TensorEntry, beyond name, shape and dtype
    parts: list[Part] = []
    if isinstance(t, (Shared, SparseShared)):
        label_bits = _check_bits(name, "label_bits", t.label_bits)
        book, group_rows = _codebook(name, t.codebook, label_bits, rows, t.group_rows)
        fields.update(
            label_bits=label_bits, codebook_size=int(book.shape[1]), groups=int(book.shape[0]), group_rows=group_rows
        )
        parts.append(Part("codebook", KIND_ARRAY, book.tobytes()))
    if isinstance(t, Shared):
        labels = _labels(name, t.labels, shape, book.shape[1])
        parts.append(
            Part("labels", KIND_STREAM, codec.encode_stream(labels.ravel(), label_bits, huffman, chunk, range_coding))
        )
        return TensorEntry(name, shape, "float32", "shared", int(labels.size), **fields), parts

    gap_bits = _check_bits(name, "gap_bits", t.gap_bits)
    mask = _mask(name, t.mask, shape)
    core = native.core()
    if isinstance(t, SparseShared) and core is not None and rows * cols:
        labels = _labels(name, t.labels, shape, book.shape[1], check=False)
        fused = _compiled_shared_csr(core, mask.reshape(rows, cols), labels, gap_bits)
        if fused is not None:
            parts += _shared_csr_parts(name, fused, book.shape[1], gap_bits, label_bits, huffman, chunk, range_coding)
            fields.update(gap_bits=gap_bits, nnz=int(fused[2].size), encoding="sparse_shared")
            return TensorEntry(name, shape, "float32", **fields), parts
    row_counts, gaps, flat = csr_streams(mask.reshape(rows, cols), gap_bits)
    fields.update(gap_bits=gap_bits, nnz=int(flat.size))
    parts.append(Part("rows", KIND_STREAM, rows_stream(row_counts, huffman, chunk, range_coding)))
    parts.append(Part("gaps", KIND_STREAM, codec.encode_stream(gaps, gap_bits, huffman, chunk, range_coding)))
    if isinstance(t, Sparse):
        fields["encoding"] = "sparse"
        vals = values.reshape(-1)[flat].astype("<f4")
        parts.append(Part("values", KIND_ARRAY, vals.tobytes()))
    else:
        labels = _labels(name, t.labels, shape, book.shape[1], check=False)
        kept = labels.reshape(-1)[flat]
        _check_label_range(name, kept, book.shape[1])
        fields["encoding"] = "sparse_shared"
        parts.append(Part("labels", KIND_STREAM, codec.encode_stream(kept, label_bits, huffman, chunk, range_coding)))
    return TensorEntry(name, shape, "float32", **fields), parts


def _shared_csr_parts(
    name, fused, k: int, gap_bits: int, label_bits: int, huffman: bool, chunk, range_coding: bool
) -> list[Part]:
    """The rows, gaps and labels sections of a pruned shared tensor from _compiled_shared_csr's pass."""
    row_counts, gaps, kept, lo, hi = fused
    if kept.size and (lo < 0 or hi >= k):
        raise _fail(name, f"labels must lie in 0..{k - 1} (codebook size {k}), found {lo}..{hi}")
    return [
        Part("rows", KIND_STREAM, rows_stream(row_counts, huffman, chunk, range_coding)),
        Part("gaps", KIND_STREAM, codec.encode_stream(gaps, gap_bits, huffman, chunk, range_coding)),
        Part("labels", KIND_STREAM, codec.encode_stream(kept, label_bits, huffman, chunk, range_coding)),
    ]


ROLES = {
    "raw": ("data",),
    "sparse": ("rows", "gaps", "values"),
    "shared": ("codebook", "labels"),
    "sparse_shared": ("codebook", "rows", "gaps", "labels"),
}
