"""Exact sizes of candidate stream codings, for tools/bench/frontier_streams.py (measurement only).

- static rANS (one 32-bit state, byte renormalisation, 12-bit frequencies) with its frequency table
  counted as 1 byte for the symbol count + 3 bytes per distinct symbol (symbol, u16 frequency);
- the adaptive binary range coder of stream coding 3 (formats/range_coder.py) at its best shift, with one
  bit tree (order 0) and with one tree per previous symbol (order 1, symbols of <= 6 bits);
- the significance mask of a sparse tensor (every element of the 2-D view, row-major) through the
  same range coder with a small context: none, the previous bit of the row, or the previous bit and
  the bit above.
"""

from __future__ import annotations

import numpy as np

from dcz.formats import range_coder

RANS_BITS = 12
RANS_LOW = 1 << 23


def quantized_freqs(counts: np.ndarray, total_bits: int = RANS_BITS) -> np.ndarray:
    """Frequencies summing to 2^total_bits, every present symbol >= 1 (largest-remainder, then fixed up)."""
    total = 1 << total_bits
    scaled = counts * total / counts.sum()
    freqs = np.maximum(1, np.floor(scaled)).astype(np.int64)
    while freqs.sum() < total:
        freqs[np.argmax(scaled - freqs)] += 1
    while freqs.sum() > total:
        candidates = np.where(freqs > 1, freqs - scaled, -np.inf)
        freqs[np.argmax(candidates)] -= 1
    return freqs


def static_rans_bytes(symbols: np.ndarray) -> int:
    """Bytes of a static rANS coding of `symbols`: the renormalisation bytes, the 4-byte final state and
    the frequency table."""
    if symbols.size == 0:
        return 0
    values, counts = np.unique(symbols, return_counts=True)
    if values.size == 1:
        return 1 + 3  # the table alone says it all
    freqs = quantized_freqs(counts)
    starts = np.concatenate([[0], np.cumsum(freqs)[:-1]])
    slot = {int(v): i for i, v in enumerate(values)}
    state, out = RANS_LOW, 0
    for sym in symbols[::-1].tolist():  # rANS encodes backwards
        i = slot[sym]
        f = int(freqs[i])
        limit = ((RANS_LOW >> RANS_BITS) << 8) * f
        while state >= limit:
            state >>= 8
            out += 1
        state = (state // f << RANS_BITS) + state % f + int(starts[i])
    return out + 4 + 1 + 3 * values.size


def adaptive_stream_bytes(symbols: np.ndarray, width: int, contexts=(0, 1)) -> tuple[int, str]:
    """(payload bytes, "shift/context") of stream coding 3 with its best model among `contexts` (0: one bit
    tree, 1: one per previous symbol), the 16-byte stream header not counted."""
    found = None
    for shift, context in range_coder.models(width):
        if context in contexts:
            size = len(range_coder.encode(symbols, width, shift, context))
            if found is None or size < found[0]:
                found = (size, f"{shift}/o{context}")
    return found


MASK_CONTEXTS = ("none", "left", "left+above")


def mask_bytes(mask: np.ndarray, context: str) -> tuple[int, int]:
    """(bytes, shift) of the 2-D bool mask through the adaptive range coder, row-major, with a context of
    `context` (one probability per context value), at the best shift 4..7."""
    left = np.zeros_like(mask)
    left[:, 1:] = mask[:, :-1]
    above = np.zeros_like(mask)
    above[1:, :] = mask[:-1, :]
    ctx = {
        "none": np.zeros(mask.shape, dtype=np.int64),
        "left": left.astype(np.int64),
        "left+above": left + 2 * above.astype(np.int64),
    }[context]
    bits, ctx = mask.ravel().astype(np.int64).tolist(), ctx.ravel().tolist()
    best = None
    for shift in range(4, 8):
        enc = range_coder.RangeEncoder(shift)
        probs = [range_coder.PROB_ONE >> 1] * 4
        for b, c in zip(bits, ctx):
            enc.bit(probs, c, b)
        size = len(enc.finish())
        if best is None or size < best[0]:
            best = (size, shift)
    return best
