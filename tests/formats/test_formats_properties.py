"""Property tests: any tensor round-trips bit-exactly through every encoding and both codings."""

from __future__ import annotations

import numpy as np
from formats_helpers import quantized
from hypothesis import given, settings
from hypothesis import strategies as st

from dcz import formats
from dcz.formats import codec


@st.composite
def shapes(draw):
    """Ranks 0..4, including 0-size dims; sometimes one long row (very long gaps)."""
    if draw(st.integers(0, 5)) == 0:
        return (1, draw(st.integers(1, 700)))
    rank = draw(st.integers(0, 4))
    return tuple(draw(st.lists(st.integers(0, 6), min_size=rank, max_size=rank)))


@st.composite
def tensors(draw):
    shape = draw(shapes())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    density = draw(st.sampled_from([0.0, 0.01, 0.1, 0.5, 0.9, 1.0]))
    mask = rng.random(shape) < density
    if draw(st.booleans()) and mask.ndim >= 1 and mask.shape[0] > 1:
        mask[0] = False  # an empty row
    encoding = draw(st.sampled_from(["sparse", "shared", "sparse_shared"]))
    gap_bits = draw(st.integers(1, 8))
    if encoding == "sparse":
        values = rng.standard_normal(shape).astype(np.float32)
        return formats.Sparse("t", values, mask, gap_bits)
    label_bits = draw(st.integers(1, 8))
    k = draw(st.integers(1, 2**label_bits))
    # codebooks with repeated values: draw from a small pool
    pool = rng.standard_normal(draw(st.integers(1, 4))).astype(np.float32)
    rows = shape[0] if len(shape) > 1 else 1
    group_rows = draw(st.sampled_from([None, 1, 2, 3])) if rows > 0 else None
    groups = 1 if group_rows is None else max(1, -(-rows // group_rows))
    book = rng.choice(pool, size=(groups, k)) if group_rows else rng.choice(pool, size=k)
    if draw(st.booleans()):  # skewed labels, as k-means gives: Huffman (and chunking) then beats fixed width
        p = 0.5 ** np.arange(k)
        labels = rng.choice(k, size=shape, p=p / p.sum())
    else:
        labels = rng.integers(0, k, shape)
    if encoding == "shared":
        return formats.Shared("t", labels, book, label_bits, group_rows)
    return formats.SparseShared("t", mask, labels, book, label_bits, gap_bits, group_rows)


@settings(max_examples=500)
@given(tensors(), st.booleans(), st.sampled_from([None, 0, 1, 3, 16]), st.booleans())
def test_any_tensor_round_trips_bit_exactly(t, huffman, chunk_symbols, walk):
    """...through every coding: fixed, Huffman and (format 1.1) chunked Huffman with small chunks,
    decoded by the lockstep walk or by bitarray."""
    data = formats.dumps([t], huffman=huffman, chunk_symbols=chunk_symbols)
    f = formats.loads(data)
    saved = codec.MIN_WALK_LANES
    codec.MIN_WALK_LANES = 1 if walk else saved
    try:
        got, want = f.tensor("t"), quantized(t)
    finally:
        codec.MIN_WALK_LANES = saved
    r = f.size_report()
    assert r.header_bytes + r.graph_bytes + r.padding_bytes + r.tensors[0].huffman_bytes == len(data)
    assert got.shape == want.shape and got.dtype == np.float32
    assert got.tobytes() == want.tobytes()
    info = f.info("t")
    if not isinstance(t, formats.Shared):
        assert info.nnz == int(np.count_nonzero(t.mask))


@given(st.lists(st.integers(0, 2**12 - 1), max_size=300), st.integers(12, 32), st.booleans())
def test_streams_round_trip(symbols, width, huffman):
    from dcz.formats.cursor import Cursor

    data = codec.encode_stream(np.array(symbols, dtype=np.int64), width, huffman)
    out = codec.decode_stream(Cursor(data, 0, len(data), "stream"))
    assert out.tolist() == symbols


@given(st.dictionaries(st.integers(0, 255), st.integers(1, 10**6), min_size=1, max_size=256))
def test_huffman_tables_are_complete_and_within_the_length_limit(freq):
    counts, symbols = codec.huffman_table(freq)
    assert len(counts) <= formats.layout.MAX_CODE_LENGTH and sorted(symbols) == sorted(freq)
    if len(symbols) > 1:
        assert sum(c << (len(counts) - n) for n, c in enumerate(counts, 1)) == 1 << len(counts)


@settings(max_examples=500)
@given(
    st.dictionaries(st.integers(0, 2**20), st.integers(1, 10**9), min_size=1, max_size=300),
    st.sampled_from([None, 1, 2, 10]),
)
def test_huffman_tables_equal_bitarrays_canonical_huffman(freq, tie):
    """codec.huffman_table builds bitarray's tree with C-compared nodes: the same counts and symbol
    order as bitarray.util.canonical_huffman whenever its code fits the length limit (ties included)."""
    from bitarray.util import canonical_huffman

    if tie is not None:  # many equal frequencies: the heap's tie order decides the tree
        freq = {s: 1 + f % tie for s, f in freq.items()}
    _, counts, symbols = canonical_huffman(freq)
    if len(counts) - 1 <= formats.layout.MAX_CODE_LENGTH:
        assert codec.huffman_table(freq) == ([int(c) for c in counts[1:]], [int(s) for s in symbols])


def test_length_limit_flattens_fibonacci_frequencies():
    fib = [1, 1]
    while len(fib) < 40:
        fib.append(fib[-1] + fib[-2])
    counts, _ = codec.huffman_table(dict(enumerate(fib)))
    assert len(counts) == formats.layout.MAX_CODE_LENGTH


def test_canonical_codes_match_bitarray():
    from bitarray.util import canonical_huffman

    freq = {3: 50, 9: 20, 1: 20, 7: 5, 4: 5}
    code, counts, symbols = canonical_huffman(freq)
    values, lengths = codec.canonical_codes(list(counts[1:]), list(symbols))
    for s, bits in code.items():
        assert lengths[s] == len(bits) and values[s] == int(bits.to01(), 2)


def test_streams_longer_than_one_block_round_trip(monkeypatch):
    """Encoding and fixed-width decoding work a block at a time; blocks join without a seam."""
    from dcz.formats.cursor import Cursor

    monkeypatch.setattr(codec, "BLOCK", 64)
    rng = np.random.default_rng(5)
    for width in (1, 3, 5, 7, 8, 12, 32):
        sym = rng.integers(0, 2**width, 1000) if width < 32 else rng.integers(0, 2**32, 1000, dtype=np.uint64)
        for huffman in (False, True):
            data = codec.encode_stream(np.asarray(sym, dtype=np.int64), width, huffman)
            assert codec.decode_stream(Cursor(data, 0, len(data), "s")).tolist() == [int(x) for x in sym]


@given(st.sampled_from(formats.layout.RAW_DTYPES), shapes(), st.booleans(), st.integers(0, 2**32 - 1))
def test_raw_tensors_round_trip_in_their_dtype(dtype, shape, big_endian, seed):
    rng = np.random.default_rng(seed)
    arr = (rng.standard_normal(shape) * 100).astype(dtype)
    if big_endian:
        arr = arr.astype(arr.dtype.newbyteorder(">"))
    got = formats.loads(formats.dumps([formats.Raw("r", arr)])).tensor("r")
    assert got.dtype == np.dtype(dtype) and got.shape == arr.shape
    assert np.array_equal(got, arr, equal_nan=arr.dtype.kind == "f")
