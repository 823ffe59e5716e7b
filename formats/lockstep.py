"""Table-driven decoding of many canonical-Huffman chunks at once (the chunked coding, SPEC.md 3.4.1).

Why this exists: bitarray's `canonical_decode` walks one symbol at a time in C, ~35-40M
symbols/s on this machine, and numpy cannot speed up one sequential walk. A chunked stream
records where each chunk of C symbols starts, so every chunk ("lane") can be decoded at once:
one numpy step reads the next code of every lane through a 2^L-entry lookup table. With
thousands of lanes per step numpy's per-call cost fades and the walk runs ~2x faster than
bitarray (docs/benchmarks/formats.md). Several streams share one walk: each lane carries
its own table offset and window shift.

Nothing here trusts the input: every table window decodes to some entry (complete codes) or
to length 0 (the one-symbol table's unused code), reads past a payload are clipped to its
padded end, and the caller checks that every lane ended exactly where the index says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_BATCH_BYTES = 1 << 28  # positions are uint32 bit offsets: keep every batch under 2^31 bits


def entry_layout(values_max: int) -> tuple[int, type]:
    """(shift, dtype) of table entries value | code length << shift: uint16 entries when every
    value fits 8 bits (halves the table and entry traffic), else uint32."""
    return (8, np.uint16) if values_max < 256 else (16, np.uint32)


def lookup_table(counts: list[int], values: np.ndarray, shift: int = 16, dtype=np.uint32) -> np.ndarray:
    """The entry for every L-bit window: values[rank] | code length << shift (length 0: no code).

    `counts` are the codes per length 1..L of a canonical table; `values` (< 2^shift) are what an
    entry holds for each rank: the symbols themselves, or their ranks when a symbol is wider.
    """
    n_len = len(counts)
    first, offset, code, rank = [], [], 0, 0
    for n in counts:
        first.append(code)
        offset.append(rank)
        code = (code + n) << 1
        rank += n
    # codes of length l are [first_l, first_l + counts_l); left-justified to L bits the
    # limits increase with l, so a window's code length is one binary search away
    limits = np.array([(f + n) << (n_len - 1 - i) for i, (f, n) in enumerate(zip(first, counts))], dtype=np.int64)
    window = np.arange(1 << n_len, dtype=np.int64)
    length = np.searchsorted(limits, window, side="right") + 1
    valid = length <= n_len
    length = np.minimum(length, n_len)
    ranks = np.asarray(offset)[length - 1] + (window >> (n_len - length)) - np.asarray(first)[length - 1]
    ranks = np.where(valid, ranks, 0)
    entry = np.asarray(values, dtype=np.int64)[ranks] | (length << shift)
    return np.where(valid, entry, 0).astype(dtype)


@dataclass
class Lanes:
    """One stream's part of a walk: its payload, canonical table and the start bit of each chunk."""

    payload: object  # bytes-like
    counts: list  # codes per length 1..L
    values: np.ndarray  # what a table entry holds per rank (< 2^16)
    starts: np.ndarray  # int64 bit offset of each chunk in the payload, starts[0] == 0


def byte_windows(payloads: list) -> tuple[np.ndarray, list[int]]:
    """Big-endian 32-bit windows at every byte offset of the payloads laid end to end,
    and the byte offset of each payload (4 zero bytes after each, so no window leaves it)."""
    offsets, total = [], 0
    for p in payloads:
        offsets.append(total)
        total += len(p) + 4
    raw = np.zeros(total + 3, dtype=np.uint8)
    for p, at in zip(payloads, offsets):
        raw[at : at + len(p)] = np.frombuffer(p, dtype=np.uint8)
    # an overlapping big-endian view (stride 1 byte) read out in one pass: ~10x faster than
    # assembling the four bytes with shifts
    return np.ndarray((total,), dtype=">u4", buffer=raw, strides=(1,)).astype(np.uint32), offsets


def walk(streams: list[Lanes], steps: int) -> tuple[np.ndarray, np.ndarray, list[slice], int]:
    """Decode `steps` codes in every lane of every stream.

    Returns (entries (steps, lanes), end bit of every lane relative to its payload, the lane
    slice of each stream, the entries' length shift: an entry is value | code length << shift).
    A lane that runs past its chunk keeps decoding the bits after it (or zeros past the
    payload); the caller keeps only what it asked for.
    """
    words, byte_at = byte_windows([s.payload for s in streams])
    shift_len, dtype = entry_layout(max(int(s.values.max()) for s in streams))
    tables, table_at, total = [], [], 0
    for s in streams:
        tables.append(lookup_table(s.counts, s.values, shift_len, dtype))
        table_at.append(total)
        total += tables[-1].size
    table = np.concatenate(tables) if len(tables) > 1 else tables[0]
    sizes = [s.starts.size for s in streams]
    slices, lo = [], 0
    for n in sizes:
        slices.append(slice(lo, lo + n))
        lo += n
    origin = np.repeat(np.asarray(byte_at, dtype=np.int64) * 8, sizes)
    pos = (np.concatenate([s.starts for s in streams]) + origin).astype(np.uint32)
    if len({len(s.counts) for s in streams}) == 1:
        shift = np.uint32(32 - len(streams[0].counts))
    else:
        shift = np.repeat(np.asarray([32 - len(s.counts) for s in streams], dtype=np.uint32), sizes)
    base = None
    if len(streams) > 1:
        base = np.repeat(np.asarray(table_at, dtype=np.uint32), sizes)
    out = np.empty((steps, pos.size), dtype=dtype)
    index = np.empty(pos.size, dtype=np.uint32)
    window = np.empty(pos.size, dtype=np.uint32)
    length = np.empty(pos.size, dtype=dtype)  # entries' dtype: no cast when it is split off
    take_word, take_entry = words.take, table.take  # bound methods: skip np.take's Python wrapper
    for step in range(steps):
        np.right_shift(pos, 3, out=index)
        take_word(index, out=window, mode="clip")
        np.bitwise_and(pos, 7, out=index)
        np.left_shift(window, index, out=window)
        np.right_shift(window, shift, out=window)
        if base is not None:
            np.add(window, base, out=window)
        row = out[step]
        take_entry(window, out=row, mode="clip")
        np.right_shift(row, shift_len, out=length)
        np.add(pos, length, out=pos)
    ends = pos.astype(np.int64) - origin
    return out, ends, slices, shift_len
