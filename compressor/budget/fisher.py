"""Damage weights for the budget solver: the diagonal empirical Fisher of each compressible weight.

F_w = mean over calibration chunks of (dL/dw)^2. The second-order loss change of replacing w by
w_hat is about 1/2 sum_w F_w (w - w_hat)^2 (Fisher ~ Hessian diagonal near a trained optimum), so
the solver's damage of a candidate is sum_w F_w (w - w_hat)^2: additive over layers, cheap (one
backward pass per chunk), and it sees that a weight's error matters more in some layers than others.
Gradients are taken per small chunk, not per whole batch, because the squared mean gradient of a
big batch is near zero at an optimum while the mean of squared per-sample gradients is not.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from dcz.compressor.errors import CompressError

COMPRESSIBLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
MAX_BACKWARD_PASSES = 128


def compressible_weights(model: nn.Module) -> dict[str, tuple[str, nn.Parameter]]:
    """param name -> (layer type, weight) for every Linear / Conv weight, in model order."""
    out = {}
    for module_name, module in model.named_modules():
        if isinstance(module, COMPRESSIBLE) and isinstance(getattr(module, "weight", None), nn.Parameter):
            name = f"{module_name}.weight" if module_name else "weight"
            out[name] = (type(module).__name__, module.weight)
    return out


def _batches(calib) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    if isinstance(calib, torch.Tensor):
        return [(calib, None)]
    if (
        isinstance(calib, (tuple, list))
        and len(calib) == 2
        and all(isinstance(t, torch.Tensor) for t in calib)
        and calib[0].shape[:1] == calib[1].shape[:1]
        and calib[1].dim() <= 1
    ):
        return [(calib[0], calib[1])]
    out = []
    for item in calib:
        if isinstance(item, torch.Tensor):
            out.append((item, None))
        elif isinstance(item, (tuple, list)) and len(item) >= 2:
            out.append((item[0], item[1]))
        else:
            raise CompressError(
                f"calib: expected a tensor, an (x, y) pair or an iterable of (x, y) batches, got {type(item).__name__}"
            )
    if not out:
        raise CompressError("calib: no calibration batch given")
    return out


def _loss(output: torch.Tensor, target: torch.Tensor | None, loss_fn: Callable | None) -> torch.Tensor:
    if loss_fn is not None and target is not None:
        return loss_fn(output, target)
    if output.dim() == 2:  # classifier: cross-entropy against the labels, or the model's own predictions
        labels = target if target is not None else output.detach().argmax(dim=1)
        return nn.functional.cross_entropy(output, labels, reduction="sum")
    return 0.5 * (output**2).sum()  # no labels, no classifier: sensitivity of the output energy


def fisher_diagonal(
    model: nn.Module, named: dict[str, tuple[str, nn.Parameter]], calib, loss_fn: Callable | None = None
) -> dict[str, np.ndarray]:
    """param name -> float64 array of mean squared chunk gradients (the model is left unchanged)."""
    batches = _batches(calib)
    samples = sum(int(x.shape[0]) for x, _ in batches)
    chunk = max(1, -(-samples // MAX_BACKWARD_PASSES))
    params = [p for _, p in named.values()]
    acc = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    was_training = model.training
    model.eval()
    passes = 0
    try:
        for x, y in batches:
            for start in range(0, int(x.shape[0]), chunk):
                xs = x[start : start + chunk]
                ys = None if y is None else y[start : start + chunk]
                grads = torch.autograd.grad(_loss(model(xs), ys, loss_fn), params, allow_unused=True)
                for a, g in zip(acc, grads):
                    if g is not None:
                        a += g.detach().double() ** 2
                passes += 1
    finally:
        model.train(was_training)
    fisher = {name: (a / max(passes, 1)).cpu().numpy() for name, a in zip(named, acc)}
    # A tiny floor so that weights with no gradient still prefer being kept exactly to being moved.
    floor = 1e-6 * float(np.mean([f.mean() for f in fisher.values()]) or 1.0)
    return {name: f + floor for name, f in fisher.items()}
