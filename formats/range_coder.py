"""Stream coding 3 (version 1.3, SPEC 3.4.2): adaptive binary range coding of a symbol stream.

Each w-bit symbol (w <= 8) is sent MSB first down a binary tree of 2^w - 1 adaptive bit
probabilities (LZMA's "bit tree"); the bits go through LZMA's range coder (32-bit range, carry
propagation through a cached byte). No table is stored: the model starts at p = 1/2 everywhere
and adapts by p += (1 - p) / 2^s or p -= p / 2^s, s in the stream header. It wins where Huffman
loses whole fractions of a bit: skewed 2-3 bit label streams and short streams whose table costs
more than its codes save (frontier page, "Stream codings measured").

This is the numpy-free reference: the compiled core (formats/_native/huffman.c, range_decode /
range_encode) gives the same bytes and symbols, and this path runs when it is not built
(DCZ_NATIVE=0). Both are bounded: the decoder reads only inside the payload and says where it
stopped; the caller turns every defect into a FormatError.
"""

from __future__ import annotations

import numpy as np

PROB_BITS = 12
PROB_ONE = 1 << PROB_BITS
TOP = 1 << 24
MASK32 = 0xFFFFFFFF
MIN_SHIFT, MAX_SHIFT = 4, 7  # adaptation shifts a stream may declare (SPEC 3.4.2)
MAX_WIDTH = 8  # symbols of at most 8 bits: the tree has at most 255 probabilities
# context models (the stream header's S field): one tree, or one tree per value of the previous symbol
ORDER0, ORDER1 = 0, 1
MAX_ORDER1_WIDTH = 6  # order 1: 2^w trees of 2^w probabilities, at most 4,096


def trees(width: int, context: int) -> int:
    """How many bit trees the model has: 1, or 2^width (one per previous symbol) for order 1."""
    return 1 << width if context == ORDER1 else 1


# decode statuses, shared with the compiled core
OK, PAST_END, NOT_FINAL, BAD_START = 0, 1, 2, 3


class RangeEncoder:
    """LZMA's range encoder over adaptive bit probabilities (lists of ints in 1..PROB_ONE-1), without
    its always-zero first byte; finish() flushes so that a decoder ends with code == 0."""

    def __init__(self, shift: int):
        self.shift = shift
        self.out = bytearray()
        self.low, self.range, self.cache, self.pending = 0, MASK32, 0, 1
        self.first = True  # the cached byte before the first output is LZMA's leading 0: dropped

    def bit(self, probs: list[int], node: int, bit: int) -> None:
        p = probs[node]
        bound = (self.range >> PROB_BITS) * p
        if bit:
            self.low += bound
            self.range -= bound
            probs[node] = p - (p >> self.shift)
        else:
            self.range = bound
            probs[node] = p + ((PROB_ONE - p) >> self.shift)
        while self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self._shift_low()

    def _shift_low(self) -> None:
        low = self.low
        if low < 0xFF000000 or low > MASK32:  # the cached byte is final: no carry can reach it any more
            carry = low >> 32
            byte = self.cache
            while True:
                if self.first:
                    self.first = False
                else:
                    self.out.append((byte + carry) & 0xFF)
                byte = 0xFF
                self.pending -= 1
                if not self.pending:
                    break
            self.cache = (low >> 24) & 0xFF
        self.pending += 1
        self.low = (low & 0x00FFFFFF) << 8

    def finish(self) -> bytes:
        for _ in range(5):
            self._shift_low()
        return bytes(self.out)


def encode(symbols: np.ndarray, width: int, shift: int, context: int = ORDER0) -> bytes:
    """The coding-3 payload of `symbols` (ints in [0, 2^width)), each sent MSB first down the bit tree
    (order 1: the tree of the previous symbol, 0 before the first).

    RangeEncoder's steps written out in one loop (this is the writer's fallback: ~3x faster inline)."""
    enc = RangeEncoder(shift)
    probs = [PROB_ONE >> 1] * (trees(width, context) << width)
    rng = MASK32
    order1 = context == ORDER1
    prev = 0
    for sym in np.asarray(symbols).ravel().tolist():
        node, base = 1, (prev << width if order1 else 0)
        for i in range(width - 1, -1, -1):
            p = probs[base + node]
            bound = (rng >> PROB_BITS) * p
            if (sym >> i) & 1:
                enc.low += bound
                rng -= bound
                probs[base + node] = p - (p >> shift)
                node = (node << 1) | 1
            else:
                rng = bound
                probs[base + node] = p + ((PROB_ONE - p) >> shift)
                node <<= 1
            while rng < TOP:
                rng = (rng << 8) & MASK32
                enc._shift_low()
        prev = sym
    return enc.finish()


def decode(payload, count: int, width: int, shift: int, context: int = ORDER0) -> tuple[int, np.ndarray, int]:
    """(status, symbols as uint8, bytes read) of a coding-3 payload. status OK: `count` symbols decoded,
    every byte read and the final code 0; PAST_END: the payload ended first (bytes read = where);
    NOT_FINAL: symbols decoded but bytes left over or a nonzero final code; BAD_START: the first four
    bytes are 0xFFFFFFFF (a code not below the initial range)."""
    data = bytes(payload)
    n = len(data)
    out = np.zeros(count, dtype=np.uint8)
    if n < 4:
        return PAST_END, out, n
    code = int.from_bytes(data[:4], "big")
    if code == MASK32:
        return BAD_START, out, 4
    pos, rng = 4, MASK32
    probs = [PROB_ONE >> 1] * (trees(width, context) << width)
    top_node = 1 << width
    order1 = context == ORDER1
    prev = 0
    for k in range(count):
        node = 1
        base = prev << width if order1 else 0
        while node < top_node:
            p = probs[base + node]
            bound = (rng >> PROB_BITS) * p
            if code < bound:
                rng = bound
                probs[base + node] = p + ((PROB_ONE - p) >> shift)
                node <<= 1
            else:
                code -= bound
                rng -= bound
                probs[base + node] = p - (p >> shift)
                node = (node << 1) | 1
            while rng < TOP:
                if pos >= n:
                    return PAST_END, out, pos
                rng = (rng << 8) & MASK32
                code = ((code << 8) | data[pos]) & MASK32
                pos += 1
        prev = node - top_node
        out[k] = prev
    status = OK if pos == n and code == 0 else NOT_FINAL
    return status, out, pos


def models(width: int):
    """The (shift, context) pairs a writer tries for a stream of `width`-bit symbols, in order of preference."""
    contexts = (ORDER0, ORDER1) if width <= MAX_ORDER1_WIDTH else (ORDER0,)
    return [(shift, context) for context in contexts for shift in range(MIN_SHIFT, MAX_SHIFT + 1)]


def best(symbols: np.ndarray, width: int) -> tuple[int, int, bytes]:
    """(shift, context, payload) of the smallest payload over models() (the first on a tie)."""
    found = None
    for shift, context in models(width):
        payload = encode(symbols, width, shift, context)
        if found is None or len(payload) < len(found[2]):
            found = (shift, context, payload)
    return found
