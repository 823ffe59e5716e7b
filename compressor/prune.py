"""Magnitude pruning as torch parametrizations (like torch.ao.pruning's FakeSparsity).

A `PruneMask` parametrization computes `weight = original * mask`: pruned weights read as zero and
receive zero gradient while fine-tuning, so they stay pruned. Masks only ever shrink: each step of
the iterative schedule prunes among the weights that survived the previous one.

Rules (per layer, from the layer's `LayerPlan`):
  threshold  prune |w| < threshold
  sparsity   prune the `sparsity` fraction of the layer with the smallest |w| (a percentile)
  quality    prune |w| < quality * std(w)  (Han et al. 2015; std of the dense weights)
  global     one threshold across all 'global' layers, pruning `sparsity` of their weights in total
             (as torch.nn.utils.prune.global_unstructured with L1Unstructured)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from dcz.compressor.config import LayerPlan
from dcz.compressor.errors import CompressError


class PruneMask(nn.Module):
    """Parametrization `original * mask`; the mask is a bool buffer (saved with the state dict)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original * self.mask


def ramp(step: int, steps: int) -> float:
    """Fraction of the final pruning reached after `step` of `steps` (cubic, Zhu & Gupta 2017:
    prune fast while there are many redundant weights, slowly near the target)."""
    return 1.0 - (1.0 - step / steps) ** 3


def current_mask(module: nn.Module, tensor_name: str = "weight") -> torch.Tensor | None:
    """The PruneMask on module.<tensor_name>, if any."""
    if not parametrize.is_parametrized(module, tensor_name):
        return None
    for p in module.parametrizations[tensor_name]:
        if isinstance(p, PruneMask):
            return p.mask
    return None


def set_mask(module: nn.Module, mask: torch.Tensor, tensor_name: str = "weight") -> None:
    """Install or update the PruneMask of module.<tensor_name>."""
    existing = current_mask(module, tensor_name)
    if existing is not None:
        existing.copy_(mask)
        return
    # unsafe: skip torch's check evaluation of original * mask (PruneMask keeps shape and dtype)
    parametrize.register_parametrization(module, tensor_name, PruneMask(mask), unsafe=True)


def keep_largest(
    magnitude: torch.Tensor, alive: torch.Tensor, n_prune: int, reread: Callable[[int, int], torch.Tensor] | None = None
) -> torch.Tensor:
    """Mask keeping all but the n_prune smallest magnitudes (already-pruned entries count first).

    The same mask as a stable ascending argsort (ties pruned first in position order), found by an
    O(n) selection instead of a full sort (which needs an int64 index per weight). `magnitude` is
    overwritten (dead entries become -1): callers pass a tensor they own. With `reread(start, stop)`
    (|weight| of that flat range, recomputed) the selection scrambles `magnitude` in place and the
    mask is built chunk by chunk from re-read values: one full-size float array instead of two.
    """
    n = magnitude.numel()
    if n_prune <= 0:
        return torch.ones_like(magnitude, dtype=torch.bool)
    if n_prune >= n:
        return torch.zeros_like(magnitude, dtype=torch.bool)
    shape, dead = magnitude.shape, ~alive.reshape(-1)
    flat = magnitude.reshape(-1)
    flat.masked_fill_(dead, -1.0)  # value(i) = magnitude if alive else -1
    if reread is None:
        values = flat.numpy().copy()

        def value(start: int, stop: int) -> torch.Tensor:
            return flat[start:stop]
    else:
        values = flat.numpy()  # scrambled in place; value() recomputes what is needed

        def value(start: int, stop: int) -> torch.Tensor:
            return reread(start, stop).masked_fill_(dead[start:stop], -1.0)

    values.partition(n_prune - 1)
    kth = float(values[n_prune - 1])
    del values
    if reread is not None:
        del flat, magnitude  # scrambled by the selection: freed before the mask is built
    # pruned: value < kth, then the first ties (value == kth) in position order up to n_prune
    keep = torch.empty(n, dtype=torch.bool)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        keep[start:stop] = value(start, stop) >= kth
    need = n_prune - (n - int(torch.count_nonzero(keep)))  # bool .sum() widens to int64 first: 8 B a weight
    _prune_first_ties(keep, value, kth, need)
    return keep.reshape(shape)


_CHUNK = 1 << 22


def _prune_first_ties(keep: torch.Tensor, value: Callable[[int, int], torch.Tensor], kth: float, need: int) -> None:
    """Set keep False at the first `need` positions whose value equals kth (chunked: ties can be
    most of a tensor, e.g. kth = -1 among already-pruned entries, and an index per tie is 8 bytes)."""
    for start in range(0, keep.numel(), _CHUNK):
        if need <= 0:
            return
        stop = min(start + _CHUNK, keep.numel())
        index = torch.nonzero(value(start, stop) == kth).flatten()[:need] + start
        keep[index] = False
        need -= index.numel()


def unmasked_weight(module: nn.Module) -> torch.Tensor:
    """module.weight without evaluating a PruneMask: under a PruneMask alone, the parametrization's
    original (not original * mask), else the weight itself. Pruned entries differ, so callers must
    read only the kept ones (the pruning rules and the weight-sharing clustering do); evaluating the
    product would be one more full-size copy of the largest layer."""
    if parametrize.is_parametrized(module, "weight"):
        chain = module.parametrizations["weight"]
        if len(chain) == 1 and isinstance(chain[0], PruneMask):
            return chain.original.detach()
    return module.weight.detach()


def prune_step(
    layers: Mapping[str, tuple[nn.Module, LayerPlan]], dense_std: Mapping[str, float], step: int, steps: int
) -> dict[str, float]:
    """Apply step `step` (1-based) of `steps` to every pruned layer; returns each layer's density."""
    fraction = ramp(step, steps)
    masks: dict[str, torch.Tensor] = {}
    pooled: list[str] = []
    with torch.no_grad():
        for name, (module, plan) in layers.items():
            source = unmasked_weight(module)
            alive = current_mask(module)
            alive = torch.ones_like(source, dtype=torch.bool) if alive is None else alive
            if plan.prune == "sparsity":
                flat_source = source.reshape(-1)
                masks[name] = keep_largest(
                    source.abs(),
                    alive,
                    round(plan.sparsity * fraction * source.numel()),
                    reread=lambda a, b, s=flat_source: s[a:b].abs(),
                )
            elif plan.prune == "threshold":
                masks[name] = alive & (source.abs() >= plan.threshold * fraction)
            elif plan.prune == "quality":
                masks[name] = alive & (source.abs() >= plan.quality * dense_std[name] * fraction)
            elif plan.prune == "global":
                pooled.append(name)
            else:
                raise CompressError(f"layer {name}: unknown pruning rule {plan.prune!r}")
        if pooled:
            masks.update(_global_masks({n: layers[n] for n in pooled}, fraction))
        for name, mask in masks.items():
            module = layers[name][0]
            old = current_mask(module)
            set_mask(module, mask if old is None else mask & old)
    return {name: float(current_mask(layers[name][0]).float().mean()) for name in masks}


def _global_masks(layers: Mapping[str, tuple[nn.Module, LayerPlan]], fraction: float) -> dict[str, torch.Tensor]:
    targets = {plan.sparsity for _, plan in layers.values()}
    if len(targets) != 1:
        raise CompressError(
            f"global pruning: layers {sorted(layers)} ask for different sparsities {sorted(targets)}; "
            "set one 'sparsity' for all layers pruned with 'global'"
        )
    sparsity = targets.pop()
    magnitudes, alives, sizes = [], [], []
    for module, _ in layers.values():
        weight = module.weight.detach()
        alive = current_mask(module)
        magnitudes.append(weight.abs().flatten())
        alives.append((torch.ones_like(weight, dtype=torch.bool) if alive is None else alive).flatten())
        sizes.append(weight.numel())
    keep = keep_largest(torch.cat(magnitudes), torch.cat(alives), round(sparsity * fraction * sum(sizes)))
    parts = torch.split(keep, sizes)
    return {name: part.reshape(module.weight.shape) for (name, (module, _)), part in zip(layers.items(), parts)}
