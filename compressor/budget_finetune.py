"""Fine-tune after allocation: trained quantization (paper section 3.3) with masks and labels fixed.

Each shared weight becomes centroids[labels] * mask through a parametrization whose centroids are a
parameter, so autograd sums each cluster's gradient over its members; pruned entries stay zero.
Masks, labels and bit widths do not move, so the file's size does not move either (only the
codebook values and the raw tensors change).
"""
from __future__ import annotations

import copy
from dataclasses import replace
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from compressor.state import LayerState


class _SharedWeight(nn.Module):
    """weight = centroids[labels] (zero where pruned)."""

    def __init__(self, state: LayerState) -> None:
        super().__init__()
        self.centroids = nn.Parameter(torch.tensor(np.asarray(state.codebook, dtype=np.float32)))
        self.register_buffer("labels", torch.from_numpy(np.asarray(state.labels, dtype=np.int64).reshape(state.shape)))
        mask = np.ones(state.shape, dtype=bool) if state.mask is None else np.asarray(state.mask, dtype=bool)
        self.register_buffer("mask", torch.from_numpy(mask.reshape(state.shape)))

    def forward(self, original: torch.Tensor) -> torch.Tensor:  # the original tensor is ignored
        return self.centroids[self.labels] * self.mask


def _module_of(model: nn.Module, param_name: str) -> nn.Module:
    module_name = param_name.rsplit(".", 1)[0] if "." in param_name else ""
    return model.get_submodule(module_name)


def finetune_centroids(model: nn.Module, states: dict[str, LayerState], train_loader: Iterable, epochs: int = 1,
                       lr: float = 1e-3, loss_fn: Callable | None = None) -> tuple[nn.Module, dict[str, LayerState]]:
    """Train centroids (and the raw tensors) for `epochs`; returns (baked model, updated states)."""
    model = copy.deepcopy(model)
    shared = {name: s for name, s in states.items() if s.codebook is not None and np.asarray(s.codebook).ndim == 1}
    for name, state in shared.items():
        parametrize.register_parametrization(_module_of(model, name), "weight", _SharedWeight(state), unsafe=True)
    trainable = [p for n, p in model.named_parameters() if not n.endswith(".original")]
    optimizer = torch.optim.Adam(trainable, lr=lr)
    batches = list(train_loader)
    # Cosine decay to zero: big centroid moves first (they recover most), then settle; a constant
    # 1e-3 overshoots on gentle budgets and a constant 1e-4 recovers too little on tight ones.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, int(epochs) * len(batches)))
    loss_fn = loss_fn or nn.functional.cross_entropy
    model.train()
    for _ in range(int(epochs)):
        for x, y in batches:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
            schedule.step()
            _keep_raw_pruned_zero(model, states)
    model.eval()
    new_states = dict(states)
    for name, state in shared.items():
        module = _module_of(model, name)
        book = module.parametrizations.weight[0].centroids.detach().cpu().numpy().astype(np.float32)
        new_states[name] = replace(state, codebook=book)
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    params = dict(model.named_parameters())
    for name, state in states.items():
        if name not in shared:
            new_states[name] = replace(state, values=params[name].detach().cpu().numpy().astype(np.float32).copy())
    return model, new_states


def _keep_raw_pruned_zero(model: nn.Module, states: dict[str, LayerState]) -> None:
    """Pruned-only states (no codebook) keep their zeros after each step."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, state in states.items():
            if state.codebook is None and state.mask is not None and name in params:
                params[name].mul_(torch.from_numpy(np.asarray(state.mask, dtype=bool)))
