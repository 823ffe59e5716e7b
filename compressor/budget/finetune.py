"""Fine-tune after allocation: trained quantization (paper section 3.3) with masks and labels fixed.

Each shared weight becomes compressor.share.SharedWeight (centroids[labels] * mask, centroids
trainable: autograd sums each cluster's gradient over its members; pruned entries stay zero), and
compressor.finetune.finetune drives the training (progress bar, optional distillation). Masks,
labels and bit widths do not move, so the file's size does not move either: only the codebook
values and the raw tensors (biases, raw layers, BatchNorm) change.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import replace

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from dcz.compressor.finetune import finetune
from dcz.compressor.share import SharedWeight
from dcz.compressor.state import LayerState


def _module_of(model: nn.Module, param_name: str) -> nn.Module:
    module_name = param_name.rsplit(".", 1)[0] if "." in param_name else ""
    return model.get_submodule(module_name)


class CosineAdam(torch.optim.Adam):
    """Adam whose learning rate decays to zero along a cosine over `total_steps` steps.

    Big centroid moves first recover most of the accuracy, then they settle: a constant 1e-3
    overshoots on gentle budgets, a constant 1e-4 recovers too little on tight ones."""

    def __init__(self, params, lr: float, total_steps: int) -> None:
        super().__init__(params, lr=lr)
        self.base_lr, self.total_steps, self.steps_done = lr, max(1, total_steps), 0

    def step(self, closure=None):
        out = super().step(closure)
        self.steps_done += 1
        progress = min(self.steps_done / self.total_steps, 1.0)
        for group in self.param_groups:
            group["lr"] = 0.5 * self.base_lr * (1.0 + math.cos(math.pi * progress))
        return out


def _share(model: nn.Module, name: str, state: LayerState) -> None:
    mask = None if state.mask is None else torch.from_numpy(np.asarray(state.mask, dtype=bool).reshape(state.shape))
    labels = torch.from_numpy(np.asarray(state.labels, dtype=np.int64).reshape(state.shape))
    module = _module_of(model, name)
    parametrize.register_parametrization(
        module,
        "weight",
        SharedWeight(torch.tensor(np.asarray(state.codebook, dtype=np.float32)), labels, mask, state.group_rows),
    )
    module.parametrizations["weight"].original.requires_grad_(False)  # superseded by the centroids


def finetune_centroids(
    model: nn.Module,
    states: dict[str, LayerState],
    train_loader: Iterable,
    epochs: int = 1,
    lr: float = 1e-3,
    loss_fn: Callable | None = None,
    teacher: nn.Module | None = None,
    progress: bool = False,
) -> tuple[nn.Module, dict[str, LayerState]]:
    """Train centroids (and the raw tensors) for `epochs`; returns (model with plain weights, updated states)."""
    model = copy.deepcopy(model)
    batches = list(train_loader)
    shared = {name: s for name, s in states.items() if s.codebook is not None}
    for name, state in shared.items():
        _share(model, name, state)
    finetune(
        model,
        batches,
        int(epochs),
        lr,
        loss_fn=loss_fn,
        optimizer_factory=lambda params, rate: CosineAdam(params, rate, int(epochs) * len(batches)),
        teacher=teacher,
        progress=progress,
        desc="budget fine-tune",
    )
    model.eval()
    new_states = dict(states)
    for name, state in shared.items():
        module = _module_of(model, name)
        book = module.parametrizations["weight"][0].centroids.detach().cpu().numpy().astype(np.float32)
        new_states[name] = replace(state, codebook=book)
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    params = dict(model.named_parameters())
    for name, state in states.items():
        if name not in shared:  # raw layers trained as plain weights
            new_states[name] = replace(state, values=params[name].detach().cpu().numpy().astype(np.float32).copy())
    return model, new_states
