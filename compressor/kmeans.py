"""Exact 1-D k-means for weight sharing (numpy only: the ONNX-in path uses it without torch).

Lloyd's algorithm in one dimension needs no distance matrix. Sort the values once; with the
centroids sorted, each cluster is a contiguous run of the sorted values, delimited by the
midpoints between neighbouring centroids. One iteration is then `searchsorted` of the k-1
midpoints (O(k log n)) plus cluster sums from a prefix sum (O(k)): after the O(n log n) sort,
iterations cost nothing next to scikit-learn's O(n k) per iteration. It iterates until the
partition stops changing (an exact fixed point of Lloyd's algorithm) or max_iter (300, as
scikit-learn) is reached, and relocates empty clusters by scikit-learn's rule: from the same
initial centroids it follows scikit-learn's Lloyd path and goes at least as far along it, where
scikit-learn stops early on its tolerance. tools/bench_kmeans.py measures both side by side.
"""

from __future__ import annotations

import numpy as np

from dcz.compressor import kmeans_native
from dcz.compressor.errors import CompressError

INITS = ("linear", "density", "random", "kmeans++")


def kmeans_1d(
    values, k: int, init: str | np.ndarray = "linear", seed: int = 0, max_iter: int = 300
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster `values` (any shape, flattened) into at most k centroids.

    init: 'linear' (evenly spaced between min and max: the paper's best for weight sharing),
    'density' (evenly spaced on the CDF), 'random' (k distinct samples), 'kmeans++' (D^2
    sampling), or an array of initial centroids.
    Returns (centroids float64 sorted ascending, labels with the flattened shape of values: uint8
    for k <= 256, else int64).
    When the values have k or fewer distinct entries, the centroids are exactly those entries
    (so fewer than k may be returned) and the clustering is lossless.
    """
    xs_in = _as_checked_vector(values)
    k = _checked_k(k)
    xs = np.sort(xs_in)  # float32 stays float32 here: the sort is the costliest step
    distinct = 1 + int(np.count_nonzero(xs[1:] != xs[:-1]))
    if distinct <= k:
        centroids = np.unique(xs).astype(np.float64)
        return centroids, np.searchsorted(centroids, xs_in.astype(np.float64)).astype(label_dtype(centroids.size))
    data = SortedValues(xs)
    start = data.initial(k, init, seed)
    centroids = lloyd_sorted(data, start, max_iter)
    # The sorted ends are the min and max: assign() need not scan for them again.
    return centroids + data.shift, assign(xs_in, centroids + data.shift, bounds=(float(xs[0]), float(xs[-1])))


class SortedValues:
    """Sorted values, centred (z = x - mean) in float64, with the prefix sums Lloyd needs.

    Centring keeps the prefix sums' rounding negligible even at 1e7+ values.
    """

    def __init__(self, sorted_values: np.ndarray) -> None:
        self.z = sorted_values.astype(np.float64)
        self.shift = float(self.z.mean())
        self.z -= self.shift
        self.prefix = _prefix_sums(self.z)

    def initial(self, k: int, init, seed: int) -> np.ndarray:
        """Centred initial centroids, sorted."""
        z = self.z
        if not isinstance(init, str):
            start = np.asarray(init, dtype=np.float64).ravel()
            if start.size != k or not np.all(np.isfinite(start)):
                raise CompressError(f"kmeans init: expected {k} finite centroids, got {start.size}")
            return np.sort(start) - self.shift
        rng = np.random.default_rng(seed)
        if init == "linear":
            return np.linspace(z[0], z[-1], k)
        if init == "density":
            return z[np.round(np.linspace(0, z.size - 1, k)).astype(np.int64)]
        if init == "random":
            return np.sort(z[rng.choice(z.size, size=k, replace=False)])
        if init == "kmeans++":
            return _kmeanspp_sorted(z, self.prefix, k, rng)
        raise CompressError(f"kmeans init: must be one of {', '.join(INITS)}; got {init!r}")


def assign(values: np.ndarray, centroids: np.ndarray, bounds: tuple[float, float] | None = None) -> np.ndarray:
    """Nearest-centroid label per value (ties go to the lower centroid, as argmin does).

    Equals `searchsorted(midpoints, values)`, but a binary search per value is the slowest step
    at 1e7 values. Instead each value's bin on a fine uniform grid gives its label through a
    lookup table; only values in bins next to a midpoint (where rounding could matter) are
    searched exactly. About 5x faster; exact. The compiled core (kmeans_native) replaces all of
    this with one pass giving the same labels. `bounds` = (min, max) of the values when the caller
    knows them. Labels are uint8 for up to 256 centroids (every label width the format allows),
    else int64: at 1e7 values the 8-byte gather was a third of this function's time.
    """
    centroids = np.asarray(centroids, dtype=np.float64)
    flat = np.asarray(values).ravel()
    if flat.dtype not in (np.float32, np.float64):
        flat = flat.astype(np.float64)
    midpoints = (centroids[:-1] + centroids[1:]) / 2
    narrow = np.uint8 if centroids.size <= 256 else np.int64
    if kmeans_native.core() is not None and midpoints.size:  # the compiled pass: exact, no grid needed
        labels, _, _ = kmeans_native.label_sums(flat.reshape(1, -1), midpoints.reshape(1, -1), sums=False)
        return labels.reshape(-1)
    if flat.size < 4096 or midpoints.size == 0:
        return np.searchsorted(midpoints, flat.astype(np.float64), side="left").astype(narrow)
    low, high = bounds if bounds is not None else (float(flat.min()), float(flat.max()))
    if not high > low:
        return np.searchsorted(midpoints, np.array([low]), side="left").repeat(flat.size).astype(narrow)
    bins = 1 << 16
    scale = (bins - 1) / (high - low)
    edges = low + np.arange(bins) / scale  # left edge of each bin
    table = np.searchsorted(midpoints, edges, side="left").astype(narrow)  # label at each bin's edge
    uncertain = np.zeros(bins + 2, dtype=bool)  # bins within one of a midpoint
    near = np.clip(np.floor((midpoints - low) * scale).astype(np.int64), -1, bins)
    for offset in (0, 1, 2):
        uncertain[np.clip(near + offset, 0, bins + 1)] = True
    uncertain = uncertain[1:-1]
    # In place where possible: at 1e7 values each fresh array costs page faults on this VM.
    position = flat - flat.dtype.type(low)
    position *= flat.dtype.type(scale)
    index = position.astype(np.int32)
    del position
    np.clip(index, 0, bins - 1, out=index)
    labels = table[index]
    check = np.flatnonzero(uncertain[index])
    labels[check] = np.searchsorted(midpoints, flat[check].astype(np.float64), side="left")
    return labels


def inertia(values: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> float:
    """Sum of squared distances of each value to its centroid (k-means' objective)."""
    diff = np.asarray(values, dtype=np.float64).ravel() - np.asarray(centroids, dtype=np.float64)[labels]
    return float(np.dot(diff, diff))


def initial_centroids(values: np.ndarray, k: int, init: str | np.ndarray = "linear", seed: int = 0) -> np.ndarray:
    """The k starting centroids (sorted) for `init`; shared by our k-means and the sklearn reference."""
    data = SortedValues(np.sort(_as_checked_vector(values)))
    return data.initial(_checked_k(k), init, seed) + data.shift


def _prefix_sums(z: np.ndarray, squared: bool = False) -> np.ndarray:
    """[0, z0, z0+z1, ...] (of z**2 if squared) in one new array: at 1e7 values each fresh
    80 MB array costs more in page faults than the arithmetic, so no temporaries."""
    out = np.empty(z.size + 1, dtype=np.float64)
    out[0] = 0.0
    if squared:
        np.square(z, out=out[1:])
        np.cumsum(out[1:], out=out[1:])
    else:
        np.cumsum(z, out=out[1:])
    return out


def _as_checked_vector(values) -> np.ndarray:
    """Flat float32 or float64 values (other dtypes widen to float64), all finite."""
    xs = np.asarray(values).ravel()
    if xs.dtype not in (np.float32, np.float64):
        xs = xs.astype(np.float64)
    if xs.size == 0:
        raise CompressError("kmeans: no values to cluster")
    if not np.all(np.isfinite(xs)):
        raise CompressError("kmeans: values contain NaN or infinity")
    return xs


def _checked_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise CompressError(f"kmeans: k must be a positive integer, got {k!r}")
    return int(k)


def lloyd_sorted(data: SortedValues, c: np.ndarray, max_iter: int) -> np.ndarray:
    """Lloyd iterations (centred coordinates) until the partition is a fixed point."""
    z, prefix = data.z, data.prefix
    bounds = np.empty(c.size + 1, dtype=np.int64)
    bounds[0], bounds[-1] = 0, z.size
    previous = None
    for _ in range(max_iter):  # plain ndarray methods: per-call overhead is the cost at this size
        midpoints = c[:-1] + c[1:]
        midpoints *= 0.5
        cuts = z.searchsorted(midpoints, side="right")
        key = cuts.tobytes()  # a bytes compare costs less than == plus .all() at this size
        if key == previous:
            break
        bounds[1:-1] = cuts
        counts = bounds[1:] - bounds[:-1]
        at_bounds = prefix.take(bounds)
        sums = at_bounds[1:] - at_bounds[:-1]
        if np.count_nonzero(counts) == counts.size:
            c = sums / counts
        else:
            c = _update_with_relocation(z, c, counts, sums, bounds)
        previous = key
    return c


def _update_with_relocation(
    z: np.ndarray, old: np.ndarray, counts: np.ndarray, sums: np.ndarray, bounds: np.ndarray
) -> np.ndarray:
    """New centroids when some clusters are empty, by scikit-learn's rule (_relocate_empty_clusters).

    The e values farthest from their current centroid become the e empty clusters' centroids and
    leave their clusters. In 1-D the farthest values of a cluster are at its two ends, so only the
    e values at each end of each cluster are candidates. Returns sorted centroids.
    """
    empty = np.flatnonzero(counts == 0)
    full = np.flatnonzero(counts)
    e = empty.size
    step = np.arange(e)
    lo, hi = bounds[full], bounds[full + 1]
    index = np.concatenate([lo[:, None] + step, hi[:, None] - 1 - step], axis=1)
    owner = np.repeat(full, 2 * e).reshape(index.shape)
    inside = (index >= lo[:, None]) & (index < hi[:, None])
    index, owner = index[inside], owner[inside]
    index, first = np.unique(index, return_index=True)
    owner = owner[first]
    distance = np.abs(z[index] - old[owner])
    far = np.argsort(-distance, kind="stable")[:e]
    counts, sums = counts.astype(np.float64), sums.copy()
    np.subtract.at(counts, owner[far], 1.0)
    np.subtract.at(sums, owner[far], z[index[far]])
    new = np.where(counts > 0, sums / np.maximum(counts, 1.0), old)
    new[empty[: far.size]] = z[index[far]]
    return np.sort(new)


def _kmeanspp_sorted(z: np.ndarray, p1: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ D^2 sampling (Arthur & Vassilvitskii 2007) on sorted values in O(n + k log n).

    With the values sorted, the centres split them into gaps, and within a gap each value's
    nearest centre is the left one up to the gap's midpoint, the right one after. The D^2 mass of
    any run of values w.r.t. one centre c is S2 - 2 c S1 + m c^2 from prefix sums S1, S2, so a gap's
    weight costs O(log n) (finding the midpoint) and a value is drawn by bisection on that
    cumulative mass, never touching the values one by one.
    """
    p2 = _prefix_sums(z, squared=True)

    def mass(lo: int, hi: int, c: float) -> float:
        return max(float(p2[hi] - p2[lo] - 2.0 * c * (p1[hi] - p1[lo]) + (hi - lo) * c * c), 0.0)

    def pieces(lo: int, hi: int, left, right) -> list[tuple[int, int, float]]:
        if left is None:
            return [(lo, hi, right)]
        if right is None:
            return [(lo, hi, left)]
        mid = min(max(int(np.searchsorted(z, (left + right) / 2, side="right")), lo), hi)
        return [(lo, mid, left), (mid, hi, right)]

    def draw(lo: int, hi: int, c: float) -> int:
        target = rng.random() * mass(lo, hi, c)
        low, high = lo, hi - 1  # smallest i with mass(lo, i + 1) > target
        while low < high:
            middle = (low + high) // 2
            if mass(lo, middle + 1, c) > target:
                high = middle
            else:
                low = middle + 1
        return low

    centres = [float(z[rng.integers(z.size)])]
    first = int(np.searchsorted(z, centres[0]))
    gaps = [pieces(0, first, None, centres[0]), pieces(first, z.size, centres[0], None)]
    starts = [0, first, z.size]  # gap g covers z[starts[g]:starts[g + 1]]
    weights = [sum(mass(*p) for p in g) for g in gaps]
    while len(centres) < k:
        totals = np.cumsum(weights)
        if totals[-1] <= 0:
            break  # every value sits on a centre (cannot happen with > k distinct values)
        g = min(int(np.searchsorted(totals, rng.random() * totals[-1], side="right")), len(weights) - 1)
        piece_mass = [mass(*p) for p in gaps[g]]
        chosen = gaps[g][0] if len(gaps[g]) == 1 or rng.random() * sum(piece_mass) < piece_mass[0] else gaps[g][1]
        new = float(z[draw(*chosen)])
        lo, hi = starts[g], starts[g + 1]
        left = centres[g - 1] if g > 0 else None
        right = centres[g] if g < len(centres) else None
        split = int(np.searchsorted(z, new))
        centres.insert(g, new)
        starts.insert(g + 1, split)
        gaps[g : g + 1] = [pieces(lo, split, left, new), pieces(split, hi, new, right)]
        weights[g : g + 1] = [sum(mass(*p) for p in gaps[g]), sum(mass(*p) for p in gaps[g + 1])]
    return np.asarray(centres, dtype=np.float64)


# --- one layer: codebook(s) over the surviving weights ------------------------------------------


def cluster_weights(
    weight: np.ndarray,
    mask: np.ndarray | None,
    bits: int,
    init: str = "linear",
    seed: int = 0,
    backend: str = "exact",
    group_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Share one layer's weights: k-means (k = 2**bits) over the weights that survive `mask`.

    Returns (codebook float32 (k',) or (groups, k), labels of weight.shape; 0 where pruned). Labels
    are uint8 when k <= 256 (always, for the format's 1..8 label bits): 1 byte per weight, not 8.
    With group_rows, each block of `group_rows` rows of the 2-D view (rows = shape[0]) gets its
    own codebook; codebooks of groups with fewer distinct values are padded by repeating the
    last centroid (unused entries) so every group has the same size.
    """
    weight = np.asarray(weight, dtype=np.float32)
    keep = np.ones(weight.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    k = 2 ** int(bits)
    labels = np.zeros(weight.shape, dtype=label_dtype(k))
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


def label_dtype(k: int) -> np.dtype:
    """The narrowest unsigned dtype holding labels 0..k-1 (uint8 for every k the format allows)."""
    return np.dtype(np.uint8) if k <= 256 else np.dtype(np.int64)


def _cluster_kept(kept: np.ndarray, k: int, init: str, seed: int, backend: str) -> tuple[np.ndarray, np.ndarray]:
    if kept.size == 0:
        return np.zeros(1), np.zeros(0, dtype=np.int64)
    if backend == "sklearn":
        return kmeans_sklearn(kept, k, init=init, seed=seed)
    if backend != "exact":
        raise CompressError(f"kmeans backend: must be 'exact' or 'sklearn', got {backend!r}")
    return kmeans_1d(kept, k, init=init, seed=seed)


def kmeans_sklearn(
    values, k: int, init: str | np.ndarray = "linear", seed: int = 0, max_iter: int = 300, tol: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """The reference: scikit-learn's Lloyd KMeans from the same initial centroids as ours."""
    from sklearn.cluster import KMeans  # imported here: optional, and slow to import

    xs = _as_checked_vector(values)
    k = _checked_k(k)
    distinct = np.unique(xs)
    if distinct.size <= k:
        return distinct, np.searchsorted(distinct, xs).astype(np.int64)
    start = initial_centroids(xs, k, init, seed)
    model = KMeans(
        n_clusters=k,
        init=start.reshape(-1, 1),
        n_init=1,
        max_iter=max_iter,
        tol=tol,
        algorithm="lloyd",
        random_state=seed,
    )
    labels = model.fit_predict(xs.reshape(-1, 1))
    centroids = model.cluster_centers_.ravel()
    order = np.argsort(centroids, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return centroids[order], rank[labels].astype(np.int64)
