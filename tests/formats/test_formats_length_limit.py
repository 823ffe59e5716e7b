"""Package-merge: optimal, complete, length-limited codes (formats/length_limit.py)."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dcz.formats import codec
from dcz.formats.length_limit import canonical_table, limited_lengths


def _best_cost(weights: list[int], limit: int) -> int:
    """Brute force: the least sum(w * length) over prefix codes with lengths <= limit (Kraft <= 1)."""
    return min(
        sum(w * l for w, l in zip(weights, lengths))
        for lengths in itertools.product(range(1, limit + 1), repeat=len(weights))
        if sum(2.0**-l for l in lengths) <= 1
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 10**6), min_size=2, max_size=6), st.integers(1, 5))
def test_package_merge_is_optimal_and_complete(weights, limit):
    if len(weights) > 2**limit:
        limit = int(np.ceil(np.log2(len(weights))))
    lengths = limited_lengths(np.array(weights, dtype=np.float64), limit)
    assert lengths.max() <= limit and lengths.min() >= 1
    assert sum(2.0 ** -int(length) for length in lengths) == 1.0  # complete: what the reader requires
    assert sum(w * int(length) for w, length in zip(weights, lengths)) == _best_cost(weights, limit)


def test_limited_table_is_a_valid_canonical_table_and_round_trips():
    rng = np.random.default_rng(0)
    freq = {s: int(f) for s, f in enumerate(np.exp(rng.normal(0, 3, 200)).astype(np.int64) + 1)}
    unlimited, _ = codec.huffman_table(freq, 64)
    limit = len(unlimited) - 2  # below Huffman's own longest code: package-merge decides
    counts, symbols = codec.huffman_table(freq, limit)
    assert len(counts) == limit and sorted(symbols) == sorted(freq)
    assert sum(c << (len(counts) - length) for length, c in enumerate(counts, start=1)) == 1 << len(counts)
    again = canonical_table(sorted(freq), limited_lengths(np.array([freq[s] for s in sorted(freq)], float), limit))
    assert again == (counts, symbols)

    # a chunked stream's code is limited (12..16 bits) by package-merge, and decodes
    from dcz.formats.cursor import Cursor

    sym = rng.permutation(np.repeat(list(freq), list(freq.values()))[:200_000])
    data = codec.encode_stream(sym, 8, True, 256)
    assert data[0] == 2 and data[2] <= 16
    assert np.array_equal(codec.decode_stream(Cursor(data, 0, len(data), "s")), sym)
