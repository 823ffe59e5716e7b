"""Exact bytes of a candidate tensor in a .dcz, without writing its payload.

The writer (formats.codec.encode_stream) stores each stream as the smaller of its fixed-width form
and its canonical-Huffman form. A canonical code's lengths follow from the symbol histogram alone
(the same bitarray Huffman / package-merge length limit the writer calls), so the Huffman payload is
sum(frequency x code length) bits; only the chunk index of a long stream needs the symbols in order
(each chunk's bit count sets the index's delta width). Everything here mirrors the writer step by
step, so the sizes equal the written bytes (tests/compressor/budget/test_budget_sizes.py compares
them with real encoding on random and chunked streams).

Measuring the budget solver's candidates this way skips the bit packing of every candidate, and
the CSR streams of a mask are sized once per gap width instead of once per label width. Two steps
are redone here for speed (they were most of the measurement's time): the Huffman code lengths
(the writer's own `codec.huffman_table`, since it too builds bitarray's tree with nodes that compare
in C) and the chunk index's size (`chunk_index_bytes`: the delta width from per-chunk bit sums,
without packing the deltas).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dcz.formats import codec
from dcz.formats.entry import view_2d
from dcz.formats.layout import (
    MAX_HUFFMAN_SYMBOLS,
    STREAM_HEADER_SIZE,
    symbol_bytes,
)
from dcz.formats.tensors import csr_streams

FLOAT32_BYTES = 4
CHUNK_INDEX_HEADER = 16  # C (u32), delta width (u8), 3 reserved, base (u64): SPEC 3.4.1


def stream_bytes(symbols: np.ndarray, width: int, huffman: bool = True, chunk: int | None = None) -> int:
    """len(codec.encode_stream(symbols, width, huffman, chunk)), without encoding the payload."""
    sym = np.ascontiguousarray(symbols, dtype=np.int64).ravel()
    count = int(sym.size)
    if not huffman or count == 0:
        return fixed_stream_bytes(count, width)
    values, freqs = codec.symbol_histogram(sym, width)
    return histogram_stream_bytes(values, freqs, width, lambda: sym, chunk)


def fixed_stream_bytes(count: int, width: int) -> int:
    return STREAM_HEADER_SIZE + (count * width + 7) // 8


def histogram_stream_bytes(
    values: np.ndarray,
    freqs: np.ndarray,
    width: int,
    ordered: Callable[[], np.ndarray],
    chunk: int | None = None,
) -> int:
    """Bytes of the stream whose symbol histogram is (values ascending, freqs > 0); `ordered()`
    gives the symbols in stream order, asked for only when a chunk index must be sized."""
    count = int(freqs.sum())
    fixed = fixed_stream_bytes(count, width)
    if count == 0 or values.size > MAX_HUFFMAN_SYMBOLS:
        return fixed
    freq = dict(zip(values.tolist(), freqs.tolist()))  # ascending, as codec.symbol_histogram gives
    counts, order = codec.huffman_table(freq)
    if chunk is None:
        chunk = codec.policy_chunk(count, counts, order, freq)
    index = 0
    if chunk and count > chunk:
        if len(counts) > codec.CHUNK_CODE_BITS:
            counts, order = codec.chunk_table(freq, counts, order)
        index = chunk_index_bytes(ordered(), width, counts, order, chunk)
    payload_bits = codec.coded_bits(freq, counts, order)
    table = 2 * len(counts) + symbol_bytes(width) * len(order)
    coded = STREAM_HEADER_SIZE + table + index + (payload_bits + 7) // 8
    return coded if coded < fixed else fixed


def chunk_index_bytes(sym: np.ndarray, width: int, counts: list[int], order: list[int], chunk: int) -> int:
    """len(codec.chunk_index(sym, counts, order, chunk)): the deltas' width from per-chunk bit sums."""
    if width > 16:  # no lookup table for wide symbols: the writer's own function
        return len(codec.chunk_index(np.asarray(sym, dtype=np.int64), counts, order, chunk))
    len_lut = np.zeros(1 << width, dtype=np.uint8)
    _, length_of = codec.canonical_codes(counts, order)
    len_lut[list(length_of)] = list(length_of.values())
    full = (sym.size - 1) // chunk  # chunks 0..K-2 are full; the last one's length is implied
    if not full:
        return CHUNK_INDEX_HEADER
    bits = len_lut[sym[: full * chunk]].reshape(full, chunk).sum(axis=1, dtype=np.int64)
    delta = int(bits.max() - bits.min()).bit_length()
    return CHUNK_INDEX_HEADER + (full * delta + 7) // 8


def csr_bytes(mask: np.ndarray, gap_bits: int) -> int:
    """Bytes of the rows and gaps streams of a sparse tensor's mask at this gap width."""
    rows, cols = view_2d(tuple(mask.shape))
    row_counts, gaps, _ = csr_streams(mask.reshape(rows, cols), gap_bits)
    rows_width = max(1, int(row_counts.max()).bit_length()) if row_counts.size else 1
    return stream_bytes(row_counts, rows_width) + stream_bytes(gaps, gap_bits)


def shared_bytes(kept_labels: np.ndarray, codebook_size: int, label_bits: int) -> int:
    """Bytes of a one-group codebook plus the labels stream (the kept labels in row-major order)."""
    return FLOAT32_BYTES * codebook_size + stream_bytes(kept_labels, label_bits)


def raw_bytes(weight: np.ndarray) -> int:
    """Bytes of a float32 tensor stored raw."""
    return FLOAT32_BYTES * int(weight.size)
