"""The compiled k-means step (compressor/_native/kmeans.c) on random and malformed calls.

    python -m tools.dev.fuzz_kmeans --seconds 60 --seed 1

Each round draws grouped values (float32/float64/bfloat16 bit patterns, scales from 1e-30 to 1e30,
NaN / inf, values on the midpoints), midpoints (sorted, unsorted, NaN; k from 1 to 300 so both label widths occur),
optional weights, and checks label_sums against the numpy fallback: labels and sums byte-identical
(a NaN sum matches any NaN).
Every few rounds it also calls the C entry point directly with inconsistent sizes, widths and
buffers, which must raise ValueError or TypeError. tools/dev/asan_fuzz.py runs it with the
AddressSanitizer build of kmeans.c, so any read or write outside a buffer aborts with a report.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from dcz.compressor import kmeans_native


def random_case(rng: np.random.Generator):
    groups, n = int(rng.integers(1, 5)), int(rng.choice([int(rng.integers(0, 50)), int(rng.integers(50, 5000))]))
    k = int(rng.choice([1, 2, 3, 15, 16, 17, 64, 255, 256, 257, 300]))
    x_type, m_type = (
        (np.float32, np.float64, "bf16")[int(rng.integers(0, 3))],
        (np.float32, np.float64)[int(rng.integers(0, 2))],
    )
    bf16 = x_type == "bf16"
    x_type = np.float32 if bf16 else x_type
    scale = float(rng.choice([1e-30, 1e-3, 1.0, 1e3, 1e30]))
    x = (rng.standard_normal((groups, n)) * scale).astype(x_type)
    mids = (np.sort(rng.standard_normal((groups, k - 1)), axis=1) * scale).astype(m_type)
    if n and k > 1 and rng.random() < 0.3:
        x.ravel()[: min(n, k - 1)] = mids[0, : min(n, k - 1)]
    if k > 2 and rng.random() < 0.15:
        mids[:, int(rng.integers(0, k - 1))] = np.nan if rng.random() < 0.5 else -mids[:, -1]
    if n and rng.random() < 0.2:
        x.ravel()[rng.integers(0, x.size, 3)] = rng.choice([np.nan, np.inf, -np.inf], 3)
    weight = rng.random((groups, n)).astype(np.float32) if rng.random() < 0.5 else None
    if bf16:  # the top halves of the float32 values (NaN / inf stay NaN / inf)
        x = (x.view(np.uint32) >> 16).astype(np.uint16)
    return x, mids, weight, bool(rng.random() < 0.8), bool(rng.random() < 0.2), bf16


def both_paths(x, mids, weight, sums, wide, bf16=False):
    os.environ.pop("DCZ_NATIVE", None)
    compiled = kmeans_native.label_sums(x, mids, weight, sums=sums, wide=wide, bf16=bf16)
    os.environ["DCZ_NATIVE"] = "0"
    try:
        fallback = kmeans_native.label_sums(x, mids, weight, sums=sums, wide=wide, bf16=bf16)
    finally:
        os.environ.pop("DCZ_NATIVE", None)
    return compiled, fallback


def same(a, b) -> bool:
    """Identical arrays; a NaN sum equals any NaN (+inf and -inf in one cluster give a NaN whose sign
    depends on the order of the additions: the tests' single non-finite value keeps bytes equal)."""
    if a is None or b is None:
        return a is None and b is None
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True)) and a[~np.isnan(a)].tobytes() == b[~np.isnan(b)].tobytes()
    return a.tobytes() == b.tobytes()


def malformed_call(core, rng: np.random.Generator) -> None:
    """A direct call whose sizes, widths or buffers disagree: must raise, never touch memory."""
    groups, n, k = (int(v) for v in rng.integers(-2, 40, 3))
    width = int(rng.choice([0, 1, 2, 3, 8]))
    x_kind = int(rng.integers(-1, 4))  # 0 float32, 1 float64, 2 bf16; -1 and 3 refused

    def buf(count, dtype):
        return np.zeros(max(int(count) + int(rng.integers(-2, 3)), 0), dtype)

    x = buf(groups * n, (np.float32, np.float64, np.uint16)[int(rng.integers(0, 3))])
    mids = buf(groups * (k - 1), np.float32)
    labels = buf(groups * n * max(width, 1), np.uint8)
    num = buf(groups * k, np.float64) if rng.random() < 0.7 else None
    den = buf(groups * k, np.float64) if num is not None and rng.random() < 0.9 else None
    weight = buf(groups * n, np.float32) if rng.random() < 0.3 else None
    try:
        core.label_sums(x, x_kind, mids, False, groups, n, k, labels, width, num, den, weight)
    except (ValueError, TypeError, OverflowError):
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    core = kmeans_native.core()
    if core is None:
        print(f"compiled k-means not in use: {kmeans_native.describe()}", file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    end, runs, malformed = time.monotonic() + args.seconds, 0, 0
    while time.monotonic() < end:
        compiled, fallback = both_paths(*random_case(rng))
        if not all(same(a, b) for a, b in zip(compiled, fallback)):
            print(f"round {runs}: compiled and numpy label_sums differ", file=sys.stderr)
            return 1
        for _ in range(3):
            malformed_call(core, rng)
            malformed += 1
        runs += 1
    print(f"{runs} random label_sums calls identical to numpy, {malformed} malformed calls refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
