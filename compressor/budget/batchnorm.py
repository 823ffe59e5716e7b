"""BatchNorm statistics re-estimated on the calibration data after the weights were replaced.

Quantizing and pruning the weights of a convolution shifts the mean and scale of its output channels;
the BatchNorm after it still normalises with the dense model's running statistics. Running the
calibration inputs through the compressed model with the BatchNorm layers in training mode (a
cumulative average, momentum None; nothing else trains, no gradients) gives statistics that match
the compressed weights, at no bytes: BatchNorm tensors are stored raw either way.
"""

from __future__ import annotations

import torch
from torch import nn

BATCH = 256


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def reestimate_batchnorm(model: nn.Module, x: torch.Tensor, batch: int = BATCH) -> int:
    """Replace every BatchNorm's running mean / variance by those of the calibration inputs `x`
    flowing through `model` as it is (in place); returns how many layers were re-estimated."""
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    momenta = [m.momentum for m in layers]
    was_training = model.training
    model.eval()
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
            m.train()
        with torch.no_grad():
            for start in range(0, int(x.shape[0]), batch):
                model(x[start : start + batch])
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
            m.eval()
        model.train(was_training)
    return len(layers)


def batchnorm_buffers(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Copies of every BatchNorm's running mean, variance and batch count (for `restore_batchnorm`)."""
    return [
        (
            m.running_mean.clone(),
            m.running_var.clone(),
            None if m.num_batches_tracked is None else m.num_batches_tracked.clone(),
        )
        for m in batchnorm_layers(model)
    ]


def restore_batchnorm(model: nn.Module, saved) -> None:
    with torch.no_grad():
        for m, (mean, var, count) in zip(batchnorm_layers(model), saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            if count is not None:
                m.num_batches_tracked.copy_(count)
