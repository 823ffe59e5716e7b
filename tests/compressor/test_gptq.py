"""Labels with error feedback (compressor/gptq.py): lower output error than nearest centroids, exact outliers,
the same labels on every run."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from dcz import formats
from dcz.checkpoint import load_state_dict
from dcz.cli import main
from dcz.compressor.checkpoint import Settings, compress_checkpoint
from dcz.compressor.errors import CompressError
from dcz.compressor.gptq import error_feedback_labels, inverse_cholesky
from dcz.compressor.palettize import palettize


def correlated_inputs(rng, n=4000, cols=96):
    """Inputs with a few loud channels and strong correlations (as transformer activations have)."""
    x = rng.standard_normal((n, cols)) @ rng.standard_normal((cols, cols))
    x[:, :4] *= 8
    return x


def output_error(w, q, h) -> float:
    e = (q - w).astype(np.float64)
    return float(np.einsum("ij,jk,ik->", e, h, e))


def decoded(labels, books, group_rows):
    return books[np.arange(labels.shape[0])[:, None] // group_rows, labels]


@pytest.mark.parametrize("bits, group_rows", [(3, 64), (4, 1), (4, 8)])
def test_feedback_beats_nearest_on_held_out_inputs(bits, group_rows):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((64, 96)) * 0.05).astype(np.float32)
    mixing = rng.standard_normal((96, 96))
    fit, held_out = (rng.standard_normal((n, 96)) @ mixing for n in (3000, 3000))
    h_fit, h_test = fit.T @ fit / len(fit), held_out.T @ held_out / len(held_out)
    nearest, books = palettize(w, bits, group_rows)
    feedback = error_feedback_labels(w, books, group_rows, h_fit)
    before = output_error(w, decoded(nearest, books, group_rows), h_test)
    after = output_error(w, decoded(feedback, books, group_rows), h_test)
    # measured: 0.53-0.59x the nearest-centroid output error on inputs not seen
    assert after < 0.7 * before, (before, after)


def test_uncorrelated_inputs_give_nearest_labels():
    """With H diagonal no error can be moved anywhere: every label is the nearest centroid."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((16, 32)).astype(np.float32)
    nearest, books = palettize(w, 3, 4)
    h = np.diag(rng.uniform(0.5, 2.0, 32))
    np.testing.assert_array_equal(error_feedback_labels(w, books, 4, h, damping=0.0), nearest)


def with_top_5_percent_exact():
    """(w, h, exact, nearest labels, books): one 8-entry codebook fitted without the 5% largest weights."""
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((32, 48)) * 0.05).astype(np.float32)
    x = correlated_inputs(rng, cols=48)
    h = x.T @ x / len(x)
    threshold = float(np.quantile(np.abs(w), 0.95))
    nearest, books = palettize(w, 3, 32, exclude_above=threshold)
    return w, h, np.abs(w) > threshold, nearest, books


def test_exact_weights_pass_their_inherited_error_on():
    w, h, exact, nearest, books = with_top_5_percent_exact()
    feedback = error_feedback_labels(w, books, 32, h, exact=exact)

    def with_exact(labels):
        return np.where(exact, w, decoded(labels, books, 32))

    assert output_error(w, with_exact(feedback), h) < 0.8 * output_error(w, with_exact(nearest), h)


def test_exact_weights_stored_as_updated_absorb_their_inherited_error():
    w, h, exact, _, books = with_top_5_percent_exact()
    passed_on = np.where(exact, w, decoded(error_feedback_labels(w, books, 32, h, exact=exact), books, 32))
    updated = np.empty(w.shape)
    labels = error_feedback_labels(w, books, 32, h, exact=exact, updated=updated)
    absorbed = np.where(exact, updated, decoded(labels, books, 32))
    assert not np.allclose(updated[exact], w[exact])  # the feedback moved them
    assert output_error(w, absorbed, h) < 0.97 * output_error(w, passed_on, h)  # measured 0.94x


def test_same_labels_on_rerun_and_for_a_float32_or_float64_moment():
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((40, 300)) * 0.05).astype(np.float32)  # 300 columns: three blocks of 128
    x = correlated_inputs(rng, cols=300)
    h = x.T @ x / len(x)
    _, books = palettize(w, 4, 8)
    first = error_feedback_labels(w, books, 8, h)
    np.testing.assert_array_equal(first, error_feedback_labels(w, books, 8, h.copy()))
    assert (first != error_feedback_labels(w, books, 8, h, block=300)).mean() < 0.01  # blocking is only a speed-up


def test_dead_inputs_and_a_bad_moment():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((8, 6)).astype(np.float32)
    x = rng.standard_normal((100, 6))
    x[:, 2] = 0.0  # an input that never fires
    labels, books = palettize(w, 2, 8)
    out = error_feedback_labels(w, books, 8, x.T @ x / 100)
    assert out.shape == (8, 6) and out.dtype == np.uint8
    with pytest.raises(CompressError, match=r"\(6, 6\)"):
        error_feedback_labels(w, books, 8, np.eye(5))
    with pytest.raises(CompressError, match="positive semi-definite"):
        inverse_cholesky(2 * np.ones((6, 6)) - np.eye(6), damping=0.0)  # eigenvalue -1


@pytest.fixture
def checkpoint(tmp_path):
    rng = np.random.default_rng(5)
    save_file(
        {"up.weight": (rng.standard_normal((128, 96)) * 0.05).astype(np.float32)}, str(tmp_path / "m.safetensors")
    )
    x = correlated_inputs(rng)
    np.savez(tmp_path / "moments.npz", **{"up.weight": x.T @ x / len(x)})
    return tmp_path / "m.safetensors", tmp_path / "moments.npz", x.T @ x / len(x)


def test_checkpoint_feedback_by_default_with_calib(checkpoint, tmp_path):
    source, moments, h = checkpoint
    w = load_file(str(source))["up.weight"]
    errors = {}
    for flag in ([], ["--no-error-feedback"]):
        out = tmp_path / f"{len(flag)}.dcz"
        assert main(["compress", str(source), "-o", str(out), "--calib", str(moments), "--workers", "1", *flag]) == 0
        with formats.open(out) as f:
            assert f.metadata["compress.checkpoint"]["error_feedback"] is not flag
        errors[bool(flag)] = output_error(w, load_state_dict(out)["up.weight"], h)
    assert errors[False] < 0.7 * errors[True], errors  # measured 0.45x


def test_checkpoint_feedback_same_bytes_for_any_worker_count(checkpoint, tmp_path):
    source, moments, _ = checkpoint
    settings = Settings(bits=3, outliers=0.01, min_elements=16)
    for workers in (1, 2):
        compress_checkpoint(
            source, tmp_path / f"{workers}.dcz", settings, workers=workers, progress=False, calib=moments
        )
    assert (tmp_path / "1.dcz").read_bytes() == (tmp_path / "2.dcz").read_bytes()


def test_checkpoint_indefinite_moment_named(checkpoint, tmp_path):
    source, _, _ = checkpoint
    np.savez(tmp_path / "bad.npz", **{"up.weight": 1.5 * np.eye(96) - 0.5 * np.ones((96, 96))})
    with pytest.raises(CompressError, match="tensor 'up.weight'.*positive semi-definite"):
        compress_checkpoint(
            source, tmp_path / "x.dcz", Settings(), workers=1, progress=False, calib=tmp_path / "bad.npz"
        )
    assert not (tmp_path / "x.dcz").exists()
