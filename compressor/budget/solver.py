"""Choose one candidate per layer so that the tensors fit a byte target with the least total damage.

Python + numpy over measured (bytes, damage) pairs: no torch, no formats.

Lagrangian stage: minimising sum(D) + lambda * sum(R) splits per layer, and as lambda falls each layer
walks its lower convex hull of (bytes, damage). Sorting every hull segment of every layer by its
slope (damage saved per byte) visits the Lagrangian optimum of every lambda in order, which is the
bisection on lambda done exactly: we take segments while they fit the target. The discrete problem
leaves slack under the target, so a greedy fill then spends it on the best remaining upgrades (any
candidate, not only hull points), and a greedy repair gives bytes back when the written file turned
out bigger than predicted. An exact dynamic program (multiple-choice knapsack over bytes) runs too
and the better allocation wins: the Lagrangian misses the optimum when a layer's next hull point
does not fit but a combination of off-hull points does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dcz.compressor.budget.candidates import Candidate, LayerCandidates


def lower_hull(cands: list[Candidate]) -> list[Candidate]:
    """Lower convex hull of (nbytes, damage), bytes ascending, damage strictly falling."""
    pts: list[Candidate] = []
    for cand in sorted(cands, key=lambda c: (c.nbytes, c.damage)):
        if pts and cand.damage >= pts[-1].damage:
            continue  # dominated: more (or as many) bytes, no less damage
        while len(pts) >= 2 and _cross(pts[-2], pts[-1], cand) <= 0:
            pts.pop()  # pts[-1] lies on or above the chord: never a Lagrangian optimum
        pts.append(cand)
    return pts


def _cross(a: Candidate, b: Candidate, c: Candidate) -> float:
    return (b.nbytes - a.nbytes) * (c.damage - a.damage) - (b.damage - a.damage) * (c.nbytes - a.nbytes)


def min_bytes(layers: list[LayerCandidates]) -> int:
    return sum(layer.smallest().nbytes for layer in layers)


def lagrangian(layers: list[LayerCandidates], target: int) -> list[Candidate]:
    """Largest Lagrangian solution whose bytes are <= target (target >= min_bytes assumed)."""
    hulls = [lower_hull(layer.candidates) for layer in layers]
    choice = [hull[0] for hull in hulls]
    total = sum(c.nbytes for c in choice)
    for i, seg in _segments_by_slope(hulls):
        step = hulls[i][seg + 1].nbytes - hulls[i][seg].nbytes
        if total + step > target:
            break  # the next lambda breakpoint overshoots: stop at this lambda
        choice[i] = hulls[i][seg + 1]
        total += step
    return choice


def _segments_by_slope(hulls: list[list[Candidate]]) -> list[tuple[int, int]]:
    """(layer, segment) pairs ordered by damage saved per byte, best first (hull slopes are monotone)."""
    segs = []
    for i, hull in enumerate(hulls):
        for j in range(len(hull) - 1):
            a, b = hull[j], hull[j + 1]
            gain = (a.damage - b.damage) / max(b.nbytes - a.nbytes, 1)
            segs.append((-gain, i, j))
    segs.sort()
    return [(i, j) for _, i, j in segs]


def greedy_fill(layers: list[LayerCandidates], choice: list[Candidate], target: int) -> list[Candidate]:
    """Spend the slack: repeatedly take the upgrade with most damage saved per extra byte that fits."""
    choice = list(choice)
    total = sum(c.nbytes for c in choice)
    while True:
        best, best_gain = None, 0.0
        for i, layer in enumerate(layers):
            cur = choice[i]
            for cand in layer.candidates:
                extra = cand.nbytes - cur.nbytes
                saved = cur.damage - cand.damage
                if saved <= 0 or total + extra > target:
                    continue
                gain = saved / max(extra, 1) if extra > 0 else float("inf")
                if gain > best_gain:
                    best, best_gain = (i, cand), gain
        if best is None:
            return choice
        i, cand = best
        total += cand.nbytes - choice[i].nbytes
        choice[i] = cand


def greedy_repair(layers: list[LayerCandidates], choice: list[Candidate], target: int) -> list[Candidate]:
    """Give bytes back until total <= target: cheapest damage increase per byte saved first."""
    choice = list(choice)
    total = sum(c.nbytes for c in choice)
    while total > target:
        best, best_cost = None, float("inf")
        for i, layer in enumerate(layers):
            cur = choice[i]
            for cand in layer.candidates:
                saved = cur.nbytes - cand.nbytes
                if saved <= 0:
                    continue
                cost = max(cand.damage - cur.damage, 0.0) / saved
                if cost < best_cost:
                    best, best_cost = (i, cand), cost
        if best is None:
            break  # everything already at its smallest: caller reports the shortfall
        i, cand = best
        total += cand.nbytes - choice[i].nbytes
        choice[i] = cand
    return choice


def pareto(cands: list[Candidate]) -> list[Candidate]:
    """Candidates not beaten on both bytes and damage, bytes ascending."""
    out: list[Candidate] = []
    for cand in sorted(cands, key=lambda c: (c.nbytes, c.damage)):
        if not out or cand.damage < out[-1].damage:
            out.append(cand)
    return out


def knapsack(layers: list[LayerCandidates], target: int, max_cells: int = 200_000) -> list[Candidate] | None:
    """Exact multiple-choice knapsack by dynamic programming over bytes (numpy, one shifted minimum per
    candidate). Above `max_cells` bytes it works in buckets of ceil(target / max_cells) bytes with
    sizes rounded UP, so the answer always fits and is optimal to within one bucket per layer."""
    bucket = max(1, -(-target // max_cells))
    cap = target // bucket
    fronts = [pareto(layer.candidates) for layer in layers]
    best = np.zeros(cap + 1)  # best[t]: least damage of the layers so far within t buckets
    picks = []
    for front in fronts:
        new = np.full(cap + 1, np.inf)
        pick = np.full(cap + 1, -1, dtype=np.int32)
        for j, cand in enumerate(front):
            w = -(-cand.nbytes // bucket)
            if w > cap:
                continue
            shifted = best[: cap + 1 - w] + cand.damage
            better = shifted < new[w:]
            new[w:][better] = shifted[better]
            pick[w:][better] = j
        best, picks = new, picks + [pick]
    if not np.isfinite(best[cap]):
        return None
    choice, t = [], cap
    for front, pick in zip(reversed(fronts), reversed(picks)):
        cand = front[int(pick[t])]
        choice.append(cand)
        t -= -(-cand.nbytes // bucket)
    return choice[::-1]


def allocate(layers: list[LayerCandidates], target: int) -> list[Candidate]:
    """Least-damage choice with sum(bytes) <= target (caller checks target >= min_bytes).

    Lagrangian + greedy fill (fast, near-optimal), then the exact knapsack; the better one wins."""
    choice = greedy_fill(layers, lagrangian(layers, target), target)
    exact = knapsack(layers, target)
    if exact is not None and total(exact)[1] < total(choice)[1]:
        choice = greedy_fill(layers, exact, target)  # buckets may leave a few bytes: spend them
    return choice


def total(choice: list[Candidate]) -> tuple[int, float]:
    return sum(c.nbytes for c in choice), sum(c.damage for c in choice)


def rate_curve(layers: list[LayerCandidates]) -> list[tuple[int, float]]:
    """Every Lagrangian point (tensor bytes, total damage) from smallest to largest."""
    hulls = [lower_hull(layer.candidates) for layer in layers]
    choice = [hull[0] for hull in hulls]
    points = [total(choice)]
    for i, seg in _segments_by_slope(hulls):
        choice[i] = hulls[i][seg + 1]
        points.append(total(choice))
    return points


@dataclass(frozen=True)
class UniformSetting:
    """The same sparsity, label bits and gap bits in every layer."""

    sparsity: float
    label_bits: int
    gap_bits: int
    nbytes: int  # predicted tensor bytes (measured per layer)
    damage: float


def uniform_settings(layers: list[LayerCandidates], gap_bits: tuple[int, ...]) -> list[UniformSetting]:
    """Every uniform setting measured in all layers, with its tensor bytes and damage."""
    settings = []
    first = layers[0]
    keys = {(c.sparsity, c.label_bits) for c in first.candidates if c.label_bits is not None}
    for sparsity, bits in sorted(keys):
        for gaps in gap_bits if sparsity > 0 else (min(gap_bits),):
            nbytes, damage = 0, 0.0
            for layer in layers:
                size = layer.uniform_bytes(sparsity, bits, gaps)
                cand = layer.find(sparsity, bits)
                if size is None or cand is None:
                    break
                nbytes += size
                damage += cand.damage
            else:
                settings.append(UniformSetting(sparsity, bits, gaps, nbytes, damage))
    return settings


def best_uniform(settings: list[UniformSetting], target: int) -> UniformSetting | None:
    """Least-damage uniform setting that fits the target (ties: the larger file)."""
    fitting = [s for s in settings if s.nbytes <= target]
    if not fitting:
        return None
    return min(fitting, key=lambda s: (s.damage, -s.nbytes))


def smallest_target(low: int, high: int, meets: Callable[[int], bool], scan_points: int, steps: int) -> int:
    """The smallest byte target in [low, high] whose allocation `meets` the loss target, given that
    `high` does. The measured loss is not monotone in bytes (sampling noise, allocations that change
    layer by layer), so bisection from the ends can stop at a local failure: scan up a log-spaced
    ladder of targets first, then bisect between the last miss and the first hit."""
    previous = low
    for target in np.unique(np.geomspace(max(low, 1), high, scan_points).astype(np.int64)).tolist():
        if meets(int(target)):
            high = int(target)
            break
        previous = int(target)
    low = previous
    for _ in range(steps):
        if high <= low * 1.002:
            break
        middle = int(math.sqrt(low * high))
        if meets(middle):
            high = middle
        else:
            low = middle
    return high
