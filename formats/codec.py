"""Integer streams: fixed-width bit packing (P+Q) and canonical Huffman coding (P+Q+H).

A stream section is: a 16-byte stream header, for Huffman a canonical table (counts per code
length, then the symbols in canonical order), then the payload bits, MSB first in each byte,
padded with zero bits to a whole byte. See SPEC.md, "Stream section".
"""
from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

import numpy as np
from bitarray import bitarray
from bitarray.util import canonical_decode, canonical_huffman

from .cursor import Cursor
from .layout import (
    CODING_FIXED,
    CODING_HUFFMAN,
    MAX_CODE_LENGTH,
    MAX_HUFFMAN_SYMBOLS,
    MAX_SYMBOL_WIDTH,
    STREAM_HEADER_SIZE,
    symbol_bytes,
)

_HEADER = struct.Struct("<BBBBIQ")
_SYMBOL_DTYPE = {1: "<u1", 2: "<u2", 4: "<u4"}


@dataclass(frozen=True)
class StreamInfo:
    """What a stream header and table say, before any payload is decoded."""

    coding: int
    width: int
    count: int
    code_lengths: int
    table_bytes: int
    payload_bytes: int

    @property
    def coding_name(self) -> str:
        return "huffman" if self.coding == CODING_HUFFMAN else "fixed"

    @property
    def fixed_bytes(self) -> int:
        """Bytes of the payload at fixed width (the P+Q form), whatever the stored coding."""
        return (self.count * self.width + 7) // 8


# ---------------------------------------------------------------- fixed width

def _bit_matrix(values: np.ndarray, width: int) -> np.ndarray:
    """(N, width) uint8 bits of non-negative ints < 2**32, MSB first."""
    as_bytes = values.astype(">u4").view(np.uint8).reshape(-1, 4)
    return np.unpackbits(as_bytes, axis=1)[:, 32 - width:]


BLOCK = 1 << 20  # symbols per block: bounds the bit-matrix temporaries to ~32 MB


class _BitWriter:
    """Concatenates bit arrays (uint8 0/1) into bytes, a block at a time."""

    def __init__(self):
        self.chunks: list[bytes] = []
        self.carry = np.zeros(0, dtype=np.uint8)

    def add(self, bits: np.ndarray) -> None:
        bits = np.concatenate([self.carry, bits]) if self.carry.size else bits
        whole = bits.size - bits.size % 8
        self.chunks.append(np.packbits(bits[:whole]).tobytes())
        self.carry = bits[whole:]

    def getvalue(self) -> bytes:
        return b"".join(self.chunks) + np.packbits(self.carry).tobytes()


def _pack_narrow(sym: np.ndarray, width: int) -> bytes:
    """Fixed-width packing for width <= 8: 8 symbols make `width` whole bytes (a 64-bit group)."""
    count = sym.size
    groups = -(-count // 8)
    padded = np.zeros(groups * 8, dtype=np.uint64)
    padded[:count] = sym
    padded = padded.reshape(groups, 8)
    word = np.zeros(groups, dtype=np.uint64)
    for j in range(8):
        word |= padded[:, j] << np.uint64(width * (7 - j))
    out = np.empty((groups, width), dtype=np.uint8)
    for k in range(width):
        out[:, k] = (word >> np.uint64(8 * (width - 1 - k))) & np.uint64(0xFF)
    return out.tobytes()[:(count * width + 7) // 8]


def _unpack_narrow(raw: np.ndarray, count: int, width: int) -> np.ndarray:
    """Inverse of _pack_narrow: uint8 symbols."""
    groups = -(-count // 8)
    padded = np.zeros(groups * width, dtype=np.uint8)
    padded[:raw.size] = raw[:groups * width]
    cols = padded.reshape(groups, width).astype(np.uint64)
    word = np.zeros(groups, dtype=np.uint64)
    for k in range(width):
        word = (word << np.uint64(8)) | cols[:, k]
    out = np.empty((groups, 8), dtype=np.uint8)
    mask = np.uint64((1 << width) - 1)
    for j in range(8):
        out[:, j] = (word >> np.uint64(width * (7 - j))) & mask
    return out.reshape(-1)[:count]


def pack_fixed(symbols: np.ndarray, width: int) -> bytes:
    """Pack non-negative ints < 2**width, `width` bits each, MSB first."""
    sym = np.asarray(symbols).ravel()
    if width == 8:
        return sym.astype(np.uint8).tobytes()
    if width < 8:  # BLOCK is a multiple of 8 symbols, so blocks end on whole bytes
        return b"".join(_pack_narrow(sym[i:i + BLOCK], width) for i in range(0, sym.size, BLOCK))
    out = _BitWriter()
    for i in range(0, sym.size, BLOCK):
        out.add(_bit_matrix(sym[i:i + BLOCK], width).ravel())
    return out.getvalue()


def unpack_fixed(payload, count: int, width: int) -> np.ndarray:
    """The `count` symbols of `width` bits in `payload` (uint8 for width <= 8, else int64)."""
    raw = np.frombuffer(payload, dtype=np.uint8)
    if width == 8:
        return raw[:count].copy()
    if width < 8:
        step = BLOCK * width // 8
        parts = [_unpack_narrow(raw[j * step:(j + 1) * step], min(BLOCK, count - i), width)
                 for j, i in enumerate(range(0, count, BLOCK))]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)
    parts = []
    for i in range(0, count, BLOCK):  # BLOCK symbols are a whole number of bytes
        n = min(BLOCK, count - i)
        start = i * width // 8
        parts.append(_unpack_block(raw[start:start + (n * width + 7) // 8], n, width))
    if not parts:
        return np.zeros(0, dtype=np.uint8 if width < 8 else np.int64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _unpack_block(raw: np.ndarray, count: int, width: int) -> np.ndarray:
    bits = np.unpackbits(raw, count=count * width).reshape(count, width)
    full = 8 if width < 8 else 16 if width <= 16 else 32
    padded = np.zeros((count, full), dtype=np.uint8)
    padded[:, full - width:] = bits
    packed = np.packbits(padded, axis=1)
    out = packed.view({8: np.uint8, 16: ">u2", 32: ">u4"}[full]).reshape(count)
    return out if full == 8 else out.astype(np.int64)


# ---------------------------------------------------------------- Huffman tables

def huffman_table(freq: dict[int, int]) -> tuple[list[int], list[int]]:
    """Canonical (counts per length 1..L, symbols in canonical order) with L <= MAX_CODE_LENGTH.

    bitarray builds the code; when a skewed distribution needs codes longer than the limit,
    the frequencies are halved (floor, at least 1) until it fits: a slightly worse code, never
    an unbounded one.
    """
    while True:
        _, counts, symbols = canonical_huffman(freq)
        if len(counts) - 1 <= MAX_CODE_LENGTH:
            return [int(c) for c in counts[1:]], [int(s) for s in symbols]
        freq = {s: max(1, f >> 1) for s, f in freq.items()}


def canonical_codes(counts: list[int], symbols: list[int]) -> tuple[dict[int, int], dict[int, int]]:
    """(code value, code length) per symbol for a canonical table (DEFLATE convention)."""
    code_of, length_of = {}, {}
    code, k = 0, 0
    for length, n in enumerate(counts, start=1):
        for _ in range(n):
            code_of[symbols[k]] = code
            length_of[symbols[k]] = length
            code += 1
            k += 1
        code <<= 1
    return code_of, length_of


def huffman_payload(sym: np.ndarray, counts: list[int], symbols: list[int]) -> tuple[bytes, int]:
    """The concatenated codes of `sym` (bytes, zero-padded) and their length in bits.

    Vectorized: every code is written left-aligned into an L-bit row, and the rows' first
    `length` bits are kept (a boolean mask in row-major order keeps the stream order).
    """
    code_of, length_of = canonical_codes(counts, symbols)
    index = _symbol_index(symbols)
    code_lut = np.array([code_of[x] for x in symbols], dtype=np.int64)
    len_lut = np.array([length_of[x] for x in symbols], dtype=np.int64)
    longest = len(counts)
    columns = np.arange(longest, dtype=np.int64)[None, :]
    out, total = _BitWriter(), 0
    for i in range(0, sym.size, BLOCK):
        block = index(sym[i:i + BLOCK])
        lengths = len_lut[block]
        bits = _bit_matrix(code_lut[block] << (longest - lengths), longest)
        out.add(bits[columns < lengths[:, None]])
        total += int(lengths.sum())
    return out.getvalue(), total


def _symbol_index(symbols: list[int]):
    """A function mapping symbol values to their position in `symbols` (all must be present).

    A lookup table when the largest symbol is small; a binary search otherwise, so that a
    32-bit symbol never sizes an array.
    """
    top = max(symbols)
    if top < 1 << 16:
        lut = np.zeros(top + 1, dtype=np.int64)
        lut[symbols] = np.arange(len(symbols))
        return lambda values: lut[values]
    order = np.argsort(symbols)
    ranked = np.asarray(symbols, dtype=np.int64)[order]
    return lambda values: order[np.searchsorted(ranked, values)]


def check_table(counts: list[int], symbols: list[int], width: int, cur: Cursor, at: int) -> None:
    """Kraft equality (complete, not over-subscribed), distinct symbols < 2**width."""
    n_len = len(counts)
    if len(symbols) == 1:
        if counts != [1]:
            raise cur.fail("a one-symbol Huffman table must have exactly one code of length 1", at)
    else:
        kraft = sum(c << (n_len - length) for length, c in enumerate(counts, start=1))
        if kraft != 1 << n_len:
            state = "over-subscribed" if kraft > 1 << n_len else "incomplete"
            raise cur.fail(f"Huffman table is {state} (Kraft sum {kraft}/{1 << n_len}, must equal 1)", at)
    if len(set(symbols)) != len(symbols):
        raise cur.fail("Huffman symbol list repeats a symbol", at)
    if max(symbols) >= 1 << width:
        raise cur.fail(f"Huffman symbol {max(symbols)} does not fit the stream's {width}-bit width", at)


# ---------------------------------------------------------------- stream sections

def encode_stream(symbols: np.ndarray, width: int, huffman: bool = True) -> bytes:
    """A stream section for `symbols` (ints in [0, 2**width)): the smaller of fixed and Huffman."""
    sym = np.ascontiguousarray(symbols, dtype=np.int64).ravel()
    count = int(sym.size)
    fixed = pack_fixed(sym, width)
    best = _HEADER.pack(CODING_FIXED, width, 0, 0, 0, count) + fixed
    if not huffman or count == 0:
        return best
    values, freqs = np.unique(sym, return_counts=True)
    if values.size > MAX_HUFFMAN_SYMBOLS:
        return best
    counts, order = huffman_table(dict(zip(values.tolist(), freqs.tolist())))
    payload, _ = huffman_payload(sym, counts, order)
    sb = symbol_bytes(width)
    table = struct.pack(f"<{len(counts)}H", *counts) + np.asarray(order, dtype=_SYMBOL_DTYPE[sb]).tobytes()
    coded = _HEADER.pack(CODING_HUFFMAN, width, len(counts), 0, len(order), count) + table + payload
    return coded if len(coded) < len(best) else best


def read_stream_header(cur: Cursor) -> tuple[StreamInfo, list[int], list[int]]:
    """Parse and validate a stream header and table; the cursor is left at the payload."""
    at = cur.pos
    coding = cur.uint("u8", "stream coding")
    width = cur.uint("u8", "stream symbol width")
    n_len = cur.uint("u8", "stream max code length")
    cur.zeros(1, "stream reserved byte")
    n_sym = cur.uint("u32", "stream Huffman symbol count")
    count = cur.uint("u64", "stream symbol count")
    if not 1 <= width <= MAX_SYMBOL_WIDTH:
        raise cur.fail(f"stream symbol width {width} outside 1..{MAX_SYMBOL_WIDTH}", at + 1)
    counts: list[int] = []
    symbols: list[int] = []
    if coding == CODING_FIXED:
        if n_len or n_sym:
            raise cur.fail("a fixed-width stream must have zero code length and symbol count", at + 2)
        if cur.left != (count * width + 7) // 8:
            raise cur.fail(
                f"fixed-width stream of {count} x {width}-bit symbols needs {(count * width + 7) // 8} "
                f"payload bytes, section has {cur.left}")
    elif coding == CODING_HUFFMAN:
        if not 1 <= n_len <= MAX_CODE_LENGTH:
            raise cur.fail(f"Huffman max code length {n_len} outside 1..{MAX_CODE_LENGTH}", at + 2)
        if not 1 <= n_sym <= MAX_HUFFMAN_SYMBOLS:
            raise cur.fail(f"Huffman symbol count {n_sym} outside 1..{MAX_HUFFMAN_SYMBOLS}", at + 4)
        table_at = cur.pos
        counts = list(struct.unpack(f"<{n_len}H", cur.bytes(2 * n_len, "Huffman code-length counts")))
        if counts[-1] == 0:
            raise cur.fail("Huffman table's longest code length has no codes", table_at)
        if sum(counts) != n_sym:
            raise cur.fail(f"Huffman counts add up to {sum(counts)}, header says {n_sym} symbols", table_at)
        sb = symbol_bytes(width)
        raw = cur.bytes(sb * n_sym, "Huffman symbol list")
        symbols = np.frombuffer(raw, dtype=_SYMBOL_DTYPE[sb]).tolist()
        check_table(counts, symbols, width, cur, table_at)
        if count == 0 or count > 8 * cur.left:
            raise cur.fail(f"Huffman stream declares {count} symbols for {cur.left} payload bytes")
    else:
        raise cur.fail(f"unknown stream coding {coding} (0 fixed, 1 huffman)", at)
    table_bytes = STREAM_HEADER_SIZE + (cur.pos - at - STREAM_HEADER_SIZE)
    info = StreamInfo(coding, width, count, n_len, table_bytes - STREAM_HEADER_SIZE, cur.left)
    return info, counts, symbols


def decode_stream(cur: Cursor) -> np.ndarray:
    """All symbols of the stream section in `cur` (uint8 when width <= 8, else int64).

    Checks the table, the pad bits and that the payload is used exactly.
    """
    info, counts, symbols = read_stream_header(cur)
    at = cur.pos
    payload = cur.bytes(cur.left, "stream payload")
    if info.coding == CODING_FIXED:
        used = info.count * info.width
        out = unpack_fixed(payload, info.count, info.width)
    else:
        out, used = _huffman_decode(payload, info.count, counts, symbols, cur, at)
    _check_pad(payload, used, cur, at)
    return out


def _huffman_decode(payload, count, counts, symbols, cur, at) -> tuple[np.ndarray, int]:
    """bitarray's canonical_decode (C) for the codes; bits used from the code lengths.

    Symbols of <= 8 bits are gathered into a bytearray: the ints are CPython's cached small
    ints, so this runs at canonical_decode's own rate (np.fromiter is ~1.5x slower).
    """
    bits = bitarray(buffer=payload, endian="big")  # shares the file's memory: no copy
    it = itertools.islice(canonical_decode(bits, [0] + counts, symbols), count)
    try:
        if max(symbols) < 256:
            out = np.frombuffer(bytearray(it), dtype=np.uint8)
        else:
            out = np.fromiter(it, dtype=np.int64, count=count)
    except ValueError:
        raise cur.fail(f"Huffman payload ends before its {count} symbols", at) from None
    if out.size != count:
        raise cur.fail(f"Huffman payload ends before its {count} symbols", at)
    _, length_of = canonical_codes(counts, symbols)
    lengths = np.array([length_of[x] for x in symbols], dtype=np.int64)
    if max(symbols) < 1 << 16:
        per_value = np.zeros(max(symbols) + 1, dtype=np.int64)
        per_value[symbols] = lengths
        used = int(np.bincount(out, minlength=per_value.size) @ per_value)
    else:
        used = int(lengths[_symbol_index(symbols)(out)].sum())
    return out, used


def _check_pad(payload, used_bits: int, cur: Cursor, at: int) -> None:
    """The payload holds exactly ceil(used/8) bytes and the bits past `used` are zero."""
    n = len(payload)
    if (used_bits + 7) // 8 != n:
        raise cur.fail(f"stream payload uses {used_bits} bits but has {n} bytes", at)
    spare = n * 8 - used_bits
    if spare and payload[n - 1] & ((1 << spare) - 1):
        raise cur.fail("nonzero pad bits after the last symbol", at + n - 1)
