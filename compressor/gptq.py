"""Codebook labels chosen with error feedback (GPTQ with a lookup table), from the inputs' second moments.

Nearest-centroid labels minimise each weight's own error. A linear layer y = W x feels the output
error instead, sum_r (w'_r - w_r)^T H (w'_r - w_r) with H = E[x x^T] (rows of W are output channels,
its columns meet the input). GPTQ (Frantar et al. 2023) labels the columns one after the other and
moves each column's rounding error onto the columns not yet labelled, along the directions H says
are correlated with it: with U the upper Cholesky factor of H^-1, labelling column j at error
e = (w_j - q_j) / U_jj subtracts e * U_j,j+1: from the later columns. The labels are then the nearest
centroid of each row's codebook to the *updated* weight (a non-uniform grid, as in GPTVQ /
SqueezeLLM, instead of GPTQ's uniform one). Columns go in blocks (the trailing update is one
matrix product per block) and by decreasing H_jj ("act order": the most excited inputs are
labelled first, while the most later columns can still absorb their error).

Outliers (a checkpoint's side tensor) are stored at the value the feedback left them, not their
original one (SpQR, Dettmers et al. 2023): the error the earlier columns pushed onto them is then
absorbed there, at no cost (MiniLM 4-bit, 1.5% outliers: held-out min cosine 0.9854 -> 0.9860). H is damped by a fraction
of its mean diagonal: with a few thousand calibration tokens H of a 1536-wide input is nearly
singular, and the damping keeps the feedback from hiding error in directions the calibration
text never excites (docs/benchmarks/checkpoints.md measures it on held-out sentences).

Everything runs in float64 with a fixed column order and no threads of its own: the same labels on
any machine and worker count (BLAS sums each element in one fixed order whatever its thread count).
"""

from __future__ import annotations

import numpy as np

from .errors import CompressError

DAMPING = 0.1
ROUNDS = 1  # refit + relabel alternations (feedback_palettize)
BLOCK = 128  # columns whose updates stay inside the block before one trailing matrix product


def error_feedback_labels(
    matrix: np.ndarray,
    books: np.ndarray,
    group_rows: int,
    moment: np.ndarray,
    exact: np.ndarray | None = None,
    damping: float = DAMPING,
    block: int = BLOCK,
    updated: np.ndarray | None = None,
) -> np.ndarray:
    """Labels uint8 (rows, cols) of `matrix` (rows, cols) into `books` (groups, k) (group g: rows
    g*group_rows.. of the matrix) minimising the output error under input second moment `moment`
    (cols, cols). `exact`: bool (rows, cols), weights stored exactly (their label is arbitrary).
    `updated`: float64 (rows, cols), receives each weight as the feedback left it when its column was
    labelled; with it, the exact weights are stored at that value (SpQR), so they add no error of
    their own, else at their original value, passing the error they inherited on."""
    w = np.array(matrix, dtype=np.float64)
    rows, cols = w.shape
    if moment.shape != (cols, cols):
        raise CompressError(f"the input moment is {moment.shape}; a ({cols}, {cols}) array is needed for this tensor")
    order = np.argsort(-np.diag(moment), kind="stable")
    upper = inverse_cholesky(np.asarray(moment, np.float64)[np.ix_(order, order)], damping)
    w = w[:, order]
    keep = None if exact is None else np.asarray(exact, bool)[:, order]
    original = w.copy() if keep is not None else None
    grid = np.asarray(books, np.float64)[np.arange(rows) // group_rows]  # (rows, k): each row's codebook
    at = np.arange(rows)

    def quantize(c: int, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        label = np.abs(col[:, None] - grid).argmin(axis=1)
        quantized = grid[at, label]
        if keep is not None:
            quantized = np.where(keep[:, c], col if updated is not None else original[:, c], quantized)
        return label, quantized

    labels = feed_back(w, upper, quantize, block)
    out = np.empty_like(labels)
    out[:, order] = labels
    if updated is not None:
        updated[:, order] = w
    return out


def feed_back(w: np.ndarray, upper: np.ndarray, quantize, block: int = BLOCK) -> np.ndarray:
    """GPTQ's column loop: uint8 labels (rows, cols) of float64 `w` (columns already in the factor's order,
    updated in place: each column as the feedback left it when it was labelled). `quantize(c, column)`
    gives the labels and quantized values of column c; its error, scaled by U_cc, is pushed onto the
    columns not yet labelled along row c of `upper` (within the block at once, beyond it per block)."""
    rows, cols = w.shape
    labels = np.empty((rows, cols), dtype=np.uint8)
    for c0 in range(0, cols, block):
        c1 = min(cols, c0 + block)
        part = w[:, c0:c1]  # a view: updated in place
        errors = np.empty((rows, c1 - c0))
        for j in range(c1 - c0):
            col = part[:, j]
            label, quantized = quantize(c0 + j, col)
            error = (col - quantized) / upper[c0 + j, c0 + j]
            part[:, j + 1 :] -= np.outer(error, upper[c0 + j, c0 + j + 1 : c1])
            errors[:, j] = error
            labels[:, c0 + j] = label
        w[:, c1:] -= errors @ upper[c0:c1, c1:]
    return labels


def inverse_cholesky(moment: np.ndarray, damping: float = DAMPING) -> np.ndarray:
    """Upper-triangular U with U^T U = (H + damping * mean(diag H) * I)^-1 (GPTQ's factor).

    With J the order-reversing permutation and J H J = L L^T, H^-1 = (J L^-T J)(J L^-1 J), so
    U = J L^-1 J: one Cholesky factorisation and one triangular inverse (half of inverting H first)."""
    cols = moment.shape[0]
    diag = np.diag(moment)
    scale = float(diag.mean()) if diag.size and diag.mean() > 0 else 1.0
    damped = moment + (damping * scale) * np.eye(cols)
    dead = diag <= 0  # inputs that never fire: their column's error goes nowhere
    damped[dead, :] = 0.0
    damped[:, dead] = 0.0
    damped[dead, dead] = scale
    try:
        lower = np.linalg.cholesky(damped[::-1, ::-1])
    except np.linalg.LinAlgError:
        raise CompressError("the input moment is not positive semi-definite: give E[x x^T] of real inputs") from None
    return np.ascontiguousarray(np.linalg.inv(lower)[::-1, ::-1])


def feedback_palettize(matrix, labels, books, group_rows: int, moment, exclude_above=None, to_f32=None, rounds=ROUNDS):
    """(labels, books, kept) after `rounds` alternations of the least-squares codebook refit (compressor.refit)
    and error-feedback labelling, ending with a refit: each step lowers the calibration output error
    given the other's result. kept: float32 (rows, cols), the values to store for the weights above
    `exclude_above` (the updated weights: see error_feedback_labels), or None without outliers.
    Holds the tensor in float64 (8 bytes per weight) while it runs."""
    from .refit import refit_codebooks

    convert = to_f32 or (lambda a: np.asarray(a, dtype=np.float32))
    w = convert(matrix)
    exact = None if exclude_above is None else np.abs(w) > np.float32(exclude_above)
    updated = None if exact is None else np.empty(w.shape, np.float64)
    for _ in range(rounds):
        books = refit_codebooks(w, labels, books, group_rows, moment, exclude_above)
        labels = error_feedback_labels(w, books, group_rows, moment, exact, updated=updated)
    books = refit_codebooks(w, labels, books, group_rows, moment, exclude_above)
    return labels, books, None if updated is None else updated.astype(np.float32)
