"""The compiled k-means step (compressor/_native/kmeans.c) and its numpy fallback give identical
labels and sums, so palettized checkpoints have the same bytes with or without a compiler.

`.ci/run` sets DCZ_REQUIRE_NATIVE=1: there a missing compiled k-means fails the suite.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_paths import compiled_and_fallback

from dcz.compressor import kmeans, kmeans_native, palettize
from dcz.compressor.checkpoint_read import bf16_to_f32

needs_core = pytest.mark.skipif(kmeans_native._core is None, reason=kmeans_native.describe())


def test_compiled_kmeans_is_built_where_required():
    if os.environ.get("DCZ_REQUIRE_NATIVE", "") == "1":
        assert kmeans_native._core is not None, kmeans_native.describe()


def test_dcz_native_0_selects_numpy(monkeypatch):
    monkeypatch.setenv("DCZ_NATIVE", "0")
    assert kmeans_native.core() is None and kmeans_native.describe().startswith("numpy (")


@st.composite
def grouped(draw):
    """Grouped values with sorted (or, rarely, unsorted / NaN) midpoints, ties with the midpoints,
    optional weights, float32 or float64 on either side."""
    groups = draw(st.integers(1, 4))
    n = draw(st.integers(0, 1300))
    k = draw(st.sampled_from([1, 2, 3, 16, 17, 32, 33, 64, 256, 300]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x_type = draw(st.sampled_from([np.float32, np.float64]))
    m_type = draw(st.sampled_from([np.float32, np.float64]))
    x = (rng.standard_normal((groups, n)) * draw(st.sampled_from([1e-3, 1.0, 1e3]))).astype(x_type)
    mids = np.sort(rng.standard_normal((groups, k - 1)), axis=1).astype(m_type)
    if n and k > 1 and draw(st.booleans()):  # values exactly on midpoints (ties go to the lower centroid)
        x.ravel()[: min(n, k - 1)] = mids[0, : min(n, k - 1)]
    if k > 2 and draw(st.integers(0, 9)) == 0:  # unsorted midpoints (or a NaN): every midpoint is compared
        mids[:, 0] = np.nan if draw(st.booleans()) else mids[:, -1] + 1
    if n and draw(st.integers(0, 9)) == 0:
        x.ravel()[-1] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    weight = rng.random((groups, n)).astype(np.float32) if draw(st.booleans()) else None
    return x, mids, weight


@needs_core
@settings(max_examples=300)
@given(grouped(), st.booleans())
def test_label_sums_identical_to_numpy(case, sums):
    x, mids, weight = case
    with mock.patch.dict(os.environ, {"DCZ_NATIVE": "1"}):
        compiled = kmeans_native.label_sums(x, mids, weight, sums=sums)
    with mock.patch.dict(os.environ, {"DCZ_NATIVE": "0"}):
        fallback = kmeans_native.label_sums(x, mids, weight, sums=sums)
    for a, b in zip(compiled, fallback):
        if b is None:
            assert a is None
        else:
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


@needs_core
@settings(max_examples=200)
@given(grouped(), st.booleans())
def test_label_sums_of_bf16_are_those_of_its_float32(case, sums):
    """bf16 bit patterns in (widened chunk by chunk in C): the labels and sums of the float32 values, on
    both paths."""
    x, mids, weight = case
    bits = (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    want = kmeans_native.label_sums(bf16_to_f32(bits), mids, weight, sums=sums)
    for native in ("1", "0"):
        with mock.patch.dict(os.environ, {"DCZ_NATIVE": native}):
            got = kmeans_native.label_sums(bits, mids, weight, sums=sums, bf16=True)
        for a, b in zip(got, want):
            assert (a is None and b is None) or (a.dtype == b.dtype and a.tobytes() == b.tobytes())


@pytest.mark.parametrize("shape, group_rows", [((300, 70), 7), ((64, 4096), 1), ((9, 1000), 2)])
def test_palettize_reads_bf16_blocks_as_their_float32(monkeypatch, shape, group_rows):
    """Blocks labelled straight from bf16 bit patterns (no float32 copy) give the labels and codebooks of
    the float32 tensor; a padded last group takes the converting path, with the same result."""
    monkeypatch.setattr(palettize, "BLOCK_ELEMENTS", 1 << 13)
    rng = np.random.default_rng(7)
    bits = (rng.standard_normal(shape, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
    direct = palettize.palettize(bits, 4, group_rows, to_f32=bf16_to_f32)
    converted = palettize.palettize(bf16_to_f32(bits), 4, group_rows)
    assert direct[0].tobytes() == converted[0].tobytes() and direct[1].tobytes() == converted[1].tobytes()


@needs_core
@pytest.mark.parametrize("k", [2, 16, 40, 256, 1000])
def test_assign_identical_to_numpy(monkeypatch, k):
    rng = np.random.default_rng(k)
    values = rng.standard_normal(50_000).astype(np.float32)
    centroids = np.sort(rng.choice(values, k, replace=False)).astype(np.float64)
    values[:k] = ((centroids[:-1] + centroids[1:]) / 2).astype(np.float32).tolist() + [0.0]  # near-ties
    compiled, fallback = compiled_and_fallback(monkeypatch, lambda: kmeans.assign(values, centroids))
    assert compiled.dtype == fallback.dtype and np.array_equal(compiled, fallback)
    expected = np.searchsorted((centroids[:-1] + centroids[1:]) / 2, values.astype(np.float64), side="left")
    assert np.array_equal(compiled, expected)


@needs_core
@pytest.mark.parametrize(
    "shape, bits, group_rows, sensitivity, exclude",
    [((300, 70), 4, 7, None, None), ((513, 1030), 3, 2, "magnitude", 0.05), ((40, 2000), 8, 1, None, 0.03)],
)
def test_palettize_identical_with_any_pool_and_path(monkeypatch, shape, bits, group_rows, sensitivity, exclude):
    monkeypatch.setattr(palettize, "BLOCK_ELEMENTS", 1 << 14)  # many blocks
    rng = np.random.default_rng(0)
    bf16 = (rng.standard_normal(shape, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)

    def run(pool=None):
        labels, book = palettize.palettize(bf16, bits, group_rows, sensitivity, bf16_to_f32, exclude, pool=pool)
        return labels.tobytes() + book.tobytes()

    compiled, fallback = compiled_and_fallback(monkeypatch, run)
    with ThreadPoolExecutor(3) as pool:
        threaded = run(pool)
    assert compiled == fallback == threaded


def _call(x=None, mids=None, groups=4, n=10, k=16, labels=None, width=1, num=None, den=None, weight=None, kind=0):
    x = np.zeros(groups * n, np.float32) if x is None else x
    mids = np.zeros(groups * (k - 1), np.float32) if mids is None else mids
    labels = np.zeros(max(groups * n, 0), np.uint8) if labels is None else labels
    kmeans_native._core.label_sums(x, kind, mids, False, groups, n, k, labels, width, num, den, weight)


@needs_core
@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(x=np.zeros(39, np.float32)), "x:"),
        (dict(mids=np.zeros(4 * 14, np.float32)), "mids:"),
        (dict(labels=np.zeros(41, np.uint8)), "labels:"),
        (dict(labels=bytes(40)), "writable"),
        (dict(num=np.zeros(64), den=np.zeros(63)), "den:"),
        (dict(num=np.zeros(64)), "go together"),
        (dict(weight=np.zeros(40, np.float64)), "weight:"),
        (dict(width=3), "label width"),
        (dict(k=300, labels=np.zeros(40, np.uint8)), "label width"),  # 300 labels do not fit in a byte
        (dict(groups=-1, x=np.zeros(0, np.float32), mids=np.zeros(0, np.float32)), "bad groups"),
        (dict(kind=3), "value type"),
        (dict(kind=2), "x:"),  # 40 float32 values are not 40 bf16 ones
        (dict(kind=2, x=np.zeros(39, np.uint16)), "x:"),
    ],
)
def test_compiled_call_checks_every_length(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        _call(**bad)


@pytest.mark.parametrize("native", ["1", "0"])
def test_labels_written_into_a_given_array(monkeypatch, native):
    """`out` receives exactly the labels label_sums would return (palettize labels straight into the
    tensor's rows); a wrong shape or dtype is refused."""
    monkeypatch.setenv("DCZ_NATIVE", native)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 1000)).astype(np.float32)
    mids = np.sort(rng.standard_normal((3, 15)).astype(np.float32), axis=1)
    want, num, den = kmeans_native.label_sums(x, mids)
    out = np.full((3, 1000), 99, dtype=np.uint8)
    got, num2, den2 = kmeans_native.label_sums(x, mids, out=out)
    assert got is out
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(num, num2)
    np.testing.assert_array_equal(den, den2)
    with pytest.raises(ValueError, match="out must be"):
        kmeans_native.label_sums(x, mids, out=np.empty((3, 1000), dtype=np.int64))


def test_scratch_conversion_and_read_match_the_plain_ones(tmp_path):
    """The per-thread buffers of checkpoint reading give the arrays of load / bf16_to_f32."""
    from dcz.compressor import checkpoint_read as cr
    from tools.bench.ckpt_synth import write_checkpoint

    path = write_checkpoint(tmp_path / "c", layers=1, hidden=64, inter=96, vocab=100)
    scratch = cr.Scratch()
    for ref in cr.read_checkpoint(path):
        plain = cr.load(ref)
        np.testing.assert_array_equal(cr.load(ref, scratch), plain)
        widened = scratch.bf16_to_f32(plain)
        assert widened.shape == plain.shape
        np.testing.assert_array_equal(widened.view(np.uint32), bf16_to_f32(plain).view(np.uint32))


@needs_core
def test_kmeans_fuzz_matches_numpy_for_a_second():
    """tools/dev/fuzz_kmeans (random and malformed label_sums calls, part of the sanitizer run)."""
    from tools.dev import fuzz_kmeans

    assert fuzz_kmeans.main(["--seconds", "1", "--seed", "3"]) == 0


def test_palettize_writes_labels_into_a_given_array():
    """`out` (compress_tensor's reused per-thread buffer) receives the labels palettize would return."""
    rng = np.random.default_rng(8)
    bits = (rng.standard_normal((40, 300), dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
    want = palettize.palettize(bits, 4, 3, to_f32=bf16_to_f32)
    out = np.full((40, 300), 77, np.uint8)
    got = palettize.palettize(bits, 4, 3, to_f32=bf16_to_f32, out=out)
    assert got[0] is out and out.tobytes() == want[0].tobytes() and got[1].tobytes() == want[1].tobytes()
    with pytest.raises(ValueError, match="out must be"):
        palettize.palettize(bits, 4, 3, to_f32=bf16_to_f32, out=np.empty((40, 301), np.uint8))
