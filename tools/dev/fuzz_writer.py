"""Random tensors through the writer and back: the encode side of the compiled core under a sanitizer.

    python -m tools.dev.fuzz_writer --seconds 60 --seed 1

Each round writes one random tensor with formats.dumps (pruned shared, pruned, or dense shared; any
shape from empty to a few thousand columns, densities from 0 to 1, label arrays of every integer
type, every gap and label width, plain and chunked streams, skewed label histograms for long codes)
and checks that formats.loads gives back the expected dense array. tools/dev/asan_fuzz.py runs it
with the AddressSanitizer build, so csr_labels, csr_encode, histogram, huffman_encode and pack are
exercised with sizes at every boundary; a wrong byte shows up as a mismatch, a bad access as a report.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from dcz import formats

LABEL_TYPES = (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.int64, np.uint64)


def random_tensor(rng: np.random.Generator):
    """(formats tensor, the dense float32 array it stands for)."""
    rows, cols = int(rng.integers(0, 20)), int(rng.integers(0, 3000))
    if rng.random() < 0.3:
        rows, cols = int(rng.integers(0, 4)), int(rng.integers(0, 200))
    label_bits, gap_bits = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    k = int(rng.integers(1, (1 << label_bits) + 1))
    skew = rng.random(k) ** float(rng.choice([1, 8, 24]))
    dtype = rng.choice([t for t in LABEL_TYPES if np.iinfo(t).max >= k - 1])
    labels = rng.choice(k, size=(rows, cols), p=skew / skew.sum()).astype(dtype)
    mask = rng.random((rows, cols)) < float(rng.choice([0.0, 0.01, 0.1, 0.5, 0.9, 1.0]))
    book = rng.standard_normal(k).astype(np.float32)
    kind = rng.choice(["sparse_shared", "sparse", "shared"], p=[0.6, 0.2, 0.2])
    if kind == "shared":
        return formats.Shared("w", labels, book, label_bits), book[labels.astype(np.int64)]
    dense = np.where(mask, book[labels.astype(np.int64)], 0).astype(np.float32)
    if kind == "sparse":
        return formats.Sparse("w", dense, mask, gap_bits), dense
    return formats.SparseShared("w", mask, labels, book, label_bits, gap_bits), dense


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    end, runs = time.monotonic() + args.seconds, 0
    while time.monotonic() < end:
        tensor, want = random_tensor(rng)
        chunk = [None, 0, 64, 1000][int(rng.integers(0, 4))]
        ranged = bool(runs % 2)  # every other round may take the range coding (format 1.3)
        compact = bool(runs // 2 % 2)  # and every other pair the compact container (format 1.4)
        data = formats.dumps([tensor], chunk_symbols=chunk, range_coding=ranged, compact_container=compact)
        got = formats.loads(data).tensor("w")
        if got.shape != want.shape or got.tobytes() != want.tobytes():
            print(f"round {runs}: decoded tensor differs from the one written", file=sys.stderr)
            return 1
        runs += 1
    print(f"{runs} random tensors written and read back identically")
    return 0


if __name__ == "__main__":
    sys.exit(main())
