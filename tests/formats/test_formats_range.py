"""Stream coding 3 (format 1.3, SPEC 3.4.2): adaptive binary range coding. Round trips, compiled == fallback
(bytes and symbols), the writer's choice, the file version, and every header and payload rule."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_paths import compiled_and_fallback, flipped_byte_outcomes, on_both_paths

from dcz import formats
from dcz.formats import codec, native, range_coder
from dcz.formats.cursor import Cursor
from dcz.formats.layout import CODING_RANGE, MAX_RANGE_SYMBOLS, STREAM_HEADER

needs_core = pytest.mark.skipif(native.core() is None, reason="compiled core not built")


def _decode(stream: bytes) -> np.ndarray:
    return codec.decode_stream(Cursor(memoryview(stream), 0, len(stream), "stream"))


def _encode_and_decode(encode):
    """(the stream encode() writes, that stream decoded) on the path DCZ_NATIVE selects."""
    stream = encode()
    return stream, _decode(stream)


def _outcome(stream: bytes):
    try:
        return _decode(stream).tobytes()
    except formats.FormatError as error:
        return f"FormatError: {error}"


@st.composite
def skewed_streams(draw):
    """Byte streams the range coding wins on: skewed, runs (order 1), and short ones (no table to pay)."""
    width = draw(st.integers(1, 8))
    n = draw(st.integers(1, 2500))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p = rng.dirichlet(np.ones(1 << width) * draw(st.sampled_from([0.05, 0.3, 2.0])))
    symbols = rng.choice(1 << width, size=n, p=p)
    if draw(st.booleans()):  # runs: the order-1 model's case
        symbols = np.repeat(symbols, draw(st.integers(2, 9)))[:n]
    dtype = draw(st.sampled_from([np.uint8, np.int64, np.uint16]))
    return symbols.astype(dtype), width


@settings(max_examples=300)
@given(skewed_streams())
def test_range_coded_streams_round_trip_and_match_on_both_paths(case):
    symbols, width = case
    (compiled, decoded), (encoded, fallback) = on_both_paths(
        lambda: _encode_and_decode(lambda: codec.encode_stream(symbols, width, range_coding=True))
    )
    assert encoded == compiled
    assert np.array_equal(decoded, symbols) and decoded.dtype == np.uint8
    assert decoded.tobytes() == fallback.tobytes()
    plain = codec.encode_stream(symbols, width)
    assert len(compiled) <= len(plain)  # the writer keeps the smaller coding
    assert (compiled[0] == CODING_RANGE) == (len(compiled) < len(plain))


@needs_core
def test_encoders_give_the_same_payload_for_every_model():
    rng = np.random.default_rng(0)
    for width in (1, 3, 6, 8):
        symbols = rng.choice(1 << width, 700, p=rng.dirichlet(np.ones(1 << width) * 0.2)).astype(np.uint8)
        for shift, context in range_coder.models(width):
            payload = range_coder.encode(symbols, width, shift, context)
            assert native.core().range_encode(symbols, 1, width, shift, context) == payload
            status, out, used = range_coder.decode(payload, symbols.size, width, shift, context)
            assert status == range_coder.OK and used == len(payload) and np.array_equal(out, symbols)


def test_the_order_1_model_wins_on_runs_and_the_file_says_1_3():
    rng = np.random.default_rng(1)
    runs = np.repeat(rng.choice(4, 300, p=[0.6, 0.2, 0.15, 0.05]), 10)
    stream = codec.encode_stream(runs, 2, range_coding=True)
    coding, width, shift, _, context, count = STREAM_HEADER.unpack_from(stream)
    assert (coding, width, context, count) == (CODING_RANGE, 2, range_coder.ORDER1, runs.size)
    assert len(stream) < 0.5 * len(codec.encode_stream(runs, 2))
    tensor = formats.Shared("t", runs, np.arange(4, dtype=np.float32), 2)
    assert formats.loads(formats.dumps([tensor], range_coding=True)).version == (1, 3)
    assert formats.loads(formats.dumps([tensor])).version == (1, 0)  # only when asked
    assert formats.loads(formats.dumps([tensor], huffman=False, range_coding=True)).version == (1, 0)


def test_streams_outside_the_range_coding_limits_keep_huffman_or_fixed():
    rng = np.random.default_rng(2)
    wide = rng.choice(600, 3000, p=rng.dirichlet(np.ones(600) * 0.1))
    assert codec.encode_stream(wide, 10, range_coding=True)[0] != CODING_RANGE  # 10-bit symbols
    long = rng.choice(4, MAX_RANGE_SYMBOLS + 1, p=[0.97, 0.01, 0.01, 0.01])
    assert codec.encode_stream(long, 2, range_coding=True)[0] != CODING_RANGE


def _range_stream(symbols=None, width=3, shift=5, context=0) -> bytes:
    symbols = np.arange(40) % 3 if symbols is None else symbols
    payload = range_coder.encode(symbols, width, shift, context)
    return STREAM_HEADER.pack(CODING_RANGE, width, shift, 0, context, len(symbols)) + payload


@pytest.mark.parametrize(
    "field,value,message",
    [
        (1, 9, "9-bit symbols"),
        (2, 3, "shift 3 outside 4..7"),
        (2, 8, "shift 8 outside 4..7"),
        (4, 2, "context model 2 is not 0 or 1"),
        (8, 0, "declares 0 symbols"),
        (8, MAX_RANGE_SYMBOLS + 1, f"declares {MAX_RANGE_SYMBOLS + 1} symbols"),
    ],
)
def test_bad_range_headers_are_refused_by_name(field, value, message, monkeypatch):
    stream = bytearray(_range_stream())
    fmt = {1: "<B", 2: "<B", 4: "<I", 8: "<Q"}[field]
    struct.pack_into(fmt, stream, field, value)
    compiled, fallback = compiled_and_fallback(monkeypatch, lambda: _outcome(bytes(stream)))
    assert compiled == fallback and message in compiled


def test_order_1_needs_narrow_symbols_and_the_payload_needs_four_bytes():
    stream = bytearray(_range_stream(np.arange(20) % 100, 7, 5, 0))
    stream[4] = 1
    with pytest.raises(formats.FormatError, match="context model 1 needs symbols of at most 6 bits"):
        _decode(bytes(stream))
    with pytest.raises(formats.FormatError, match="3 payload bytes"):
        _decode(_range_stream()[:19])


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda s: s[:-1], "ends before its 40 symbols"),
        (lambda s: s + b"\0", "nonzero final code or bytes left over"),
        (lambda s: s[:16] + b"\xff\xff\xff\xff" + s[20:], "not below the initial range"),
    ],
)
def test_damaged_range_payloads_are_refused(change, message, monkeypatch):
    stream = change(_range_stream())
    compiled, fallback = compiled_and_fallback(monkeypatch, lambda: _outcome(stream))
    assert compiled == fallback and message in compiled


@needs_core
@pytest.mark.parametrize("context", [0, 1])
def test_flipped_range_payload_bytes_give_the_same_outcome_on_both_paths(context, monkeypatch):
    rng = np.random.default_rng(3)
    good = _range_stream(np.repeat(rng.integers(0, 8, 400), 3), 3, 5, context)
    outcomes = flipped_byte_outcomes(good, _outcome, rng, monkeypatch, trials=150)
    refused = sum(o.startswith("FormatError") for o in outcomes)
    assert refused > 100  # the final-code and exact-length rules catch nearly every flip


def test_a_range_coded_file_decodes_to_the_same_tensors(monkeypatch):
    rng = np.random.default_rng(4)
    mask = rng.random((50, 200)) < 0.05
    labels = np.repeat(rng.choice(8, 1300, p=np.sort(rng.dirichlet(np.ones(8)))[::-1]), 8)[:10_000].reshape(50, 200)
    tensors = [
        formats.SparseShared("w", mask, labels, np.linspace(-1, 1, 8).astype(np.float32), 3, 5),
        formats.Shared("b", rng.integers(0, 4, 50), np.arange(4, dtype=np.float32), 2),
    ]
    plain, ranged = formats.loads(formats.dumps(tensors)), formats.loads(formats.dumps(tensors, range_coding=True))
    assert ranged.version == (1, 3) and ranged.size_report().file_bytes < plain.size_report().file_bytes
    compiled, fallback = compiled_and_fallback(monkeypatch, ranged.tensors)
    for name, want in plain.tensors().items():
        assert compiled[name].tobytes() == want.tobytes() == fallback[name].tobytes()
