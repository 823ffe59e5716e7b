"""Entropy-constrained scalar quantization (ECSQ) codebooks: many levels, Huffman-coded labels.

A k-means codebook with 2**bits centroids spends its levels where the weights are dense and its
labels cost nearly `bits` each. When the labels are entropy coded (the writer Huffman-codes a
labels stream whenever that is smaller), the better quantizer at the same bytes is a fine, nearly
uniform grid: the frequent levels near zero get short codes, the rare ones in the tails long codes,
and an outlier of 100 standard deviations gets a level of its own (a few dozen bits, once) instead of
dragging a centroid of a 16-entry codebook away from the bulk. At high rate a uniform grid with
entropy coding is 1.53 dB (0.25 bit) from the rate-distortion bound; a fixed-rate Lloyd-Max
quantizer of a Laplacian is ~4 dB (0.7 bit) from it.

The codebook is designed by the entropy-constrained Lloyd algorithm (Chou, Lookabaugh & Gray 1989)
on the sorted weights: each weight goes to the level minimising (w - c)^2 + lam * len(c), with
len(c) = -log2 p(c) and lam = 2 ln2 step^2 / 12 (the slope of a uniform quantizer's distortion
against its rate at that step); each level moves to the mean of its weights; empty levels are dropped.
In 1-D the cells are runs of the sorted weights, so one pass is a searchsorted of the boundaries and
two prefix sums. The search then labels the weights with the nearest level (what the runtime
reproduces is the codebook; the labels are sized by the writer's own Huffman code).

Deterministic: float64, a fixed number of passes, no randomness.
"""

from __future__ import annotations

import numpy as np

PASSES = 30
MAX_LEVELS = 256  # a labels stream holds symbols of at most 8 bits


def ecsq_codebook(sorted_values: np.ndarray, step: float, passes: int = PASSES) -> np.ndarray | None:
    """float32 levels (ascending) for these sorted weights at this grid step; None when more than
    MAX_LEVELS levels stay occupied (the step is too fine for the weights' range)."""
    x = np.asarray(sorted_values, dtype=np.float64)
    if x.size == 0 or not step > 0:
        return None
    levels = step * np.arange(np.floor(x[0] / step), np.ceil(x[-1] / step) + 1)
    if levels.size > 64 * MAX_LEVELS:  # a grid this fine would not be thinned to 256 levels
        return None
    lam = 2 * np.log(2) * step * step / 12
    prefix = np.concatenate([[0.0], np.cumsum(x)])
    lengths = np.zeros(levels.size)
    for _ in range(passes):
        if levels.size == 1:
            break
        gaps = np.maximum(levels[1:] - levels[:-1], np.finfo(np.float64).tiny)
        bounds = (levels[:-1] + levels[1:]) / 2 + lam * (lengths[1:] - lengths[:-1]) / (2 * gaps)
        ends = x.searchsorted(np.maximum.accumulate(bounds), side="right")
        starts = np.concatenate([[0], ends])
        ends = np.concatenate([ends, [x.size]])
        counts = ends - starts
        used = counts > 0
        levels = (prefix[ends] - prefix[starts])[used] / counts[used]
        lengths = -np.log2(counts[used] / x.size)
    levels = np.unique(levels.astype(np.float32))
    return levels if levels.size <= MAX_LEVELS else None


def robust_scale(sorted_values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation (the standard deviation of a normal bulk), from sorted
    values; the plain standard deviation when that is 0 (mostly equal values), 1.0 when both are."""
    x = np.asarray(sorted_values, dtype=np.float64)
    if x.size == 0:
        return 1.0
    scale = 1.4826 * float(np.median(np.abs(x - x[x.size // 2])))
    return scale or float(np.std(x)) or 1.0


def label_width(levels: int) -> int:
    """Bits of a labels stream symbol for this many levels (1..8)."""
    return max(1, int(levels - 1).bit_length())
