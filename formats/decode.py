"""Decoding a validated tensor-table entry back to a dense numpy array (vectorized)."""
from __future__ import annotations

import numpy as np

from . import codec
from .cursor import Cursor


def csr_flat_indices(row_counts: np.ndarray, gaps: np.ndarray, entry: dict, fail) -> np.ndarray:
    """Flat indices (into the 2-D view) of the kept entries; checks every CSR rule of SPEC.md."""
    rows, cols, filler = entry["rows"], entry["cols"], (1 << entry["gap_bits"]) - 1
    if row_counts.size != rows:
        raise fail("rows", f"row-count stream has {row_counts.size} symbols for {rows} rows")
    if rows and int(row_counts.max()) > gaps.size:
        raise fail("rows", f"a row count exceeds the {gaps.size} gap symbols")
    ends = np.cumsum(row_counts)
    if (int(ends[-1]) if rows else 0) != gaps.size:
        raise fail("rows", f"row counts add up to {int(ends[-1]) if rows else 0}, the gap stream has {gaps.size}")
    starts = ends - row_counts
    nonempty = np.flatnonzero(row_counts)
    trailing = gaps[ends[nonempty] - 1] == filler
    if trailing.any():
        raise fail("gaps", f"row {int(nonempty[np.argmax(trailing)])} ends with a filler")
    steps = gaps + (gaps != filler)
    cs0 = np.zeros(gaps.size + 1, dtype=np.int64)
    np.cumsum(steps, out=cs0[1:])
    base = cs0[starts]
    span = cs0[ends] - base
    over = span > cols
    if over.any():
        r = int(np.argmax(over))
        raise fail("gaps", f"gaps run past row {r}: column {int(span[r]) - 1} >= {cols} columns")
    is_entry = gaps != filler
    n_entries = int(np.count_nonzero(is_entry))
    if n_entries != entry["nnz"]:
        raise fail("gaps", f"gap stream holds {n_entries} entries, the tensor table says nnz {entry['nnz']}")
    offset = np.repeat(base - np.arange(rows, dtype=np.int64) * cols, row_counts)
    return (cs0[1:] - offset - 1)[is_entry]


def _codebook(sec, entry) -> np.ndarray:
    return np.frombuffer(sec, dtype="<f4").reshape(entry["groups"], entry["codebook_size"]).astype(np.float32)


def _check_labels(labels: np.ndarray, entry: dict, fail) -> None:
    k = entry["codebook_size"]
    if labels.size and int(labels.max()) >= k:
        raise fail("labels", f"label {int(labels.max())} >= codebook size {k}")


def _group_of_rows(row: np.ndarray, entry: dict) -> np.ndarray | int:
    if entry["groups"] == 1:
        return 0
    return row // entry["group_rows"]


def _alloc(entry: dict, fail) -> np.ndarray:
    try:
        return np.zeros(entry["numel"], dtype=np.float32)
    except (MemoryError, ValueError):
        raise fail(None, f"cannot allocate {entry['numel']} float32 elements") from None


def decode_entry(entry: dict, section, stream_cursor, fail) -> np.ndarray:
    """The dense array of `entry`.

    section(role) -> bytes of that part; stream_cursor(role) -> Cursor over that stream section;
    fail(role, message) -> FormatError naming the tensor, section and role.
    """
    enc = entry["encoding"]
    if enc == "raw":
        return np.frombuffer(section("data"), dtype=np.dtype(entry["dtype"]).newbyteorder("<")) \
            .astype(entry["dtype"]).reshape(entry["shape"])
    streams = {}
    for role in ("rows", "gaps", "labels"):
        if role in entry["sections"]:
            streams[role] = codec.decode_stream(stream_cursor(role))
    out = None
    if enc == "shared":
        labels = streams["labels"]
        if labels.size != entry["numel"]:
            raise fail("labels", f"label stream has {labels.size} symbols for {entry['numel']} elements")
        _check_labels(labels, entry, fail)
        book = _codebook(section("codebook"), entry)
        if entry["groups"] == 1:
            out = book[0][labels]
        else:
            rows, cols = entry["rows"], entry["cols"]
            g = (np.arange(rows) // entry["group_rows"])[:, None]
            out = book[g, labels.reshape(rows, cols)]
        return out.reshape(entry["shape"])
    flat = csr_flat_indices(streams["rows"], streams["gaps"], entry, fail)
    dense = _alloc(entry, fail)
    if enc == "sparse":
        dense[flat] = np.frombuffer(section("values"), dtype="<f4")
    else:
        labels = streams["labels"]
        if labels.size != entry["nnz"]:
            raise fail("labels", f"label stream has {labels.size} symbols for nnz {entry['nnz']}")
        _check_labels(labels, entry, fail)
        book = _codebook(section("codebook"), entry)
        g = _group_of_rows(flat // max(entry["cols"], 1), entry)
        dense[flat] = book[g, labels]
    return dense.reshape(entry["shape"])
