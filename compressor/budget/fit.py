"""Fit a model into N bytes with the least damage.

`fit_budget(model, example_input, BudgetConfig(budget_bytes=N), calib=..., train_loader=...)`:
1. finds the compressible weights (Linear / Conv weights) and weighs each entry by the diagonal
   empirical Fisher from a calibration batch (`budget.fisher`): damage = sum_w F_w (w - w_hat)^2;
2. measures every candidate of every layer by really encoding it (`budget.candidates`);
3. measures the fixed overhead (graph, header, metadata, raw tensors) by writing the file with every
   layer at its smallest candidate: that file is also the smallest reachable, and a budget below it
   fails with a CompressError stating it;
4. allocates bytes per layer (`budget.solver`: Lagrangian over convex hulls, then greedy fill), writes
   the file, and if the written file is over the budget tightens the target by the excess and solves
   again until it fits;
5. does the same for the uniform baseline (same sparsity and bits everywhere), keeps whichever of
   the two has less estimated damage (so the solver is never worse than uniform on its own estimate),
   and fine-tunes the centroids when a train loader is given (sizes do not change; re-verified).
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcz import formats
from dcz.compressor.budget.candidates import Candidate, CandidateGrid, LayerCandidates, measure_layer
from dcz.compressor.budget.config import METRIC_POINTS, BudgetConfig, as_budget_config
from dcz.compressor.budget.fisher import compressible_weights, fisher_diagonal
from dcz.compressor.budget.report import LayerAllocation, render_markdown, render_text, result_to_dict
from dcz.compressor.budget.solver import (
    UniformSetting,
    allocate,
    best_uniform,
    greedy_repair,
    min_bytes,
    pareto,
    rate_curve,
    uniform_settings,
)
from dcz.compressor.errors import CompressError
from dcz.compressor.state import LayerState

MAX_WRITE_ATTEMPTS = 8
CURVE_POINTS_IN_FILE = 12
NOISE_SAMPLES = 64


def _noise_like(example_input, samples: int, seed: int):
    """Stand-in calibration inputs: standard normal, the example's shape with `samples` rows."""
    if not isinstance(example_input, torch.Tensor):
        return example_input
    generator = torch.Generator().manual_seed(seed)
    shape = (samples, *example_input.shape[1:])
    return torch.randn(
        shape, generator=generator, dtype=example_input.dtype if example_input.is_floating_point() else torch.float32
    )


@dataclass
class Plan:
    """One allocation: a candidate per layer (with the gap width it is written with)."""

    choice: list[Candidate]
    gap_override: list[int | None]  # uniform baseline forces one gap width; None = candidate's own

    def states(self, layers: list[LayerCandidates]) -> dict[str, LayerState]:
        return {layer.name: layer.state(cand, gap) for layer, cand, gap in zip(layers, self.choice, self.gap_override)}

    def predicted_tensor_bytes(self, layers: list[LayerCandidates]) -> list[int]:
        out = []
        for layer, cand, gap in zip(layers, self.choice, self.gap_override):
            size = layer.uniform_bytes(cand.sparsity, cand.label_bits, gap) if gap is not None else None
            out.append(cand.nbytes if size is None else size)
        return out

    @property
    def damage(self) -> float:
        return float(sum(c.damage for c in self.choice))


@dataclass
class Written:
    """A plan as written: the file's size report and its tensor bytes per layer."""

    plan: Plan
    states: dict[str, LayerState]
    report: Any  # formats.SizeReport
    layer_bytes: dict[str, int]  # param name -> bytes in the file

    @property
    def file_bytes(self) -> int:
        return int(self.report.file_bytes)


@dataclass
class UniformBaseline:
    sparsity: float
    label_bits: int
    gap_bits: int | None  # None: dense (no index stream)
    file_bytes: int
    damage: float
    accuracy: dict[str, float] = field(default_factory=dict)
    selected_by: str = "damage"  # "damage" (least estimated) or "score" (best uniform_fn)


@dataclass
class BudgetResult:
    """What fit_budget (or fit_max_loss) decided and measured. `save(path)` writes the verified file."""

    budget_bytes: int | None  # None: a --max-loss result
    dense_bytes: int  # float32 bytes of every parameter
    min_file_bytes: int  # smallest file reachable with the candidate grid
    file_bytes: int  # the written file
    predicted_file_bytes: int
    allocation: list[LayerAllocation]
    damage: float
    uniform: UniformBaseline | None
    accuracy: dict[str, float]
    curve: list[tuple[int, float]]  # (predicted file bytes, estimated damage) along the Lagrangian path
    chose_uniform: bool
    layers: dict[str, LayerState]
    model: torch.nn.Module  # computes with the compressed weights
    example_input: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    uniform_layers: dict[str, LayerState] | None = None
    uniform_model: torch.nn.Module | None = None
    uniform_curve: list[tuple[int, float]] = field(default_factory=list)  # (predicted file bytes, damage), Pareto

    # --max-loss results (budget.loss_target): no budget; the loss measured from the written file
    max_loss: float | None = None
    loss: float | None = None
    figures: dict[str, float] = field(default_factory=dict)
    finetuned: bool = False
    evaluations: int = 0

    @property
    def fits(self) -> bool:
        return self.budget_bytes is None or self.file_bytes <= self.budget_bytes

    def save(self, path, metadata: dict[str, Any] | None = None):
        """Write the .dcz; raises CompressError (and leaves no file) if it would exceed the budget."""
        meta = {**self.metadata, **(metadata or {})}
        report = _write_file(self.model, self.example_input, self.layers, path, meta)
        if self.budget_bytes is not None and report.file_bytes > self.budget_bytes:
            Path(path).unlink(missing_ok=True)
            raise CompressError(
                f"{path}: {report.file_bytes} bytes with the extra metadata, over the budget of "
                f"{self.budget_bytes} bytes by {report.file_bytes - self.budget_bytes}"
            )
        return report

    def to_dict(self) -> dict[str, Any]:
        return result_to_dict(self)

    def to_text(self) -> str:
        return render_text(self.to_dict())

    def to_markdown(self) -> str:
        return render_markdown(self.to_dict())


# --- writing ---------------------------------------------------------------------------------------


def _bake(model: torch.nn.Module, states: dict[str, LayerState]) -> torch.nn.Module:
    """A copy of model computing with the compressed weights."""
    baked = copy.deepcopy(model).eval()
    params = dict(baked.named_parameters())
    with torch.no_grad():
        for name, state in states.items():
            params[name].copy_(torch.from_numpy(state.weight()))
    return baked


def _write_file(model, example_input, states, path, metadata):
    """Write through the exporter (graph + placeholders + raw small tensors)."""
    from dcz.compressor.export import export_dcz

    return export_dcz(_bake(model, states), example_input, states, path, metadata=metadata)


def _write_plan(model, example_input, layers, plan: Plan, metadata, workdir: str, states=None) -> Written:
    """Write `plan` (or `states`, e.g. fine-tuned codebooks of the plan) and read back its bytes per layer."""
    states = states if states is not None else plan.states(layers)
    path = os.path.join(workdir, "candidate.dcz")
    report = _write_file(model, example_input, states, path, metadata)
    with formats.open(path) as dcz:
        onnx_to_param = dict(dcz.metadata.get("compress.layers", {}))
    by_tensor = {t.name: int(t.huffman_bytes) for t in report.tensors}
    layer_bytes = {param: by_tensor[onnx_name] for onnx_name, param in onnx_to_param.items() if onnx_name in by_tensor}
    return Written(plan, states, report, layer_bytes)


# --- solving to a written file ---------------------------------------------------------------------


def _solve_written(layers, budget: int, overhead: int, write: Callable[[Plan], Written]) -> Written:
    """Allocate, write, and tighten the target by any excess until the written file fits."""
    target = budget - overhead
    written = None
    for _ in range(MAX_WRITE_ATTEMPTS):
        plan = Plan(allocate(layers, target), [None] * len(layers))
        written = write(plan)
        if written.file_bytes <= budget:
            return _spend_slack(layers, budget, target, written, write)
        target -= written.file_bytes - budget
        if target < min_bytes(layers):
            break
    # Still over (overhead moved with the allocation): give bytes back greedily from the last plan.
    choice = written.plan.choice
    for _ in range(MAX_WRITE_ATTEMPTS):
        excess = written.file_bytes - budget
        choice = greedy_repair(layers, choice, sum(c.nbytes for c in choice) - excess)
        written = write(Plan(choice, [None] * len(layers)))
        if written.file_bytes <= budget:
            return written
    return written


def _spend_slack(layers, budget: int, target: int, written: Written, write) -> Written:
    """The overhead was estimated on another allocation: if the file came out under the budget, offer
    the slack to the solver again and keep the larger plan when it still fits."""
    for _ in range(2):
        slack = budget - written.file_bytes
        if slack <= 0:
            break
        target += slack
        plan = Plan(allocate(layers, target), [None] * len(layers))
        if plan.damage >= written.plan.damage:
            break
        trial = write(plan)
        if trial.file_bytes > budget:
            break
        written = trial
    return written


def _solve_uniform(layers, grid, budget, overhead, write, model=None, score=None) -> Written | None:
    """The uniform baseline whose WRITTEN file fits: least estimated damage, or, with `score`
    (higher is better), the best measured score among the most faithful fitting settings."""
    settings = uniform_settings(layers, grid.gap_bits)
    target = budget - overhead
    if score is not None:
        settings = _rank_uniform_by_score(model, layers, [s for s in settings if s.nbytes <= target], score)
    for _ in range(MAX_WRITE_ATTEMPTS):
        best = settings[0] if score is not None and settings else best_uniform(settings, target)
        if best is None:
            return None
        written = write(_uniform_plan(layers, best))
        if written.file_bytes <= budget:
            return written
        settings = [s for s in settings if s != best]
    return None


def _rank_uniform_by_score(model, layers, fitting: list[UniformSetting], score) -> list[UniformSetting]:
    """Fitting settings not outdone in fidelity by another fitting one (no other has <= sparsity and
    >= label bits), one gap width each (the smallest file), best score first."""
    smallest: dict[tuple[float, int], UniformSetting] = {}
    for s in fitting:
        key = (s.sparsity, s.label_bits)
        if key not in smallest or s.nbytes < smallest[key].nbytes:
            smallest[key] = s
    maximal = [
        s
        for s in smallest.values()
        if not any(
            (o.sparsity <= s.sparsity and o.label_bits >= s.label_bits) and o is not s for o in smallest.values()
        )
    ]
    scored = []
    for s in maximal:
        scored.append((float(score(_bake(model, _uniform_plan(layers, s).states(layers)))), s))
    return [s for _, s in sorted(scored, key=lambda t: (-t[0], t[1].damage))]


def _uniform_plan(layers, setting: UniformSetting) -> Plan:
    choice, gaps = [], []
    for layer in layers:
        cand = layer.find(setting.sparsity, setting.label_bits)
        choice.append(cand)
        gaps.append(setting.gap_bits if cand.gap_bits is not None else None)
    return Plan(choice, gaps)


def _smallest_plan(layers) -> Plan:
    return Plan([layer.smallest() for layer in layers], [None] * len(layers))


# --- public API -------------------------------------------------------------------------------------


@dataclass
class BudgetProblem:
    """The measured candidates of a model: reusable across budgets (measuring is the slow part)."""

    model: torch.nn.Module  # an eval copy of the user's model
    layers: list[LayerCandidates]
    grid: CandidateGrid

    def min_tensor_bytes(self) -> int:
        return min_bytes(self.layers)


def prepare_budget(
    model: torch.nn.Module,
    calib,
    candidates: CandidateGrid | None = None,
    *,
    metric_points: int = METRIC_POINTS,
    loss_fn: Callable | None = None,
    metric_fn: Callable[[torch.nn.Module], float] | None = None,
    progress: Callable[[str], None] | None = None,
    tick: Callable[[], None] | None = None,
) -> BudgetProblem:
    """Weigh every compressible weight (Fisher diagonal on `calib`) and measure every candidate.

    metric_fn: the user's metric (higher is better, e.g. accuracy on held-out data). When given, the
    damage of up to `metric_points` candidates per layer (spread along the layer's bytes/Fisher
    Pareto front) is MEASURED: metric(dense) - metric(model with only this layer replaced); the
    other candidates are dropped. Costs layers x metric_points evaluations. `tick()` is called after each
    layer sized and each metric evaluation (a progress bar's step)."""
    say = progress or (lambda message: None)
    grid = candidates or CandidateGrid()
    model = copy.deepcopy(model).eval()
    named = compressible_weights(model)
    if not named:
        raise CompressError(f"{type(model).__name__} has no Linear or Conv weight to compress")
    say("calibration (Fisher diagonal)")
    fisher = fisher_diagonal(model, named, calib, loss_fn)
    layers = []
    for name, (layer_type, param) in named.items():
        say(f"measuring candidates of {name} {tuple(param.shape)}")
        layers.append(measure_layer(name, layer_type, param.detach().cpu().numpy(), fisher[name], grid))
        if tick is not None:
            tick()
    if metric_fn is not None:
        metric = metric_fn if tick is None else lambda m: (metric_fn(m), tick())[0]
        _measure_damage_with_metric(model, named, layers, metric, metric_points, say)
    return BudgetProblem(model, layers, grid)


def _spread_by_bytes(sizes: list[int], points: int) -> np.ndarray:
    """Indices of about `points` sizes spread evenly in log(bytes), always the smallest and largest."""
    logs = np.log(np.asarray(sizes, dtype=np.float64))
    targets = np.linspace(logs[0], logs[-1], min(points, len(sizes)))
    return np.unique([int(np.argmin(np.abs(logs - t))) for t in targets])


def _measure_damage_with_metric(model, named, layers: list[LayerCandidates], metric_fn, points: int, say) -> None:
    """Replace Fisher damages by measured metric drops on a thinned Pareto front of each layer."""
    base = float(metric_fn(model))
    for layer in layers:
        param = named[layer.name][1]
        original = param.detach().clone()
        front = pareto(layer.candidates)
        keep = _spread_by_bytes([c.nbytes for c in front], points)
        say(f"measuring metric damage of {layer.name} ({len(keep)} candidates)")
        measured = []
        try:
            for i in keep:
                cand = front[int(i)]
                with torch.no_grad():
                    param.copy_(torch.from_numpy(layer.state(cand).weight()))
                drop = max(base - float(metric_fn(model)), 0.0)
                # the Fisher damage (tiny weight) breaks ties between candidates the metric cannot tell apart
                measured.append(replace(cand, damage=drop + 1e-9 * cand.damage))
        finally:
            with torch.no_grad():
                param.copy_(original)
        layer.candidates = measured


def fit_budget(
    model: torch.nn.Module,
    example_input,
    config: BudgetConfig | Mapping[str, Any] | int,
    *,
    calib=None,
    train_loader: Iterable | None = None,
    loss_fn: Callable | None = None,
    eval_fn: Callable[[torch.nn.Module], float] | None = None,
    metric_fn: Callable[[torch.nn.Module], float] | None = None,
    uniform_fn: Callable[[torch.nn.Module], float] | None = None,
    problem: BudgetProblem | None = None,
    metadata: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> BudgetResult:
    """Choose per-layer sparsity, label bits and gap bits so the written .dcz is <= config.budget_bytes.

    model         torch module (not modified); compressible weights are Linear / Conv weights.
    example_input a tensor (or tuple) for the ONNX export.
    config        a BudgetConfig (budget, candidate grid, uniform baseline, fine-tuning, seed), a mapping
                  for BudgetConfig.from_dict, or the budget in bytes (the whole file, graph and header included).
    calib         calibration data for the damage estimate: an iterable of (x, y) batches, or a tensor x
                  (labels = the model's own predictions); None: Gaussian noise shaped like example_input
                  (a zero example input would carry no gradient to the first layer).
    train_loader  iterable of (x, y): centroids (and raw tensors) fine-tuned for config.finetune_epochs after
                  allocation (trained quantization, paper section 3.3); sizes do not change. With
                  config.distill the dense model is the teacher (soft targets).
    loss_fn       the training loss for calibration and fine-tuning (default: cross-entropy).
    eval_fn       eval_fn(model) -> accuracy (higher is better); reported for solver, uniform, dense.
    metric_fn     metric_fn(model) -> score, higher is better, on data the solver may look at (not the
                  test set): damage is then measured per layer and candidate instead of estimated
                  (see prepare_budget). eval_fn only reports.
    uniform_fn    uniform_fn(model) -> score, higher is better (not on the test set): picks the uniform
                  baseline by measured score among the most faithful fitting uniform settings, instead
                  of by estimated damage (a stronger baseline; costs ~one evaluation per sparsity).
    problem       a `prepare_budget(...)` result to reuse (several budgets, one measurement); then
                  model's weights and calib are taken from it, and config.candidates must be None or its grid.
    metadata      written into the file (its bytes count against the budget).
    Write the verified file with `result.save(path)`. Raises CompressError when the budget is below the
    smallest reachable file (the message says how small).
    """
    config = as_budget_config(config)
    budget = config.budget_bytes
    say = progress or (lambda message: None)
    torch.manual_seed(config.seed)
    batchnorm_inputs = _calibration_inputs(calib) if config.batchnorm and calib is not None else None
    if problem is None:
        _refuse_before_measuring(model, example_input, budget, config.candidates or CandidateGrid(), metadata)
        if calib is None:
            say(
                "no calibration data: weighing damage by the Fisher diagonal on Gaussian noise inputs "
                "(calibration batches give an allocation that knows the data)"
            )
            calib = _noise_like(example_input, NOISE_SAMPLES, config.seed)
        problem = prepare_budget(
            model,
            calib,
            config.candidates,
            metric_points=config.metric_points,
            loss_fn=loss_fn,
            metric_fn=metric_fn,
            progress=progress,
        )
    elif config.candidates is not None and config.candidates != problem.grid:
        raise CompressError(f"{config.where}.candidates: differs from the grid the prepared problem was measured on")
    model, layers, grid = problem.model, problem.layers, problem.grid
    meta = dict(metadata or {})
    tensor_curve = rate_curve(layers)  # (tensor bytes, damage): known before any write, recorded in the file
    with tempfile.TemporaryDirectory(prefix="dcz-budget-") as workdir:

        def write(plan: Plan, recorded_budget: int = budget) -> Written:
            extra = _budget_metadata(recorded_budget, layers, plan, _thin(tensor_curve))
            return _write_plan(model, example_input, layers, plan, {**meta, **extra}, workdir)

        smallest = write(_smallest_plan(layers))
        overhead = smallest.file_bytes - sum(smallest.plan.predicted_tensor_bytes(layers))
        if budget < smallest.file_bytes:
            # The file records its budget, so the smallest file depends (by a digit) on the budget asked:
            # report a size that is reachable when it is itself the budget.
            for _ in range(4):
                again = write(_smallest_plan(layers), smallest.file_bytes)
                if again.file_bytes <= smallest.file_bytes:
                    break
                smallest = again
            raise CompressError(_impossible_message(budget, smallest, layers))
        say("allocating")
        solved = _solve_written(layers, budget, overhead, write)
        base = _solve_uniform(layers, grid, budget, overhead, write, model, uniform_fn) if config.uniform else None
        chose_uniform = base is not None and base.plan.damage < solved.plan.damage
        final = base if chose_uniform else solved
        if final.file_bytes > budget:  # cannot happen while budget >= smallest file; never return an overrun
            raise CompressError(f"could not fit {budget} bytes: best written file {final.file_bytes} bytes")
        curve = [(b + overhead, d) for b, d in tensor_curve]
        result = _result(
            model,
            example_input,
            budget,
            layers,
            final,
            smallest,
            overhead,
            curve,
            base,
            chose_uniform,
            {**meta, **_budget_metadata(budget, layers, final.plan, _thin(tensor_curve))},
        )
        if result.uniform is not None and uniform_fn is not None:
            result.uniform.selected_by = "score"
        result.uniform_curve = _pareto(
            [(s.nbytes + overhead, s.damage) for s in uniform_settings(layers, grid.gap_bits)]
        )
    if batchnorm_inputs is not None:
        _reestimate_batchnorm(result, batchnorm_inputs, say)
    _evaluate_and_finetune(
        result, eval_fn, train_loader, config.finetune_epochs, config.finetune_lr, loss_fn, say, config.distill
    )
    return result


def _calibration_inputs(calib) -> torch.Tensor:
    from dcz.compressor.budget.fisher import _batches

    return torch.cat([x for x, _ in _batches(calib)])


def _reestimate_batchnorm(result: BudgetResult, x: torch.Tensor, say) -> None:
    """BatchNorm statistics of the chosen (and uniform) model re-estimated on the calibration inputs
    (budget.batchnorm); the file is written again to check it still fits (raw tensors hold them)."""
    from dcz.compressor.budget.batchnorm import batchnorm_buffers, reestimate_batchnorm, restore_batchnorm

    models = [m for m in (result.model, result.uniform_model) if m is not None]
    saved = [batchnorm_buffers(m) for m in models]
    if not any(reestimate_batchnorm(m, x) for m in models):
        return
    say("BatchNorm statistics re-estimated on the calibration data")
    with tempfile.TemporaryDirectory(prefix="dcz-budget-") as workdir:
        report = _write_file(
            result.model, result.example_input, result.layers, os.path.join(workdir, "f.dcz"), result.metadata
        )
    if report.file_bytes > result.budget_bytes:  # new values may compress worse: keep the dense statistics
        for model, buffers in zip(models, saved):
            restore_batchnorm(model, buffers)
        return
    result.file_bytes = int(report.file_bytes)


def _curve_placeholder() -> list[list[float]]:
    """A stand-in rate curve longer and less compressible (the header may be zlib'd) than any recorded one:
    12-digit byte counts and 4-digit mantissas, all different."""
    rng = np.random.default_rng(0)
    return [
        [int(rng.integers(10**11, 10**12)), float(f"-{rng.uniform(1, 9.999):.3f}e-{rng.integers(100, 300)}")]
        for _ in range(CURVE_POINTS_IN_FILE)
    ]


def _refuse_before_measuring(model, example_input, budget: int, grid: CandidateGrid, metadata) -> None:
    """Refuse an impossible budget in seconds, before the Fisher pass and the candidate grid (minutes on
    a large model): every layer at the grid's highest sparsity and fewest label bits, the file written
    without the rate curve, is a lower bound of the smallest file; with the longest curve the file can
    record, an upper bound, which is the budget to ask for."""
    named = compressible_weights(model)
    if not named:
        return  # prepare_budget says so
    corner = CandidateGrid((max(grid.sparsities),), (min(grid.label_bits),), grid.gap_bits, allow_raw=False)
    layers = [
        measure_layer(name, kind, w.detach().cpu().numpy(), np.ones(tuple(w.shape)), corner)
        for name, (kind, w) in named.items()
    ]
    plan = _smallest_plan(layers)
    with tempfile.TemporaryDirectory(prefix="dcz-budget-") as workdir:

        def size(recorded: int, curve) -> int:
            meta = {**(metadata or {}), **_budget_metadata(recorded, layers, plan, curve)}
            return _write_plan(model, example_input, layers, plan, meta, workdir).file_bytes

        lower = size(budget, [])
        if budget >= lower:
            return
        upper = size(lower, _curve_placeholder())
        for _ in range(4):  # the file records the budget asked: ask for the size itself
            again = size(upper, _curve_placeholder())
            if again <= upper:
                break
            upper = again
    raise CompressError(
        f"budget of {budget} bytes is impossible: with every layer at {max(grid.sparsities):.1%} sparsity and "
        f"{min(grid.label_bits)}-bit labels the file is at least {lower} bytes (graph, header and raw tensors "
        f"included; found before any measuring); raise the budget to at least {upper} bytes"
    )


def _impossible_message(budget: int, smallest: Written, layers: list[LayerCandidates]) -> str:
    report = smallest.report
    tensor_total = sum(smallest.layer_bytes.values())
    return (
        f"budget of {budget} bytes is impossible: the smallest reachable file is {smallest.file_bytes} bytes "
        f"(graph {report.graph_bytes} + header {report.header_bytes} + padding {report.padding_bytes} + raw tensors "
        f"{smallest.file_bytes - tensor_total - report.graph_bytes - report.header_bytes - report.padding_bytes} + "
        f"{len(layers)} layers at their smallest encoding {tensor_total}); raise the budget to at least "
        f"{smallest.file_bytes} bytes"
    )


def _budget_metadata(budget: int, layers, plan: Plan, curve) -> dict[str, Any]:
    """What the file records about its allocation (read back by `dcz report FILE --budget`).

    The curve is in tensor bytes (the allocated layers only): the report adds the file's overhead."""
    predicted = plan.predicted_tensor_bytes(layers)
    alloc = [
        [layer.name, c.sparsity, c.label_bits, g if g is not None else c.gap_bits, p]
        for layer, c, g, p in zip(layers, plan.choice, plan.gap_override, predicted)
    ]
    meta = {"compress.budget.bytes": budget, "compress.budget.allocation": alloc}
    if curve:
        meta["compress.budget.curve"] = curve
    return meta


def _result(
    model, example_input, budget, layers, final: Written, smallest: Written, overhead, curve, base, chose_uniform, meta
) -> BudgetResult:
    predicted = final.plan.predicted_tensor_bytes(layers)
    allocation = []
    for layer, cand, gap, pred in zip(layers, final.plan.choice, final.plan.gap_override, predicted):
        allocation.append(
            LayerAllocation(
                name=layer.name,
                layer_type=layer.layer_type,
                shape=tuple(layer.weight.shape),
                numel=layer.numel,
                encoding=cand.encoding,
                sparsity=cand.sparsity,
                label_bits=cand.label_bits,
                gap_bits=gap if gap is not None else cand.gap_bits,
                predicted_bytes=int(pred),
                actual_bytes=final.layer_bytes.get(layer.name),
                damage=cand.damage,
            )
        )
    uniform = None
    if base is not None:
        first = (
            next(i for i, g in enumerate(base.plan.gap_override) if g is not None)
            if any(g is not None for g in base.plan.gap_override)
            else 0
        )
        c = base.plan.choice[first]
        uniform = UniformBaseline(
            c.sparsity, c.label_bits, base.plan.gap_override[first] or c.gap_bits, base.file_bytes, base.plan.damage
        )
    dense_bytes = sum(4 * p.numel() for p in model.parameters())
    result = BudgetResult(
        budget_bytes=budget,
        dense_bytes=dense_bytes,
        min_file_bytes=smallest.file_bytes,
        file_bytes=final.file_bytes,
        predicted_file_bytes=overhead + sum(predicted),
        allocation=allocation,
        damage=final.plan.damage,
        uniform=uniform,
        accuracy={},
        curve=curve,
        chose_uniform=chose_uniform,
        layers=final.states,
        model=_bake(model, final.states),
        example_input=example_input,
        metadata=meta,
        uniform_layers=base.states if base is not None else None,
        uniform_model=_bake(model, base.states) if base is not None else None,
    )
    result._dense_model = model  # for accuracy of the dense reference
    return result


def _pareto(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Points not beaten on both bytes and damage, bytes ascending."""
    out: list[tuple[int, float]] = []
    for b, d in sorted(points):
        if not out or d < out[-1][1]:
            out.append((b, d))
    return out


def _thin(curve: list[tuple[int, float]], points: int = CURVE_POINTS_IN_FILE) -> list[list[float]]:
    """A few points of the rate curve, rounded, for the file's metadata (it costs bytes)."""
    if not curve:
        return []
    idx = np.unique(np.round(np.linspace(0, len(curve) - 1, min(points, len(curve)))).astype(int))
    return [[int(curve[i][0]), float(f"{curve[i][1]:.4g}")] for i in idx]


def _evaluate_and_finetune(
    result: BudgetResult, eval_fn, train_loader, epochs, lr, loss_fn, say, distill: bool = False
) -> None:
    if eval_fn is not None:
        result.accuracy["dense"] = float(eval_fn(result._dense_model))
        result.accuracy["budget"] = float(eval_fn(result.model))
        if result.uniform_model is not None:
            result.uniform.accuracy["uniform"] = float(eval_fn(result.uniform_model))
    if train_loader is None or not epochs:
        return
    from dcz.compressor.budget.finetune import finetune_centroids

    say("fine-tuning centroids" + (" (distilling from the dense model)" if distill else ""))
    teacher = result._dense_model if distill else None
    result.model, result.layers = finetune_centroids(
        result.model, result.layers, train_loader, epochs, lr, loss_fn, teacher=teacher
    )
    if eval_fn is not None:
        result.accuracy["budget+finetune"] = float(eval_fn(result.model))
    if result.uniform_model is not None:
        result.uniform_model, result.uniform_layers = finetune_centroids(
            result.uniform_model, result.uniform_layers, train_loader, epochs, lr, loss_fn, teacher=teacher
        )
        if eval_fn is not None:
            result.uniform.accuracy["uniform+finetune"] = float(eval_fn(result.uniform_model))
    with tempfile.TemporaryDirectory(prefix="dcz-budget-") as workdir:  # centroids moved: re-verify the size
        report = _write_file(
            result.model, result.example_input, result.layers, os.path.join(workdir, "f.dcz"), result.metadata
        )
    result.file_bytes = int(report.file_bytes)
    if result.file_bytes > result.budget_bytes:  # cannot happen (sizes fixed by masks and labels); never hide it
        raise CompressError(
            f"after fine-tuning the file is {result.file_bytes} bytes, over the budget of {result.budget_bytes}"
        )
