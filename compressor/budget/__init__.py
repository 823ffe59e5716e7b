"""Fit a model into a byte budget with the least damage: the per-layer sparsity / bits solver.

    from dcz.compressor.budget import BudgetConfig, fit_budget
    result = fit_budget(model, example_input, BudgetConfig(budget_bytes=100_000), calib=x, train_loader=loader)
    print(result.to_text())    # per-layer allocation, predicted and actual bytes, damage
    result.save("model.dcz")   # the verified file, <= the budget

    from dcz.compressor.budget import fit_max_loss   # the smallest file within a loss on calibration data
    fit_max_loss(model, example_input, 0.5, calib=(x, y), train_loader=loader).save("model.dcz")

    from dcz.compressor.budget import OnnxSearchConfig, fit_onnx   # ONNX models: damage measured by ONNX Runtime
    fit_onnx("model.onnx", "calib.npz", OnnxSearchConfig(budget_bytes=9_000_000), out_path="model.dcz")

Modules: config (BudgetConfig, OnnxSearchConfig), candidates (what each setting of a layer costs and how much it hurts),
sizes (exact bytes without encoding), fisher (damage weights), solver (Lagrangian + knapsack
allocation), fit (PyTorch models, to a budget), loss_target (PyTorch models, to a loss), finetune (centroid fine-tuning after allocation), onnx_search
(ONNX models), report (rendering, and checking a written file against a budget).

Importing this package pulls in neither torch nor onnx: `fit_budget` and `fit_onnx` load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from dcz.compressor.budget.candidates import CandidateGrid
from dcz.compressor.budget.config import BudgetConfig, OnnxSearchConfig

# name -> module that defines it, imported lazily: these need torch (fit) or onnx (onnx_search).
_LAZY = {
    "fit_budget": "dcz.compressor.budget.fit",
    "prepare_budget": "dcz.compressor.budget.fit",
    "BudgetResult": "dcz.compressor.budget.fit",
    "BudgetProblem": "dcz.compressor.budget.fit",
    "fit_max_loss": "dcz.compressor.budget.loss_target",
    "fit_onnx": "dcz.compressor.budget.onnx_search",
    "OnnxBudgetResult": "dcz.compressor.budget.onnx_search",
}

__all__ = ["BudgetConfig", "OnnxSearchConfig", "CandidateGrid", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dcz.compressor.budget' has no attribute {name!r}")
