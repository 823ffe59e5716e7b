"""The smallest file within a loss on calibration data, for PyTorch models (`--max-loss X`).

`fit_max_loss(model, example_input, X, calib=(x, y))`, the PyTorch twin of `fit_onnx(..., max_loss=X)`:
1. the dense model's outputs on the calibration data are the reference (compressor.onnx_damage.Damage):
   with integer labels the loss is top-1 accuracy lost in percentage points, held by the share of
   samples the dense model gets right and ours wrong plus one standard error (Damage.bound: gains are
   not credited); without labels, the relative output error;
2. every layer's candidates are sized by real encoding (budget.candidates) and, on each layer's
   bytes / Fisher Pareto front, up to `points` are run on the calibration data with only that layer
   replaced: the measured sensitivity (mean KL with labels, error energy without) is the damage the
   allocation adds up (fit.prepare_budget with a metric);
3. the byte target is scanned up a log ladder, then bisected, on the loss of the allocation measured
   on all calibration rows (solver.smallest_target);
4. with a train loader, fine-tuning the centroids after the allocation (masks and labels fixed, so
   the size does not move) buys back loss, so smaller targets are tried with fine-tuning
   (`TRAIN_STEPS` bisection steps, one fine-tune each) and the smallest that holds is kept;
   BatchNorm statistics are re-estimated on the calibration inputs for every allocation measured
   (budget.batchnorm: on the digit CNN with BatchNorm at 1/20 of its size, 11.6% -> 96.9% held out);
5. the file is written, decoded by the runtime and run on the calibration data; if it misses, the
   search writes again with 10% more bytes.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dcz.compressor.budget.batchnorm import (
    batchnorm_buffers,
    batchnorm_layers,
    reestimate_batchnorm,
    restore_batchnorm,
)
from dcz.compressor.budget.candidates import Candidate, CandidateGrid
from dcz.compressor.budget.fisher import compressible_weights
from dcz.compressor.budget.fit import (
    BudgetResult,
    Plan,
    Written,
    _bake,
    _result,
    _write_plan,
    prepare_budget,
)
from dcz.compressor.budget.progress import SearchProgress
from dcz.compressor.budget.report import measured_curve
from dcz.compressor.budget.solver import allocate, min_bytes, rate_curve, smallest_target
from dcz.compressor.errors import CompressError

SENSITIVITY_ROWS = 256  # calibration rows for per-layer sensitivity (the search uses them all)
POINTS = 24  # candidates per layer measured on the calibration data
SCAN_POINTS = 24
SEARCH_STEPS = 6
TRAIN_STEPS = 4  # bisection steps with fine-tuning (one fine-tune each)
MAX_WRITES = 6
BATCH = 256
REESTIMATE_AFTER_FINETUNE = True  # BatchNorm statistics re-estimated on the calibration data after fine-tuning too
FINETUNE_STEPS = 10  # a fine-tune counts as this many evaluations on the progress bar (for the ETA)


# --- calibration data ---------------------------------------------------------------------------


def calibration_tensors(calib) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x, y or None) from a tensor x, an (x, y) pair, or an iterable of (x, y) batches."""
    if isinstance(calib, torch.Tensor):
        return calib, None
    if isinstance(calib, (tuple, list)) and len(calib) == 2 and all(isinstance(t, torch.Tensor) for t in calib):
        x, y = calib
    else:
        try:
            batches = [(b, None) if isinstance(b, torch.Tensor) else (b[0], b[1]) for b in calib]
        except (TypeError, IndexError, KeyError):
            raise CompressError("calib: give a tensor x, an (x, y) pair of tensors, or (x, y) batches") from None
        if not batches:
            raise CompressError("calib: no calibration batch given")
        x = torch.cat([b[0] for b in batches])
        y = None if any(b[1] is None for b in batches) else torch.cat([torch.as_tensor(b[1]) for b in batches])
    if y is not None:
        if y.dim() != 1 or y.shape[0] != x.shape[0] or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise CompressError(
                f"calib: labels must be integers, one per sample ({x.shape[0]}), got {y.dtype} {tuple(y.shape)}"
            )
        if int(y.min()) < 0:
            raise CompressError(f"calib: labels must be >= 0, got {int(y.min())}")
    return x, y


def model_outputs(model: torch.nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """Every output of `model` over every row of x, as float arrays (batches of BATCH rows)."""
    parts: list[list[np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, int(x.shape[0]), BATCH):
            out = model(x[start : start + BATCH])
            outs = list(out) if isinstance(out, (tuple, list)) else [out]
            parts.append([o.detach().float().cpu().numpy() for o in outs])
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


def file_outputs(path, x: torch.Tensor) -> list[np.ndarray]:
    """The written file decoded by the runtime, run over every row of x."""
    from dcz import runtime

    data = x.detach().cpu().numpy()
    with runtime.load(path) as model:
        parts = [model.run(data[start : start + BATCH]) for start in range(0, data.shape[0], BATCH)]
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


# --- the search -------------------------------------------------------------------------------------


@dataclass
class _Probe:
    """An allocation and the model computing with it (fine-tuned or not), measured on calib."""

    choice: list[Candidate]
    model: torch.nn.Module
    states: dict
    bound: float
    finetuned: bool = False


class _Search:
    def __init__(self, problem, damage, x, bar: SearchProgress, batchnorm: bool):
        self.problem, self.damage, self.x, self.bar, self.say = problem, damage, x, bar, bar.stage
        self.batchnorm = batchnorm  # re-estimate BatchNorm statistics on x for every allocation
        self.layers = problem.layers
        self.work = copy.deepcopy(problem.model).eval()
        self.params = dict(self.work.named_parameters())
        self.cache: dict[tuple, np.ndarray] = {}
        self.bounds: dict[tuple, float] = {}
        self.points: list[tuple[int, float]] = []  # (tensor bytes, measured loss) of every allocation measured
        self.evaluations = 0

    def weight(self, layer, cand: Candidate) -> np.ndarray:
        key = (layer.name, cand.key())
        if key not in self.cache:
            self.cache[key] = layer.state(cand).weight()
        return self.cache[key]

    def bound(self, choice: list[Candidate]) -> float:
        """The bound --max-loss holds to, of an allocation on every calibration row (measured once)."""
        key = tuple(c.key() for c in choice)
        if key not in self.bounds:
            with torch.no_grad():
                for layer, cand in zip(self.layers, choice):
                    self.params[layer.name].copy_(torch.from_numpy(self.weight(layer, cand)))
            if self.batchnorm:
                reestimate_batchnorm(self.work, self.x)
            outputs = model_outputs(self.work, self.x)
            self.bounds[key] = self.damage.bound(outputs)
            self.points.append((sum(int(c.nbytes) for c in choice), self.damage.loss(outputs)))
            self.evaluations += 1
            self.bar.step()
        return self.bounds[key]

    def target(self, max_loss: float) -> int:
        low = min_bytes(self.layers)
        high = sum(max(c.nbytes for c in layer.candidates) for layer in self.layers)
        if self.bound(allocate(self.layers, high)) > max_loss:
            raise CompressError(
                f"--max-loss {max_loss:g} is impossible: the smallest {self.damage.unit} reachable with the "
                f"candidates is {self.bound(allocate(self.layers, high)):.4g}"
                + (" (samples broken plus one standard error)" if self.damage.kind == "accuracy" else "")
                + "; raise --max-loss to at least that"
            )
        self.say("searching the byte target")
        return smallest_target(
            low, high, lambda t: self.bound(allocate(self.layers, t)) <= max_loss, SCAN_POINTS, SEARCH_STEPS
        )

    def probe(self, target: int) -> _Probe:
        choice = allocate(self.layers, target)
        plan = Plan(choice, [None] * len(choice))
        states = plan.states(self.layers)
        model = _bake(self.problem.model, states)
        if self.batchnorm:
            reestimate_batchnorm(model, self.x)
        return _Probe(choice, model, states, self.bound(choice))


def fit_max_loss(
    model: torch.nn.Module,
    example_input,
    max_loss: float,
    *,
    calib,
    candidates: CandidateGrid | None = None,
    train_loader: Iterable | None = None,
    finetune_epochs: int = 1,
    finetune_lr: float = 1e-3,
    distill: bool = False,
    loss_fn: Callable | None = None,
    eval_fn: Callable[[torch.nn.Module], float] | None = None,
    points: int = POINTS,
    train_steps: int = TRAIN_STEPS,
    seed: int = 0,
    batchnorm: bool = True,
    metadata: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    bar: bool | None = None,
) -> BudgetResult:
    """The smallest .dcz whose loss on `calib` stays within `max_loss` (see the module docstring).

    calib         a tensor x (loss = relative output error), or (x, y) with integer labels y (loss = pp of
                  top-1 lost; held: the share of samples broken plus one standard error), or an iterable of such batches. Required.
    train_loader  (x, y) batches: the centroids are fine-tuned for `finetune_epochs` after each allocation
                  tried below the post-training one; keep the calibration data out of it, or the loss
                  measured after fine-tuning is optimistic.
    eval_fn       eval_fn(model) -> accuracy, reported for the dense and the chosen model only.
    batchnorm     re-estimate BatchNorm statistics on the calibration inputs for every allocation measured
                  and in the file (budget.batchnorm; no bytes).
    progress      called with one line per stage; bar: a progress bar with an ETA over the whole search
                  instead (default: only when stderr is a terminal; False: never).
    The result's `loss` / `figures` are measured from the written file decoded by the runtime;
    `result.save(path)` writes it."""
    if not (isinstance(max_loss, (int, float)) and math.isfinite(max_loss) and max_loss >= 0):
        raise CompressError(f"--max-loss must be a finite number >= 0, got {max_loss}")
    if calib is None:
        raise CompressError("--max-loss measures the loss on calibration data: give calib= (x, or (x, y))")

    torch.manual_seed(seed)
    x, y = calibration_tensors(calib)
    model = copy.deepcopy(model).eval()
    tuning = None
    if train_loader is not None and finetune_epochs:
        tuning = _Tuning(train_loader, finetune_epochs, finetune_lr, loss_fn, distill, seed, train_steps)
    # steps: the Fisher pass and the base metric, each layer sized and its candidates measured, the
    # search's evaluations, the fine-tunes, the writes (re-estimated once the candidates are known)
    after = SCAN_POINTS + SEARCH_STEPS + 2 + (FINETUNE_STEPS * (1 + train_steps) if tuning else 0)
    total = 2 + len(compressible_weights(model)) * (1 + points) + after
    progress_bar = SearchProgress(total, progress or (lambda message: None), bar)
    try:
        search, best, written, figures, smallest, meta = _search(
            model,
            example_input,
            float(max_loss),
            x,
            y,
            candidates,
            points,
            tuning,
            batchnorm,
            metadata,
            loss_fn,
            progress_bar,
            after,
        )
    finally:
        progress_bar.close()
    overhead = written.file_bytes - sum(written.plan.predicted_tensor_bytes(search.layers))
    curve = [(b + overhead, d) for b, d in rate_curve(search.layers)]
    result = _result(
        search.problem.model, example_input, None, search.layers, written, smallest, overhead, curve, None, False, meta
    )
    result.layers, result.model = best.states, best.model
    result.max_loss, result.loss, result.figures = float(max_loss), figures["loss"], figures
    result.finetuned, result.evaluations = best.finetuned, search.evaluations
    if eval_fn is not None:
        result.accuracy["dense"] = float(eval_fn(search.problem.model))
        result.accuracy["max_loss+finetune" if best.finetuned else "max_loss"] = float(eval_fn(best.model))
    return result


def _search(model, example_input, max_loss, x, y, candidates, points, tuning, batchnorm, metadata, loss_fn, bar, after):
    """fit_max_loss's search: (search, chosen probe, written file, its figures, smallest file, its metadata)."""
    from dcz.compressor.onnx_damage import Damage

    labels = None if y is None else y.cpu().numpy().astype(np.int64)
    damage = Damage(model_outputs(model, x), labels)
    rows = min(SENSITIVITY_ROWS, int(x.shape[0]))
    head = Damage(model_outputs(model, x[:rows]), None if labels is None else labels[:rows])
    bar.stage("calibration (Fisher diagonal)")
    problem = prepare_budget(
        model,
        (x[:rows], y[:rows]) if y is not None else x[:rows],
        candidates,
        metric_points=points,
        loss_fn=loss_fn,
        metric_fn=lambda m: -head.sensitivity(_outputs_after_batchnorm(m, x[:rows], batchnorm)),
        progress=bar.stage,
        tick=bar.step,
    )
    bar.remaining(after)
    search = _Search(problem, damage, x, bar, bool(batchnorm and batchnorm_layers(model)))
    target = search.target(max_loss)
    best = post = search.probe(target)
    if tuning is not None:
        best = _smaller_with_finetuning(search, best, target, max_loss, tuning)
    calib_facts = {
        "rows": int(x.shape[0]),
        "metric": damage.kind,
        "batchnorm_reestimated": len(batchnorm_layers(model)) if search.batchnorm else 0,
    }
    meta = {
        **dict(metadata or {}),
        "compress.calib": calib_facts,
        "compress.calib.max_loss": max_loss,
        "compress.budget.curve": measured_curve(search.points),
    }
    # The file is run by the runtime, not torch: a sample on the edge can flip. A fine-tuned
    # allocation that misses falls back to the post-training one, then 10% more bytes at a time.
    tries = [best] + ([post] if best is not post else [])
    bar.stage("writing and verifying the file")
    with tempfile.TemporaryDirectory(prefix="dcz-max-loss-") as workdir:
        for attempt in range(MAX_WRITES + len(tries) - 1):
            best = tries[attempt] if attempt < len(tries) else search.probe(target)
            written, figures = _write_and_verify(model, example_input, search, best, meta, workdir)
            bar.step()
            written_meta = {**meta, "compress.budget.allocation": _allocation_rows(search.layers, written.plan)}
            if figures["bound"] <= max_loss:
                break
            bar.stage(f"the written file missed ({figures['bound']:.3g} > {max_loss:g})")
            if attempt + 1 >= len(tries):
                target = int(target * 1.1) + 1
        else:
            raise CompressError(f"--max-loss {max_loss:g}: no written file met it after {MAX_WRITES} attempts")
        smallest_plan = Plan([layer.smallest() for layer in search.layers], [None] * len(search.layers))
        smallest = _write_plan(problem.model, example_input, search.layers, smallest_plan, meta, workdir)
    return search, best, written, figures, smallest, written_meta


def _outputs_after_batchnorm(model: torch.nn.Module, x: torch.Tensor, batchnorm: bool) -> list[np.ndarray]:
    """Outputs with BatchNorm statistics re-estimated on x; the model's own statistics are put back."""
    if not batchnorm or not batchnorm_layers(model):
        return model_outputs(model, x)
    saved = batchnorm_buffers(model)
    try:
        reestimate_batchnorm(model, x)
        return model_outputs(model, x)
    finally:
        restore_batchnorm(model, saved)


def _write_and_verify(model, example_input, search: _Search, best: _Probe, meta, workdir) -> tuple[Written, dict]:
    """Write the probe's file and measure it, decoded by the runtime, on the calibration data."""
    plan = Plan(best.choice, [None] * len(best.choice))
    extra = {**meta, "compress.budget.allocation": _allocation_rows(search.layers, plan)}
    written = _write_plan(best.model, example_input, search.layers, plan, extra, workdir, best.states)
    figures = search.damage.describe(file_outputs(os.path.join(workdir, "candidate.dcz"), search.x))
    return written, figures


def _allocation_rows(layers, plan: Plan) -> list[list]:
    """What the file records of its allocation (read back by `dcz report FILE`)."""
    predicted = plan.predicted_tensor_bytes(layers)
    return [[y.name, c.sparsity, c.label_bits, c.gap_bits, int(p)] for y, c, p in zip(layers, plan.choice, predicted)]


@dataclass
class _Tuning:
    loader: Iterable
    epochs: int
    lr: float
    loss_fn: Callable | None
    distill: bool
    seed: int
    steps: int


def _smaller_with_finetuning(search: _Search, best: _Probe, target: int, max_loss: float, how: _Tuning) -> _Probe:
    """Fine-tuning buys back loss: bisect below the post-training target, one fine-tune per step."""
    from dcz.compressor.budget.finetune import finetune_centroids

    teacher = search.problem.model if how.distill else None

    def tuned(probe: _Probe) -> _Probe:
        torch.manual_seed(how.seed)
        model, states = finetune_centroids(
            probe.model, probe.states, how.loader, how.epochs, how.lr, how.loss_fn, teacher
        )
        if search.batchnorm and REESTIMATE_AFTER_FINETUNE:
            # training moved the statistics towards the training batches' under the old weights
            reestimate_batchnorm(model, search.x)
        bound = search.damage.bound(model_outputs(model, search.x))
        return _Probe(probe.choice, model, states, bound, True)

    search.say("fine-tuning the centroids of the allocation found")
    first = tuned(best)
    search.bar.step(FINETUNE_STEPS)
    if first.bound <= best.bound:
        best = first
    low, high = min_bytes(search.layers), target
    for _ in range(how.steps):
        if high <= low * 1.01:
            break
        middle = int(math.sqrt(low * high))
        search.say(f"fine-tuning an allocation of {middle:,} tensor bytes")
        trial = tuned(search.probe(middle))
        search.bar.step(FINETUNE_STEPS)
        if trial.bound <= max_loss:
            best, high = trial, middle
        else:
            low = middle
    return best
