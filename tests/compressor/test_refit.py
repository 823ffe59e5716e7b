"""Codebooks refitted on the layer output (compressor/refit.py), per-tensor bits and --calib for checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from dcz import formats
from dcz.cli import main
from dcz.compressor.checkpoint import Settings, compress_checkpoint
from dcz.compressor.errors import CompressError
from dcz.compressor.palettize import palettize
from dcz.compressor.refit import read_moments, refit_codebooks


def correlated_inputs(rng, n=4000, cols=96):
    """Inputs with a few loud, correlated channels (as transformer activations have)."""
    x = rng.standard_normal((n, cols)).astype(np.float32) @ rng.standard_normal((cols, cols)).astype(np.float32)
    x[:, :4] *= 8
    return x


def output_error(w, q, h) -> float:
    e = (q - w).astype(np.float64)
    return float(np.einsum("ij,jk,ik->", e, h, e))


# measured: 0.971 (one codebook: 8 numbers for 6,144 weights), 0.421 per row, 0.909 groups of 8 rows
@pytest.mark.parametrize("group_rows, outliers, most", [(64, None, 0.99), (1, None, 0.6), (8, 0.02, 0.95)])
def test_refit_lowers_the_output_error(group_rows, outliers, most):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((64, 96)) * 0.05).astype(np.float32)
    x = correlated_inputs(rng)
    h = x.T @ x / len(x)
    threshold = None if outliers is None else float(np.quantile(np.abs(w), 1 - outliers))
    labels, books = palettize(w, 3, group_rows, exclude_above=threshold)
    refit = refit_codebooks(w, labels, books, group_rows, h, threshold)
    rows = np.arange(64)[:, None] // group_rows

    def decoded(b):
        q = b[rows, labels]
        return q if threshold is None else np.where(np.abs(w) > threshold, w, q)

    before, after = output_error(w, decoded(books), h), output_error(w, decoded(refit), h)
    assert after < most * before, (before, after)
    # the weights' own error grows: the centroids moved off their k-means means, on purpose
    assert ((decoded(refit) - w) ** 2).sum() > ((decoded(books) - w) ** 2).sum()


def test_unused_centroid_keeps_its_value():
    w = np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)
    labels = np.array([[0, 0, 2, 2]], np.uint8)
    books = np.array([[0.1, 0.5, 0.9, 7.0]], np.float32)
    refit = refit_codebooks(w, labels, books, 1, np.eye(4, dtype=np.float32))
    np.testing.assert_allclose(refit[0, [0, 2]], [0.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(refit[0, [1, 3]], [0.5, 7.0])


@pytest.fixture
def checkpoint(tmp_path):
    rng = np.random.default_rng(1)
    tensors = {
        "up.weight": (rng.standard_normal((128, 96)) * 0.05).astype(np.float32),
        "down.weight": (rng.standard_normal((96, 128)) * 0.05).astype(np.float32),
        "norm.weight": np.ones(96, np.float32),
    }
    save_file(tensors, str(tmp_path / "m.safetensors"))
    x = correlated_inputs(rng)
    np.savez(tmp_path / "moments.npz", **{"up.weight": x.T @ x / len(x)})
    return tmp_path / "m.safetensors", tmp_path / "moments.npz"


def test_checkpoint_calib_and_bits_per_tensor(checkpoint, tmp_path):
    source, moments = checkpoint
    settings = Settings(bits=4, min_elements=16, bits_for=(("down.*", 5),))
    compress_checkpoint(source, tmp_path / "a.dcz", settings, workers=2, progress=False, calib=moments)
    with formats.open(tmp_path / "a.dcz") as f:
        assert f.metadata["compress.checkpoint.refit"] == ["up.weight"]
        assert f.info("up.weight").label_bits == 4 and f.info("down.weight").label_bits == 5
    compress_checkpoint(source, tmp_path / "b.dcz", settings, workers=1, progress=False, calib=moments)
    assert (tmp_path / "a.dcz").read_bytes() == (tmp_path / "b.dcz").read_bytes()


def test_cli_calib_and_bit_patterns(checkpoint, tmp_path, capsys):
    source, moments = checkpoint
    out = tmp_path / "c.dcz"
    assert main(["compress", str(source), "-o", str(out), "--bits", "3,down.*=6", "--calib", str(moments),
                 "--workers", "1", "--iterations", "3"]) == 0  # fmt: skip
    with formats.open(out) as f:
        assert f.info("up.weight").label_bits == 3 and f.info("down.weight").label_bits == 6
        assert f.metadata["compress.checkpoint.refit"] == ["up.weight"]
    assert main(["compress", str(source), "-o", str(out), "--bits", "4,=5"]) != 0
    assert "is not PATTERN=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"nope.weight": np.eye(96)}, "names no tensor of the checkpoint"),
        ({"up.weight": np.eye(95)}, "is float64 \\(95, 95\\)"),
        ({"up.weight": np.eye(96, dtype=np.int32)}, "a float \\(96, 96\\) array"),
        ({"up.weight": np.triu(np.ones((96, 96)))}, "is not symmetric"),
        ({"up.weight": np.full((96, 96), np.nan)}, "NaN or infinite"),
        ({}, "holds no array"),
    ],
)
def test_bad_moments_one_error(checkpoint, tmp_path, arrays, message):
    source, _ = checkpoint
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CompressError, match=message):
        compress_checkpoint(source, tmp_path / "x.dcz", Settings(min_elements=16), workers=1, progress=False,
                            calib=tmp_path / "bad.npz")  # fmt: skip
    assert not (tmp_path / "x.dcz").exists()


def test_pickled_or_npy_moments_refused(tmp_path):
    np.save(tmp_path / "m.npy", np.eye(4))
    with pytest.raises(CompressError, match="not an .npy"):
        read_moments(tmp_path / "m.npy", {"w": (4, 4)})
    np.savez(tmp_path / "p.npz", w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CompressError, match="not a readable array"):
        read_moments(tmp_path / "p.npz", {"w": (4, 4)})


def test_bad_bits_for():
    with pytest.raises(CompressError, match="must be in 1..8"):
        Settings(bits_for=(("x*", 9),)).check()
