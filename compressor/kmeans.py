"""Exact 1-D k-means for weight sharing (numpy only: the ONNX-in path uses it without torch).

Lloyd's algorithm in one dimension needs no distance matrix. Sort the values once; with the
centroids sorted, each cluster is a contiguous run of the sorted values, delimited by the
midpoints between neighbouring centroids. One iteration is then `searchsorted` of the k-1
midpoints (O(k log n)) plus cluster sums from a prefix sum (O(k)): after the O(n log n) sort,
iterations cost nothing next to scikit-learn's O(n k) per iteration. It iterates until the
partition stops changing (an exact fixed point of Lloyd's algorithm), so from the same initial
centroids it reaches the same partition as scikit-learn's Lloyd, or a better one where
scikit-learn stops early on its tolerance. tools/bench_kmeans.py measures both side by side.
"""
from __future__ import annotations

import numpy as np

from compressor.errors import CompressError

INITS = ("linear", "density", "random", "kmeans++")


def kmeans_1d(values, k: int, init: str | np.ndarray = "linear", seed: int = 0,
              max_iter: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Cluster `values` (any shape, flattened) into at most k centroids.

    init: 'linear' (evenly spaced between min and max: the paper's best for weight sharing),
    'density' (evenly spaced on the CDF), 'random' (k distinct samples), 'kmeans++' (D^2
    sampling), or an array of initial centroids.
    Returns (centroids float64 sorted ascending, labels int64 with the flattened shape of values).
    When the values have k or fewer distinct entries, the centroids are exactly those entries
    (so fewer than k may be returned) and the clustering is lossless.
    """
    xs_in = _as_checked_vector(values)
    k = _checked_k(k)
    xs = np.sort(xs_in)
    distinct = 1 + int(np.count_nonzero(np.diff(xs)))
    if distinct <= k:
        centroids = np.unique(xs)
        return centroids, np.searchsorted(centroids, xs_in).astype(np.int64)
    start = initial_centroids(xs, k, init, seed, presorted=True)
    centroids = _lloyd_sorted(xs, start, max_iter)
    return centroids, assign(xs_in, centroids)


def assign(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Nearest-centroid label per value (ties go to the lower centroid, as argmin does)."""
    centroids = np.asarray(centroids, dtype=np.float64)
    midpoints = (centroids[:-1] + centroids[1:]) / 2
    return np.searchsorted(midpoints, np.asarray(values, dtype=np.float64).ravel(), side="left").astype(np.int64)


def inertia(values: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> float:
    """Sum of squared distances of each value to its centroid (k-means' objective)."""
    diff = np.asarray(values, dtype=np.float64).ravel() - np.asarray(centroids, dtype=np.float64)[labels]
    return float(np.dot(diff, diff))


def initial_centroids(values: np.ndarray, k: int, init: str | np.ndarray = "linear", seed: int = 0,
                      presorted: bool = False) -> np.ndarray:
    """The k starting centroids (sorted) for `init`; shared by our k-means and the sklearn reference."""
    xs = np.asarray(values, dtype=np.float64).ravel()
    if not presorted:
        xs = np.sort(xs)
    if not isinstance(init, str):
        start = np.asarray(init, dtype=np.float64).ravel()
        if start.size != k or not np.all(np.isfinite(start)):
            raise CompressError(f"kmeans init: expected {k} finite centroids, got {start.size}")
        return np.sort(start)
    rng = np.random.default_rng(seed)
    if init == "linear":
        return np.linspace(xs[0], xs[-1], k)
    if init == "density":
        return xs[np.round(np.linspace(0, xs.size - 1, k)).astype(np.int64)]
    if init == "random":
        return np.sort(xs[rng.choice(xs.size, size=k, replace=False)])
    if init == "kmeans++":
        return _kmeanspp_sorted(xs, k, rng)
    raise CompressError(f"kmeans init: must be one of {', '.join(INITS)}; got {init!r}")


def _as_checked_vector(values) -> np.ndarray:
    xs = np.asarray(values, dtype=np.float64).ravel()
    if xs.size == 0:
        raise CompressError("kmeans: no values to cluster")
    if not np.all(np.isfinite(xs)):
        raise CompressError("kmeans: values contain NaN or infinity")
    return xs


def _checked_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise CompressError(f"kmeans: k must be a positive integer, got {k!r}")
    return int(k)


def _lloyd_sorted(xs: np.ndarray, centroids: np.ndarray, max_iter: int) -> np.ndarray:
    """Lloyd iterations on sorted values until the partition is a fixed point."""
    shift = xs.mean()  # prefix sums of centred values keep float64 rounding negligible at 1e7+
    prefix = np.concatenate(([0.0], np.cumsum(xs - shift)))
    c = np.sort(centroids - shift)
    previous = None
    for _ in range(max_iter):
        cuts = np.searchsorted(xs, c[:-1] / 2 + c[1:] / 2 + shift, side="right")
        if previous is not None and np.array_equal(cuts, previous):
            break
        bounds = np.concatenate(([0], cuts, [xs.size]))
        counts = np.diff(bounds)
        sums = prefix[bounds[1:]] - prefix[bounds[:-1]]
        # An empty cluster keeps its centroid (it may catch values later); re-sort so the
        # midpoint partition stays valid.
        c = np.sort(np.where(counts > 0, sums / np.maximum(counts, 1), c))
        previous = cuts
    return c + shift


def _kmeanspp_sorted(xs: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ D^2 sampling (Arthur & Vassilvitskii 2007) on sorted values.

    Between two neighbouring centres only the values in that gap change their nearest centre,
    so we keep one D^2 total per gap: a new centre is drawn by picking a gap by its total, then
    a value inside it; only that gap is recomputed. About O(n log k) instead of O(n k).
    """
    centres = [xs[rng.integers(xs.size)]]
    # gap g covers xs[starts[g]:starts[g+1]]: before the first centre, between centres, after the last
    cut = int(np.searchsorted(xs, centres[0]))
    starts = [0, cut, xs.size]
    weights = [_gap_d2(xs, 0, cut, None, centres[0]).sum(), _gap_d2(xs, cut, xs.size, centres[0], None).sum()]
    while len(centres) < k:
        totals = np.cumsum(weights)
        g = min(int(np.searchsorted(totals, rng.random() * totals[-1], side="right")), len(weights) - 1)
        lo, hi = starts[g], starts[g + 1]
        left = centres[g - 1] if g > 0 else None
        right = centres[g] if g < len(centres) else None
        d2 = _gap_d2(xs, lo, hi, left, right)
        inside = np.cumsum(d2)
        pick = lo + min(int(np.searchsorted(inside, rng.random() * inside[-1], side="right")), hi - lo - 1)
        new = xs[pick]
        split = int(np.searchsorted(xs, new))
        centres.insert(g, new)
        starts.insert(g + 1, split)
        weights[g:g + 1] = [_gap_d2(xs, lo, split, left, new).sum(), _gap_d2(xs, split, hi, new, right).sum()]
    return np.asarray(centres, dtype=np.float64)


def _gap_d2(xs: np.ndarray, lo: int, hi: int, left: float | None, right: float | None) -> np.ndarray:
    """Squared distance to the nearest of the gap's bounding centres for xs[lo:hi]."""
    part = xs[lo:hi]
    if left is None:
        return (right - part) ** 2
    if right is None:
        return (part - left) ** 2
    return np.minimum((part - left) ** 2, (right - part) ** 2)


# --- one layer: codebook(s) over the surviving weights ------------------------------------------

def cluster_weights(weight: np.ndarray, mask: np.ndarray | None, bits: int, init: str = "linear",
                    seed: int = 0, backend: str = "exact", group_rows: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Share one layer's weights: k-means (k = 2**bits) over the weights that survive `mask`.

    Returns (codebook float32 (k',) or (groups, k), labels int64 of weight.shape; 0 where pruned).
    With group_rows, each block of `group_rows` rows of the 2-D view (rows = shape[0]) gets its
    own codebook; codebooks of groups with fewer distinct values are padded by repeating the
    last centroid (unused entries) so every group has the same size.
    """
    weight = np.asarray(weight, dtype=np.float32)
    keep = np.ones(weight.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    k = 2 ** int(bits)
    labels = np.zeros(weight.shape, dtype=np.int64)
    if group_rows is None:
        book, flat = _cluster_kept(weight[keep], k, init, seed, backend)
        labels[keep] = flat
        return book.astype(np.float32), labels
    rows = weight.reshape(weight.shape[0], -1)
    keep_rows = keep.reshape(rows.shape)
    label_rows = labels.reshape(rows.shape)
    books = []
    for g, start in enumerate(range(0, rows.shape[0], group_rows)):
        block = slice(start, start + group_rows)
        book, flat = _cluster_kept(rows[block][keep_rows[block]], k, init, seed + g, backend)
        sub = label_rows[block]
        sub[keep_rows[block]] = flat
        label_rows[block] = sub
        books.append(np.concatenate([book, np.full(k - book.size, book[-1])]))
    return np.stack(books).astype(np.float32), labels


def _cluster_kept(kept: np.ndarray, k: int, init: str, seed: int, backend: str) -> tuple[np.ndarray, np.ndarray]:
    if kept.size == 0:
        return np.zeros(1), np.zeros(0, dtype=np.int64)
    if backend == "sklearn":
        return kmeans_sklearn(kept, k, init=init, seed=seed)
    if backend != "exact":
        raise CompressError(f"kmeans backend: must be 'exact' or 'sklearn', got {backend!r}")
    return kmeans_1d(kept, k, init=init, seed=seed)


def kmeans_sklearn(values, k: int, init: str | np.ndarray = "linear", seed: int = 0,
                   max_iter: int = 300, tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """The reference: scikit-learn's Lloyd KMeans from the same initial centroids as ours."""
    from sklearn.cluster import KMeans  # imported here: optional, and slow to import

    xs = _as_checked_vector(values)
    k = _checked_k(k)
    distinct = np.unique(xs)
    if distinct.size <= k:
        return distinct, np.searchsorted(distinct, xs).astype(np.int64)
    start = initial_centroids(xs, k, init, seed)
    model = KMeans(n_clusters=k, init=start.reshape(-1, 1), n_init=1, max_iter=max_iter, tol=tol,
                   algorithm="lloyd", random_state=seed)
    labels = model.fit_predict(xs.reshape(-1, 1))
    centroids = model.cluster_centers_.ravel()
    order = np.argsort(centroids, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return centroids[order], rank[labels].astype(np.int64)
