"""The compiled core (formats/_native) and the numpy path give identical arrays and bytes.

`.ci/run` sets DCZ_REQUIRE_NATIVE=1: there, a missing compiled core fails the suite instead of
silently testing the numpy fallback twice.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_paths import compiled_and_fallback, flipped_byte_outcomes, on_both_paths

from dcz import formats
from dcz.formats import codec, native
from dcz.formats.cursor import Cursor
from dcz.formats.decode import decode_entry
from dcz.formats.entry import TensorEntry
from dcz.formats.tensors import csr_streams

GOLDEN_ROOT = Path(__file__).resolve().parents[1] / "golden"
GOLDEN_FILES = sorted(GOLDEN_ROOT.rglob("*.dcz"))

needs_core = pytest.mark.skipif(native._core is None, reason=native.describe())


def test_compiled_core_is_built_where_required():
    if os.environ.get("DCZ_REQUIRE_NATIVE", "") == "1":
        assert native._core is not None, native.describe()
        assert native.describe() in ("compiled", "numpy (DCZ_NATIVE=0)")


def test_dcz_native_0_selects_numpy(monkeypatch):
    monkeypatch.setenv("DCZ_NATIVE", "0")
    assert native.core() is None and native.describe().startswith("numpy (")


def _decode(stream: bytes) -> np.ndarray:
    return codec.decode_stream(Cursor(memoryview(stream), 0, len(stream), "stream"))


def _encode_and_decode(encode):
    """(the stream encode() writes, that stream decoded) on the path DCZ_NATIVE selects."""
    stream = encode()
    return stream, _decode(stream)


@needs_core
@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_files_decode_identically(path, monkeypatch):
    def decode():
        with formats.open(path) as f:
            return f.tensors()

    compiled, fallback = compiled_and_fallback(monkeypatch, decode)
    for name in fallback:
        assert compiled[name].dtype == fallback[name].dtype
        assert compiled[name].tobytes() == fallback[name].tobytes(), name


@st.composite
def streams(draw):
    width = draw(st.sampled_from([1, 2, 3, 5, 8, 9, 12, 16, 20, 32]))
    n = draw(st.integers(1, 3000))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    alphabet = rng.integers(0, 1 << width, size=draw(st.integers(1, 40)), dtype=np.int64)
    skew = rng.random(alphabet.size) ** draw(st.sampled_from([1, 4, 12]))  # up to very long codes
    symbols = rng.choice(alphabet, size=n, p=skew / skew.sum())
    chunk = draw(st.sampled_from([0, None, 7, 64, 1000]))
    fits = [t for t in (np.uint8, np.uint16, np.uint32, np.int32) if np.iinfo(t).max >= (1 << width) - 1]
    dtype = draw(st.sampled_from([np.int64, *fits]))  # the compiled encoder reads bytes and shorts as they are
    return symbols.astype(dtype), width, chunk


@needs_core
@settings(max_examples=1000)
@given(streams())
def test_streams_encode_and_decode_identically(case):
    symbols, width, chunk = case
    (compiled, decoded), (encoded, fallback) = on_both_paths(
        lambda: _encode_and_decode(lambda: codec.encode_stream(symbols, width, chunk=chunk))
    )
    assert encoded == compiled
    assert np.array_equal(decoded, symbols) and decoded.dtype == fallback.dtype
    assert decoded.tobytes() == fallback.tobytes()


def _outcome(stream: bytes):
    try:
        return _decode(stream).tobytes()
    except formats.FormatError:
        return "FormatError"


@needs_core
@pytest.mark.parametrize("chunk", [0, 64])
def test_damaged_streams_give_the_same_outcome_on_both_paths(chunk, monkeypatch):
    """Flipped payload bytes: both decoders refuse with FormatError, or both give the same symbols
    (Huffman codes can resynchronise; the file's CRC is what catches those)."""
    rng = np.random.default_rng(3)
    good = codec.encode_stream(rng.integers(0, 32, 5000) ** 2 % 32, 5, chunk=chunk)
    outcomes = flipped_byte_outcomes(good, _outcome, rng, monkeypatch, trials=200)
    assert outcomes.count("FormatError") > 50  # the property is not vacuous


@needs_core
def test_one_symbol_table_rejects_the_unused_code(monkeypatch):
    monkeypatch.delenv("DCZ_NATIVE", raising=False)
    stream = bytearray(codec.encode_stream(np.zeros(40, dtype=np.int64), 3, chunk=0))
    if stream[0] != 1:  # stored at fixed width: nothing to test
        pytest.skip("fixed width chosen")
    stream[-1] |= 0x80
    with pytest.raises(formats.FormatError, match="not in the Huffman table|pad"):
        _decode(bytes(stream))


def _damaged_payloads_agree(good: bytes, payload_bytes: int, rng, monkeypatch) -> None:
    """40 copies of `good`, each with one payload byte flipped: the same symbols or the same error on both paths."""
    flipped_byte_outcomes(good, _outcome, rng, monkeypatch, trials=40, first=len(good) - payload_bytes)


@needs_core
@pytest.mark.parametrize(("base", "n", "longest"), [(1.6, 60, 12), (2.0, 20, 13), (2.0, 30, 14)])
def test_long_fast_codes_decode_identically_when_damaged(base, n, longest, monkeypatch):
    """Chunked byte streams whose complete codes reach 12-14 bits (the compiled decoder's 2^L-entry
    fast table): the clean stream decodes to its symbols, and flipped payload bytes give the same
    symbols or FormatError on both paths."""
    freq = np.maximum(1, 2e4 / base ** np.arange(n)).astype(np.int64)
    symbols = np.repeat(np.arange(n), freq)
    np.random.default_rng(n).shuffle(symbols)
    good = codec.encode_stream(symbols, 8, chunk=64)
    info = codec.read_stream_header(Cursor(memoryview(good), 0, len(good), "stream")).info
    assert (info.coding_name, info.code_lengths) == ("huffman-chunked", longest)
    assert np.array_equal(_decode(good), symbols)
    _damaged_payloads_agree(good, info.payload_bytes, np.random.default_rng(longest), monkeypatch)


@needs_core
@pytest.mark.parametrize(("base", "n", "scale"), [(1.3, 12, 3e3), (1.2, 30, 3e3), (1.15, 40, 3e3)])
def test_long_plain_streams_decode_identically_when_damaged(base, n, scale, monkeypatch):
    """Plain (unchunked) byte streams several times 2^L long with complete codes up to 14 bits: the
    compiled decoder's pair table (two codes per lookup); clean and damaged streams, both paths."""
    freq = np.maximum(1, scale / base ** np.arange(n)).astype(np.int64)
    symbols = np.repeat(np.arange(n), freq)
    np.random.default_rng(n).shuffle(symbols)
    good = codec.encode_stream(symbols, 8, chunk=0)
    info = codec.read_stream_header(Cursor(memoryview(good), 0, len(good), "stream")).info
    assert info.coding_name == "huffman" and info.code_lengths <= 14 and symbols.size >= 4 << info.code_lengths
    assert np.array_equal(_decode(good), symbols)
    _damaged_payloads_agree(good, info.payload_bytes, np.random.default_rng(n), monkeypatch)


@needs_core
@settings(max_examples=200)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 3, 5, 8, 12]))
def test_csr_streams_are_identical_on_both_paths(seed, gap_bits):
    """The writer's CSR streams (compiled one-pass mask walk vs numpy), with rows of any length and
    density: long zero runs (fillers), full rows, empty rows."""
    rng = np.random.default_rng(seed)
    rows, cols = int(rng.integers(1, 8)), int(rng.integers(1, 300))
    mask = rng.random((rows, cols)) < rng.choice([0.0, 0.01, 0.1, 0.5, 1.0])
    compiled, fallback = on_both_paths(lambda: csr_streams(mask, gap_bits))
    for got, want in zip(compiled, fallback):
        assert got.dtype == want.dtype and np.array_equal(got, want)


def _scatter_outcome(entry: dict, book: np.ndarray, streams: dict):
    def fail(role, message):
        return formats.FormatError(f"{role}: {message}")

    try:
        return decode_entry(entry, lambda role: book.tobytes(), streams, fail).tobytes()
    except formats.FormatError:
        return "FormatError"


@needs_core
@settings(max_examples=300)
@given(st.integers(0, 2**32 - 1), st.sampled_from([2, 3, 5, 8]), st.sampled_from([1, 2]))
def test_damaged_csr_streams_give_the_same_outcome_on_both_paths(seed, gap_bits, groups):
    """The compiled scatter (byte gaps and labels: its fast loop) against csr_flat_indices + gather
    on decoded streams with one symbol changed: same array, or FormatError on both paths."""
    rng = np.random.default_rng(seed)
    rows, cols, k = int(rng.integers(1, 6)), int(rng.integers(1, 80)), int(rng.integers(1, 17))
    mask = rng.random((rows, cols)) < rng.random()
    row_counts, gaps, flat = csr_streams(mask, gap_bits)
    labels = rng.integers(0, k, flat.size)
    streams = {"rows": row_counts, "gaps": gaps.astype(np.uint8), "labels": labels.astype(np.uint8)}
    role = str(rng.choice(["gaps", "labels", "rows", "none"]))
    if role != "none" and streams[role].size:
        at = int(rng.integers(0, streams[role].size))
        top = (1 << gap_bits) if role == "gaps" else 256 if role == "labels" else cols + 2
        streams[role] = streams[role].copy()
        streams[role][at] = int(rng.integers(0, top))
    group_rows = max(1, -(-rows // groups))
    n_groups = -(-rows // group_rows)
    book = rng.standard_normal((n_groups, k)).astype("<f4")
    entry = TensorEntry(
        name="w",
        shape=(rows, cols),
        dtype="float32",
        encoding="sparse_shared",
        nnz=int(flat.size),
        label_bits=5,
        gap_bits=gap_bits,
        codebook_size=k,
        groups=n_groups,
        group_rows=group_rows,
    )
    compiled, fallback = on_both_paths(lambda: _scatter_outcome(entry, book, streams))
    assert compiled == fallback


@needs_core
@settings(max_examples=200)
@given(st.integers(0, 2**32 - 1), st.integers(1, 32), st.integers(0, 3000), st.integers(-2, 0))
def test_fixed_width_unpack_is_identical_on_both_paths(seed, width, count, short):
    """unpack_fixed through the compiled core and through numpy, on payloads of exactly the packed
    size and a byte or two short (the compiled core then leaves the answer to numpy)."""
    rng = np.random.default_rng(seed)
    payload = codec.pack_fixed(rng.integers(0, 1 << width, count, dtype=np.int64), width)
    payload = payload[: max(0, len(payload) + short)]
    compiled, fallback = on_both_paths(lambda: codec.unpack_fixed(payload, count, width))
    assert compiled.dtype == fallback.dtype and np.array_equal(compiled, fallback)


@needs_core
@settings(max_examples=150)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([np.int64, np.uint8, np.int8, np.int16, np.uint32, np.uint64]),
    st.sampled_from([1, 3, 5, 8]),
)
def test_pruned_shared_tensors_write_identically_on_both_paths(seed, dtype, gap_bits):
    """formats.dumps of a pruned shared tensor: the compiled one-pass CSR + label gather + encoder and
    the numpy path write the same bytes, or refuse out-of-range labels with the same message."""
    rng = np.random.default_rng(seed)
    rows, cols, k = int(rng.integers(1, 40)), int(rng.integers(1, 400)), int(rng.integers(1, 33))
    mask = rng.random((rows, cols)) < rng.choice([0.0, 0.05, 0.3, 1.0])
    labels = rng.integers(0, k, (rows, cols))
    if rng.random() < 0.2 and mask.any():  # one kept label out of range
        labels[np.argwhere(mask)[0][0], np.argwhere(mask)[0][1]] = k if np.dtype(dtype).kind == "u" else -1
    book = rng.standard_normal(k).astype(np.float32)
    t = formats.SparseShared("w", mask, labels.astype(dtype), book, 5, gap_bits)
    chunk = [None, 0, 64][int(rng.integers(0, 3))]

    def write():
        try:
            return formats.dumps([t], chunk_symbols=chunk)
        except formats.FormatError as exc:
            return str(exc)

    compiled, fallback = on_both_paths(lambda: write())
    assert compiled == fallback


def test_writer_fuzz_round_trips_for_a_second():
    """tools/dev/fuzz_writer (the encode half of the sanitizer run) on whichever core is in use."""
    from tools.dev import fuzz_writer

    assert fuzz_writer.main(["--seconds", "1", "--seed", "3"]) == 0


def test_stream_fuzz_decodes_or_refuses_for_a_second():
    """tools/dev/fuzz_streams (damaged streams into the decoder, part of the sanitizer run)."""
    from tools.dev import fuzz_streams

    assert fuzz_streams.main(["--seconds", "1", "--seed", "3"]) == 0
