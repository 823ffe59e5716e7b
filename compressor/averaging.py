"""Weight averaging over the settled part of a recovery stage (SWA, Izmailov et al. 2018; or an EMA).

A model fine-tuned at a constant rate ends wherever its last batches left it, a few noisy steps around
the minimum; the average of the weights it visited lies nearer the minimum's centre, and costs no bytes.
The pipeline averages only where the structure is final: after the training-time pruning masks
freeze (their pruned positions are zero in every snapshot) and over the centroid training (labels and
masks are fixed buffers there, only the centroids and raw parameters move).

    swa  the uniform mean of the trainable parameters after every optimizer step
    ema  an exponential moving average with `decay` per step, started at the first averaged step

`start` skips that fraction of the settled batches first (the weights are still adapting to the final
masks / fresh codebooks there).
"""

from __future__ import annotations

import torch
from torch import nn


class WeightAverage:
    """Running average of `model`'s trainable parameters: `settle(n)` once the structure is final with n
    batches left, `step()` after every optimizer step, `apply()` at the end of the stage."""

    def __init__(self, model: nn.Module, method: str, decay: float = 0.998, start: float = 0.0) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.method = method
        self.decay = decay
        self.start = start
        self.skip: int | None = None  # batches still to skip once settled; None: not settled yet
        self.steps = 0
        self.mean: list[torch.Tensor] = []

    def settle(self, remaining_batches: int) -> None:
        """The masks / codebooks are final from here; `remaining_batches` steps are left in the stage."""
        if self.skip is None:
            self.skip = round(self.start * max(remaining_batches, 0))

    def step(self) -> None:
        """One optimizer step was taken: average it if the stage has settled and the skipped part is over."""
        if self.skip is None:
            return
        if self.skip > 0:
            self.skip -= 1
            return
        self.update()

    def update(self) -> None:
        with torch.no_grad():
            if self.steps == 0:
                self.mean = [p.detach().clone() for p in self.params]
            elif self.method == "swa":
                for mean, p in zip(self.mean, self.params, strict=True):
                    mean.add_(p.detach() - mean, alpha=1.0 / (self.steps + 1))
            else:
                for mean, p in zip(self.mean, self.params, strict=True):
                    mean.lerp_(p.detach(), 1.0 - self.decay)
        self.steps += 1

    def apply(self) -> bool:
        """Copy the average into the parameters; False (nothing changed) if no step was averaged."""
        if self.steps == 0:
            return False
        with torch.no_grad():
            for mean, p in zip(self.mean, self.params, strict=True):
                p.copy_(mean)
        return True
