"""Error-feedback labels for the ONNX search's candidates (GPTQ with one sorted codebook per tensor).

compressor/gptq.py labels a checkpoint's row-grouped codebooks with error feedback; the search's
candidates have one codebook per tensor (k-means, or an entropy-constrained grid of up to 256
levels, budget/entropy.py), so the nearest level of a column is a searchsorted of the midpoints
(O(rows log k) instead of gptq's rows x k table). Otherwise the same algorithm and factor
(gptq.inverse_cholesky, columns by falling H_jj, blocks of 128, H damped by 10% of its mean diagonal).

`output_error` is the calibration output error of a weight error, tr(E H E^T): the search scales a
candidate's measured damage (nearest labels) by the ratio of this error with feedback to without,
computed on a strided sample of the rows (rows are independent given H), so the allocation sees what
the written file will hold without labelling every candidate in full.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dcz.compressor.gptq import BLOCK, DAMPING, feed_back, inverse_cholesky

SAMPLE_ROWS = 96  # rows of a matrix the damage ratio is estimated on


@dataclass(frozen=True)
class Factor:
    """A layer's column order (falling H_jj) and GPTQ factor U (upper, U^T U = damped H^-1 in that order):
    the same for every candidate of the layer, made once."""

    order: np.ndarray
    upper: np.ndarray

    @classmethod
    def of(cls, moment: np.ndarray, damping: float = DAMPING) -> Factor:
        order = np.argsort(-np.diag(moment), kind="stable")
        return cls(order, inverse_cholesky(np.asarray(moment, np.float64)[np.ix_(order, order)], damping))


def feedback_labels(matrix: np.ndarray, book: np.ndarray, factor: Factor, block: int = BLOCK) -> np.ndarray:
    """uint8 labels (rows, cols) of `matrix` (rows = outputs, cols = inputs) into the 1-D `book`, each
    column labelled at the nearest level after the earlier columns' error was fed back."""
    w = np.array(matrix, dtype=np.float64)
    order, upper = factor.order, factor.upper
    w = w[:, order]
    ascending = np.argsort(book, kind="stable")  # k-means and entropy codebooks are ascending already
    levels = np.asarray(book, np.float64)[ascending]
    midpoints = (levels[:-1] + levels[1:]) / 2

    def quantize(c: int, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        label = midpoints.searchsorted(col, side="left")  # ties to the lower level, as kmeans.assign
        return label, levels[label]

    labels = feed_back(w, upper, quantize, block)
    out = np.empty_like(labels)
    out[:, order] = ascending.astype(np.uint8)[labels]
    return out


def output_error(error: np.ndarray, moment: np.ndarray) -> float:
    """tr(E H E^T) for a weight error E (rows, cols) and input moment H (cols, cols)."""
    e = np.asarray(error, np.float64)
    return float(np.sum((e @ moment) * e))


def sample_rows(rows: int, count: int = SAMPLE_ROWS) -> np.ndarray:
    """Evenly strided rows (all of them for a small matrix)."""
    return np.unique(np.linspace(0, rows - 1, min(rows, count)).round().astype(np.int64))


def damage_ratio(matrix: np.ndarray, book: np.ndarray, labels: np.ndarray, moment: np.ndarray, factor: Factor) -> float:
    """Output error with feedback labels / with these (nearest) labels, on a sample of the rows."""
    at = sample_rows(matrix.shape[0])
    w = np.asarray(matrix, np.float64)[at]
    levels = np.asarray(book, np.float64)
    plain = output_error(levels[np.asarray(labels)[at]] - w, moment)
    if plain <= 0:
        return 1.0
    fed = output_error(levels[feedback_labels(w, book, factor)] - w, moment)
    return min(1.0, fed / plain)
