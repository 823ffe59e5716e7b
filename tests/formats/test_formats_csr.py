"""DczFile.csr: a pruned tensor's CSR form decoded straight from its streams."""

from __future__ import annotations

import numpy as np
import pytest

from dcz import formats


@pytest.mark.parametrize(
    "shape,density,groups",
    [((7, 50), 0.2, None), ((4, 3, 5), 0.6, 2), ((3, 0), 0.5, None), ((9,), 0.0, None), ((20, 300), 0.02, None)],
)
def test_csr_equals_the_dense_tensor_without_building_it(shape, density, groups):
    rng = np.random.default_rng(5)
    mask = rng.random(shape) < density
    labels = rng.integers(0, 4, shape)
    book = rng.standard_normal((2, 4) if groups else 4).astype(np.float32)
    values = rng.standard_normal(shape).astype(np.float32)
    f = formats.loads(
        formats.dumps(
            [
                formats.SparseShared("q", mask, labels, book, 2, 2, group_rows=groups),
                formats.Sparse("p", values, mask, 3),
            ]
        )
    )
    for name in ("q", "p"):
        dense = f.tensor(name)
        two_d = dense.reshape(dense.shape[0] if dense.ndim > 1 else 1, -1)
        indptr, indices, vals = f.csr(name)
        rebuilt = np.zeros_like(two_d)
        for r in range(two_d.shape[0]):
            rebuilt[r, indices[indptr[r] : indptr[r + 1]]] = vals[indptr[r] : indptr[r + 1]]
        assert np.array_equal(rebuilt, two_d) and indptr[-1] == mask.sum() and vals.dtype == np.float32


def test_csr_of_a_tensor_that_is_not_pruned_is_refused():
    f = formats.loads(formats.dumps([formats.Raw("b", np.zeros(3, np.float32))]))
    with pytest.raises(formats.FormatError, match="'b' is not pruned"):
        f.csr("b")
