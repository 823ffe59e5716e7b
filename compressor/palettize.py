"""Grouped 1-D k-means palettization for large weight matrices (4-bit LLM-style codebooks).

Each group of `group_rows` rows of the 2-D view gets its own codebook of 2^bits centroids.
Centroids start at evenly spaced quantiles and run Lloyd's algorithm on a deterministic strided
sample of each group, all groups at once (labels by comparing with the midpoints between sorted
centroids, sums by one bincount). Labels for the whole tensor are then assigned block by block,
and the centroids are set once more to the mean of their full-data members, so memory stays
~1 byte per weight plus one block. `sensitivity="magnitude"` weighs each weight by |w| in the
centroid means (large weights reproduced more closely, no data needed). No randomness: the
same tensor gives the same bytes on any worker.

`exclude_above`: weights with |w| above it (the outliers a checkpoint keeps exactly in a side
tensor, as SqueezeLLM's dense-and-sparse split) take no part in fitting the centroids, so the
16 centroids are spent on the bulk of the distribution; they still get a label (any label
would do: the side tensor overwrites them).
"""

from __future__ import annotations

import numpy as np

from .kmeans_native import label_sums

SAMPLE = 4096  # at most this many weights per group for Lloyd's algorithm
SAMPLE_PER_CENTROID = 16  # at least this many per centroid
SAMPLE_BUDGET = 1 << 20  # weights per block Lloyd's algorithm runs on (the full-data passes dominate then)
ITERATIONS = 8
BLOCK_ELEMENTS = 1 << 23  # elements labelled at once


def default_group_rows(rows: int, cols: int, bits: int) -> int:
    """Rows per codebook: one row when a row holds >= 32 weights per centroid (codebook cost
    <= 1 bit per weight), else enough rows to reach that."""
    need = 32 << bits
    return max(1, min(rows, -(-need // max(cols, 1))))


def _midpoints(book: np.ndarray) -> np.ndarray:
    return (book[:, 1:] + book[:, :-1]) * np.float32(0.5)


def _update(book, num, den) -> np.ndarray:
    new = np.where(den > 0, num / np.where(den > 0, den, 1), book)
    return np.sort(new.astype(np.float32), axis=1)


def _weight(x: np.ndarray, sensitivity: str | None, exclude_above: float | None = None):
    """Per-weight k-means weights (None: all equal): |w| for "magnitude", 0 for excluded outliers."""
    weight = np.abs(x) + np.float32(1e-12) if sensitivity == "magnitude" else None
    if exclude_above is None:
        return weight
    inside = np.abs(x) <= np.float32(exclude_above)
    return inside.astype(np.float32) if weight is None else weight * inside


def fit_codebooks(
    x: np.ndarray,
    k: int,
    sensitivity: str | None = None,
    exclude_above: float | None = None,
    iterations: int = ITERATIONS,
    to_f32=None,
) -> np.ndarray:
    """Codebooks (groups, k) float32 for the rows of x (groups, n), from a strided sample (to_f32: converts
    the sample of an x that is not float, such as bf16 bit patterns)."""
    per_group = max(k * SAMPLE_PER_CENTROID, min(SAMPLE, SAMPLE_BUDGET // max(x.shape[0], 1)))
    step = max(1, x.shape[1] // per_group)
    if to_f32 is None:
        sample = np.ascontiguousarray(x[:, ::step], dtype=np.float32)
    else:
        sample = to_f32(np.ascontiguousarray(x[:, ::step]))
    qs = (np.arange(k, dtype=np.float64) + 0.5) / k
    # the same quantiles, but numpy's partition is ~4x slower than a sort of these short rows
    book = np.quantile(np.sort(sample, axis=1), qs, axis=1).T.astype(np.float32)
    weight = _weight(sample, sensitivity, exclude_above)
    for _ in range(iterations):
        _, num, den = label_sums(sample, _midpoints(book), weight)
        book = _update(book, num, den)
    return book


def palettize(
    matrix: np.ndarray,
    bits: int,
    group_rows: int,
    sensitivity: str | None = None,
    to_f32=None,
    exclude_above: float | None = None,
    iterations: int = ITERATIONS,
    pool=None,
    out: np.ndarray | None = None,
):
    """(labels uint8 (rows, cols), codebook float32 (groups, 2^bits)) of a 2-D array.

    to_f32 converts a block of the input to float32 (bf16 bit patterns: see checkpoint_read);
    the input is converted block by block, never whole. `pool` (a concurrent.futures executor of
    threads) runs the blocks in parallel: each block's codebooks depend on that block alone, so
    the result is the same whatever the pool, and the compiled k-means step releases the GIL.
    `out`: a C-contiguous uint8 (rows, cols) array to write the labels into (a reused buffer).
    """
    rows, cols = matrix.shape
    groups = -(-rows // group_rows)
    labels = np.empty((rows, cols), dtype=np.uint8) if out is None else out
    if labels.shape != (rows, cols) or labels.dtype != np.uint8 or not labels.flags.c_contiguous:
        raise ValueError(f"palettize: out must be C-contiguous uint8 of shape {(rows, cols)}")
    books = np.empty((groups, 1 << bits), dtype=np.float32)
    per_block = max(1, BLOCK_ELEMENTS // max(cols * group_rows, 1))  # groups per block
    spans = [(g0, min(groups, g0 + per_block)) for g0 in range(0, groups, per_block)]

    def one(span):
        _block(matrix, labels, books, span, bits, group_rows, sensitivity, to_f32, exclude_above, iterations)

    if pool is None or len(spans) == 1:
        for span in spans:
            one(span)
    else:
        for done in [pool.submit(one, span) for span in spans]:
            done.result()
    return labels, books


def _block(matrix, labels, books, span, bits, group_rows, sensitivity, to_f32, exclude_above, iterations) -> None:
    """Codebooks and labels of the groups g0..g1 (their rows of `labels`, their `books`)."""
    g0, g1 = span
    rows, cols = matrix.shape
    r0, r1 = g0 * group_rows, min(rows, g1 * group_rows)
    if _reads_bf16(matrix, to_f32, sensitivity, exclude_above) and (r1 - r0) == (g1 - g0) * group_rows:
        _block_bf16(matrix[r0:r1].reshape(g1 - g0, -1), labels[r0:r1], books, span, bits, to_f32, iterations)
        return
    convert = to_f32 or (lambda a: np.asarray(a, dtype=np.float32))
    x, padded = _grouped(convert(matrix[r0:r1]), g1 - g0, group_rows, cols)
    book = fit_codebooks(x, 1 << bits, sensitivity, exclude_above, iterations)
    # the labels go straight into their rows of `labels` unless the last group is padded
    into = labels[r0:r1].reshape(x.shape) if padded is None else None
    lab, num, den = label_sums(x, _midpoints(book), _weight(x, sensitivity, exclude_above), out=into)
    # each centroid becomes the mean of its full-data members (optimal for these labels; not
    # re-sorted, so labels keep pointing at their centroid)
    books[g0:g1] = np.where(den > 0, num / np.where(den > 0, den, 1), book).astype(np.float32)
    if into is None:
        labels[r0:r1] = lab.reshape(-1)[: (r1 - r0) * cols].reshape(r1 - r0, cols)


def _reads_bf16(matrix, to_f32, sensitivity, exclude_above) -> bool:
    """Whether a block is labelled straight from its bf16 bit patterns: no per-weight k-means weights,
    which need the float32 values."""
    return to_f32 is not None and matrix.dtype == np.uint16 and sensitivity is None and exclude_above is None


def _block_bf16(bits, labels, books, span, k_bits, to_f32, iterations) -> None:
    """_block for bf16 bit patterns `bits` (groups, n), labelled without a float32 copy of the block: the
    same codebooks and labels (the compiled step widens each chunk exactly, in cache)."""
    g0, g1 = span
    book = fit_codebooks(bits, 1 << k_bits, iterations=iterations, to_f32=to_f32)
    _, num, den = label_sums(bits, _midpoints(book), out=labels.reshape(bits.shape), bf16=True)
    books[g0:g1] = np.where(den > 0, num / np.where(den > 0, den, 1), book).astype(np.float32)


def _grouped(block: np.ndarray, groups: int, group_rows: int, cols: int):
    """block (rows, cols) as (groups, group_rows*cols); a short last group is padded with its own
    last value (padding only fills the array: its labels are dropped)."""
    n = group_rows * cols
    flat = block.reshape(-1)
    if flat.size == groups * n:
        return flat.reshape(groups, n), None
    padded = np.empty(groups * n, dtype=np.float32)
    padded[: flat.size] = flat
    padded[flat.size :] = flat[-1]
    return padded.reshape(groups, n), padded
