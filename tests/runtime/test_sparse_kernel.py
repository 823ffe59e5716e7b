"""The CSR fully connected kernel: exact against dense on awkward sparsity patterns."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dcz.runtime.numpy_exec import CsrRows, matmul_transposed


@given(
    rows=st.integers(1, 12),
    cols=st.integers(1, 12),
    batch=st.integers(1, 5),
    density=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_matches_dense_including_empty_rows(rows, cols, batch, density, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    w[rng.random((rows, cols)) >= density] = 0.0
    x = rng.standard_normal((batch, cols)).astype(np.float32)
    csr = CsrRows.from_dense(w)
    assert csr.nnz == np.count_nonzero(w)
    np.testing.assert_array_equal(csr.to_dense(), w)
    np.testing.assert_allclose(matmul_transposed(x, csr), x @ w.T, atol=1e-5, rtol=1e-5)


def test_batches_larger_than_the_scratch_budget_are_chunked(monkeypatch):
    import dcz.runtime.numpy_exec.sparse as sparse

    monkeypatch.setattr(sparse, "_SCRATCH_BYTES", 64)  # forces one row of the batch per chunk
    rng = np.random.default_rng(0)
    w = np.where(rng.random((7, 30)) < 0.3, rng.standard_normal((7, 30)), 0).astype(np.float32)
    x = rng.standard_normal((9, 30)).astype(np.float32)
    np.testing.assert_allclose(matmul_transposed(x, CsrRows.from_dense(w)), x @ w.T, atol=1e-5)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="does not match"):
        matmul_transposed(np.zeros((2, 3), np.float32), CsrRows.from_dense(np.eye(4, dtype=np.float32)))


def test_csr_from_the_file_and_its_transpose_equal_the_dense_weight(tmp_path):
    """The sparse backend builds its CSR straight from the .dcz streams (no dense array), and
    transposes it for MatMul / Gemm(transB=0) weights stored (in, out)."""
    from dcz import formats

    rng = np.random.default_rng(3)
    mask = rng.random((30, 70)) < 0.1
    mask[4] = False  # an empty row
    labels = rng.integers(0, 8, (30, 70))
    book = np.linspace(-1, 1, 8).astype(np.float32)
    path = tmp_path / "w.dcz"
    formats.write(path, [formats.SparseShared("w", mask, labels, book, 3, 4)])
    with formats.open(path) as f:
        csr = CsrRows.from_file(f, "w", (30, 70))
        dense = f.tensor("w")
    assert np.array_equal(csr.to_dense(), dense)
    flipped = csr.transposed()
    assert flipped.shape == (70, 30) and np.array_equal(flipped.to_dense(), dense.T)
    x = rng.standard_normal((3, 30)).astype(np.float32)
    np.testing.assert_allclose(matmul_transposed(x, flipped), x @ dense, atol=1e-5)
