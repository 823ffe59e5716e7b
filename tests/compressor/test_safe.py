"""Safe defaults: per layer, the cheapest codebook within the SQNR bound; never larger than raw."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dcz.compressor import safe


def test_layer_takes_the_fewest_bits_that_meet_the_bound():
    rng = np.random.default_rng(0)
    weight = (rng.integers(-20, 20, size=(64, 256)) + rng.normal(0, 0.01, size=(64, 256))).astype(np.float32)
    choice = safe.choose(weight, None)
    assert choice.codebook is not None and choice.bits == 6 and choice.group_rows is None  # 40 levels + noise
    assert choice.sqnr_db >= safe.SAFE_SQNR_DB
    approx = safe.reconstruct(choice.codebook, choice.labels, choice.group_rows, None)
    assert safe.sqnr_db(weight, approx) == pytest.approx(choice.sqnr_db)


def test_rows_of_very_different_scales_take_grouped_codebooks():
    rng = np.random.default_rng(1)
    # heavy tails (Student t, 2 degrees) in rows of log-normal scales, like PP-OCR's convolutions
    weight = (rng.standard_t(2, size=(64, 512)) * np.exp(rng.normal(0, 2, 64))[:, None]).astype(np.float32)
    choice = safe.choose(weight, None)
    assert choice.group_rows is not None and choice.sqnr_db >= safe.SAFE_SQNR_DB


def test_a_channel_far_below_the_others_keeps_its_own_bound():
    rng = np.random.default_rng(3)
    # One output channel 1000x smaller than the rest (PP-OCRv6 rec's conv2d_111): a single 8-bit codebook
    # meets the tensor bound but maps that whole channel to the centroid next to 0.
    weight = rng.normal(size=(16, 8192)).astype(np.float32)
    weight[5] *= 1e-3
    single = safe.choose(weight, None, channel_db=-np.inf)
    assert single.group_rows is None and single.sqnr_db >= safe.SAFE_SQNR_DB
    assert safe.min_row_sqnr_db(weight, safe.reconstruct(single.codebook, single.labels, None, None)) < 10
    choice = safe.choose(weight, None)
    assert choice.codebook is not None and choice.group_rows is not None
    approx = safe.reconstruct(choice.codebook, choice.labels, choice.group_rows, None)
    assert choice.channel_db == safe.min_row_sqnr_db(weight, approx) >= safe.CHANNEL_SQNR_DB
    assert safe.sqnr_db(weight, approx) >= safe.SAFE_SQNR_DB


def test_a_costly_channel_fix_keeps_the_single_codebook():
    weight = np.random.default_rng(4).normal(size=(8, 64)).astype(np.float32)
    plain = safe.choose(weight, None, channel_db=-np.inf)
    choice = safe.choose(weight, None, channel_db=200.0)  # no codebook reaches it: the single one stays
    assert choice.group_rows is None and choice.bits == plain.bits and choice.channel_db < 200.0


def test_tiny_tensor_stays_raw_with_a_reason():
    choice = safe.choose(np.random.default_rng(2).normal(size=(2, 2)).astype(np.float32), None)
    assert choice.codebook is None and "not be smaller" in choice.reason


@given(st.integers(1, 600), st.integers(1, 8), st.integers(1, 4))
def test_a_fitting_codebook_is_smaller_than_raw(numel, bits, groups):
    weight = np.zeros(numel, np.float32)
    if safe.fits(weight, numel, bits, groups):
        assert safe.estimated_bytes(numel, numel, bits, groups) < 4 * numel
