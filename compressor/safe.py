"""Safe defaults: per layer, the smallest codebook that keeps the weight error within a bound.

The weight error is measured as SQNR, 10 log10(sum w^2 / sum (w - w_hat)^2) in dB, over the whole
tensor (pruned positions count as errors). With no bits set by the user, each layer takes the
cheapest candidate that reaches SAFE_SQNR_DB: one codebook of 4..8 bits, then 8-bit codebooks per
row group (heavy-tailed layers: channels of very different scales, kurtosis ~1000 in PP-OCR's
convolutions, reach the bound only this way), else the layer stays raw. The bound is measured
(docs/benchmarks/models.md): at 38 dB every corpus model keeps its decisions (same text, same
class, text-mask IoU >= 0.98); at 35 dB the direction classifier flips one of 8 lines.
No candidate is kept when its fixed-width size would not beat the raw float32 bytes (the
codebook counts). numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dcz.compressor.kmeans import cluster_weights

SAFE_SQNR_DB = 38.0
# Every row (output channel of a Conv / Gemm, input row of a MatMul weight) must also keep its own
# SQNR above this: one codebook fitted to a heavy-tailed tensor can wipe out a channel whose scale
# is 1000x below the others (PP-OCRv6 rec's conv2d_111: one channel at -15.7 dB, half of the layer's
# output error; 0 dB: a channel whose error is as large as itself) while the tensor as a whole meets SAFE_SQNR_DB. Such tensors take per-row-group or
# per-row codebooks, or stay raw.
CHANNEL_SQNR_DB = 0.0
# ... but only when that costs at most this many times the single codebook's bytes.
CHANNEL_COST = 1.5
AUTO_BITS = (4, 5, 6, 7, 8)
# Row-group counts tried at 8 bits when one codebook is not enough (more groups, more codebook bytes).
AUTO_GROUPS = (8, 32)
# A compressed tensor must be at most this share of its raw bytes (fixed-width estimate; Huffman
# coding only shrinks it further): below, raw is simpler and as small.
MAX_SHARE_OF_RAW = 0.9


@dataclass(frozen=True)
class Choice:
    """The codebook chosen for one layer (None codebook: keep it raw), with its weight error."""

    codebook: np.ndarray | None
    labels: np.ndarray | None
    bits: int | None
    group_rows: int | None
    sqnr_db: float
    reason: str = ""
    channel_db: float = float("inf")  # the weakest row's SQNR (-inf: not measured, the tensor bound failed)


def sqnr_db(weight: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when exact, 0 for an all-zero weight's loss)."""
    w = np.asarray(weight, dtype=np.float64)
    noise = float(np.sum((w - np.asarray(approx, dtype=np.float64)) ** 2))
    signal = float(np.sum(w**2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(signal / noise) if signal > 0 else 0.0


def min_row_sqnr_db(weight: np.ndarray, approx: np.ndarray) -> float:
    """The lowest SQNR of any row (axis 0) in dB; inf for a 0-d / 1-row tensor or exact rows."""
    if np.ndim(weight) < 2 or np.shape(weight)[0] < 2:
        return float("inf")
    w = np.asarray(weight, dtype=np.float64).reshape(weight.shape[0], -1)
    noise = np.sum((w - np.asarray(approx, dtype=np.float64).reshape(w.shape)) ** 2, axis=1)
    signal = np.sum(w**2, axis=1)
    lossy = noise > 0
    if not lossy.any():
        return float("inf")
    with np.errstate(divide="ignore"):
        return float(np.min(10.0 * np.log10(signal[lossy] / noise[lossy])))


def estimated_bytes(numel: int, kept: int, bits: int, groups: int) -> int:
    """Fixed-width size of a shared tensor: labels of the kept weights plus the float32 codebooks."""
    del numel  # dense and sparse labels alike: one label per kept weight (gaps are extra when pruned)
    return (kept * bits + 7) // 8 + 4 * (2**bits) * groups


def reconstruct(codebook: np.ndarray, labels: np.ndarray, group_rows: int | None, mask) -> np.ndarray:
    from dcz.compressor.state import gather_codebook

    dense = gather_codebook(np.asarray(codebook, np.float32), labels, group_rows).reshape(labels.shape)
    return dense if mask is None else np.where(mask, dense, 0.0)


def fits(weight: np.ndarray, kept: int, bits: int, groups: int) -> bool:
    """Would this codebook store the tensor in at most MAX_SHARE_OF_RAW of its raw bytes?"""
    return estimated_bytes(weight.size, kept, bits, groups) <= MAX_SHARE_OF_RAW * weight.size * 4


def choose(
    weight: np.ndarray,
    mask: np.ndarray | None,
    seed: int = 0,
    init: str = "linear",
    bound_db: float = SAFE_SQNR_DB,
    channel_db: float = CHANNEL_SQNR_DB,
) -> Choice:
    """The cheapest codebook (bits, row groups) reaching `bound_db` over the tensor and `channel_db`
    on every row, or a raw Choice with the reason.

    One codebook: 8 bits first, then a guess from its margin (~6 dB per bit), then down one bit at
    a time while the bound holds (or up until it does). Then 8-bit codebooks per row group, then
    one codebook per row (4..8 bits), the cheapest that meets both bounds.
    """
    weight = np.asarray(weight, dtype=np.float32)
    kept = weight.size if mask is None else int(np.count_nonzero(mask))
    rows = weight.shape[0] if weight.ndim else 1
    # The bound is on the sharing's error: against the pruned weight when the user asked for pruning
    # (pruning's own error is the user's explicit choice, reported and warned about separately).
    target = weight if mask is None else np.where(mask, weight, 0.0)
    tried: dict[tuple[int, int | None], Choice] = {}

    def attempt(bits: int, group_rows: int | None) -> Choice | None:
        """The Choice at these settings (None if it would not fit), measured once."""
        groups = 1 if group_rows is None else -(-rows // group_rows)
        if not fits(weight, kept, bits, groups):
            return None
        if (bits, group_rows) not in tried:
            book, labels = cluster_weights(weight, mask, bits, init=init, seed=seed, group_rows=group_rows)
            approx = reconstruct(book, labels, group_rows, mask)
            quality = sqnr_db(target, approx)
            channels = min_row_sqnr_db(target, approx) if quality >= bound_db else -float("inf")
            tried[bits, group_rows] = Choice(book, labels, bits, group_rows, quality, channel_db=channels)
        return tried[bits, group_rows]

    def meets(choice: Choice | None) -> bool:  # the tensor bound
        return choice is not None and choice.sqnr_db >= bound_db

    def meets_rows(choice: Choice | None) -> bool:  # and every row's
        return meets(choice) and choice.channel_db >= channel_db

    def size(choice: Choice) -> int:
        count = 1 if choice.group_rows is None else -(-rows // choice.group_rows)
        return estimated_bytes(weight.size, kept, choice.bits, count)

    # 8 bits first: a tensor too small for an 8-bit codebook to pay off stays raw. Small layers
    # (depthwise, SE) weigh little and are the sensitive ones: at fewer bits they moved rapidocr's
    # classifier's probabilities past 0.1 (measured), for ~1% of its size.
    low, high = AUTO_BITS[0], AUTO_BITS[-1]
    base = None  # the cheapest choice meeting the tensor bound (as before the row bound)
    groups = [(high, -(-rows // g)) for g in AUTO_GROUPS if g < rows]
    if meets(top := attempt(high, None)):
        margin = min(top.sqnr_db - bound_db, 6.02 * (high - low))  # inf when lossless (few distinct values)
        bits = max(low, high - int(margin // 6.02))
        while bits < high and not meets(attempt(bits, None)):
            bits += 1
        while bits > low and meets(attempt(bits - 1, None)):
            bits -= 1
        base = tried[bits, None]
    else:
        base = next((found for b, g in groups if meets(found := attempt(b, g))), None)
    if base is None or meets_rows(base):
        return base or _raw(tried, bound_db)
    # A weak row: row-group codebooks, then one codebook per row, the first that meets both bounds,
    # taken only if it costs at most CHANNEL_COST x `base` (measured on PP-OCRv4 det: near-dead
    # channels in many layers; fixing them all cost 3.9x -> 2.6x for no output gain).
    per_row = [(b, 1) for b in AUTO_BITS if rows > 1]
    limit = CHANNEL_COST * size(base)
    for bits, group_rows in groups + per_row:
        if estimated_bytes(weight.size, kept, bits, -(-rows // group_rows)) > limit:
            continue  # measured only when affordable: per-row k-means is the slow part
        if meets_rows(found := attempt(bits, group_rows)):
            return found
    return base


def _raw(tried: dict, bound_db: float) -> Choice:
    """The raw Choice, with the reason no codebook was kept."""
    if not tried:
        return Choice(None, None, None, None, float("inf"), "a codebook would not be smaller than the raw tensor")
    best = max(c.sqnr_db for c in tried.values())
    return Choice(None, None, None, None, float("inf"), f"no codebook reaches {bound_db:g} dB (best {best:.1f} dB)")


def weight_summary(sqnr: dict, kept_raw: dict, bound_db: float = SAFE_SQNR_DB) -> tuple[str, str | None]:
    """One line on the weight error (from `compress.weight_sqnr_db`), and a warning or None.

    The warning names the worst layer when any compressed weight is below the safe bound: only
    explicit settings (bits, pruning) can put it there, and they may change the outputs noticeably.
    """
    finite = {n: v for n, v in sqnr.items() if v is not None}
    raw = f", {len(kept_raw)} kept raw" if kept_raw else ""
    if not finite:
        return f"weights: {len(sqnr)} compressed losslessly{raw}", None
    worst = min(finite, key=finite.get)
    median = float(np.median(list(finite.values())))
    line = (
        f"weights: {len(sqnr)} compressed{raw}; weight SQNR min {finite[worst]:.1f} dB ({worst}), "
        f"median {median:.1f} dB; safe bound {bound_db:g} dB"
    )
    below = [n for n, v in finite.items() if v < bound_db]
    if not below:
        return line, None
    return line, (
        f"warning: {len(below)} of {len(sqnr)} layers are below the safe bound of {bound_db:g} dB "
        f"(worst {worst}: {finite[worst]:.1f} dB): these settings may change the model's outputs noticeably"
    )
