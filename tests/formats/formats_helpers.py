"""Small tensors for the formats tests (plain numpy; deterministic)."""

from __future__ import annotations

import numpy as np

from dcz import formats


def quantized(t) -> np.ndarray:
    """The dense float32 array a writer input stands for (what decoding must return)."""
    if isinstance(t, formats.Raw):
        return np.asarray(t.array)
    if isinstance(t, formats.Sparse):
        return np.where(t.mask, np.asarray(t.values, dtype=np.float32), np.float32(0)).astype(np.float32)
    book = np.asarray(t.codebook, dtype=np.float32)
    labels = np.asarray(t.labels, dtype=np.int64)
    shape = labels.shape
    rows = shape[0] if len(shape) > 1 else 1
    cols = int(np.prod(shape[1:])) if len(shape) > 1 else (shape[0] if shape else 1)
    lab2 = labels.reshape(rows, cols)
    if book.ndim == 1:
        dense = book[lab2] if lab2.size else np.zeros(lab2.shape, np.float32)
    else:
        g = (np.arange(rows) // t.group_rows)[:, None]
        dense = book[g, lab2] if lab2.size else np.zeros(lab2.shape, np.float32)
    dense = dense.reshape(shape).astype(np.float32)
    if isinstance(t, formats.SparseShared):
        dense = np.where(t.mask, dense, np.float32(0)).astype(np.float32)
    return dense


def sample_tensors(seed: int = 0) -> list:
    """One tensor of each encoding, incl. a grouped codebook and a 4-D conv weight."""
    rng = np.random.default_rng(seed)
    mask = rng.random((12, 20)) < 0.2
    labels = rng.integers(0, 8, (12, 20))
    book = np.linspace(-1, 1, 8).astype(np.float32)
    conv_mask = rng.random((4, 2, 3, 3)) < 0.5
    return [
        formats.Raw("bias", rng.standard_normal(7).astype(np.float32)),
        formats.Raw("shape_i64", np.array([1, -1], dtype=np.int64)),
        formats.Sparse("pruned", rng.standard_normal((12, 20)).astype(np.float32), mask, 3),
        formats.Shared("shared", labels, book, 3),
        formats.SparseShared("dc", mask, labels, book, 3, 5),
        formats.SparseShared(
            "conv", conv_mask, rng.integers(0, 4, (4, 2, 3, 3)), np.stack([book[:4], book[4:]]), 2, 2, group_rows=2
        ),
    ]


def sample_file(seed: int = 0, **kw) -> bytes:
    return formats.dumps(sample_tensors(seed), graph=b"graph-bytes", metadata={"user.note": "test"}, **kw)


# ---------------------------------------------------------------- crafting files (hostile tests, fuzz)
import struct
import zlib

from dcz.formats.layout import STREAM_HEADER

# split / join / header_of / with_header: one home, shared with the hostile-file cases
from tools.dev.hostile_files import header_of as header_of
from tools.dev.hostile_files import join, split
from tools.dev.hostile_files import with_header as with_header


def with_section(data: bytes, index: int, payload: bytes) -> bytes:
    secs = split(data)
    secs[index][1] = payload
    return join(secs)


def fix_file_crc(data: bytes) -> bytes:
    """A version-1.4 file (compact container) with its file CRC32 recomputed after an edit."""
    from dcz.formats.container import file_crc

    return data[:12] + struct.pack("<I", file_crc(data)) + data[16:]


def fix_preamble_crc(data: bytes) -> bytes:
    buf = bytearray(data)
    buf[60:64] = struct.pack("<I", zlib.crc32(bytes(buf[:60])))
    return bytes(buf)


def fix_directory_crc(data: bytes) -> bytes:
    count = struct.unpack_from("<I", data, 12)[0]
    buf = bytearray(data)
    buf[24:28] = struct.pack("<I", zlib.crc32(bytes(buf[64 : 64 + 24 * count])))
    return fix_preamble_crc(bytes(buf))


def set_dir_field(data: bytes, index: int, field: str, value: int) -> bytes:
    """Patch one directory entry field (offset, length, crc, kind) and fix the CRCs above it."""
    pos = {"offset": (0, "<Q"), "length": (8, "<Q"), "crc": (16, "<I"), "kind": (20, "<H")}[field]
    buf = bytearray(data)
    struct.pack_into(pos[1], buf, 64 + 24 * index + pos[0], value)
    return fix_directory_crc(bytes(buf))


def stream(
    coding: int, width: int, count: int, payload: bytes, counts=(), symbols=(), sym_fmt="B", n_len=None, n_sym=None
) -> bytes:
    """A stream section built field by field (may be inconsistent on purpose)."""
    n_len = len(counts) if n_len is None else n_len
    n_sym = len(symbols) if n_sym is None else n_sym
    head = STREAM_HEADER.pack(coding, width, n_len, 0, n_sym, count)
    return (
        head + struct.pack(f"<{len(counts)}H", *counts) + struct.pack(f"<{len(symbols)}{sym_fmt}", *symbols) + payload
    )
