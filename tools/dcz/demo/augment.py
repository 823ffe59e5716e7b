"""Random small affine moves of digit images (rotation, scale, shift) as seeded training batches.

With 5,000 training digits a net pruned to ~2% of its weights overfits them during recovery; fresh
moved copies of the digits each epoch (labelled by the dense teacher when distilling) are more
training data at no download. Reproducible: one torch.Generator seeded at construction draws
the batch order and every move, so the same seed gives the same batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Moves:
    """Largest move drawn uniformly per image: rotation in degrees, relative scale, shift in pixels."""

    rotate: float = 0.0
    scale: float = 0.0
    shift: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Moves:
        """'rotate=12,scale=0.1,shift=2' (any subset; '' or 'none' is no move)."""
        if text.strip().lower() in ("", "none"):
            return cls()
        values = {}
        for part in text.split(","):
            key, _, value = part.partition("=")
            key = key.strip()
            if key not in ("rotate", "scale", "shift") or not value:
                raise ValueError(f"augment {text!r}: expected rotate=DEG,scale=FRACTION,shift=PIXELS, got {part!r}")
            try:
                values[key] = float(value)
            except ValueError:
                raise ValueError(f"augment {text!r}: {key} must be a number, got {value!r}") from None
            if not values[key] >= 0:
                raise ValueError(f"augment {text!r}: {key} must be >= 0")
        return cls(**values)


class SeededBatches:
    """Shuffled mini-batches of (N, 1, H, W) images, each moved by `_moved`; one generator draws the order
    and every move, so the same seed gives the same batches. Subclasses say how an image moves."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, seed: int):
        self.inputs, self.targets, self.batch_size = inputs, targets, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.inputs) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        order = torch.randperm(len(self.inputs), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self._moved(self.inputs[index]), self.targets[index]

    def _moved(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class AffineBatches(SeededBatches):
    """Mini-batches with each image moved by a random rotation / scale / shift."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, moves: Moves, seed: int):
        super().__init__(inputs, targets, batch_size, seed)
        self.moves = moves

    def _uniform(self, n: int, limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=self.generator, dtype=torch.float64) * 2 - 1) * limit

    def _moved(self, batch: torch.Tensor) -> torch.Tensor:
        n, side = batch.shape[0], batch.shape[-1]
        angle = self._uniform(n, math.radians(self.moves.rotate))
        zoom = 1.0 + self._uniform(n, self.moves.scale)
        # affine_grid maps output to input coordinates in [-1, 1]: a shift of p pixels is 2p / side
        dx, dy = self._uniform(n, self.moves.shift) * 2 / side, self._uniform(n, self.moves.shift) * 2 / side
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos, -sin, dx], 1), torch.stack([sin, cos, dy], 1)], 1)
        grid = F.affine_grid(theta.to(batch.dtype), list(batch.shape), align_corners=False)
        return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class ShiftedBatches(SeededBatches):
    """Shuffled mini-batches with each digit shifted by up to `shift` pixels (seeded, reproducible)."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, shift: int, seed: int):
        super().__init__(inputs, targets, batch_size, seed)
        self.shift = shift

    def _moved(self, batch: torch.Tensor) -> torch.Tensor:
        if self.shift == 0:
            return batch
        s, n, side = self.shift, batch.shape[0], batch.shape[-1]
        padded = torch.nn.functional.pad(batch, (s, s, s, s))
        dy = torch.randint(0, 2 * s + 1, (n,), generator=self.generator)
        dx = torch.randint(0, 2 * s + 1, (n,), generator=self.generator)
        rows = (dy[:, None] + torch.arange(side))[:, :, None]
        cols = (dx[:, None] + torch.arange(side))[:, None, :]
        return padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)
