"""Side-by-side benchmark: our exact 1-D k-means vs scikit-learn's KMeans.

Both start from the same initial centroids (computed once, outside sklearn's timing), both run
single-threaded (threadpoolctl), sklearn with its defaults (Lloyd, max_iter=300, tol=1e-4, n_init=1).
Reports the median wall time of `--repeats` runs, the speed-up and both inertias.

    python -m tools.bench.bench_kmeans --sizes 1000000 10000000 --ks 32 256 --repeats 3

The values imitate a pruned layer's weights: Laplace-distributed with the smallest 70% removed
(the bimodal histogram of the paper's Figure 5).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from dcz.compressor.kmeans import inertia, initial_centroids, kmeans_1d, kmeans_sklearn


def pruned_weights(n: int, seed: int = 0) -> np.ndarray:
    """n float32 values shaped like a pruned layer: |w| above the 70th percentile of a Laplace."""
    rng = np.random.default_rng(seed)
    raw = rng.laplace(0.0, 0.02, size=int(n / 0.3) + 1)
    cut = np.quantile(np.abs(raw), 0.7)
    return raw[np.abs(raw) >= cut][:n].astype(np.float32)


def _median_time(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench(n: int, k: int, init: str, repeats: int, sklearn_repeats: int) -> dict:
    values = pruned_weights(n)
    start = initial_centroids(values, k, init, seed=0)
    # Both get the same initial centroids, so the timed part is Lloyd against Lloyd (the init's own cost
    # would otherwise be charged to ours only); the result equals kmeans_1d(values, k, init=init, seed=0).
    ours_s, (c1, l1) = _median_time(lambda: kmeans_1d(values, k, init=start), repeats)
    ref_s, (c2, l2) = _median_time(lambda: kmeans_sklearn(values, k, init=start), sklearn_repeats)
    return {
        "n": n,
        "k": k,
        "init": init,
        "ours_s": ours_s,
        "sklearn_s": ref_s,
        "speedup": ref_s / ours_s,
        "inertia_ours": inertia(values, c1, l1),
        "inertia_sklearn": inertia(values, c2, l2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--ks", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--inits", nargs="+", default=["linear", "kmeans++"])
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement of ours (median)")
    parser.add_argument("--sklearn-repeats", type=int, default=3, help="runs per measurement of sklearn (median)")
    args = parser.parse_args(argv)
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}, "
        f"numpy {np.__version__}, single thread for both"
    )
    print("| values | k | init | ours (s) | sklearn (s) | speed-up | inertia ours | inertia sklearn | ours / sklearn |")
    print("|---|---|---|---|---|---|---|---|---|")
    worst_speedup, worst_ratio = float("inf"), 0.0
    with threadpool_limits(limits=1):
        for n in args.sizes:
            for k in args.ks:
                for init in args.inits:
                    r = bench(n, k, init, args.repeats, args.sklearn_repeats)
                    ratio = r["inertia_ours"] / r["inertia_sklearn"]
                    worst_speedup, worst_ratio = min(worst_speedup, r["speedup"]), max(worst_ratio, ratio)
                    print(
                        f"| {n:,} | {k} | {init} | {r['ours_s']:.3f} | {r['sklearn_s']:.2f} | {r['speedup']:.0f}x | "
                        f"{r['inertia_ours']:.6g} | {r['inertia_sklearn']:.6g} | {ratio:.6f} |",
                        flush=True,
                    )
    print(f"\nworst speed-up {worst_speedup:.0f}x (floor 20x); worst inertia ratio {worst_ratio:.6f} (must be <= 1)")
    return 0 if worst_speedup >= 20 and worst_ratio <= 1 + 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
