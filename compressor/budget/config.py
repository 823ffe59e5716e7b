"""Strict settings of the byte-budget solver (compressor.budget.fit.fit_budget, dcz.compress(budget=...)).

Plain, serialisable settings live here; the data and callbacks a search needs (calibration batches,
a train loader, eval / metric functions, progress) are arguments of `fit_budget`, as with
`compressor.compress(model, x, config, train_loader=..., eval_fn=...)`.

`from_dict` rejects unknown keys and impossible values with a one-line CompressError naming the key,
e.g. ``budget.finetune_epochs: must be an integer >= 0, got -1``. Torch-free.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from dcz.compressor.budget.candidates import CandidateGrid
from dcz.compressor.checks import check_bool, check_float, check_int, fail, reject_unknown
from dcz.compressor.errors import CompressError

METRIC_POINTS = 12


@dataclass(frozen=True)
class BudgetConfig:
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
        check_int(f"{w}.seed", self.seed, 0)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "where"]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "budget") -> BudgetConfig:
        """Build from plain data (JSON/TOML); unknown keys and impossible values raise CompressError."""
        reject_unknown(where, data, cls.keys())
        if "budget_bytes" not in data:
            raise fail(where, "missing key 'budget_bytes' (the whole file's size in bytes)")
        kwargs = dict(data)
        if kwargs.get("candidates") is not None:
            kwargs["candidates"] = CandidateGrid.from_dict(kwargs["candidates"], f"{where}.candidates")
        return cls(**kwargs, where=where)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; `from_dict(to_dict())` gives an equal config."""
        out = {k: getattr(self, k) for k in self.keys()}
        if self.candidates is None:
            del out["candidates"]
        else:
            out["candidates"] = self.candidates.to_dict()
        return out


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
