"""Integer streams: fixed-width bit packing (P+Q) and canonical Huffman coding (P+Q+H).

A stream section is: a 16-byte stream header, for Huffman a canonical table (counts per code
length, then the symbols in canonical order), then the payload bits, MSB first in each byte,
padded with zero bits to a whole byte. See SPEC.md, "Stream section".
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import NamedTuple

import numpy as np
from bitarray import bitarray
from bitarray.util import canonical_decode

from . import lockstep, native, range_coder
from .cursor import Cursor, varint
from .layout import (
    CODING_CHUNKED,
    CODING_FIXED,
    CODING_HUFFMAN,
    CODING_RANGE,
    MAX_CHUNKED_CODE_LENGTH,
    MAX_CODE_LENGTH,
    MAX_HUFFMAN_SYMBOLS,
    MAX_INDEX_WIDTH,
    MAX_RANGE_SYMBOLS,
    MAX_RANGE_WIDTH,
    MAX_SYMBOL_WIDTH,
    STREAM_HEADER,
    STREAM_HEADER_SIZE,
    symbol_bytes,
)
from .length_limit import canonical_table, limited_lengths

_INDEX = struct.Struct("<IB3xQ")  # symbols per chunk C, delta width w, reserved, base (SPEC 3.4.1)

# Writer policy for the chunked coding: streams shorter than this stay plain Huffman (bitarray
# decodes them in ~1.5 ms; the index would only cost bytes), and a chunk spans ~2 kbit so the
# index adds ~0.5% to the payload.
CHUNK_MIN_SYMBOLS = 1 << 16
CHUNK_TARGET_BITS = 2048
# Codes of chunked streams are limited to 12 bits when that costs at most 0.1% of the payload,
# else to the next length (up to 16) that does: the decoder's lookup tables (2^L entries per
# stream, all streams of a walk together) then stay in the L2 cache; at 16 bits everywhere a
# resnet18 walk ran ~2x slower.
CHUNK_CODE_BITS = 12
CHUNK_LIMIT_LOSS = 0.001
_SYMBOL_DTYPE = {1: "<u1", 2: "<u2", 4: "<u4"}
# Symbol arrays the compiled core reads as they are (labels and gaps are bytes: no int64 copy).
_CORE_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.int64))


@dataclass(frozen=True)
class StreamInfo:
    """What a stream header and table say, before any payload is decoded."""

    coding: int
    width: int
    count: int
    code_lengths: int  # Huffman: the longest code length L; range coding: the adaptation shift
    table_bytes: int  # Huffman table, and for the chunked coding its chunk index too
    payload_bytes: int
    chunk: int = 0  # chunked coding: symbols per chunk C
    starts: np.ndarray | None = field(default=None, compare=False, repr=False)  # bit where each chunk starts
    context: int = 0  # range coding: its context model (0 one bit tree, 1 one per previous symbol)

    @property
    def coding_name(self) -> str:
        names = {CODING_FIXED: "fixed", CODING_HUFFMAN: "huffman", CODING_CHUNKED: "huffman-chunked"}
        return names.get(self.coding, "range")

    @property
    def fixed_bytes(self) -> int:
        """Bytes of the payload at fixed width (the P+Q form), whatever the stored coding."""
        return (self.count * self.width + 7) // 8


class StreamHeader(NamedTuple):
    """A stream section's header as read_stream_header validated it, and where its payload starts."""

    info: StreamInfo
    counts: list[int]  # canonical Huffman table: codes per length 1..L (empty for fixed width)
    symbols: list[int]  # the table's symbols in canonical order
    payload_at: int  # absolute offset of the payload in the cursor's buffer


# ---------------------------------------------------------------- fixed width


def _bit_matrix(values: np.ndarray, width: int) -> np.ndarray:
    """(N, width) uint8 bits of non-negative ints < 2**32, MSB first."""
    as_bytes = values.astype(">u4").view(np.uint8).reshape(-1, 4)
    return np.unpackbits(as_bytes, axis=1)[:, 32 - width :]


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
    return out.tobytes()[: (count * width + 7) // 8]


def _unpack_narrow(raw: np.ndarray, count: int, width: int) -> np.ndarray:
    """Inverse of _pack_narrow: uint8 symbols."""
    groups = -(-count // 8)
    padded = np.zeros(groups * width, dtype=np.uint8)
    padded[: raw.size] = raw[: groups * width]
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
    core = native.core()
    if core is not None:
        sym = stream_symbols(sym, core)
        out = bytearray((sym.size * width + 7) // 8)
        core.pack(sym, width, out, sym.itemsize)
        return bytes(out)
    if width < 8:  # BLOCK is a multiple of 8 symbols, so blocks end on whole bytes
        return b"".join(_pack_narrow(sym[i : i + BLOCK], width) for i in range(0, sym.size, BLOCK))
    out = _BitWriter()
    for i in range(0, sym.size, BLOCK):
        out.add(_bit_matrix(sym[i : i + BLOCK], width).ravel())
    return out.getvalue()


def pack_fixed_into(symbols: np.ndarray, width: int, out) -> None:
    """pack_fixed's bytes written into `out`, a writable buffer of exactly ceil(n * width / 8) bytes (no copy
    of the packed bytes: the streamed writer packs each block of a label stream straight into its place)."""
    sym = np.asarray(symbols).ravel()
    view = memoryview(out).cast("B")
    if len(view) != (sym.size * width + 7) // 8:
        raise ValueError(f"pack_fixed_into: {len(view)} bytes for {sym.size} symbols of {width} bits")
    core = native.core()
    if width == 8:
        view[:] = np.ascontiguousarray(sym.astype(np.uint8, copy=False))
    elif core is not None:
        sym = stream_symbols(sym, core)
        core.pack(sym, width, view, sym.itemsize)
    else:
        view[:] = pack_fixed(sym, width)


def unpack_fixed(payload, count: int, width: int) -> np.ndarray:
    """The `count` symbols of `width` bits in `payload` (uint8 for width <= 8, else int64)."""
    raw = np.frombuffer(payload, dtype=np.uint8)
    if width == 8:
        return raw[:count].copy()
    core = native.core()
    if core is not None and count:
        out = np.empty(count, dtype=np.uint8 if width < 8 else np.int64)
        if core.unpack(raw, count, width, out, out.itemsize):  # False: a short payload, numpy decides
            return out
    if width < 8:
        step = BLOCK * width // 8
        parts = [
            _unpack_narrow(raw[j * step : (j + 1) * step], min(BLOCK, count - i), width)
            for j, i in enumerate(range(0, count, BLOCK))
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)
    parts = []
    for i in range(0, count, BLOCK):  # BLOCK symbols are a whole number of bytes
        n = min(BLOCK, count - i)
        start = i * width // 8
        parts.append(_unpack_block(raw[start : start + (n * width + 7) // 8], n, width))
    if not parts:
        return np.zeros(0, dtype=np.uint8 if width < 8 else np.int64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _unpack_block(raw: np.ndarray, count: int, width: int) -> np.ndarray:
    bits = np.unpackbits(raw, count=count * width).reshape(count, width)
    full = 8 if width < 8 else 16 if width <= 16 else 32
    padded = np.zeros((count, full), dtype=np.uint8)
    padded[:, full - width :] = bits
    packed = np.packbits(padded, axis=1)
    out = packed.view({8: np.uint8, 16: ">u2", 32: ">u4"}[full]).reshape(count)
    return out if full == 8 else out.astype(np.int64)


# ---------------------------------------------------------------- Huffman tables


class _Node(int):
    """A Huffman tree node whose value is its frequency: heapq compares it in C, with the same
    outcome as bitarray's Node.__lt__ (freq < freq), so the heap evolves exactly as bitarray's."""


def huffman_table(freq: dict[int, int], limit: int = MAX_CODE_LENGTH) -> tuple[list[int], list[int]]:
    """Canonical (counts per length 1..L, symbols in canonical order) with L <= limit.

    The Huffman code of bitarray.util.canonical_huffman (its heap algorithm, depth-first lengths, a
    stable sort by length: the same table, tested against it) with int nodes that heapq compares in C
    instead of Python-level comparisons (~5x faster; the writer builds one table per stream). When a
    skewed distribution needs codes longer than the limit, package-merge (formats/length_limit.py)
    gives the best code within it instead.
    """
    if len(freq) == 1:
        return [1], list(freq)
    heap: list[_Node] = []
    for sym, f in freq.items():
        leaf = _Node(f)
        leaf.symbol = sym
        heappush(heap, leaf)
    while len(heap) > 1:
        first = heappop(heap)
        parent = _Node(first + (second := heappop(heap)))
        parent.child = (first, second)
        heappush(heap, parent)
    lengths: list[tuple[int, int]] = []  # (symbol, length) in bitarray's traversal order
    stack = [(heap[0], 0)]
    while stack:
        node, depth = stack.pop()
        child = getattr(node, "child", None)
        if child is None:
            lengths.append((node.symbol, depth))
        else:  # child[0] first, as bitarray's recursive traverse
            stack.append((child[1], depth + 1))
            stack.append((child[0], depth + 1))
    lengths.sort(key=lambda item: item[1])
    if lengths[-1][1] > limit:
        keys = sorted(freq)
        limited = limited_lengths(np.array([freq[k] for k in keys], dtype=np.float64), limit)
        return canonical_table(keys, limited)
    counts = [0] * lengths[-1][1]
    for _, length in lengths:
        counts[length - 1] += 1
    return counts, [int(sym) for sym, _ in lengths]


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
    core = native.core()
    if core is not None:
        _, payload, total = _compiled_codes(core, stream_symbols(sym, core), counts, symbols, 0, write=True)
        return payload, total
    code_of, length_of = canonical_codes(counts, symbols)
    index = _symbol_index(symbols)
    code_lut = np.array([code_of[x] for x in symbols], dtype=np.int64)
    len_lut = np.array([length_of[x] for x in symbols], dtype=np.int64)
    longest = len(counts)
    columns = np.arange(longest, dtype=np.int64)[None, :]
    out, total = _BitWriter(), 0
    for i in range(0, sym.size, BLOCK):
        block = index(sym[i : i + BLOCK])
        lengths = len_lut[block]
        bits = _bit_matrix(code_lut[block] << (longest - lengths), longest)
        out.add(bits[columns < lengths[:, None]])
        total += int(lengths.sum())
    return out.getvalue(), total


def stream_symbols(symbols, core) -> np.ndarray:
    """`symbols` flat and contiguous: as they are when the compiled core reads their type, else int64."""
    sym = np.asarray(symbols).ravel()
    if core is not None and sym.dtype in _CORE_DTYPES:
        return np.ascontiguousarray(sym)
    return np.ascontiguousarray(sym, dtype=np.int64)


def _compiled_codes(core, sym: np.ndarray, counts: list[int], order: list[int], chunk: int, write: bool, total=None):
    """(bits of each full chunk, payload or None, payload bits) in one compiled pass over `sym`.

    The code tables are indexed by symbol value when the largest symbol is < 2^16 (no rank array),
    else by rank (the symbols mapped through _symbol_index first). `total` (payload bits, known from
    the histogram) sizes the payload; without it a counting pass finds it."""
    code_of, length_of = canonical_codes(counts, order)
    top = max(order)
    if top < 1 << 16:
        keys, slots = sym, order
        codes, lengths = np.zeros(top + 1, dtype=np.uint32), np.zeros(top + 1, dtype=np.uint8)
    else:
        keys, slots = _symbol_index(order)(sym).astype(np.uint32), range(len(order))
        codes, lengths = np.zeros(len(order), dtype=np.uint32), np.zeros(len(order), dtype=np.uint8)
    codes[list(slots)] = [code_of[s] for s in order]
    lengths[list(slots)] = [length_of[s] for s in order]
    bits = np.zeros((sym.size - 1) // chunk if chunk and sym.size else 0, dtype=np.int64)
    if not write:
        return bits, None, core.huffman_encode(keys, keys.itemsize, codes, lengths, chunk, bits, None)
    if total is None:
        total = core.huffman_encode(keys, keys.itemsize, codes, lengths, 0, np.zeros(0, np.int64), None)
    out = bytearray((total + 7) // 8)
    written = core.huffman_encode(keys, keys.itemsize, codes, lengths, chunk, bits, out)
    assert written == total  # the core wrote exactly the bits the histogram predicts
    return bits, bytes(out), total


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


def encode_stream(
    symbols: np.ndarray, width: int, huffman: bool = True, chunk: int | None = None, range_coding: bool = False
) -> bytes:
    """A stream section for `symbols` (ints in [0, 2**width)): the smaller of fixed and Huffman.

    chunk: symbols per chunk of the chunked Huffman coding (version 1.1); None picks by the
    writer policy above, 0 never chunks (a file version-1.0 readers can read).
    range_coding: also try the adaptive range coding (version 1.3, SPEC 3.4.2) on streams of byte
    symbols of at most MAX_RANGE_SYMBOLS, and keep it when it is smaller (needs huffman=True).
    """
    core = native.core()
    sym = stream_symbols(symbols, core)
    count = int(sym.size)
    if not huffman or count == 0:
        return _fixed_section(sym, width)
    values, freqs = symbol_histogram(sym, width)
    if values.size > MAX_HUFFMAN_SYMBOLS:  # wider than the range coding's 8 bits too
        return _fixed_section(sym, width)
    freq = dict(zip(values.tolist(), freqs.tolist()))
    counts, order = huffman_table(freq)
    if chunk is None:
        chunk = policy_chunk(count, counts, order, freq)
    coding, step = CODING_HUFFMAN, 0
    if chunk and count > chunk:
        coding, step = CODING_CHUNKED, chunk
        if len(counts) > CHUNK_CODE_BITS:
            counts, order = chunk_table(freq, counts, order)
    if core is not None:  # the payload and the chunk bits in one pass
        bits, payload, _ = _compiled_codes(core, sym, counts, order, step, True, coded_bits(freq, counts, order))
        index = index_bytes(bits, step) if step else b""
    else:
        index = chunk_index(sym, counts, order, step) if step else b""
        payload, _ = huffman_payload(sym, counts, order)
    sb = symbol_bytes(width)
    table = struct.pack(f"<{len(counts)}H", *counts) + np.asarray(order, dtype=_SYMBOL_DTYPE[sb]).tobytes()
    coded = STREAM_HEADER.pack(coding, width, len(counts), 0, len(order), count) + table + index + payload
    fixed_size = STREAM_HEADER_SIZE + (count * width + 7) // 8
    best = coded if len(coded) < fixed_size else _fixed_section(sym, width)
    return _range_if_smaller(sym, width, best) if range_coding else best


def _range_if_smaller(sym: np.ndarray, width: int, best: bytes) -> bytes:
    """The range-coded section (coding 3, version 1.3) of a stream of byte symbols when it is smaller than
    `best` with its best model (adaptation shift and context; the first of range_coder.models on a tie);
    else `best`."""
    count = int(sym.size)
    if width > MAX_RANGE_WIDTH or not 1 <= count <= MAX_RANGE_SYMBOLS:
        return best
    core = native.core()
    for shift, context in range_coder.models(width):
        if core is not None:
            payload = core.range_encode(sym, sym.itemsize, width, shift, context)
        else:
            payload = range_coder.encode(sym, width, shift, context)
        if STREAM_HEADER_SIZE + len(payload) < len(best):
            best = STREAM_HEADER.pack(CODING_RANGE, width, shift, 0, context, count) + payload
    return best


def _fixed_section(sym: np.ndarray, width: int) -> bytes:
    return STREAM_HEADER.pack(CODING_FIXED, width, 0, 0, 0, int(sym.size)) + pack_fixed(sym, width)


def symbol_histogram(sym: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values, their counts), ascending; a bincount (no sort) when the alphabet is small."""
    if width <= 16:
        core = native.core()
        if core is not None and sym.dtype in _CORE_DTYPES and sym.flags.c_contiguous:
            counts = np.zeros(1 << width, dtype=np.int64)
            if core.histogram(sym, sym.itemsize, counts):  # False: a symbol >= 2^width, numpy decides
                values = np.flatnonzero(counts)
                return values, counts[values]
        counts = np.bincount(sym, minlength=1 << width)
        values = np.flatnonzero(counts)
        return values, counts[values]
    return np.unique(sym, return_counts=True)


def chunk_table(freq: dict[int, int], counts: list[int], order: list[int]) -> tuple[list[int], list[int]]:
    """The table of a chunked stream: the shortest length limit from CHUNK_CODE_BITS up to
    MAX_CHUNKED_CODE_LENGTH whose optimal limited code costs at most CHUNK_LIMIT_LOSS more bits
    than the unlimited Huffman code (small tables decode faster; bytes come first)."""
    best = coded_bits(freq, counts, order)
    for limit in range(CHUNK_CODE_BITS, MAX_CHUNKED_CODE_LENGTH + 1):
        if len(freq) > 1 << limit:
            continue
        limited = huffman_table(freq, limit)
        if limit == MAX_CHUNKED_CODE_LENGTH or coded_bits(freq, *limited) <= best * (1 + CHUNK_LIMIT_LOSS):
            return limited
    raise AssertionError("unreachable: the last limit always returns")


def coded_bits(freq: dict[int, int], counts: list[int], order: list[int]) -> int:
    _, length_of = canonical_codes(counts, order)
    return sum(f * length_of[s] for s, f in freq.items())


def policy_chunk(count: int, counts: list[int], order: list[int], freq: dict[int, int]) -> int:
    """Symbols per chunk for a stream of `count` symbols: 0 (plain Huffman) below CHUNK_MIN_SYMBOLS,
    else the power of two nearest above CHUNK_TARGET_BITS / mean code length, in 64..4096."""
    if count < CHUNK_MIN_SYMBOLS:
        return 0
    mean_bits = coded_bits(freq, counts, order) / count
    want = max(1, int(np.ceil(CHUNK_TARGET_BITS / mean_bits)))
    return int(min(4096, max(64, 1 << (want - 1).bit_length())))


def chunk_index(sym: np.ndarray, counts: list[int], order: list[int], chunk: int) -> bytes:
    """The chunk index of SPEC 3.4.1: C, w, base, then (K-1) w-bit deltas (chunk bits - base)."""
    core = native.core()
    if core is not None:
        bits, _, _ = _compiled_codes(core, stream_symbols(sym, core), counts, order, chunk, write=False)
        return index_bytes(bits, chunk)
    _, length_of = canonical_codes(counts, order)
    index = _symbol_index(order)
    len_lut = np.array([length_of[x] for x in order], dtype=np.uint8)
    full = (sym.size - 1) // chunk  # chunks 0..K-2 are full; the last one's length is implied
    bits = np.zeros(full, dtype=np.int64)
    step = max(1, BLOCK // chunk)  # chunks per block: bounds the per-symbol temporaries
    for j in range(0, full, step):
        n = min(step, full - j)
        lens = len_lut[index(sym[j * chunk : (j + n) * chunk])]
        bits[j : j + n] = lens.reshape(n, chunk).sum(axis=1, dtype=np.int64)
    return index_bytes(bits, chunk)


def index_bytes(bits: np.ndarray, chunk: int) -> bytes:
    """The chunk index from the bits of each full chunk (chunks 0..K-2)."""
    full = bits.size
    base = int(bits.min()) if full else 0
    width = int(bits.max() - base).bit_length() if full else 0
    return _INDEX.pack(chunk, width, base) + (pack_fixed(bits - base, width) if width else b"")


def read_stream_header(cur: Cursor, compact: bool = False) -> StreamHeader:
    """Parse and validate a stream header, table and chunk index; the cursor is left at the payload.

    compact: the header of a version-1.4 file (SPEC 2.6.5): coding, width and L bytes, then S and N as
    varints, no reserved byte; the rest of the section is the same."""
    at = cur.pos
    if compact:
        coding = cur.uint("u8", "stream coding")
        width = cur.uint("u8", "stream symbol width")
        n_len = cur.uint("u8", "stream code length")
        reserved, sym_at = 0, cur.pos
        n_sym = cur.varint("stream table symbols", 0xFFFFFFFF)
        count_at = cur.pos
        count = cur.varint("stream symbol count")
    else:
        cur.need(STREAM_HEADER_SIZE, "stream header")  # then one unpack for its six fields
        coding, width, n_len, reserved, n_sym, count = STREAM_HEADER.unpack_from(cur.buf, at)
        cur.pos += STREAM_HEADER_SIZE
        sym_at, count_at = at + 4, at + 8
    header_size = cur.pos - at
    if reserved:
        raise cur.fail("stream reserved byte must be zero", at + 3)
    if not 1 <= width <= MAX_SYMBOL_WIDTH:
        raise cur.fail(f"stream symbol width {width} outside 1..{MAX_SYMBOL_WIDTH}", at + 1)
    counts: list[int] = []
    symbols: list[int] = []
    chunk, starts, context = 0, None, 0
    if coding == CODING_FIXED:
        if n_len or n_sym:
            raise cur.fail("a fixed-width stream must have zero code length and symbol count", at + 2)
        if cur.left != (count * width + 7) // 8:
            raise cur.fail(
                f"fixed-width stream of {count} x {width}-bit symbols needs {(count * width + 7) // 8} "
                f"payload bytes, section has {cur.left}"
            )
    elif coding in (CODING_HUFFMAN, CODING_CHUNKED):
        longest = MAX_CODE_LENGTH if coding == CODING_HUFFMAN else MAX_CHUNKED_CODE_LENGTH
        counts, symbols = _read_table(cur, at, sym_at, width, n_len, n_sym, longest)
        if coding == CODING_CHUNKED:
            chunk, starts = _read_chunk_index(cur, count, n_len)
        if count == 0 or count > 8 * cur.left:
            raise cur.fail(f"Huffman stream declares {count} symbols for {cur.left} payload bytes")
        if starts is not None and int(starts[-1]) + (count - (starts.size - 1) * chunk) > 8 * cur.left:
            raise cur.fail(
                f"chunk index puts the last chunk at payload bit {int(starts[-1])}, past what its "
                f"{count - (starts.size - 1) * chunk} symbols can fit in {cur.left} payload bytes"
            )
    elif coding == CODING_RANGE:
        _check_range_header(cur, at, sym_at, count_at, width, n_len, n_sym, count)
        context = n_sym
    else:
        raise cur.fail(f"unknown stream coding {coding} (0 fixed, 1 huffman, 2 chunked huffman, 3 range)", at)
    table_bytes = cur.pos - at - header_size
    info = StreamInfo(coding, width, count, n_len, table_bytes, cur.left, chunk, starts, context)
    return StreamHeader(info, counts, symbols, cur.pos)


def compact_stream(section: bytes) -> bytes:
    """A stream section of the 16-byte header form with the compact header of version 1.4 (SPEC 2.6.5)."""
    coding, width, n_len, _, n_sym, count = STREAM_HEADER.unpack_from(section)
    return bytes([coding, width, n_len]) + varint(n_sym) + varint(count) + section[STREAM_HEADER_SIZE:]


def _check_range_header(
    cur: Cursor, at: int, sym_at: int, count_at: int, width: int, shift: int, context: int, count: int
) -> None:
    """The header rules of a range-coded stream (SPEC 3.4.2), before anything is sized from `count`."""
    if width > MAX_RANGE_WIDTH:
        raise cur.fail(f"range-coded stream of {width}-bit symbols (at most {MAX_RANGE_WIDTH})", at + 1)
    if not range_coder.MIN_SHIFT <= shift <= range_coder.MAX_SHIFT:
        raise cur.fail(
            f"range-coded stream's adaptation shift {shift} outside {range_coder.MIN_SHIFT}..{range_coder.MAX_SHIFT}",
            at + 2,
        )
    if context not in (range_coder.ORDER0, range_coder.ORDER1):
        raise cur.fail(f"range-coded stream's context model {context} is not 0 or 1", sym_at)
    if context == range_coder.ORDER1 and width > range_coder.MAX_ORDER1_WIDTH:
        raise cur.fail(
            f"range-coded stream: context model 1 needs symbols of at most {range_coder.MAX_ORDER1_WIDTH} bits, "
            f"not {width}",
            sym_at,
        )
    if not 1 <= count <= MAX_RANGE_SYMBOLS:
        raise cur.fail(f"range-coded stream declares {count} symbols (1..{MAX_RANGE_SYMBOLS})", count_at)
    if cur.left < 4:
        raise cur.fail(f"range-coded stream has {cur.left} payload bytes (at least 4)", cur.pos)


def _read_table(cur: Cursor, at: int, sym_at: int, width: int, n_len: int, n_sym: int, longest: int):
    """Counts per code length and the canonical symbol list, checked (SPEC 3.4)."""
    if not 1 <= n_len <= longest:
        raise cur.fail(f"Huffman max code length {n_len} outside 1..{longest}", at + 2)
    if not 1 <= n_sym <= MAX_HUFFMAN_SYMBOLS:
        raise cur.fail(f"Huffman symbol count {n_sym} outside 1..{MAX_HUFFMAN_SYMBOLS}", sym_at)
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
    return counts, symbols


def _read_chunk_index(cur: Cursor, count: int, n_len: int) -> tuple[int, np.ndarray]:
    """(C, start bit of every chunk) from a chunk index (SPEC 3.4.1), every rule checked."""
    at = cur.pos
    chunk = cur.uint("u32", "chunk index: symbols per chunk")
    width = cur.uint("u8", "chunk index: delta width")
    cur.zeros(3, "chunk index reserved bytes")
    base = cur.uint("u64", "chunk index: base chunk bits")
    if chunk == 0:
        raise cur.fail("chunk index: symbols per chunk must be >= 1", at)
    if width > MAX_INDEX_WIDTH:
        raise cur.fail(f"chunk index: delta width {width} outside 0..{MAX_INDEX_WIDTH}", at + 4)
    full = max(0, -(-count // chunk) - 1)  # chunks before the last
    if not full and (base or width):
        raise cur.fail(
            f"chunk index: one chunk needs no deltas, but base is {base} and delta width {width} (both MUST be 0)",
            at + 4,
        )
    if full and not chunk <= base <= chunk * n_len:
        raise cur.fail(
            f"chunk index: base {base} bits outside [{chunk}, {chunk * n_len}] for {chunk} codes of 1..{n_len} bits",
            at + 8,
        )
    # Checked in Python ints before anything is sized from `count` (SPEC 3.4.1): every symbol has
    # a code of at least one bit, and each of the `full` chunks spans at least `base` >= C bits.
    if count > 8 * cur.left or full * max(base, chunk) > 8 * cur.left:
        raise cur.fail(
            f"chunk index: {count} symbols in chunks of {chunk} cannot fit in the {cur.left} bytes left in the section",
            at,
        )
    nbytes = (full * width + 7) // 8
    deltas_at = cur.pos
    raw = cur.bytes(nbytes, "chunk index deltas")
    used = full * width
    if used % 8 and raw[-1] & ((1 << (8 - used % 8)) - 1):
        raise cur.fail("chunk index: nonzero pad bits after the last delta", deltas_at + nbytes - 1)
    bits = unpack_fixed(raw, full, width).astype(np.int64) if width else np.zeros(full, dtype=np.int64)
    bits += base
    if full and int(bits.max()) > chunk * n_len:
        j = int(np.argmax(bits > chunk * n_len))
        raise cur.fail(
            f"chunk index: chunk {j} spans {int(bits[j])} bits, more than {chunk} codes of at most {n_len} bits",
            deltas_at,
        )
    starts = np.zeros(full + 1, dtype=np.int64)
    np.cumsum(bits, out=starts[1:])
    return chunk, starts


def decode_stream(cur: Cursor) -> np.ndarray:
    """All symbols of the stream section in `cur` (uint8 when width <= 8, else int64).

    Checks the table, the chunk index, the pad bits and that the payload is used exactly.
    """
    return decode_streams([cur])[0]


# A walk pays numpy's ~11 per-call costs (~1.5 us each) once per step for all its lanes, then
# ~15 ns per symbol: below ~1,000 lanes bitarray's sequential ~27 ns per symbol is as fast
# (measured: tools/bench_formats.py). A chunk longer than MAX_WALK_CHUNK means too few lanes.
MIN_WALK_LANES = 1024
MAX_WALK_CHUNK = 1 << 16
WALK_SYMBOLS = 1 << 22  # symbols per walk: bounds its (steps x lanes) uint32 entry matrix to 16 MB


class StreamJob(NamedTuple):
    """One stream to decode: its position in the caller's list, where it is and what its header says."""

    index: int
    cur: Cursor  # over the section: names it in errors
    at: int  # offset of the payload (errors point there)
    payload: memoryview
    info: StreamInfo
    counts: list[int]
    symbols: list[int]


def decode_streams(cursors: list[Cursor], headers: list[StreamHeader] | None = None) -> list[np.ndarray]:
    """decode_stream for several streams; chunked Huffman streams with the same chunk size are
    decoded together in lockstep walks (formats/lockstep.py).

    headers: for each cursor, its StreamHeader (a reader that validated the headers when it opened
    the file need not parse them again).
    """
    out: list = [None] * len(cursors)
    waiting: dict[int, list[StreamJob]] = {}
    core = native.core()
    for i, cur in enumerate(cursors):
        head = read_stream_header(cur) if headers is None else headers[i]
        info, at = head.info, head.payload_at
        cur.pos = at
        payload = cur.bytes(cur.left, "stream payload")
        job = StreamJob(i, cur, at, payload, info, head.counts, head.symbols)
        if info.coding == CODING_FIXED:
            _check_pad(payload, info.count * info.width, cur, at)
            out[i] = unpack_fixed(payload, info.count, info.width)
        elif info.coding == CODING_RANGE:
            out[i] = _range_decode(core, job)
        elif core is not None:
            out[i] = _compiled(core, job)
        elif info.coding == CODING_CHUNKED and info.chunk <= MAX_WALK_CHUNK and len(payload) < lockstep.MAX_BATCH_BYTES:
            waiting.setdefault(info.chunk, []).append(job)
        else:
            out[i] = _sequential(job)
    for chunk, jobs in waiting.items():
        if sum(job.info.starts.size for job in jobs) < MIN_WALK_LANES:
            for job in jobs:
                out[job.index] = _sequential(job)
            continue
        for batch in _batches(jobs, chunk):
            for i, symbols in _walk(batch, chunk):
                out[i] = symbols
    return out


def _batches(jobs: list[StreamJob], chunk: int):
    """Jobs grouped so that each walk holds about WALK_SYMBOLS symbols and < MAX_BATCH_BYTES of payload."""
    batch, symbols, nbytes = [], 0, 0
    for job in jobs:
        lanes = job.info.starts.size
        if batch and (
            symbols + lanes * chunk > WALK_SYMBOLS or nbytes + len(job.payload) + 4 > lockstep.MAX_BATCH_BYTES
        ):
            yield batch
            batch, symbols, nbytes = [], 0, 0
        batch.append(job)
        symbols += lanes * chunk
        nbytes += len(job.payload) + 4
    if batch:
        yield batch


def _sequential(job: StreamJob) -> np.ndarray:
    """bitarray's decoder over a whole Huffman payload; for the chunked coding, the index is checked
    against the decoded codes' lengths."""
    cur, at, payload, info = job.cur, job.at, job.payload, job.info
    out, used, lengths = _huffman_decode(
        payload, info.count, job.counts, job.symbols, cur, at, want_lengths=info.coding == CODING_CHUNKED
    )
    if info.coding == CODING_CHUNKED and info.starts.size > 1:
        full = info.starts.size - 1
        ends = np.cumsum(lengths[: full * info.chunk].reshape(full, info.chunk).sum(axis=1, dtype=np.int64))
        _check_chunk_ends(ends, info, cur, at)
    _check_pad(payload, used, cur, at)
    return out if info.width <= 8 else out.astype(np.int64, copy=False)  # uint8 for width <= 8, else int64


def _compiled(core, job: StreamJob) -> np.ndarray:
    """The compiled core's decoder over a whole stream, chunked or not, with the same checks as the
    numpy path: every code in the table, each chunk ending where the index says, the pad rule."""
    cur, at, payload, info = job.cur, job.at, job.payload, job.info
    out = np.empty(info.count, dtype=np.uint8 if info.width <= 8 else np.int64)
    starts = info.starts if info.coding == CODING_CHUNKED else _NO_STARTS
    values = np.asarray(job.symbols, dtype=np.int64)
    wide = int(values.max()) >= 1 << 24  # table entries hold 24-bit values: decode ranks, then map them
    status, where, bit, expected = core.decode(
        payload,
        np.asarray(job.counts, dtype="<u2"),
        np.arange(values.size, dtype=np.int64) if wide else values,
        info.count,
        out,
        out.itemsize,
        info.chunk if info.coding == CODING_CHUNKED else 0,
        starts,
    )
    if status == _BAD_CODE:
        place = f"chunk {where}: " if info.coding == CODING_CHUNKED else ""
        raise cur.fail(f"{place}a code that is not in the Huffman table at payload bit {bit}", at)
    if status == _CHUNK_END:
        raise cur.fail(
            f"chunk {where}: its {info.chunk} codes end at payload bit {bit}, the chunk index "
            f"starts chunk {where + 1} at bit {expected}",
            at,
        )
    if bit > 8 * len(payload):
        raise cur.fail(f"Huffman payload ends before its {info.count} symbols", at)
    _check_pad(payload, bit, cur, at)
    return values[out] if wide else out


def _range_decode(core, job: StreamJob) -> np.ndarray:
    """A range-coded stream's symbols (uint8), compiled or not, with its rules: the payload holds exactly
    the bytes the decoder reads and the final code is 0."""
    cur, at, payload, info = job.cur, job.at, job.payload, job.info
    if core is not None:
        out = np.empty(info.count, dtype=np.uint8)
        status, used = core.range_decode(payload, info.count, info.width, info.code_lengths, info.context, out)
    else:
        status, out, used = range_coder.decode(payload, info.count, info.width, info.code_lengths, info.context)
    if status == range_coder.BAD_START:
        raise cur.fail("range-coded stream starts with a code not below the initial range (0xFFFFFFFF)", at)
    if status == range_coder.PAST_END:
        raise cur.fail(f"range-coded payload ends before its {info.count} symbols", at + used)
    if status != range_coder.OK:
        raise cur.fail(
            f"range-coded payload: its {info.count} symbols end at byte {used} of {len(payload)} "
            "with a nonzero final code or bytes left over",
            at + used,
        )
    return out


_NO_STARTS = np.zeros(0, dtype=np.int64)
_BAD_CODE, _CHUNK_END = 1, 2  # statuses of the compiled decoder (formats/_native/huffman.c)


def _walk(batch: list[StreamJob], chunk: int):
    """(index, symbols) of each stream of `batch`, decoded in one lockstep walk and checked."""
    lanes = []
    for job in batch:
        wide = max(job.symbols) >= 1 << 16
        values = np.arange(len(job.symbols)) if wide else np.asarray(job.symbols)  # wide: entries hold ranks
        lanes.append(lockstep.Lanes(job.payload, job.counts, values, job.info.starts))
    entries, ends, slices, shift = lockstep.walk(lanes, chunk)
    for job, sl in zip(batch, slices):
        mine, info, cur, at = entries[:, sl], job.info, job.cur, job.at
        _check_chunk_ends(ends[sl][:-1], info, cur, at)
        last = info.count - (info.starts.size - 1) * chunk  # symbols of the last chunk
        tail = mine[:last, -1] >> shift
        if not tail.all():
            raise cur.fail(f"chunk {info.starts.size - 1}: a code that is not in the Huffman table", at)
        _check_pad(job.payload, int(info.starts[-1]) + int(tail.sum(dtype=np.int64)), cur, at)
        yield job.index, _symbols_of(mine, info, job.symbols, shift)


def _check_chunk_ends(ends: np.ndarray, info: StreamInfo, cur: Cursor, at: int) -> None:
    """Each full chunk's codes end where the next chunk starts."""
    bad = np.flatnonzero(ends != info.starts[1:])
    if bad.size:
        j = int(bad[0])
        raise cur.fail(
            f"chunk {j}: its {info.chunk} codes end at payload bit {int(ends[j])}, the chunk index "
            f"starts chunk {j + 1} at bit {int(info.starts[j + 1])}",
            at,
        )


def _symbols_of(entries: np.ndarray, info: StreamInfo, symbols: list[int], shift: int) -> np.ndarray:
    """The stream's symbols from its (steps, lanes) walk entries, in stream order."""
    flat = entries.T.reshape(-1)[: info.count]
    if info.width <= 8:
        return flat.astype(np.uint8)  # the low byte of an entry is the symbol (< 256 here)
    low = flat & ((1 << shift) - 1)
    if max(symbols) >= 1 << 16:
        return np.asarray(symbols, dtype=np.int64)[low]
    return low.astype(np.int64)


def _huffman_decode(payload, count, counts, symbols, cur, at, want_lengths=False):
    """bitarray's canonical_decode (C) for the codes: (symbols, bits used, code length of each
    symbol if `want_lengths`, else None).

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
    lengths = np.array([length_of[x] for x in symbols], dtype=np.uint8)
    if max(symbols) < 1 << 16:
        per_value = np.zeros(max(symbols) + 1, dtype=np.uint8)
        per_value[symbols] = lengths
        if not want_lengths:  # a histogram is cheaper than a gather over every symbol
            return out, int(np.bincount(out, minlength=per_value.size) @ per_value.astype(np.int64)), None
        code_lengths = per_value[out]
    else:
        code_lengths = lengths[_symbol_index(symbols)(out)]
    return out, int(code_lengths.sum(dtype=np.int64)), code_lengths


def _check_pad(payload, used_bits: int, cur: Cursor, at: int) -> None:
    """The payload holds exactly ceil(used/8) bytes and the bits past `used` are zero."""
    n = len(payload)
    if (used_bits + 7) // 8 != n:
        raise cur.fail(f"stream payload uses {used_bits} bits but has {n} bytes", at)
    spare = n * 8 - used_bits
    if spare and payload[n - 1] & ((1 << spare) - 1):
        raise cur.fail("nonzero pad bits after the last symbol", at + n - 1)
