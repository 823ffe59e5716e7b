"""The chunked Huffman coding (format 1.1, SPEC.md 3.4.1): round trips through both decoders
(the lockstep walk and bitarray's sequential decoder), batching across streams, and hostile
chunk indexes."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcz import formats
from dcz.formats import codec
from dcz.formats.cursor import Cursor
from dcz.formats.layout import CODING_CHUNKED, STREAM_HEADER


def _decode(data: bytes, walk: bool) -> np.ndarray:
    """decode_stream forced through the lockstep walk or through bitarray's sequential decoder."""
    saved = codec.MIN_WALK_LANES
    codec.MIN_WALK_LANES = 1 if walk else 1 << 62
    try:
        return codec.decode_stream(Cursor(data, 0, len(data), "stream"))
    finally:
        codec.MIN_WALK_LANES = saved


def _skewed(rng, n: int, width: int) -> np.ndarray:
    k = 1 << width
    p = np.sort(rng.dirichlet(np.ones(min(k, 64)) * 0.3))[::-1]
    return rng.choice(min(k, 64), n, p=p) * (k // min(k, 64))


def _index_at(data: bytes) -> int:
    """Byte offset of the chunk index in a chunked stream section."""
    coding, width, n_len, _, n_sym, _ = STREAM_HEADER.unpack_from(data)
    assert coding == CODING_CHUNKED
    sb = 1 if width <= 8 else 2 if width <= 16 else 4
    return 16 + 2 * n_len + sb * n_sym


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 3000),
    width=st.integers(1, 17),
    chunk=st.sampled_from([1, 2, 3, 7, 16, 64, 333]),
    walk=st.booleans(),
)
def test_chunked_stream_round_trips_through_either_decoder(seed, n, width, chunk, walk):
    rng = np.random.default_rng(seed)
    symbols = _skewed(rng, n, width)
    data = codec.encode_stream(symbols, width, True, chunk)
    out = _decode(data, walk)
    assert out.tolist() == symbols.tolist()
    assert out.dtype == (np.uint8 if width <= 8 else np.int64)


def test_writer_policy_chunks_long_streams_only():
    rng = np.random.default_rng(0)
    short = _skewed(rng, codec.CHUNK_MIN_SYMBOLS - 1, 5)
    long = _skewed(rng, codec.CHUNK_MIN_SYMBOLS, 5)
    assert codec.encode_stream(short, 5)[0] == 1  # plain Huffman
    data = codec.encode_stream(long, 5)
    assert data[0] == CODING_CHUNKED
    chunk = struct.unpack_from("<I", data, _index_at(data))[0]
    assert chunk & (chunk - 1) == 0 and 64 <= chunk <= 4096
    assert codec.encode_stream(long, 5, True, 0)[0] == 1  # chunk=0: never


def test_file_version_is_1_0_unless_a_stream_is_chunked():
    rng = np.random.default_rng(1)
    labels = _skewed(rng, 70_000, 4)
    t = formats.Shared("w", labels, np.linspace(-1, 1, 16).astype(np.float32), 4)
    assert formats.loads(formats.dumps([t])).version == (1, 1)
    plain = formats.loads(formats.dumps([t], chunk_symbols=0))
    assert plain.version == (1, 0)
    assert np.array_equal(plain.tensor("w"), formats.loads(formats.dumps([t])).tensor("w"))


@pytest.mark.parametrize("bad", [-1, 1.5, "64", 1 << 32])
def test_writer_rejects_a_bad_chunk_size(bad):
    with pytest.raises(formats.FormatError, match="chunk_symbols"):
        formats.dumps([formats.Raw("b", np.zeros(2, np.float32))], chunk_symbols=bad)


def test_streams_of_several_tensors_decode_together_as_they_do_alone(monkeypatch):
    """One walk over streams of different widths, code lengths and chunk sizes."""
    monkeypatch.setattr(codec, "MIN_WALK_LANES", 1)
    rng = np.random.default_rng(2)
    tensors = []
    for i, (rows, cols, density, bits) in enumerate([(40, 500, 0.3, 5), (12, 900, 0.9, 2), (64, 64, 0.05, 8)]):
        mask = rng.random((rows, cols)) < density
        labels = _skewed(rng, rows * cols, bits).reshape(rows, cols)
        book = np.linspace(-1, 1, 1 << bits).astype(np.float32)
        tensors.append(formats.SparseShared(f"t{i}", mask, labels, book, bits, 3))
    f = formats.loads(formats.dumps(tensors, chunk_symbols=16))
    together = f.tensors()
    for t in tensors:
        want = np.where(t.mask, t.codebook[t.labels], 0).astype(np.float32)
        assert np.array_equal(together[t.name], want) and np.array_equal(f.tensor(t.name), want)


# ------------------------------------------------------------------ hostile chunk indexes


def _chunked_stream(n=4000, chunk=64, width=5, seed=3) -> bytes:
    data = codec.encode_stream(_skewed(np.random.default_rng(seed), n, width), width, True, chunk)
    assert data[0] == CODING_CHUNKED
    return data


def _patch(data: bytes, at: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, value)
    return bytes(out)


@pytest.mark.parametrize("walk", [True, False])
@pytest.mark.parametrize(
    "field,fmt,value,message",
    [
        (0, "<I", 0, "symbols per chunk must be >= 1"),
        (4, "<B", 33, "delta width 33 outside 0..32"),
        (5, "<B", 1, "chunk index reserved bytes must be zero"),
        (8, "<Q", 1, r"base 1 bits outside \[64, "),
        (8, "<Q", 2**64 - 1, "base .* bits outside"),
    ],
)
def test_bad_chunk_index_header(field, fmt, value, message, walk):
    data = _chunked_stream()
    with pytest.raises(formats.FormatError, match=message):
        _decode(_patch(data, _index_at(data) + field, fmt, value), walk)


@pytest.mark.parametrize("walk", [True, False])
def test_a_chunk_length_that_disagrees_with_the_codes_is_refused_naming_the_chunk(walk):
    data = _chunked_stream()
    at = _index_at(data)
    base = struct.unpack_from("<Q", data, at + 8)[0]
    patched = _patch(data, at + 8, "<Q", base + 1)  # every chunk one bit longer than its codes
    with pytest.raises(formats.FormatError, match=r"chunk 0: its 64 codes end at payload bit \d+, the chunk index"):
        _decode(patched, walk)


def test_chunk_index_cut_short_and_nonzero_delta_pad_bits():
    data = _chunked_stream()
    at = _index_at(data)
    with pytest.raises(formats.FormatError, match="chunk index"):
        codec.decode_stream(Cursor(data, 0, at + 10, "stream"))
    width = data[at + 4]
    full = -(-4000 // 64) - 1
    if full * width % 8:  # the last index byte has pad bits: set one
        last = at + 16 + (full * width + 7) // 8 - 1
        bad = bytearray(data)
        bad[last] |= 1
        with pytest.raises(formats.FormatError, match="nonzero pad bits after the last delta"):
            _decode(bytes(bad), True)


def test_chunked_code_lengths_over_16_are_refused():
    data = bytearray(_chunked_stream())
    data[2] = 17
    with pytest.raises(formats.FormatError, match="max code length 17 outside 1..16"):
        codec.decode_stream(Cursor(bytes(data), 0, len(data), "stream"))


def test_last_chunk_placed_past_the_payload_is_refused():
    data = _chunked_stream(n=4000, chunk=64)
    at = _index_at(data)
    width = data[at + 4]
    payload_bits = 8 * (len(data) - at - 16 - (62 * width + 7) // 8)
    # base as large as allowed (64 codes x L bits): the last chunk starts far past the payload
    n_len = data[2]
    with pytest.raises(formats.FormatError, match="chunk index"):
        codec.decode_stream(Cursor(_patch(data, at + 8, "<Q", 64 * n_len), 0, len(data), "stream"))
    assert payload_bits < 62 * 64 * n_len


@settings(max_examples=200, deadline=None)
@given(pos=st.integers(0, 10**9), bit=st.integers(0, 7), walk=st.booleans())
def test_any_flipped_bit_gives_the_format_error_or_symbols_of_the_right_shape(pos, bit, walk):
    data = bytearray(_chunked_stream(n=3000, chunk=32, seed=9))
    data[pos % len(data)] ^= 1 << bit
    try:
        out = _decode(bytes(data), walk)
    except formats.FormatError:
        return
    assert out.shape == (3000,) and out.dtype == np.uint8


def test_a_one_chunk_index_must_have_zero_base_and_width():
    data = _chunked_stream(n=2000, chunk=1999)  # two chunks: base = chunk 0's bits
    at = _index_at(data)
    assert struct.unpack_from("<Q", data, at + 8)[0] > 0
    one = bytearray(data)
    struct.pack_into("<I", one, at, 2000)  # now K = 1, with the base the writer gave K = 2
    with pytest.raises(formats.FormatError, match="one chunk needs no deltas"):
        codec.decode_stream(Cursor(bytes(one), 0, len(one), "stream"))


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 40),
    cols=st.integers(50, 400),
    density=st.sampled_from([0.03, 0.2, 0.6, 0.95]),
    bits=st.integers(2, 8),
    gap_bits=st.integers(1, 8),
    chunk=st.sampled_from([8, 32, 128]),
    walk=st.booleans(),
)
def test_pruned_shared_tensors_round_trip_through_chunked_streams(
    seed, rows, cols, density, bits, gap_bits, chunk, walk
):
    """Tensor level: CSR rebuilt from chunked gap and label streams (skewed labels, as k-means gives)."""
    rng = np.random.default_rng(seed)
    mask = rng.random((rows, cols)) < density
    labels = _skewed(rng, rows * cols, bits).reshape(rows, cols)
    book = rng.standard_normal(1 << bits).astype(np.float32)
    t = formats.SparseShared("t", mask, labels, book, bits, gap_bits)
    f = formats.loads(formats.dumps([t], chunk_symbols=chunk))
    saved = codec.MIN_WALK_LANES
    codec.MIN_WALK_LANES = 1 if walk else 1 << 62
    try:
        got = f.tensor("t")
    finally:
        codec.MIN_WALK_LANES = saved
    assert got.tobytes() == np.where(mask, book[labels], 0).astype(np.float32).tobytes()
