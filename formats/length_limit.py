"""Optimal length-limited prefix codes (package-merge, Larmore & Hirschberg 1990).

Why: a chunked stream's codes are capped (12-16 bits) so the decoder's tables stay in the CPU
cache, and every stream at 24. When Huffman's own code is longer, halving all frequencies until
it fits (the usual shortcut) distorts every code; package-merge gives the code lengths of least
total size under the cap. Measured on the random-init resnet18 of tools/bench_compress_models.py
(8-bit labels, codes up to 16 bits): whole file 4,380,608 B with halving to 12 bits, 4,374,144 B
with package-merge at 12 bits, 4,370,248 B with the writer's adaptive cap (12-16 bits, <= 0.1%
loss per stream); 4,359,176 B as a 1.0 file (no cap below 24, no chunk index).
"""

from __future__ import annotations

import numpy as np


def limited_lengths(weights: np.ndarray, limit: int) -> np.ndarray:
    """Code length per symbol (same order as `weights`, all > 0) minimising sum(w * length) with
    every length <= limit. Needs 2 <= len(weights) <= 2**limit."""
    n = weights.size
    order = np.argsort(weights, kind="stable")
    leaf_w = weights[order].astype(np.float64)
    leaf_c = np.eye(n, dtype=np.int16)  # an item's content: how often each leaf occurs in it
    cur_w, cur_c = leaf_w, leaf_c
    for _ in range(limit - 1):  # each level: pair neighbours into packages, merge with the leaves
        pairs = cur_w.size // 2 * 2
        pack_w = cur_w[0:pairs:2] + cur_w[1:pairs:2]
        pack_c = cur_c[0:pairs:2] + cur_c[1:pairs:2]
        merged_w = np.concatenate([leaf_w, pack_w])
        merged = np.argsort(merged_w, kind="stable")  # leaves first among equal weights
        cur_w, cur_c = merged_w[merged], np.concatenate([leaf_c, pack_c])[merged]
    lengths = np.empty(n, dtype=np.int64)
    lengths[order] = cur_c[: 2 * n - 2].sum(axis=0)
    return lengths


def canonical_table(symbols: list[int], lengths: np.ndarray) -> tuple[list[int], list[int]]:
    """(counts per length 1..L, symbols by length then value) for the given code lengths."""
    longest = int(lengths.max())
    counts = np.bincount(lengths, minlength=longest + 1)[1:].tolist()
    ranked = sorted(zip(lengths.tolist(), symbols))
    return [int(c) for c in counts], [int(s) for _, s in ranked]
