"""Decoding a validated tensor-table entry back to a dense numpy array (vectorized)."""

from __future__ import annotations

import numpy as np

from . import native
from .entry import TensorEntry


def csr_flat_indices(row_counts: np.ndarray, gaps: np.ndarray, entry: TensorEntry, fail) -> np.ndarray:
    """Flat indices (into the 2-D view) of the kept entries; checks every CSR rule of SPEC.md.

    Vectorized: each symbol advances the column by d + 1 (entry d) or M (filler); the first
    symbol of each row also jumps to the row's start, so one cumulative sum over the whole
    stream gives every entry's flat index + 1.
    """
    rows, cols, filler = entry.rows, entry.cols, (1 << entry.gap_bits) - 1
    if row_counts.size != rows:
        raise fail("rows", f"row-count stream has {row_counts.size} symbols for {rows} rows")
    if rows and int(row_counts.max()) > gaps.size:
        raise fail("rows", f"a row count exceeds the {gaps.size} gap symbols")
    row_counts = row_counts.astype(np.int64)
    ends = np.cumsum(row_counts)
    if (int(ends[-1]) if rows else 0) != gaps.size:
        raise fail("rows", f"row counts add up to {int(ends[-1]) if rows else 0}, the gap stream has {gaps.size}")
    is_entry = gaps != filler
    nonempty = np.flatnonzero(row_counts)
    if gaps.size == 0:
        if entry.nnz:
            raise fail("gaps", f"gap stream is empty, the tensor table says nnz {entry.nnz}")
        return np.zeros(0, dtype=np.int64)
    first = ends[nonempty] - row_counts[nonempty]
    trailing = ~is_entry[ends[nonempty] - 1]
    if trailing.any():
        raise fail("gaps", f"row {int(nonempty[np.argmax(trailing)])} ends with a filler")
    # int32 arithmetic (half the memory traffic) when no sum below can pass 2^31, even for a
    # hostile stream whose rows overrun: every symbol advances at most M + 1 columns
    index_type = np.int32 if gaps.size * (filler + 1) + rows * cols < 1 << 31 else np.int64
    steps = gaps.astype(index_type)
    steps += is_entry
    span = np.add.reduceat(steps, first)  # columns each non-empty row advances: last entry + 1
    over = span > cols
    if over.any():
        r = int(nonempty[np.argmax(over)])
        raise fail("gaps", f"gaps run past row {r}: column {int(span[np.argmax(over)]) - 1} >= {cols} columns")
    n_entries = int(np.count_nonzero(is_entry))
    if n_entries != entry.nnz:
        raise fail("gaps", f"gap stream holds {n_entries} entries, the tensor table says nnz {entry.nnz}")
    row_start = nonempty * cols
    previous_end = np.zeros(nonempty.size, dtype=np.int64)  # where the cumulative sum stands
    previous_end[1:] = (row_start + span)[:-1]
    steps[first] += (row_start - previous_end).astype(index_type)
    flat = np.cumsum(steps, dtype=index_type)
    if n_entries != gaps.size:  # fillers hold no entry
        flat = flat[is_entry]
    flat -= 1
    return flat


def _codebook(sec, entry) -> np.ndarray:
    return np.frombuffer(sec, dtype="<f4").reshape(entry.groups, entry.codebook_size).astype(np.float32)


def _check_labels(labels: np.ndarray, entry: TensorEntry, fail) -> None:
    k = entry.codebook_size
    if labels.size and int(labels.max()) >= k:
        raise fail("labels", f"label {int(labels.max())} >= codebook size {k}")


def _labels_and_codebook(streams: dict, section, entry: TensorEntry, expected: int, what: str, fail):
    """The label stream, checked for count and range, and the codebook it indexes."""
    labels = streams["labels"]
    if labels.size != expected:
        raise fail("labels", f"label stream has {labels.size} symbols for {what}")
    _check_labels(labels, entry, fail)
    return labels, _codebook(section("codebook"), entry)


def decode_labels_and_codebook(entry: TensorEntry, section, labels: np.ndarray, fail):
    """(labels, codebook (groups, codebook_size)) of a `shared` entry, checked for count and range."""
    return _labels_and_codebook({"labels": labels}, section, entry, entry.numel, f"{entry.numel} elements", fail)


def _alloc(entry: TensorEntry, fail, zeroed: bool = True) -> np.ndarray:
    """The flat float32 output; zeroed=False when the compiled scatter writes every element itself
    (it clears each row just before filling it: the array is written once, not zeroed then scattered)."""
    try:
        return (np.zeros if zeroed else np.empty)(entry.numel, dtype=np.float32)
    except (MemoryError, ValueError):
        raise fail(None, f"cannot allocate {entry.numel} float32 elements") from None


STREAM_ROLES = ("rows", "gaps", "labels")


def stream_roles(entry: TensorEntry) -> list[str]:
    """The entry's stream roles, in decoding order."""
    return [role for role in STREAM_ROLES if role in entry.sections]


def decode_entry(entry: TensorEntry, section, streams: dict, fail) -> np.ndarray:
    """The dense array of `entry`.

    section(role) -> bytes of that part; streams: the entry's decoded streams (role -> symbols);
    fail(role, message) -> FormatError naming the tensor, section and role.
    """
    enc = entry.encoding
    if enc == "raw":
        return (
            np.frombuffer(section("data"), dtype=np.dtype(entry.dtype).newbyteorder("<"))
            .astype(entry.dtype)
            .reshape(entry.shape)
        )
    if entry.numel == 0:  # nothing to decode; rows of a 0-column view must not size anything
        return np.zeros(entry.shape, dtype=np.float32)
    if enc == "shared":
        labels, book = _labels_and_codebook(streams, section, entry, entry.numel, f"{entry.numel} elements", fail)
        if entry.groups == 1:
            out = book[0][labels]
        else:
            rows, cols = entry.rows, entry.cols
            g = (np.arange(rows) // entry.group_rows)[:, None]
            out = book[g, labels.reshape(rows, cols)]
        return out.reshape(entry.shape)
    core = native.core()
    if core is not None:
        return _compiled_sparse(core, entry, section, streams, fail).reshape(entry.shape)
    flat = csr_flat_indices(streams["rows"], streams["gaps"], entry, fail)
    dense = _alloc(entry, fail)
    dense[flat] = _kept_values(entry, section, streams, flat, fail)
    return dense.reshape(entry.shape)


def decode_csr(entry: TensorEntry, section, streams: dict, fail) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr int64 (rows+1), column indices int64, float32 values) of a sparse entry's 2-D view,
    built from its streams without a dense array (the kept entries only, in row-major order)."""
    flat = csr_flat_indices(streams["rows"], streams["gaps"], entry, fail).astype(np.int64)
    values = _kept_values(entry, section, streams, flat, fail)
    rows, cols = entry.rows, max(entry.cols, 1)
    row_of = flat // cols
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of, minlength=rows), out=indptr[1:])
    return indptr, flat - row_of * cols, values


def _kept_values(entry: TensorEntry, section, streams: dict, flat: np.ndarray, fail) -> np.ndarray:
    """float32 value of each kept weight of a sparse entry (flat: their indices in the 2-D view)."""
    if entry.encoding == "sparse":
        return np.frombuffer(section("values"), dtype="<f4").astype(np.float32)
    labels, book = _labels_and_codebook(streams, section, entry, entry.nnz, f"nnz {entry.nnz}", fail)
    if entry.groups == 1:
        return book[0][labels]
    return book[flat // entry.cols // entry.group_rows, labels]


def _compiled_sparse(core, entry: TensorEntry, section, streams: dict, fail) -> np.ndarray:
    """decode_entry's sparse branch through the compiled core: the CSR walk and the codebook gather
    in one pass, every rule of csr_flat_indices checked (the stream lengths here, each symbol there)."""
    rows, gaps = streams["rows"], streams["gaps"]
    if rows.size != entry.rows:
        raise fail("rows", f"row-count stream has {rows.size} symbols for {entry.rows} rows")
    if rows.size and int(rows.max()) > gaps.size:
        raise fail("rows", f"a row count exceeds the {gaps.size} gap symbols")
    total = int(rows.sum(dtype=np.int64))
    if total != gaps.size:
        raise fail("rows", f"row counts add up to {total}, the gap stream has {gaps.size}")
    if entry.encoding == "sparse":
        # a 1.4 file packs its sections without alignment: an unaligned view is copied for the compiled core
        labels, book, book_size = None, np.require(np.frombuffer(section("values"), dtype="<f4"), requirements="A"), 1
    else:
        labels = streams["labels"]
        if labels.size != entry.nnz:
            raise fail("labels", f"label stream has {labels.size} symbols for nnz {entry.nnz}")
        book, book_size = _codebook(section("codebook"), entry), entry.codebook_size
    dense = _alloc(entry, fail, zeroed=False)
    status, row, value = core.scatter(
        _index_array(rows),
        _index_array(gaps),
        None if labels is None else _index_array(labels),
        np.ascontiguousarray(book, dtype=np.float32),
        entry.rows,
        entry.cols,
        entry.gap_bits,
        entry.group_rows if labels is not None and entry.groups > 1 else max(entry.rows, 1),
        book_size,
        dense,
    )
    if status == 1:
        raise fail("gaps", f"row {row} ends with a filler")
    if status == 2:
        raise fail("gaps", f"gaps run past row {row}: column {value} >= {entry.cols} columns")
    if status == 4:
        raise fail("labels", f"label {value} >= codebook size {book_size}")
    if status == 5 or value != entry.nnz:
        raise fail("gaps", f"gap stream holds more or fewer entries than the tensor table's nnz {entry.nnz}")
    return dense


def _index_array(symbols: np.ndarray) -> np.ndarray:
    """A stream's symbols as the compiled core reads them: uint8 or int64, contiguous."""
    if symbols.dtype == np.uint8 or symbols.dtype == np.int64:
        return np.ascontiguousarray(symbols)
    return np.ascontiguousarray(symbols, dtype=np.int64)
