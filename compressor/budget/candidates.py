"""Per-layer candidates for the byte-budget solver: what each setting costs and how much it hurts.

A candidate is one way to store one weight tensor: a sparsity (magnitude pruning to that
fraction of zeros), a label width (k-means weight sharing with 2**bits centroids) and a gap width
(relative column indices), or the tensor kept raw. Its size is the exact number of bytes the
writer stores for it (compressor/budget/sizes.py: the writer's own fixed-or-Huffman choice, code
tables and chunk index, the Huffman payload length from the symbol histogram without encoding it),
so the solver and the written file agree byte for byte on every tensor (tests check both).

Gap bits do not change the weights, only the bytes, and the index streams (rows, gaps) depend on
the mask and gap width alone: for each sparsity every gap width is sized once and the smallest kept
for every label width. (All widths are sized: bytes against gap width is not unimodal once the gaps
are Huffman coded, e.g. 2 bits can beat 3 while 4 beats 3, so a local search misses.) Other gap
widths are dominated (same damage, more bytes); their sizes are kept as deltas for the uniform
baseline, which must use the same gap width everywhere.

This module is torch-free (numpy + formats): the damage weights (Fisher diagonal) come in as an
array, computed by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dcz.compressor.budget.sizes import FLOAT32_BYTES, csr_bytes, histogram_stream_bytes, raw_bytes
from dcz.compressor.checks import StrictConfig, check_bool, check_float, check_int, fail

DEFAULT_SPARSITIES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995)
DEFAULT_LABEL_BITS = (1, 2, 3, 4, 5, 6, 7, 8)
DEFAULT_GAP_BITS = (1, 2, 3, 4, 5, 6, 7, 8)


@dataclass(frozen=True)
class CandidateGrid(StrictConfig):
    """The settings the solver may choose from, the same for every layer.

    sparsities  fractions of weights pruned by magnitude, each in [0, 1).
    label_bits  codebook index widths, each in 1..8 (2**bits centroids).
    gap_bits    relative column index widths of the sparse encoding, each in 1..8.
    allow_raw   also offer float32 as-is: zero damage, 4 bytes a weight (only for roomy budgets).
    entropy_steps  also offer entropy-constrained codebooks (budget/entropy.py: up to 256 levels, labels
                sized Huffman-coded) of the dense weight at these grid steps, in robust standard deviations
                of the weight (1.4826 x the median absolute deviation, which outliers do not inflate;
                e.g. 0.5: ~3 bits a weight on a bell-shaped tensor); none by default.
    """

    sparsities: tuple[float, ...] = DEFAULT_SPARSITIES
    label_bits: tuple[int, ...] = DEFAULT_LABEL_BITS
    gap_bits: tuple[int, ...] = DEFAULT_GAP_BITS
    allow_raw: bool = True
    entropy_steps: tuple[float, ...] = ()
    where: str = field(default="candidates", compare=False, repr=False)

    def __post_init__(self) -> None:
        w = self.where
        object.__setattr__(self, "sparsities", _checked_values(f"{w}.sparsities", self.sparsities, _sparsity))
        object.__setattr__(self, "label_bits", _checked_values(f"{w}.label_bits", self.label_bits, _width))
        object.__setattr__(self, "gap_bits", _checked_values(f"{w}.gap_bits", self.gap_bits, _width))
        check_bool(f"{w}.allow_raw", self.allow_raw)
        steps = self.entropy_steps
        if isinstance(steps, Sequence) and not isinstance(steps, (str, bytes)) and not steps:
            object.__setattr__(self, "entropy_steps", ())  # none (a JSON [] too)
        else:
            object.__setattr__(self, "entropy_steps", _checked_values(f"{w}.entropy_steps", steps, _step))


def _sparsity(where: str, value: Any) -> float:
    return check_float(where, value, 0.0, 1.0, high_open=True)


def _step(where: str, value: Any) -> float:
    return check_float(where, value, 0.01, 10.0)


def _width(where: str, value: Any) -> int:
    return check_int(where, value, 1, 8)


def _checked_values(where: str, values: Any, check) -> tuple:
    """A non-empty tuple of checked values, from any sequence (a JSON list)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise fail(where, f"must be a non-empty list, got {values!r}")
    return tuple(check(f"{where}[{i}]", v) for i, v in enumerate(values))


@dataclass
class Candidate:
    """One way to store one layer. `state` is rebuilt on demand (see LayerCandidates.state)."""

    sparsity: float  # fraction of weights pruned (0 = dense); for raw, 0
    label_bits: int | None  # None = raw float32
    gap_bits: int | None  # None = dense (no index stream) or raw
    nbytes: int  # bytes this tensor occupies in the file (formats SizeReport huffman_bytes)
    damage: float  # sum_w F_w (w - w_hat)^2
    step: float | None = None  # entropy-constrained codebook at this grid step (x the weight's std); None: k-means

    @property
    def encoding(self) -> str:
        if self.label_bits is None:
            return "raw"
        return "shared" if self.gap_bits is None else "sparse_shared"

    def key(self) -> tuple:
        return (self.sparsity, self.label_bits, self.gap_bits, self.step)


@dataclass
class LayerCandidates:
    """Every candidate measured for one layer, plus what is needed to rebuild the chosen one."""

    name: str
    layer_type: str
    weight: np.ndarray  # float32, the dense weight
    fisher: np.ndarray  # float32, same shape: damage weight of each entry
    candidates: list[Candidate]
    # gap_delta[(sparsity, gap_bits)] = bytes(gap_bits) - bytes(best gap_bits) at that sparsity (measured)
    gap_delta: dict[tuple[float, int], int] = field(default_factory=dict)
    best_gap: dict[float, int] = field(default_factory=dict)
    # kept from the sizing so that rebuilding a candidate's state neither re-sorts the weight nor
    # reruns k-means (a search rebuilds hundreds: on MiniLM the argsorts alone were 99 of 243 s)
    order: np.ndarray | None = field(default=None, repr=False)
    codebooks: dict[tuple[float, int], np.ndarray] = field(default_factory=dict, repr=False)
    # error-feedback labels (budget/feedback.py) for dense shared candidates, when the search set an input
    # moment E[x x^T] (in, in); `transposed`: the weight is stored (out, in) (Gemm transB=1), else (in, out)
    moment: np.ndarray | None = field(default=None, repr=False)
    transposed: bool = False
    fed: dict[tuple, np.ndarray] = field(default_factory=dict, repr=False)
    factor: Any = field(default=None, repr=False)  # budget.feedback.Factor of the moment, made once

    @property
    def numel(self) -> int:
        return int(self.weight.size)

    def smallest(self) -> Candidate:
        return min(self.candidates, key=lambda c: (c.nbytes, c.damage))

    def find(self, sparsity: float, label_bits: int | None) -> Candidate | None:
        """The k-means (or raw) candidate of this setting (entropy-constrained ones are not settings)."""
        for cand in self.candidates:
            if cand.sparsity == sparsity and cand.label_bits == label_bits and cand.step is None:
                return cand
        return None

    def uniform_bytes(self, sparsity: float, label_bits: int, gap_bits: int) -> int | None:
        """Bytes of this layer at a forced gap width: measured best + measured delta."""
        cand = self.find(sparsity, label_bits)
        if cand is None:
            return None
        if cand.gap_bits is None:  # dense: no index stream, gap width irrelevant
            return cand.nbytes
        delta = self.gap_delta.get((sparsity, gap_bits))
        return None if delta is None else cand.nbytes + delta

    def state(self, cand: Candidate, gap_bits: int | None = None):
        """The LayerState for a candidate (recomputes prune + k-means: deterministic)."""
        from dcz.compressor.state import LayerState

        shape = tuple(self.weight.shape)
        if cand.label_bits is None:
            return LayerState(self.name, self.layer_type, shape, values=self.weight.copy())
        if self.order is None:
            self.order = prune_order(self.weight)
        mask = prune_mask(self.weight, cand.sparsity, self.order)
        codebook = self.codebooks.get(_book_key(cand))
        if codebook is None and cand.step is not None:
            codebook = entropy_book(self.weight[mask], cand.step)
            labels = _labels(self.weight, mask, codebook)
        elif codebook is None:
            codebook, labels = share(self.weight, mask, cand.label_bits)  # same as when measured (deterministic)
        else:  # share() would compute this very codebook again (tests/compressor/budget: same states)
            labels = _labels(self.weight, mask, codebook)
        if self.moment is not None and cand.gap_bits is None:
            labels = self.feedback_labels(cand, codebook)
        gaps = cand.gap_bits if gap_bits is None else gap_bits
        return LayerState(
            self.name,
            self.layer_type,
            shape,
            mask=mask if cand.gap_bits is not None else None,
            codebook=codebook,
            labels=labels,
            label_bits=cand.label_bits,
            gap_bits=gaps if cand.gap_bits is not None else None,
        )

    def matrix(self) -> np.ndarray:
        """The weight as (outputs, inputs), the orientation of its input moment's columns."""
        return self.weight if self.transposed else self.weight.T

    def feedback_labels(self, cand: Candidate, codebook: np.ndarray) -> np.ndarray:
        """The dense candidate's labels chosen with error feedback from the input moment (kept once made)."""
        from dcz.compressor.budget.feedback import Factor, feedback_labels

        key = _book_key(cand)
        if key not in self.fed:
            if self.factor is None:
                self.factor = Factor.of(self.moment)
            self.fed[key] = feedback_labels(self.matrix(), codebook, self.factor)
        labels = self.fed[key]
        return labels if self.transposed else labels.T


def _book_key(cand: Candidate) -> tuple:
    return (cand.sparsity, cand.label_bits) if cand.step is None else (cand.sparsity, cand.label_bits, cand.step)


def entropy_book(kept: np.ndarray, step: float, sorted_kept: np.ndarray | None = None) -> np.ndarray | None:
    """The entropy-constrained codebook of these weights at `step` x their spread (budget/entropy.py)."""
    from dcz.compressor.budget.entropy import ecsq_codebook, robust_scale

    srt = np.sort(kept.reshape(-1)) if sorted_kept is None else sorted_kept
    return ecsq_codebook(srt, step * robust_scale(srt))


def _labels(weight: np.ndarray, mask: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """share()'s labels for a known codebook: nearest centroid of each kept weight, 0 where pruned."""
    from dcz.compressor.kmeans import assign

    labels = np.zeros(weight.shape, dtype=np.int64)
    labels[mask] = assign(weight[mask].astype(np.float32), codebook)
    return labels


def prune_order(weight: np.ndarray) -> np.ndarray:
    """Flat positions by ascending magnitude (stable: ties by position): prune from the front."""
    return np.argsort(np.abs(weight.reshape(-1)), kind="stable")


def prune_mask(weight: np.ndarray, sparsity: float, order: np.ndarray | None = None) -> np.ndarray:
    """Keep the largest-magnitude (1 - sparsity) fraction of weights (at least one)."""
    order = prune_order(weight) if order is None else order
    n_prune = min(int(round(sparsity * order.size)), order.size - 1)  # an empty layer is not a setting
    mask = np.ones(order.size, dtype=bool)
    mask[order[:n_prune]] = False
    return mask.reshape(weight.shape)


def share(
    weight: np.ndarray, mask: np.ndarray, label_bits: int, sorted_kept: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """k-means (linear init) over the surviving weights: (codebook (k,), labels of weight.shape, 0 where pruned).

    `sorted_kept` (the kept values sorted) only saves work; the result is the same without it."""
    kept = weight[mask].astype(np.float32)
    srt = np.sort(kept) if sorted_kept is None else sorted_kept
    codebook, kept_labels = share_kept(kept, SortedKept(srt), label_bits)
    labels = np.zeros(weight.shape, dtype=np.int64)
    labels[mask] = kept_labels
    return codebook, labels


class SortedKept:
    """The kept values sorted, with what k-means needs of them built once for every label width."""

    def __init__(self, sorted_kept: np.ndarray) -> None:
        self.values = sorted_kept
        self.distinct = 1 + int(np.count_nonzero(np.diff(sorted_kept))) if sorted_kept.size else 0
        self._prepared = None

    def prepared(self):
        from dcz.compressor.kmeans import SortedValues

        if self._prepared is None:
            self._prepared = SortedValues(self.values)
        return self._prepared


def share_kept(kept: np.ndarray, srt: SortedKept, label_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(codebook float32, labels of `kept`): kmeans_1d(kept, k, init='linear') exactly, without
    re-sorting or re-summing the values for every label width."""
    from dcz.compressor.kmeans import assign

    codebook = kept_codebook(srt, label_bits)
    return codebook, assign(kept, codebook)


def kept_codebook(srt: SortedKept, label_bits: int) -> np.ndarray:
    """The float32 codebook of kmeans_1d(kept values, 2**label_bits, init='linear')."""
    from dcz.compressor.kmeans import kmeans_1d, lloyd_sorted

    k = max(1, min(2**label_bits, srt.distinct))
    if srt.distinct <= k:  # lossless: kmeans_1d returns the distinct values
        codebook, _ = kmeans_1d(srt.values, k, init="linear", seed=0)
    else:
        data = srt.prepared()
        codebook = lloyd_sorted(data, data.initial(k, "linear", 0), 300) + data.shift
    return np.asarray(codebook, dtype=np.float32)


def reconstruct(weight: np.ndarray, mask: np.ndarray, codebook: np.ndarray, labels: np.ndarray) -> np.ndarray:
    w_hat = codebook[labels].astype(np.float32)
    w_hat[~mask] = 0.0
    return w_hat


def measure_layer(
    name: str,
    layer_type: str,
    weight: np.ndarray,
    fisher: np.ndarray,
    grid: CandidateGrid = CandidateGrid(),
    order: np.ndarray | None = None,
) -> LayerCandidates:
    """Size every grid setting of one layer (exact written bytes, compressor/budget/sizes.py) and its damage.

    One magnitude sort and one value sort serve every sparsity: the kept values sorted are the
    value-sorted weights with the pruned ones dropped, and each kept value's rank among them turns
    the k-means partition (contiguous runs of the sorted values) into labels by a table lookup,
    with the labels' histogram straight from the runs' lengths. `order` (prune_order(weight), when
    the caller has it from an earlier sizing of the same weight) saves that sort."""
    weight = np.array(weight, dtype=np.float32, order="C", copy=True)  # never a view of a live parameter
    fisher = np.ascontiguousarray(fisher, dtype=np.float64).reshape(weight.shape)
    out = LayerCandidates(name, layer_type, weight, fisher.astype(np.float32), [])
    if grid.allow_raw:
        out.candidates.append(Candidate(0.0, None, None, raw_bytes(weight), 0.0))
    order = out.order = prune_order(weight) if order is None else order
    flat32 = weight.reshape(-1)
    flat_w, flat_f = flat32.astype(np.float64), fisher.reshape(-1)
    # damage of the pruned part, for every prefix of the magnitude order: O(1) per sparsity
    pruned_damage = np.concatenate([[0.0], np.cumsum((flat_f * flat_w**2)[order])])
    by_value = _value_order(flat32, order)
    sorted_all = flat32[by_value]
    value_rank = np.empty(flat32.size, dtype=np.int64)
    value_rank[by_value] = np.arange(flat32.size)
    flat_mask, n_pruned = np.ones(flat32.size, dtype=bool), 0
    for sparsity in sorted(set(grid.sparsities)):  # ascending: each mask drops more of the same order
        n_prune = min(int(round(sparsity * order.size)), order.size - 1)  # as prune_mask
        flat_mask[order[n_pruned:n_prune]] = False
        n_pruned = n_prune
        mask = flat_mask.reshape(weight.shape)
        best_gap, index_bytes = None, 0
        if n_pruned:  # the index streams depend on the mask and gap width only, not on the labels
            sweep = {b: csr_bytes(mask, b) for b in grid.gap_bits}
            best_gap = min(sweep, key=lambda b: (sweep[b], b))
            out.best_gap[sparsity] = best_gap
            index_bytes = sweep[best_gap]
            for b, nbytes in sweep.items():
                out.gap_delta[(sparsity, b)] = nbytes - index_bytes
        kept = _KeptValues(flat32, flat_w, flat_f, flat_mask, sorted_all, by_value, value_rank)
        for bits in grid.label_bits:
            book = out.codebooks[float(sparsity), bits] = kept_codebook(kept.sorted, bits)
            kept_labels, histogram = kept.labels(book)
            damage = float(pruned_damage[n_pruned] + kept.damage(book, kept_labels))
            nbytes = index_bytes + FLOAT32_BYTES * book.size
            nbytes += histogram_stream_bytes(
                np.flatnonzero(histogram), histogram[histogram > 0], bits, lambda: kept_labels
            )
            out.candidates.append(Candidate(float(sparsity), bits, best_gap, nbytes, damage))
        if sparsity == 0.0:
            out.candidates += _entropy_candidates(out, kept, grid.entropy_steps)
    return out


def _entropy_candidates(out: LayerCandidates, kept: _KeptValues, steps) -> list[Candidate]:
    """The dense weight's entropy-constrained codebooks, sized like the k-means ones (Huffman labels)."""
    from dcz.compressor.budget.entropy import label_width

    found = []
    for step in steps:
        book = entropy_book(kept.sorted.values, step, kept.sorted.values)
        if book is None or book.size < 2:
            continue
        bits = label_width(book.size)
        kept_labels, histogram = kept.labels(book)
        damage = kept.damage(book, kept_labels)
        nbytes = FLOAT32_BYTES * book.size + histogram_stream_bytes(
            np.flatnonzero(histogram), histogram[histogram > 0], bits, lambda: kept_labels
        )
        cand = Candidate(0.0, bits, None, nbytes, float(damage), float(step))
        out.codebooks[_book_key(cand)] = book
        found.append(cand)
    return found


def _value_order(flat32: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Positions by ascending value, from the magnitude order without another sort: the negative
    weights by falling magnitude, then the others (zeros of either sign first) by rising magnitude."""
    negative = flat32[order] < 0
    return np.concatenate([order[negative][::-1], order[~negative]])


class _KeptValues:
    """The kept weights of one mask: row-major (the labels stream's order) and sorted, linked by rank."""

    def __init__(self, flat32, flat_w, flat_f, flat_mask, sorted_all, by_value, value_rank) -> None:
        self.w, self.f = flat_w[flat_mask], flat_f[flat_mask]
        self._err = np.empty_like(self.w)
        keep_by_value = flat_mask[by_value]
        values = sorted_all[keep_by_value]  # == np.sort(flat32[flat_mask]): same multiset, ascending
        if values.size and int(np.count_nonzero(np.diff(values))) + 1 <= 2 ** max(DEFAULT_LABEL_BITS):
            values = np.sort(flat32[flat_mask])  # the lossless path keeps kmeans_1d's own order of +-0
        self.sorted = SortedKept(values)
        self.sorted64 = values.astype(np.float64)
        # position among the kept sorted values of each kept weight, in row-major order
        kept_rank = np.cumsum(keep_by_value, dtype=np.int64)
        kept_rank -= 1
        self.rank = kept_rank[value_rank[flat_mask]].astype(np.int32 if kept_rank.size < 2**31 else np.int64)

    def damage(self, codebook: np.ndarray, labels: np.ndarray) -> float:
        """sum F (w - codebook[label])^2 over the kept weights, in one reused buffer (a fresh array
        of this size costs more in page faults than the arithmetic)."""
        err = codebook.astype(np.float64).take(labels, out=self._err)
        np.subtract(self.w, err, out=err)
        np.multiply(err, err, out=err)
        return float(np.dot(self.f, err))

    def labels(self, codebook: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels in row-major order, count per label) = assign(kept, codebook) and its bincount.

        Label j holds the values x with midpoint[j-1] < x <= midpoint[j] (ties to the lower
        centroid, as assign), a run of the sorted values ending at searchsorted(midpoint, 'right')."""
        centroids = codebook.astype(np.float64)
        midpoints = (centroids[:-1] + centroids[1:]) / 2
        ends = self.sorted64.searchsorted(midpoints, side="right")
        histogram = np.diff(ends, prepend=0, append=self.sorted64.size)
        by_rank = np.repeat(np.arange(codebook.size, dtype=np.uint8), histogram)
        return by_rank.take(self.rank), histogram
