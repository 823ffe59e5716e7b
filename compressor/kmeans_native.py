"""The 1-D k-means step (nearest-centroid labels + per-centroid sums): compiled core or numpy.

compressor/_native/kmeans.c does both in one pass without the GIL (so threads scale); the numpy
path below is the fallback for installs without a compiler, forced with `DCZ_NATIVE=0`, and gives
identical labels and sums (tests/compressor/test_kmeans_native.py). `.ci/run` sets
DCZ_REQUIRE_NATIVE=1: the build then fails without the compiled core, and so does the suite.
"""

from __future__ import annotations

import numpy as np

from dcz.formats.native import compiled_switch

try:
    from . import _kmeans as _core
except ImportError as error:  # built without a compiler, or a source checkout never built
    _core = None
    _missing = f"compiled k-means not built: {error}"
else:
    _missing = ""


core, describe = compiled_switch(_core, _missing)


def label_sums(
    x: np.ndarray,
    mids: np.ndarray,
    weight: np.ndarray | None = None,
    sums: bool = True,
    wide: bool = False,
    out: np.ndarray | None = None,
    bf16: bool = False,
):
    """(labels, num, den) of grouped values x (groups, n) against midpoints (groups, k-1), sorted per group.

    labels[g, i] = number of midpoints of group g below x[g, i] (the nearest centroid for sorted
    centroids; ties go to the lower one), uint8 for k <= 256 (int64 with `wide`); num/den (groups, k)
    float64: sum of x*weight and of weight (or of 1) per label, as np.bincount adds them. sums=False:
    labels only (num, den None). x float32 or float64, or with `bf16` uint16 bfloat16 bit patterns
    (labels and sums of x widened to float32, without widening it in memory); weight float32 (groups, n)
    or None. `out`: a C-contiguous (groups, n) array of the label dtype to write the labels into.
    """
    x = np.ascontiguousarray(x)
    mids = np.ascontiguousarray(mids)
    if (x.dtype != np.uint16 if bf16 else x.dtype not in (np.float32, np.float64)) or mids.dtype not in (
        np.float32,
        np.float64,
    ):
        raise TypeError("label_sums: x (uint16 with bf16) and mids must be float32 or float64")
    groups, n = x.shape
    k = mids.shape[1] + 1
    if mids.shape[0] != groups:
        raise ValueError(f"label_sums: {mids.shape[0]} midpoint rows for {groups} groups")
    if weight is not None:
        weight = np.ascontiguousarray(weight, dtype=np.float32)
    width = np.dtype(np.int64) if wide or k > 256 else np.dtype(np.uint8)
    if out is not None and (out.shape != (groups, n) or out.dtype != width or not out.flags.c_contiguous):
        raise ValueError(f"label_sums: out must be C-contiguous {width} of shape {(groups, n)}")
    compiled = core()
    if compiled is None:
        return _label_sums_numpy(_bf16_to_f32(x) if bf16 else x, mids, weight, sums, width, out)
    labels = np.empty((groups, n), dtype=width) if out is None else out
    num = np.empty((groups, k)) if sums else None
    den = np.empty((groups, k)) if sums else None
    x_kind = 2 if bf16 else int(x.dtype == np.float64)
    compiled.label_sums(
        x, x_kind, mids, mids.dtype == np.float64, groups, n, k, labels, width.itemsize, num, den, weight
    )
    return labels, num, den


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _label_sums_numpy(x, mids, weight, sums, width, out=None):
    labels = np.zeros(x.shape, dtype=width) if out is None else out
    labels[...] = 0
    for j in range(mids.shape[1]):
        labels += x > mids[:, j : j + 1]
    if not sums:
        return labels, None, None
    groups, k = x.shape[0], mids.shape[1] + 1
    idx = (labels.astype(np.int64) + (np.arange(groups, dtype=np.int64) * k)[:, None]).ravel()
    if weight is None:
        den = np.bincount(idx, minlength=groups * k).astype(np.float64)
        num = np.bincount(idx, weights=x.ravel(), minlength=groups * k)
    else:
        den = np.bincount(idx, weights=weight.ravel(), minlength=groups * k)
        num = np.bincount(idx, weights=(x * weight).ravel(), minlength=groups * k)
    # (np.bincount of no values gives int64 even with weights)
    return labels, num.astype(np.float64).reshape(groups, k), den.astype(np.float64).reshape(groups, k)
