"""Fully connected layers computed straight from a pruned weight's CSR form, in pure numpy.

`y = x @ W.T` with W (out, in) stored row-wise as CSR: every output column r is the sum, over the
kept entries j of row r, of x[:, col_j] * value_j. That is one gather, one multiply and one
`np.add.reduceat` over row segments; no scipy. Memory: the CSR pieces (nnz * 8 bytes + rows)
instead of out * in * 4 bytes, plus a (batch_chunk, nnz) scratch bounded by `_SCRATCH_BYTES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SCRATCH_BYTES = 32 << 20


@dataclass(frozen=True)
class CsrRows:
    """A 2-D matrix (rows x cols) by rows: values and column indices of the kept entries."""

    shape: tuple[int, int]
    indptr: np.ndarray  # int64 (rows + 1,)
    indices: np.ndarray  # int32 (nnz,)
    values: np.ndarray  # float32 (nnz,)

    @classmethod
    def from_dense(cls, dense: np.ndarray) -> CsrRows:
        """CSR of a 2-D array's nonzeros (built once at load from the decoded weight)."""
        rows, cols = np.nonzero(dense)
        indptr = np.zeros(dense.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=dense.shape[0]), out=indptr[1:])
        return cls(dense.shape, indptr, cols.astype(np.int32), dense[rows, cols].astype(np.float32))

    @classmethod
    def from_file(cls, dcz_file, name: str, shape: tuple[int, int]) -> CsrRows:
        """The stored tensor's CSR straight from its streams (formats.DczFile.csr): no dense array."""
        indptr, indices, values = dcz_file.csr(name)
        return cls(shape, indptr, indices.astype(np.int32), values)

    def transposed(self) -> CsrRows:
        """The same matrix's transpose, by rows (a stable sort of the entries by column)."""
        rows = np.repeat(np.arange(self.shape[0], dtype=np.int32), np.diff(self.indptr))
        order = np.argsort(self.indices, kind="stable")
        indptr = np.zeros(self.shape[1] + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.indices, minlength=self.shape[1]), out=indptr[1:])
        return CsrRows((self.shape[1], self.shape[0]), indptr, rows[order], self.values[order])

    @property
    def nnz(self) -> int:
        return int(self.values.size)

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.indices.nbytes + self.values.nbytes

    def to_dense(self) -> np.ndarray:
        dense = np.zeros(self.shape, dtype=self.values.dtype)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        dense[rows, self.indices] = self.values
        return dense


def matmul_transposed(x: np.ndarray, w: CsrRows) -> np.ndarray:
    """x (batch, in) @ W.T -> (batch, out), W given as CsrRows of shape (out, in)."""
    out_rows, in_cols = w.shape
    if x.ndim != 2 or x.shape[1] != in_cols:
        raise ValueError(f"input shape {x.shape} does not match sparse weight {w.shape}")
    y = np.zeros((x.shape[0], out_rows), dtype=np.result_type(x.dtype, w.values.dtype))
    nonempty = np.flatnonzero(np.diff(w.indptr))
    if nonempty.size == 0:
        return y
    # reduceat sums [start_i, start_{i+1}): listing only nonempty rows' starts keeps segments exact
    # (an empty row would otherwise yield the next row's first product instead of 0).
    starts = w.indptr[nonempty]
    step = max(1, _SCRATCH_BYTES // max(w.nnz * y.itemsize, 1))
    for lo in range(0, x.shape[0], step):
        products = x[lo : lo + step, w.indices]  # the gather allocates; multiply in place
        products *= w.values
        y[lo : lo + step, nonempty] = np.add.reduceat(products, starts, axis=1)
    return y
