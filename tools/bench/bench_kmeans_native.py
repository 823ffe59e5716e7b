"""The compiled k-means step next to its numpy fallback, and full 1-D k-means at 1e8 values, k = 16.

    python -m tools.bench.bench_kmeans_native --n 100000000 --k 16

Part 1, the step (what checkpoint compression runs on every weight): nearest-centroid labels plus
per-centroid sums over all n values, in blocks of 2^23 as palettize does, compiled vs numpy
(DCZ_NATIVE=0), same run, one thread; then the same with the compiled step on 2 threads (the GIL
is released). Labels and sums are checked identical. Part 2, k-means on all n values from the same
evenly spaced initial centroids: today's exact numpy k-means (kmeans_1d: sort once, iterate on
prefix sums), Lloyd iterations of the compiled step over the unsorted values (no sort; until the
labels stop changing or --max-iter), and scikit-learn on a strided sample of --sklearn-sample
values (it cannot finish at 1e8), its inertia measured on all n. Values: Gaussian float32 (a
weight matrix's bulk). Wall and CPU seconds are printed with the load average.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dcz.compressor import kmeans, kmeans_native

BLOCK = 1 << 23


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def _midpoints(book: np.ndarray) -> np.ndarray:
    return ((book[1:] + book[:-1]) * np.float32(0.5)).reshape(1, -1)


def step(x: np.ndarray, book: np.ndarray, pool=None):
    """Labels (uint8, n) and per-centroid sums of all of x, block by block (in parallel with a pool)."""
    mids = _midpoints(book)
    labels = np.empty(x.size, np.uint8)
    spans = [(a, min(x.size, a + BLOCK)) for a in range(0, x.size, BLOCK)]

    def one(span):
        a, b = span
        lab, num, den = kmeans_native.label_sums(x[a:b].reshape(1, -1), mids)
        labels[a:b] = lab.reshape(-1)
        return num, den

    parts = list(pool.map(one, spans)) if pool else [one(s) for s in spans]
    return labels, sum(p[0] for p in parts), sum(p[1] for p in parts)


def lloyd_compiled(x: np.ndarray, book: np.ndarray, max_iter: int, pool=None):
    """Lloyd's algorithm on the unsorted values with the compiled step; stops when labels repeat."""
    previous = None
    for it in range(1, max_iter + 1):
        labels, num, den = step(x, book, pool)
        new = np.where(den > 0, num / np.where(den > 0, den, 1), book)
        if previous is not None and np.array_equal(labels, previous):
            return book, labels, it
        previous, book = labels, np.sort(new.astype(np.float32).ravel())
    return book, labels, max_iter


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000_000)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--sklearn-sample", type=int, default=1_000_000)
    parser.add_argument("--skip", default="", help="comma list of: numpy-step, exact, sklearn")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    if kmeans_native._core is None:
        raise SystemExit(kmeans_native.describe())
    x = np.random.default_rng(0).standard_normal(args.n, dtype=np.float32) * np.float32(0.02)
    book = np.linspace(x.min(), x.max(), args.k).astype(np.float32)
    print(f"# n={args.n:,} k={args.k}, load {os.getloadavg()[0]:.1f} at start, {os.cpu_count()} cores")
    print("| what | wall s | CPU s | values/s (wall) | notes |")
    print("|---|---|---|---|---|")

    def row(what, wall, cpu, notes=""):
        print(f"| {what} | {wall:.2f} | {cpu:.2f} | {args.n / wall / 1e6:.0f} M | {notes} |", flush=True)

    os.environ.pop("DCZ_NATIVE", None)
    w, c, compiled = _timed(lambda: step(x, book))
    row("step (labels + sums), compiled, 1 thread", w, c)
    with ThreadPoolExecutor(2) as pool:
        w2, c2, threaded = _timed(lambda: step(x, book, pool))
    row("step, compiled, 2 threads", w2, c2, f"{w / w2:.2f}x of 1 thread")
    if "numpy-step" not in skip:
        os.environ["DCZ_NATIVE"] = "0"
        wn, cn, fallback = _timed(lambda: step(x, book))
        os.environ.pop("DCZ_NATIVE")
        same = all(np.array_equal(a, b) for a, b in zip(compiled, fallback))
        row("step, numpy (DCZ_NATIVE=0)", wn, cn, f"compiled is {wn / w:.1f}x faster (wall); identical: {same}")
    assert all(np.array_equal(a, b) for a, b in zip(compiled, threaded))

    with ThreadPoolExecutor(2) as pool:
        w, c, (cb, labels, iters) = _timed(lambda: lloyd_compiled(x, book, args.max_iter, pool))
    row("k-means, compiled Lloyd on unsorted values, 2 threads", w, c,
        f"{iters} iterations; inertia {kmeans.inertia(x, cb, labels):.6g}")  # fmt: skip
    if "exact" not in skip:
        w, c, (ce, le) = _timed(lambda: kmeans.kmeans_1d(x, args.k, init=book.astype(np.float64)))
        row("k-means, exact numpy (kmeans_1d: sort + prefix sums)", w, c, f"inertia {kmeans.inertia(x, ce, le):.6g}")
    if "sklearn" not in skip:
        sample = x[:: max(1, args.n // args.sklearn_sample)]
        w, c, (cs, _) = _timed(lambda: kmeans.kmeans_sklearn(sample, args.k, init=book.astype(np.float64)))
        full = kmeans.assign(x, cs)
        row(f"k-means, scikit-learn on {sample.size:,} strided values", w, c,
            f"inertia on all n {kmeans.inertia(x, cs, full):.6g}")  # fmt: skip
    print(f"# load {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
