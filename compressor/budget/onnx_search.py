"""Calibrated compression of an ONNX model to a size or a loss target, torch-free.

`fit_onnx(model, calib, OnnxSearchConfig(budget_bytes=N))` gives the least damage within N bytes (the
whole file); `fit_onnx(model, calib, OnnxSearchConfig(max_loss=X))` the smallest file whose loss on the
calibration data is <= X (percentage points of top-1 with labels `y`, relative output error without:
compressor/onnx_damage). The settings are budget.config.OnnxSearchConfig's.

1. the graph is prepared as `compress_onnx` does (unused initializers dropped, BatchNorm folded,
   weight Constants made initializers, half weights widened); the calibration arrays are checked;
2. the smallest reachable file is written first (every layer at its smallest candidate), so an
   impossible --budget is refused before any measuring, with that size;
3. every compressible weight's candidates are sized by real encoding (budget.candidates, the
   PyTorch solver's own), and on each layer's bytes/weight-error Pareto front a few are run through
   ONNX Runtime with only that layer replaced: their measured damage replaces the estimate;
4. the allocation is the PyTorch solver's (budget.solver.allocate: Lagrangian + exact knapsack);
   --budget tightens the byte target until the written file fits, and keeps the uniform setting
   instead if it measured better; --max-loss bisects the byte target on the measured loss;
5. the final file is decoded by the runtime and run on the calibration data; --max-loss searches
   again with more bytes if it missed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from dcz.compressor.budget.candidates import Candidate, CandidateGrid, LayerCandidates, measure_layer
from dcz.compressor.budget.config import OnnxSearchConfig, as_onnx_search_config
from dcz.compressor.budget.progress import SearchProgress as _Progress
from dcz.compressor.budget.solver import (
    allocate,
    greedy_repair,
    min_bytes,
    pareto,
    smallest_target,
    uniform_settings,
)
from dcz.compressor.calib_data import Calibration, load_calib
from dcz.compressor.errors import CompressError
from dcz.compressor.onnx_damage import Damage, OrtRunner

MEASURED_POINTS = 8  # candidates per layer run through ORT (spread in log bytes along the Pareto front)
SCAN_POINTS = 24  # --max-loss: byte targets tried from the smallest up before bisecting
SEARCH_STEPS = 6  # bisection steps on the byte target for --max-loss after the scan
MAX_WRITES = 6
LINE_SEARCH = (0.97, 0.94, 0.9, 0.85, 0.8, 0.7)  # --budget: smaller allocations measured too
SMALL_MODEL = 1_000_000  # weights: below, more candidates per layer are measured (runs are cheap)
LARGE_MODEL = 4_000_000  # weights: above, the coarse grid (a full grid costs minutes of k-means)
# entropy-constrained codebooks (budget/entropy.py) from ~1.6 to ~5 bits a weight: on MiniLM they carry the
# tails (FFN-down outliers of 23-175 sigma) at a level of their own (docs/benchmarks/calibrated.md)
ENTROPY_STEPS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0, 1.25, 1.6)
COARSE_GRID = CandidateGrid(
    sparsities=(0.0, 0.5, 0.7, 0.9), label_bits=(2, 3, 4, 5, 6, 8), gap_bits=(3, 4, 5, 6), entropy_steps=ENTROPY_STEPS
)
BIG_LAYER_SHARE = 0.1  # a layer with this share of a large model's weights gets BIG_LAYER_POINTS x the measured points
BIG_LAYER_POINTS = 3
CACHE_BYTES = 512 << 20
BIAS_MODE = "own"  # bias_sequential: "own" (each layer's own weight shift) or "match" (the dense mean output)
SIZING_WORKERS = min(2, os.cpu_count() or 1)  # threads sizing layers' candidates (the ORT runs use the cores after)


@dataclass
class OnnxBudgetResult:
    """What fit_onnx chose and measured; `data` is the written .dcz (also at out_path when given)."""

    target: str  # "budget" or "max_loss"
    file_bytes: int
    dense_bytes: int  # the ONNX model as given, serialized
    min_file_bytes: int
    metric: str  # "accuracy" (pp top-1) or "relative" (relative output error)
    loss: float  # measured from the written file on the calibration data
    figures: dict[str, float]  # accuracy / cosine of the written file on the calibration data
    allocation: list[dict[str, Any]]
    budget_bytes: int | None = None
    max_loss: float | None = None
    uniform: dict[str, Any] | None = None  # the uniform setting of the same budget, measured
    chose_uniform: bool = False
    data: bytes = b""
    uniform_data: bytes | None = None
    evaluations: int = 0

    @property
    def ratio(self) -> float:
        return self.dense_bytes / max(self.file_bytes, 1)

    def summary(self) -> str:
        target = f"budget {self.budget_bytes:,} B" if self.target == "budget" else f"max loss {self.max_loss:g}"
        unit = "pp top-1 lost" if self.metric == "accuracy" else "relative output error"
        extra = ""
        if self.uniform is not None:
            extra = (
                f"; uniform {self.uniform['setting']} at {self.uniform['file_bytes']:,} B: {self.uniform['loss']:.3g}"
            )
        if self.target == "max_loss" and self.metric == "accuracy":
            unit += f" (samples broken + one standard error {self.figures.get('bound', self.loss):.3g})"
        return (
            f"{target}: {self.file_bytes:,} B ({self.ratio:.1f}x smaller than {self.dense_bytes:,} B), "
            f"{self.loss:.3g} {unit} on the calibration data{extra}"
        )


@dataclass
class _Prepared:
    model: onnx.ModelProto
    weights: dict[str, np.ndarray]
    op_types: dict[str, str]
    meta: dict[str, Any]
    dense_bytes: int
    links: dict[str, Any] = field(default_factory=dict)  # weight -> bias_correction.BiasLink
    biases: dict[str, np.ndarray] = field(default_factory=dict)  # bias name -> dense value
    means: dict[str, np.ndarray] = field(default_factory=dict)  # weight -> E[input] on the calibration data


# --- preparing the graph ----------------------------------------------------------------------------


def _prepare(model_or_path) -> _Prepared:
    from dcz.compressor.onnx_fold import fold_batchnorm
    from dcz.compressor.onnx_graph import constants_to_initializers, find_weights, initializer_array, widen_half_weights
    from dcz.compressor.onnx_in import check_data_inline, load_onnx_model
    from dcz.compressor.onnx_inline import drop_unused_initializers

    model = load_onnx_model(model_or_path)
    where = str(model_or_path) if isinstance(model_or_path, (str, Path)) else "model"
    check_data_inline(model, where)
    dense_bytes = model.ByteSize()
    unused = drop_unused_initializers(model)
    folded = fold_batchnorm(model)
    sources = find_weights(model)
    if not sources:
        raise CompressError(f"{where}: no Conv / Gemm / MatMul / Gather weight to compress")
    constants_to_initializers(model, [s.name for s in sources if s.origin == "constant"])
    renamed = widen_half_weights(model, {s.name for s in sources})
    op_types = {renamed.get(s.name, s.name): s.op_type for s in sources}
    inits = {t.name: t for t in model.graph.initializer}
    weights = {name: initializer_array(inits[name]).astype(np.float32) for name in op_types}
    meta = {"compress.folded_batchnorm": folded, **({"compress.dropped_unused": unused} if unused else {})}
    return _Prepared(model, weights, op_types, meta, dense_bytes)


# --- candidates and their measured damage -----------------------------------------------------------


def _grid_for(prepared: _Prepared, grid: CandidateGrid | None) -> CandidateGrid:
    if grid is not None:
        return grid
    total = sum(w.size for w in prepared.weights.values())
    return COARSE_GRID if total > LARGE_MODEL else CandidateGrid()


def _smallest_grid(grid: CandidateGrid) -> CandidateGrid:
    return CandidateGrid((max(grid.sparsities),), (min(grid.label_bits),), grid.gap_bits, grid.allow_raw)


def _measure(
    prepared: _Prepared, grid: CandidateGrid, progress: _Progress | None = None, sized: list | None = None
) -> list[LayerCandidates]:
    """Every layer's candidates; `sized` (an earlier sizing of the same weights) lends its magnitude orders."""
    from concurrent.futures import ThreadPoolExecutor

    orders = {layer.name: layer.order for layer in sized or []}

    def size(item) -> LayerCandidates:
        name, weight = item
        # unit weights: the estimate is the weight error, which only orders the Pareto front
        ones = np.ones(weight.shape, np.float32)
        return measure_layer(name, prepared.op_types[name], weight, ones, grid, orders.get(name))

    layers = []
    # layers sized in parallel (numpy's sorts and the native k-means let go of the GIL): each layer's
    # candidates are its own, so the result is the same whatever the worker count
    with ThreadPoolExecutor(SIZING_WORKERS) as pool:
        for layer in pool.map(size, prepared.weights.items()):
            if progress is not None:
                progress.stage(f"sized the candidates of {layer.name} {layer.weight.shape}")
                progress.step()
            layers.append(layer)
    return layers


def _measured_points(front: list[Candidate], points: int, big: bool = False) -> list[Candidate]:
    """The candidates of a Pareto front whose damage is measured: `points` spread in log bytes. On a
    large model (`big` set for a layer holding a large share of its weights) raw float32 is left out of
    the spread and the layer gets BIG_LAYER_POINTS x the points: MiniLM's word embeddings (half the
    weights) otherwise had measured points 1.5x apart in bytes (2.9, 4.3, 6.4 MB ... raw 47 MB), and the
    allocation could only jump between them (2-bit k-means at 1/10: half the output error)."""
    if not big:
        return [front[i] for i in _spread([c.nbytes for c in front], points)]
    coded = [c for c in front if c.label_bits is not None]
    raw = [c for c in front if c.label_bits is None]
    picked = [coded[i] for i in _spread([c.nbytes for c in coded], BIG_LAYER_POINTS * points)] if coded else []
    return picked + raw


def _spread(sizes: list[int], points: int) -> list[int]:
    logs = np.log(np.maximum(np.asarray(sizes, dtype=np.float64), 1.0))
    targets = np.linspace(logs[0], logs[-1], min(points, len(sizes)))
    return sorted({int(np.argmin(np.abs(logs - t))) for t in targets})


class _Weights:
    """Dense weights of candidates (prune + k-means are recomputed otherwise), within a byte cap,
    with the biases corrected for them (compressor/bias_correction) where the layer has one."""

    def __init__(self, layers: list[LayerCandidates], prepared: _Prepared | None = None, sequential=None):
        self.by_name = {layer.name: layer for layer in layers}
        self.cache: dict[tuple, np.ndarray] = {}
        self.bytes = 0
        self.prepared = prepared
        self.sequential = sequential  # bias_sequential.SequentialBiases: an allocation's biases, layer after layer
        self.planned: dict[tuple, dict[str, np.ndarray]] = {}  # allocation -> its corrected biases

    def get(self, name: str, cand: Candidate) -> np.ndarray:
        key = (name, cand.key())
        if key not in self.cache:
            weight = self.by_name[name].state(cand).weight()
            while self.cache and self.bytes + weight.nbytes > CACHE_BYTES:
                self.bytes -= self.cache.pop(next(iter(self.cache))).nbytes
            self.cache[key] = weight
            self.bytes += weight.nbytes
        return self.cache[key]

    def feed(self, name: str, cand: Candidate) -> dict[str, np.ndarray]:
        """The candidate's weight and, when its layer has a bias, the corrected bias."""
        weight = self.get(name, cand)
        return {name: weight, **self.biases({name: weight})}

    def plan(self, layers: list[LayerCandidates], choice: list[Candidate]) -> dict[str, np.ndarray]:
        """An allocation's weights and corrected biases: each layer corrected with the mean of its input
        in the model whose earlier layers are already replaced and corrected (compressor/bias_sequential)."""
        weights = {layer.name: self.get(layer.name, cand) for layer, cand in zip(layers, choice) if cand.label_bits}
        if self.sequential is None:
            return {**weights, **self.biases(weights)}
        key = tuple((layer.name, cand.key()) for layer, cand in zip(layers, choice))
        if key not in self.planned:
            self.planned[key] = self.sequential.corrected(weights, BIAS_MODE)
        return {**weights, **self.planned[key]}

    def biases(self, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from dcz.compressor.bias_correction import corrected_bias

        prep = self.prepared
        if prep is None:
            return {}
        return {
            prep.links[name].bias: corrected_bias(
                prep.links[name], prep.means[name], prep.biases[prep.links[name].bias], prep.weights[name], weight
            )
            for name, weight in weights.items()
            if name in prep.means
        }


def _sensitivities(
    layers, weights: _Weights, runner, calib: Calibration, points: int, progress, large: bool = False
) -> list:
    """Each layer's thinned Pareto front with damage measured alone (the other layers dense)."""
    from dcz.compressor.onnx_suffix import SuffixRunner

    damage = Damage(runner.run(calib), calib.labels, calib.where)
    part = SuffixRunner(runner, calib, [layer.name for layer in layers])
    total = sum(layer.numel for layer in layers)
    measured_layers = []
    for layer in layers:
        progress.stage(f"measuring {layer.name}")
        front = pareto(layer.candidates)
        measured = []
        for cand in _measured_points(front, points, large and layer.numel >= BIG_LAYER_SHARE * total):
            if cand.label_bits is None:
                measured.append(replace(cand, damage=0.0))
            else:
                outputs = part.run(layer.name, weights.feed(layer.name, cand))
                # the weight error (tiny weight) breaks ties the outputs cannot tell apart
                measured.append(replace(cand, damage=damage.sensitivity(outputs) + 1e-12 * cand.damage))
            progress.step()
        measured_layers.append(replace(layer, candidates=measured))
    return measured_layers


# --- writing ----------------------------------------------------------------------------------------


def _write(prepared: _Prepared, layers, choice, gaps=None, metadata=None, biases=None) -> bytes:
    """The .dcz of an allocation; `biases` (name -> corrected value) replace those initializers."""
    from onnx import numpy_helper

    from dcz.compressor.onnx_in import write_states

    model = onnx.ModelProto()
    model.CopyFrom(prepared.model)
    for tensor in model.graph.initializer:
        if biases and tensor.name in biases:
            tensor.CopyFrom(numpy_helper.from_array(biases[tensor.name], tensor.name))
    gaps = gaps or [None] * len(layers)
    states = {layer.name: layer.state(cand, gap) for layer, cand, gap in zip(layers, choice, gaps)}
    return write_states(model, states, {}, None, {**prepared.meta, **(metadata or {})}).dcz


def _allocation_metadata(layers, choice, gaps=None, extra=None) -> dict[str, Any]:
    """What the file records of its allocation (read back by `dcz report FILE`). No rate curve: its
    bytes would differ between the smallest-file check and the search, and the check must be exact."""
    gaps = gaps or [None] * len(layers)
    rows = [
        [layer.name, c.sparsity, c.label_bits, g if g is not None else c.gap_bits, int(c.nbytes)]
        + ([c.step] if c.step is not None else [])  # an entropy-constrained codebook's grid step
        for layer, c, g in zip(layers, choice, gaps)
    ]
    return {"compress.budget.allocation": rows, **(extra or {})}


def _calib_meta(calib: Calibration, metric: str, corrected: int = 0) -> dict[str, Any]:
    """What the file records of its calibration (`bias_corrected`: layers whose bias was corrected)."""
    return {"compress.calib": {"rows": calib.rows, "metric": metric, "bias_corrected": corrected}}


def _smallest_file(prepared: _Prepared, layers, budget_bytes, max_loss, calib_meta) -> int:
    """Bytes of the smallest file, written with the metadata the search would write for it
    (the recorded budget counts: asked for that size, it must fit)."""
    choice = [layer.smallest() for layer in layers]
    recorded = budget_bytes
    size = 0
    for _ in range(4):
        extra = {**_target_meta(recorded, max_loss), **calib_meta}
        size = len(_write(prepared, layers, choice, metadata=_allocation_metadata(layers, choice, extra=extra)))
        if budget_bytes is None or size == recorded:
            break
        recorded = size
    return size


def _verify(data: bytes, calib: Calibration, damage: Damage, batch: int) -> tuple[float, dict[str, float]]:
    """Run the written file (decoded by the runtime) on the calibration data."""
    from dcz import runtime

    with runtime.load(data) as model:
        outputs = _run_file(model, calib, batch)
    figures = damage.describe(outputs)
    return figures["loss"], figures


def _run_file(model, calib: Calibration, batch: int) -> list[np.ndarray]:
    """Every output over every sample, in the batches the graph accepts (a fixed batch of 1 too)."""
    parts = []
    for start in range(0, calib.rows, batch):
        parts.append(model.run({k: v[start : start + batch] for k, v in calib.inputs.items()}))
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


# --- the search -------------------------------------------------------------------------------------


def fit_onnx(
    model_or_path,
    calib,
    config: OnnxSearchConfig | Mapping[str, Any] | int,
    *,
    out_path=None,
    progress: Callable[[str], None] | None = None,
    bar: bool | None = None,
) -> OnnxBudgetResult:
    """The smallest file within `config.max_loss`, or the least damage within `config.budget_bytes`.

    calib     an .npz path or {input name: array} (+ optional integer labels 'y'), see calib_data.
    config    an OnnxSearchConfig (target, candidate grid, measured points, uniform baseline, bias
              correction), a mapping for OnnxSearchConfig.from_dict, or the budget in bytes.
    out_path  write the file there too (atomically); it is always in `result.data`.
    progress  called with one line per stage; bar: a progress bar with ETA (default: only when stderr
              is a terminal)."""
    config = as_onnx_search_config(config)
    budget_bytes, max_loss = config.budget_bytes, config.max_loss
    say = progress or (lambda message: None)
    prepared = _prepare(model_or_path)
    calibration = load_calib(calib, prepared.model)
    grid = _grid_for(prepared, config.candidates)
    metric = "accuracy" if calibration.labels is not None else "relative"
    if config.bias_correction:
        _link_biases(prepared)
    smallest_layers = _measure(prepared, _smallest_grid(grid))
    calib_meta = _calib_meta(calibration, metric, len(prepared.links))
    smallest_bytes = _smallest_file(prepared, smallest_layers, budget_bytes, max_loss, calib_meta)
    if budget_bytes is not None and budget_bytes < smallest_bytes:
        raise CompressError(
            f"a budget of {budget_bytes:,} bytes is impossible: the smallest file reachable is {smallest_bytes:,} "
            f"bytes (every layer at {max(grid.sparsities):.1%} sparsity and {min(grid.label_bits)}-bit labels); "
            f"raise the budget to at least {smallest_bytes:,} bytes"
        )
    n = len(prepared.weights)
    points = config.points
    if points is None:
        small = sum(w.size for w in prepared.weights.values()) < SMALL_MODEL
        points = 3 * MEASURED_POINTS if small else MEASURED_POINTS
    bar_ = _Progress(
        n + n * points + (SCAN_POINTS + SEARCH_STEPS if max_loss is not None else len(LINE_SEARCH) + 8), say, bar
    )
    try:
        runner = OrtRunner(prepared.model, {**prepared.weights, **prepared.biases})
        sequential = None
        if prepared.links:
            bar_.stage("measuring layer input means (bias correction)")
            from dcz.compressor.bias_sequential import SequentialBiases

            dense = {**prepared.weights, **prepared.biases}
            sequential = SequentialBiases(prepared.model, prepared.links, dense, calibration)
            # a layer measured alone (the others dense) is corrected with the dense model's input mean: exact
            prepared.means = {w: sequential.dense_means[link.input] for w, link in prepared.links.items()}
        full = _measure(prepared, grid, bar_, smallest_layers)
        sensitivity_rows = min(_sensitivity_rows(prepared, config), calibration.rows)
        if _feedback(prepared, config):
            bar_.stage("measuring the layers' input moments")
            _set_moments(prepared, full, _moment_rows(calibration, sensitivity_rows))
        search_steps = SCAN_POINTS + SEARCH_STEPS if max_loss is not None else len(LINE_SEARCH) + 12
        large = sum(w.size for w in prepared.weights.values()) > LARGE_MODEL
        total = sum(layer.numel for layer in full)
        runs = [
            len(_measured_points(pareto(layer.candidates), points, large and layer.numel >= BIG_LAYER_SHARE * total))
            for layer in full
        ]
        bar_.remaining(sum(runs) + search_steps)
        weights = _Weights(full, prepared, sequential)
        sens = calibration.head(sensitivity_rows)
        layers = _sensitivities(full, weights, runner, sens, points, bar_, large)
        damage = Damage(runner.run(calibration), calibration.labels, calibration.where)
        search = _Search(prepared, layers, full, grid, weights, runner, calibration, damage, bar_)
        if budget_bytes is not None:
            result = search.to_budget(budget_bytes, config.uniform)
        else:
            result = search.to_loss(max_loss)
    finally:
        bar_.close()
    result.min_file_bytes = smallest_bytes
    if out_path is not None:
        from dcz.formats.writer import atomic_write_bytes  # noqa: PLC0415

        atomic_write_bytes(Path(out_path), result.data)
    say(result.summary())
    return result


def _sensitivity_rows(prepared: _Prepared, config: OnnxSearchConfig) -> int:
    from dcz.compressor.budget.config import SENSITIVITY_ROWS, SENSITIVITY_ROWS_LARGE

    if config.sensitivity_rows is not None:
        return config.sensitivity_rows
    large = sum(w.size for w in prepared.weights.values()) > LARGE_MODEL
    return SENSITIVITY_ROWS_LARGE if large else SENSITIVITY_ROWS


def _feedback(prepared: _Prepared, config: OnnxSearchConfig) -> bool:
    if config.error_feedback is not None:
        return config.error_feedback
    return sum(w.size for w in prepared.weights.values()) > LARGE_MODEL


def _moment_rows(calib: Calibration, sensitivity_rows: int) -> Calibration:
    """The calibration rows the input moments are gathered on: those after the sensitivity rows when at
    least as many are left. Labels chosen with error feedback fit the moments' own rows better than
    others, so a layer's damage measured on those rows flattered low label widths (MiniLM: the search
    starved the MatMuls, held-out min cosine 0.937 instead of 0.958 without feedback)."""
    if calib.rows - sensitivity_rows >= sensitivity_rows:
        return Calibration({k: v[sensitivity_rows:] for k, v in calib.inputs.items()}, None, calib.where)
    return calib


def _set_moments(prepared: _Prepared, layers: list[LayerCandidates], calib: Calibration) -> None:
    """Each MatMul / Gemm layer's input moment E[x x^T] on the calibration data (compressor/onnx_moments):
    its dense codebook candidates are then labelled with error feedback (budget/feedback.py)."""
    from dcz.compressor.onnx_moments import input_moments, weight_inputs

    links = weight_inputs(prepared.model, prepared.weights)
    moments = input_moments(prepared.model, calib, links)
    for layer in layers:
        if layer.name in moments:
            layer.moment, layer.transposed = moments[layer.name], links[layer.name].transposed


def _link_biases(prepared: _Prepared) -> None:
    from onnx import numpy_helper

    from dcz.compressor.bias_correction import find_links

    prepared.links = find_links(prepared.model, set(prepared.weights))
    inits = {t.name: t for t in prepared.model.graph.initializer}
    prepared.biases = {link.bias: numpy_helper.to_array(inits[link.bias]) for link in prepared.links.values()}


def _target_meta(budget_bytes, max_loss) -> dict[str, Any]:
    if budget_bytes is not None:
        return {"compress.budget.bytes": int(budget_bytes)}
    return {"compress.calib.max_loss": float(max_loss)}


@dataclass
class _Search:
    prepared: _Prepared
    layers: list[LayerCandidates]  # measured damage on the thinned fronts
    full: list[LayerCandidates]  # every candidate (for the uniform settings)
    grid: CandidateGrid
    weights: _Weights
    runner: OrtRunner
    calib: Calibration
    damage: Damage
    progress: _Progress
    evaluations: int = 0
    _losses: dict = field(default_factory=dict)
    points: list = field(default_factory=list)  # (tensor bytes, measured loss) of every allocation measured

    def loss(self, choice: list[Candidate]) -> float:
        return self._measure(choice)[0]

    def bound(self, choice: list[Candidate]) -> float:
        return self._measure(choice)[1]

    def _measure(self, choice: list[Candidate]) -> tuple[float, float]:
        """(loss, the bound --max-loss holds to) of an allocation on the calibration data, once each."""
        key = tuple(c.key() for c in choice)
        if key not in self._losses:
            self.progress.stage("searching")
            outputs = self.runner.run(self.calib, self.weights.plan(self.layers, choice))
            self._losses[key] = (self.damage.loss(outputs), self.damage.bound(outputs))
            self.points.append((sum(int(c.nbytes) for c in choice), self._losses[key][0]))
            self.evaluations += 1
            self.progress.step()
        return self._losses[key]

    def calib_meta(self, corrected: bool = True) -> dict[str, Any]:
        return _calib_meta(self.calib, self.damage.kind, len(self.prepared.links) if corrected else 0)

    def meta(self, choice, gaps=None, extra=None, layers=None, corrected: bool = True) -> dict[str, Any]:
        return _allocation_metadata(
            layers or self.layers, choice, gaps, {**self.calib_meta(corrected), **(extra or {})}
        )

    def write(self, choice, gaps=None, extra=None, layers=None, plain_if_over: bool = False) -> bytes:
        """The file of an allocation with its biases corrected, as its loss was measured. The graph
        (biases included) is zlib compressed, so new bias values can cost a few bytes; only when no
        allocation is left to give bytes back (`plain_if_over`, the smallest one) are the dense biases
        written instead to meet a --budget. Writing dense biases under an allocation chosen with
        corrected ones broke the digits CNN at 1/40: 5.2 -> 68.6 pp lost."""
        layers = layers or self.layers
        biases = {k: v for k, v in self.weights.plan(layers, choice).items() if k in self.prepared.biases}
        data = _write(self.prepared, layers, choice, gaps, self.meta(choice, gaps, extra, layers), biases)
        budget = (extra or {}).get("compress.budget.bytes")
        if plain_if_over and biases and budget is not None and len(data) > budget:
            plain = _write(self.prepared, layers, choice, gaps, self.meta(choice, gaps, extra, layers, False))
            if len(plain) <= budget:
                return plain
        return data

    # --budget ------------------------------------------------------------------------------------

    def to_budget(self, budget: int, uniform: bool) -> OnnxBudgetResult:
        extra = {"compress.budget.bytes": budget}
        smallest = [layer.smallest() for layer in self.layers]
        overhead = len(self.write(smallest, extra=extra)) - sum(c.nbytes for c in smallest)
        self.progress.stage("allocating")
        choice, data = self._fit(budget, budget - overhead, extra)
        choice, data, mine = self._measured_best(choice, data, budget, extra)
        base = self._uniform(budget, overhead, extra) if uniform else None
        chose_uniform = base is not None and base["loss"] < mine
        final = base["data"] if chose_uniform else self._with_curve(data, choice, extra, budget)
        result = self._result("budget", final, base["choice"] if chose_uniform else choice, base, chose_uniform)
        result.budget_bytes = budget
        return result

    def _measured_best(self, choice, data: bytes, budget: int, extra):
        """The estimate adds per-layer damages; the outputs do not quite: measure the allocation and
        a few smaller ones on the calibration data and keep the best (ties: the larger file)."""
        tensor_bytes = sum(c.nbytes for c in choice)
        best = (self.loss(choice), -len(data), choice, data)
        for shrink in LINE_SEARCH:
            trial = allocate(self.layers, max(int(tensor_bytes * shrink), min_bytes(self.layers)))
            loss = self.loss(trial)
            if loss < best[0]:
                written = self.write(trial, extra=extra)
                if len(written) <= budget:
                    best = (loss, -len(written), trial, written)
        return best[2], best[3], best[0]

    def _fit(self, budget: int, target: int, extra) -> tuple[list[Candidate], bytes]:
        """allocate() to the byte target, tightened by any excess of the written file."""
        data = b""
        choice = allocate(self.layers, max(target, min_bytes(self.layers)))
        for _ in range(MAX_WRITES):
            smallest = sum(c.nbytes for c in choice) <= min_bytes(self.layers)
            data = self.write(choice, extra=extra, plain_if_over=smallest)
            self.progress.step()
            excess = len(data) - budget
            if excess <= 0:
                return choice, data
            target -= excess
            choice = (
                allocate(self.layers, target)
                if target >= min_bytes(self.layers)
                else greedy_repair(self.layers, choice, sum(c.nbytes for c in choice) - excess)
            )
        raise CompressError(f"could not fit {budget:,} bytes: the closest written file has {len(data):,} bytes")

    def _uniform(self, budget: int, overhead: int, extra) -> dict[str, Any] | None:
        """The uniform setting (one sparsity, label and gap width everywhere) that fits and
        measures best on the calibration data, among those no fitting setting beats in fidelity."""
        target = budget - overhead
        fitting = [s for s in uniform_settings(self.full, self.grid.gap_bits) if s.nbytes <= target]
        smallest: dict = {}
        for s in fitting:
            if (s.sparsity, s.label_bits) not in smallest or s.nbytes < smallest[s.sparsity, s.label_bits].nbytes:
                smallest[s.sparsity, s.label_bits] = s
        maximal = [
            s
            for s in smallest.values()
            if not any(
                o is not s and o.sparsity <= s.sparsity and o.label_bits >= s.label_bits for o in smallest.values()
            )
        ]
        ranked = []
        for s in maximal:
            choice = [layer.find(s.sparsity, s.label_bits) for layer in self.full]
            outputs = self.runner.run(self.calib, self.weights.plan(self.full, choice))
            ranked.append((self.damage.loss(outputs), s, choice))
            self.evaluations += 1
        for loss, s, choice in sorted(ranked, key=lambda t: (t[0], -t[1].nbytes)):
            gaps = [s.gap_bits if c.gap_bits is not None else None for c in choice]
            data = self.write(choice, gaps, extra, layers=self.full)
            if len(data) <= budget:
                setting = f"sparsity {s.sparsity:g}, {s.label_bits}-bit labels" + (
                    f", {s.gap_bits}-bit gaps" if s.sparsity > 0 else ""
                )
                return {"setting": setting, "loss": loss, "file_bytes": len(data), "data": data, "choice": choice}
        return None

    # --max-loss ----------------------------------------------------------------------------------

    def to_loss(self, max_loss: float) -> OnnxBudgetResult:
        low, high = min_bytes(self.layers), sum(max(c.nbytes for c in layer.candidates) for layer in self.layers)
        best = allocate(self.layers, high)
        if self.bound(best) > max_loss:
            raise CompressError(
                f"--max-loss {max_loss:g} is impossible: the smallest {self.damage.unit} reachable with the candidates "
                f"is {self.bound(best):.4g}{self._bound_note()}; raise --max-loss to at least that"
            )
        high = smallest_target(
            low, high, lambda target: self.bound(allocate(self.layers, target)) <= max_loss, SCAN_POINTS, SEARCH_STEPS
        )
        for _ in range(MAX_WRITES):
            choice = allocate(self.layers, high)
            data = self.write(choice, extra={"compress.calib.max_loss": max_loss, **self.curve_meta()})
            self.progress.step()
            _, figures = _verify(data, self.calib, self.damage, self.runner.batch)
            if figures["bound"] <= max_loss:
                result = self._result("max_loss", data, choice, None, False)
                result.max_loss = max_loss
                return result
            high = int(high * 1.1) + 1  # the file missed (the search loss was measured in memory): more bytes
        raise CompressError(f"--max-loss {max_loss:g}: no written file met it after {MAX_WRITES} attempts")

    def curve_meta(self) -> dict[str, Any]:
        """The measured rate / loss points (tensor bytes, loss on the calibration data), Pareto front,
        a few, for `dcz report FILE --curve` (budget.report.plot_rate_curve)."""
        from dcz.compressor.budget.report import measured_curve

        return {"compress.budget.curve": measured_curve(self.points)}

    def _with_curve(self, data: bytes, choice, extra, budget: int) -> bytes:
        """The file with its measured curve recorded, if that still fits the budget (it costs bytes)."""
        curved = self.write(choice, extra={**extra, **self.curve_meta()})
        return curved if len(curved) <= budget else data

    def _bound_note(self) -> str:
        return " (samples broken plus one standard error)" if self.damage.kind == "accuracy" else ""

    def _result(self, target: str, data: bytes, choice, base, chose_uniform) -> OnnxBudgetResult:
        self.progress.stage("verifying the file")
        loss, figures = _verify(data, self.calib, self.damage, self.runner.batch)
        rows = [
            {
                "name": layer.name,
                "op": layer.layer_type,
                "shape": list(layer.weight.shape),
                "sparsity": c.sparsity,
                "label_bits": c.label_bits,
                "gap_bits": c.gap_bits,
                "bytes": int(c.nbytes),
                "damage": float(c.damage),
                "entropy_step": c.step,
            }
            for layer, c in zip(self.layers, choice)
        ]
        uniform = None if base is None else {k: v for k, v in base.items() if k not in ("data", "choice")}
        return OnnxBudgetResult(
            target=target,
            file_bytes=len(data),
            dense_bytes=self.prepared.dense_bytes,
            min_file_bytes=0,
            metric=self.damage.kind,
            loss=loss,
            figures=figures,
            allocation=rows,
            uniform=uniform,
            chose_uniform=chose_uniform,
            data=data,
            uniform_data=None if base is None else base["data"],
            evaluations=self.evaluations,
        )
