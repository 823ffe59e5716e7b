"""Exact bytes of a candidate tensor in a .dcz, without writing its payload.

The writer (formats.codec.encode_stream) stores each stream as the smaller of its fixed-width form
and its canonical-Huffman form. A canonical code's lengths follow from the symbol histogram alone
(the same bitarray Huffman / package-merge length limit the writer calls), so the Huffman payload is
sum(frequency x code length) bits; only the chunk index of a long stream needs the symbols in order
(each chunk's bit count sets the index's delta width). Everything here mirrors the writer step by
step and calls its own table builders, so the sizes equal the written bytes (tests/compressor/
test_budget_sizes.py compares them with real encoding on random and chunked streams).

Measuring the budget solver's candidates this way skips the bit packing of every candidate, and
the CSR streams of a mask are sized once per gap width instead of once per label width.
"""

from __future__ import annotations

import numpy as np

from dcz.formats import codec
from dcz.formats.entry import view_2d
from dcz.formats.layout import MAX_HUFFMAN_SYMBOLS, STREAM_HEADER_SIZE, symbol_bytes
from dcz.formats.tensors import csr_streams

FLOAT32_BYTES = 4


def stream_bytes(symbols: np.ndarray, width: int, huffman: bool = True, chunk: int | None = None) -> int:
    """len(codec.encode_stream(symbols, width, huffman, chunk)), without encoding the payload."""
    sym = np.ascontiguousarray(symbols, dtype=np.int64).ravel()
    count = int(sym.size)
    fixed = STREAM_HEADER_SIZE + (count * width + 7) // 8
    if not huffman or count == 0:
        return fixed
    values, freqs = codec.symbol_histogram(sym, width)
    if values.size > MAX_HUFFMAN_SYMBOLS:
        return fixed
    freq = dict(zip(values.tolist(), freqs.tolist()))
    counts, order = codec.huffman_table(freq)
    if chunk is None:
        chunk = codec.policy_chunk(count, counts, order, freq)
    index = 0
    if chunk and count > chunk:
        if len(counts) > codec.CHUNK_CODE_BITS:
            counts, order = codec.chunk_table(freq, counts, order)
        index = len(codec.chunk_index(sym, counts, order, chunk))
    payload_bits = codec.coded_bits(freq, counts, order)
    table = 2 * len(counts) + symbol_bytes(width) * len(order)
    coded = STREAM_HEADER_SIZE + table + index + (payload_bits + 7) // 8
    return coded if coded < fixed else fixed


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
