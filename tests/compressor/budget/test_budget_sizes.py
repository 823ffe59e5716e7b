"""Candidate sizes without encoding equal the bytes the writer really stores."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from dcz import formats
from dcz.compressor.budget.candidates import SortedKept, share_kept
from dcz.compressor.budget.sizes import csr_bytes, raw_bytes, shared_bytes, stream_bytes
from dcz.compressor.kmeans import assign, kmeans_1d
from dcz.formats import codec


def _tensor_bytes(tensor) -> int:
    return int(formats.loads(formats.dumps([tensor])).size_report().tensors[0].huffman_bytes)


@given(
    width=st.integers(1, 12),
    count=st.integers(0, 3000),
    skew=st.floats(0.0, 3.0),
    chunk=st.sampled_from([None, 0, 7, 64]),
    seed=st.integers(0, 2**16),
)
def test_stream_bytes_equal_the_encoded_stream(width, count, skew, chunk, seed):
    rng = np.random.default_rng(seed)
    top = 1 << width
    probs = np.exp(-skew * np.arange(top, dtype=np.float64))  # skewed: long codes, limited lengths
    sym = rng.choice(top, size=count, p=probs / probs.sum())
    assert stream_bytes(sym, width, chunk=chunk) == len(codec.encode_stream(sym, width, True, chunk))
    assert stream_bytes(sym, width, huffman=False) == len(codec.encode_stream(sym, width, False))


def test_long_skewed_stream_takes_the_chunked_limited_table():
    """Past CHUNK_MIN_SYMBOLS the writer chunks and may re-limit the code lengths to 12..16 bits."""
    rng = np.random.default_rng(1)
    sym = np.minimum(rng.geometric(0.5, size=codec.CHUNK_MIN_SYMBOLS + 999) - 1, 255)
    encoded = codec.encode_stream(sym, 8)
    assert encoded[0] == codec.CODING_CHUNKED  # the case this test is about
    assert stream_bytes(sym, 8) == len(encoded)


@given(
    shape=st.sampled_from([(7,), (5, 9), (4, 3, 3, 3), (1, 200)]),
    density=st.floats(0.01, 1.0),
    label_bits=st.integers(1, 8),
    gap_bits=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_tensor_sizes_equal_the_written_tensor(shape, density, label_bits, gap_bits, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < density
    mask.reshape(-1)[0] = True
    k = int(rng.integers(1, (1 << label_bits) + 1))
    labels = rng.integers(0, k, size=shape)
    book = np.sort(rng.standard_normal(k)).astype(np.float32)
    sparse = formats.SparseShared("w", mask, labels, book, label_bits, gap_bits)
    kept = labels.reshape(-1)[mask.reshape(-1)]
    assert csr_bytes(mask, gap_bits) + shared_bytes(kept, k, label_bits) == _tensor_bytes(sparse)
    dense = formats.Shared("w", labels, book, label_bits)
    assert shared_bytes(labels.reshape(-1), k, label_bits) == _tensor_bytes(dense)
    weight = rng.standard_normal(shape).astype(np.float32)
    assert raw_bytes(weight) == _tensor_bytes(formats.Raw("w", weight))


@given(n=st.integers(1, 5000), levels=st.integers(1, 400), seed=st.integers(0, 2**16))
def test_share_kept_equals_kmeans_for_every_label_width(n, levels, seed):
    """The per-sparsity shortcut (one sort, one prefix sum for all widths) is kmeans_1d + assign exactly."""
    rng = np.random.default_rng(seed)
    kept = (rng.integers(0, levels, size=n) * rng.standard_normal()).astype(np.float32)
    srt = SortedKept(np.sort(kept))
    for bits in (1, 3, 8):
        k = max(1, min(2**bits, srt.distinct))
        want = np.asarray(kmeans_1d(kept, k, init="linear", seed=0)[0], dtype=np.float32)
        book, labels = share_kept(kept, srt, bits)
        np.testing.assert_array_equal(book, want)
        np.testing.assert_array_equal(labels, assign(kept, want))
