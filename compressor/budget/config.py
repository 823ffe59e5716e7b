"""Strict settings of the byte-budget solvers: `BudgetConfig` for PyTorch models
(compressor.budget.fit.fit_budget), `OnnxSearchConfig` for ONNX models searched in ONNX Runtime
(compressor.budget.onnx_search.fit_onnx); dcz.compress(budget=...) takes either.

Plain, serialisable settings live here; the data and callbacks a search needs (calibration batches,
a train loader, eval / metric functions, progress) are arguments of `fit_budget` / `fit_onnx`, as with
`compressor.compress(model, x, config, train_loader=..., eval_fn=...)`.

`from_dict` rejects unknown keys and impossible values with a one-line CompressError naming the key,
e.g. ``budget.finetune_epochs: must be an integer >= 0, got -1``. Torch-free.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dcz.compressor.budget.candidates import CandidateGrid
from dcz.compressor.checks import StrictConfig, check_bool, check_float, check_int, fail, reject_unknown
from dcz.compressor.errors import CompressError

METRIC_POINTS = 12


@dataclass(frozen=True)
class BudgetConfig(StrictConfig):
    """How to fit a model into a byte budget.

    budget_bytes     the whole .dcz file, graph and header included (an integer > 0).
    candidates       CandidateGrid the solver chooses each layer's setting from; None: the default grid
                     (sparsities 0..0.995 x 1..8 label bits x 1..8 gap bits; ONNX: a coarser one above
                     4 M weights).
    uniform          also solve the uniform baseline (one setting everywhere) and keep it when its
                     damage is lower, so the result is never worse than uniform on the solver's estimate.
    finetune_epochs  epochs fine-tuning the centroids after allocation (trained quantization, paper
                     section 3.3; needs a train loader; sizes do not change). PyTorch models only.
    finetune_lr      learning rate of that fine-tuning.
    distill          fine-tune against the dense model's soft targets instead of the labels.
    metric_points    with a metric function: candidates per layer whose damage is measured.
    batchnorm        re-estimate BatchNorm statistics on the calibration inputs after the allocation
                     (budget.batchnorm; no bytes; only with calibration data, never on the noise stand-in).
    seed             seeds torch: the noise stand-in for calibration data and the fine-tuning.
    """

    budget_bytes: int
    candidates: CandidateGrid | None = None
    uniform: bool = True
    finetune_epochs: int = 1
    finetune_lr: float = 1e-3
    distill: bool = False
    metric_points: int = METRIC_POINTS
    seed: int = 0
    batchnorm: bool = True
    where: str = field(default="budget", compare=False, repr=False)

    def __post_init__(self) -> None:
        w = self.where
        size = self.budget_bytes
        if isinstance(size, numbers.Integral) and not isinstance(size, bool):
            object.__setattr__(self, "budget_bytes", int(size))  # numpy integers from size arithmetic
        check_int(f"{w}.budget_bytes", self.budget_bytes, 1)
        if self.candidates is not None and not isinstance(self.candidates, CandidateGrid):
            raise fail(f"{w}.candidates", f"must be a CandidateGrid, got {type(self.candidates).__name__}")
        check_bool(f"{w}.uniform", self.uniform)
        check_int(f"{w}.finetune_epochs", self.finetune_epochs, 0)
        check_float(f"{w}.finetune_lr", self.finetune_lr, 0.0, low_open=True)
        check_bool(f"{w}.distill", self.distill)
        check_int(f"{w}.metric_points", self.metric_points, 2)
        check_bool(f"{w}.batchnorm", self.batchnorm)
        check_int(f"{w}.seed", self.seed, 0)

    NESTED = {"candidates": CandidateGrid}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "budget") -> BudgetConfig:
        reject_unknown(where, data, cls.keys())
        if "budget_bytes" not in data:
            raise fail(where, "missing key 'budget_bytes' (the whole file's size in bytes)")
        return super().from_dict(data, where)


SENSITIVITY_ROWS = 256  # calibration rows for the per-layer sensitivity of the ONNX search
# ... above onnx_search.LARGE_MODEL weights, where one run over 256 rows costs seconds (MiniLM: 256 sentences of
# 32 tokens, ~3 s) and a search makes a few hundred; the allocations are still measured on every row
SENSITIVITY_ROWS_LARGE = 64


@dataclass(frozen=True)
class OnnxSearchConfig(StrictConfig):
    """How to fit an ONNX model to a target with damage measured by ONNX Runtime on calibration data.

    budget_bytes      the least damage within this many bytes (the whole file), or
    max_loss          the smallest file whose loss on the calibration data is <= max_loss (percentage
                      points of top-1 with labels `y`, relative output error without); exactly one of the two.
    candidates        CandidateGrid the search chooses each layer's setting from; None: the default grid
                      (a coarser one above 4 M weights).
    points            candidates per layer whose damage ORT measures; None: 24 below 1 M weights, else 8.
    sensitivity_rows  calibration rows for the per-layer sensitivity (the search itself uses them all); None:
                      256, or 64 on models over 4 M weights.
    uniform           with budget_bytes: keep the uniform setting (one for every layer) when it measured better.
    bias_correction   correct each MatMul / Gemm bias for its replaced weight's mean output shift, measured
                      on the calibration data (costs no bytes): a layer measured alone with the dense model's
                      input mean (compressor/bias_correction), an allocation layer after layer with the
                      compressed model's own input means (compressor/bias_sequential). Off by default: on the
                      digits CNN it hurts even on the allocation chosen without it (held out, 1/20: 97.08% ->
                      95.78%; 1/40: 94.72% -> 46.77%), and searching with it chose worse ones (1/40: 38.09%).
    error_feedback    label the dense codebook candidates of MatMul / Gemm weights GPTQ-style, each column's
                      error fed to the later ones along H = E[x x^T] of the layer's input, gathered by ORT on
                      the calibration rows the sensitivities are not measured on (compressor/onnx_moments,
                      budget/feedback): measured and written so. None: on for models over 4 M weights (where
                      it was measured: MiniLM, docs/benchmarks/calibrated.md), off below.
    """

    budget_bytes: int | None = None
    max_loss: float | None = None
    candidates: CandidateGrid | None = None
    points: int | None = None
    sensitivity_rows: int | None = None
    uniform: bool = True
    bias_correction: bool = False
    error_feedback: bool | None = None
    where: str = field(default="search", compare=False, repr=False)

    def __post_init__(self) -> None:
        w = self.where
        if (self.budget_bytes is None) == (self.max_loss is None):
            raise fail(w, "give exactly one target: budget_bytes (a size) or max_loss (a loss on the calibration data)")
        if self.budget_bytes is not None:
            size = self.budget_bytes
            if isinstance(size, numbers.Integral) and not isinstance(size, bool):
                object.__setattr__(self, "budget_bytes", int(size))
            check_int(f"{w}.budget_bytes", self.budget_bytes, 1)
        if self.max_loss is not None:
            loss = check_float(f"{w}.max_loss", self.max_loss, 0.0)
            if not math.isfinite(loss):
                raise fail(f"{w}.max_loss", f"must be a finite number >= 0, got {self.max_loss!r}")
            object.__setattr__(self, "max_loss", loss)
        if self.candidates is not None and not isinstance(self.candidates, CandidateGrid):
            raise fail(f"{w}.candidates", f"must be a CandidateGrid, got {type(self.candidates).__name__}")
        if self.points is not None:
            check_int(f"{w}.points", self.points, 1)
        if self.sensitivity_rows is not None:
            check_int(f"{w}.sensitivity_rows", self.sensitivity_rows, 1)
        check_bool(f"{w}.uniform", self.uniform)
        check_bool(f"{w}.bias_correction", self.bias_correction)
        if self.error_feedback is not None:
            check_bool(f"{w}.error_feedback", self.error_feedback)

    NESTED = {"candidates": CandidateGrid}


# BudgetConfig settings that only the PyTorch solver uses (fine-tuning, metric functions, torch's seed).
_TORCH_ONLY = ("finetune_epochs", "finetune_lr", "distill", "metric_points", "seed", "batchnorm")


def as_onnx_search_config(budget: OnnxSearchConfig | BudgetConfig | Mapping[str, Any] | int) -> OnnxSearchConfig:
    """The OnnxSearchConfig for what a caller passed: an OnnxSearchConfig, a mapping for
    OnnxSearchConfig.from_dict, a number of bytes, or a BudgetConfig (its budget, candidates and
    uniform; its PyTorch-only settings must be left at their defaults)."""
    if isinstance(budget, OnnxSearchConfig):
        return budget
    if isinstance(budget, BudgetConfig):
        default = BudgetConfig(budget_bytes=budget.budget_bytes)
        changed = [k for k in _TORCH_ONLY if getattr(budget, k) != getattr(default, k)]
        if changed:
            raise fail(
                budget.where,
                f"{', '.join(changed)} apply to PyTorch models only; an ONNX model takes an OnnxSearchConfig",
            )
        return OnnxSearchConfig(budget_bytes=budget.budget_bytes, candidates=budget.candidates, uniform=budget.uniform)
    if isinstance(budget, Mapping):
        return OnnxSearchConfig.from_dict(budget)
    if isinstance(budget, numbers.Integral) and not isinstance(budget, bool):
        return OnnxSearchConfig(budget_bytes=int(budget))
    raise CompressError(
        f"budget: must be an OnnxSearchConfig, a BudgetConfig, a mapping or a number of bytes, got {type(budget).__name__}"
    )


def as_budget_config(budget: BudgetConfig | Mapping[str, Any] | int) -> BudgetConfig:
    """The BudgetConfig for what a caller passed: a BudgetConfig, a mapping validated by
    BudgetConfig.from_dict, or a whole number of bytes (every other setting at its default)."""
    if isinstance(budget, BudgetConfig):
        return budget
    if isinstance(budget, Mapping):
        return BudgetConfig.from_dict(budget)
    if isinstance(budget, numbers.Integral) and not isinstance(budget, bool):
        return BudgetConfig(budget_bytes=int(budget))
    raise CompressError(f"budget: must be a BudgetConfig, a mapping or a number of bytes, got {type(budget).__name__}")
