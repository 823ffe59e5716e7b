"""Training-time pruning: gradual magnitude pruning and dynamic network surgery, batch by batch.

The classic rules of compressor.prune act between fine-tuning rounds; these act inside them (the
pipeline calls `ScheduledPruning.after_batch` after every optimizer step), which is what reaching
1-2% density without losing accuracy takes: Zhu & Gupta's long cubic schedule (gmp), or Guo et
al.'s surgery whose masks can revive weights that grow back (dns). Settings and defaults:
compressor.prune_settings. Both reuse compressor.prune's PruneMask parametrization, so sharing
and export see an ordinary pruned layer once the schedule has finished.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from dcz.compressor.config import CompressConfig, LayerPlan
from dcz.compressor.errors import CompressError
from dcz.compressor.prune import PruneMask, current_mask, keep_largest, ramp, set_mask, unmasked_weight

METHODS = ("gmp", "dns")


class SpliceMask(PruneMask):
    """`original * mask` whose gradient reaches every weight (straight-through), as in dynamic network
    surgery: cut weights keep learning and are spliced back when they grow. `frozen` makes it an
    ordinary PruneMask (pruned weights get no gradient)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__(mask)
        self.frozen = False

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        if self.frozen or not torch.is_grad_enabled():
            return original * self.mask
        return original + (original * self.mask - original).detach()


def keep_exactly(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask keeping the largest |w|, pruning round(sparsity * n) (ties pruned first in position order)."""
    n_prune = round(sparsity * weight.numel())
    return keep_largest(weight.abs().clone(), torch.ones_like(weight, dtype=torch.bool), n_prune)


def magnitude_at(weight: torch.Tensor, sparsity: float) -> float:
    """The magnitude below which `sparsity` of the weights lie (0 when nothing is pruned)."""
    k = round(sparsity * weight.numel())
    if k <= 0:
        return 0.0
    return float(weight.abs().flatten().kthvalue(k).values)


class ScheduledPruning:
    """Drives the gmp / dns layers over `total_batches` optimizer steps."""

    def __init__(
        self, layers: Mapping[str, tuple[nn.Module, LayerPlan]], config: CompressConfig, total_batches: int, seed: int
    ) -> None:
        self.layers = dict(layers)
        self.config = config
        self.total = max(1, total_batches)
        self.batch = 0
        self.finished = False
        self.generator = torch.Generator().manual_seed(seed)  # dns update draws: reproducible
        for module, plan in self.layers.values():
            if plan.prune == "dns":
                weight = unmasked_weight(module)
                if current_mask(module) is not None:
                    raise CompressError(f"prune 'dns': layer {plan.name} already has a mask")
                # unsafe: skip torch's check evaluation (SpliceMask keeps shape and dtype)
                parametrize.register_parametrization(
                    module, "weight", SpliceMask(torch.ones_like(weight, dtype=torch.bool)), unsafe=True
                )

    def settled_at(self) -> float:
        """The fraction of the schedule after which no mask changes (dns freeze, gmp end)."""
        methods = {plan.prune for _, plan in self.layers.values()}
        return max(
            self.config.dns.freeze if "dns" in methods else 0.0, self.config.gmp.end if "gmp" in methods else 0.0
        )

    def held_share(self, step: int, steps: int) -> float:
        """The share of prune step `step` (1-based, of `steps` equal steps) before the masks settle."""
        return min(1.0, max(0.0, self.settled_at() * steps - (step - 1)))

    def progress(self) -> float:
        return min(1.0, self.batch / self.total)

    def after_batch(self) -> None:
        """One optimizer step has been taken: update the masks due at this step."""
        if self.finished:
            return
        self.batch += 1
        done = self.progress()
        gmp, dns = self.config.gmp, self.config.dns
        draw = float(torch.rand((), generator=self.generator))  # one draw per batch whatever the layers
        splice = draw < (1.0 + dns.gamma * self.batch) ** -dns.power
        with torch.no_grad():
            for module, plan in self.layers.values():
                if plan.prune == "gmp" and (self.batch % gmp.every == 0 or done >= gmp.end):
                    self._gmp_step(module, plan, _fraction(done, gmp.start, gmp.end))
                elif plan.prune == "dns" and done < dns.freeze and splice:
                    self._dns_step(module, plan, _fraction(done, 0.0, dns.end))
        if done >= max(dns.freeze, gmp.end):
            self.finish()

    def finish(self) -> dict[str, float]:
        """Every layer at exactly its target; dns masks frozen. Returns each layer's density."""
        with torch.no_grad():
            for module, plan in self.layers.values():
                mask = current_mask(module)
                if plan.prune == "dns":
                    if not _splice(module).frozen:
                        mask.copy_(keep_exactly(unmasked_weight(module), plan.sparsity))
                        _freeze(module)
                elif mask is None or float(mask.float().mean()) > 1.0 - plan.sparsity + 0.5 / mask.numel():
                    self._gmp_step(module, plan, 1.0)
        self.finished = True
        return {name: float(current_mask(m).float().mean()) for name, (m, _) in self.layers.items()}

    @staticmethod
    def _gmp_step(module: nn.Module, plan: LayerPlan, fraction: float) -> None:
        source = unmasked_weight(module)
        alive = current_mask(module)
        alive = torch.ones_like(source, dtype=torch.bool) if alive is None else alive
        mask = keep_largest(source.abs().clone(), alive, round(plan.sparsity * fraction * source.numel()))
        set_mask(module, mask & alive)
        # masks only shrink; zero the pruned originals so Adam's momentum cannot move them back
        module.parametrizations["weight"].original.mul_(current_mask(module))

    def _dns_step(self, module: nn.Module, plan: LayerPlan, fraction: float) -> None:
        weight = unmasked_weight(module)
        t = magnitude_at(weight, plan.sparsity * fraction)
        if t == 0.0:
            return
        h = self.config.dns.hysteresis
        magnitude, mask = weight.abs(), current_mask(module)
        # cut below t(1-h), splice back above t(1+h), in between keep: masks do not flicker at t
        mask.copy_(torch.where(magnitude < t * (1.0 - h), False, torch.where(magnitude > t * (1.0 + h), True, mask)))


def _fraction(done: float, start: float, end: float) -> float:
    """The cubic ramp's share of the target reached at `done` (0 before start, 1 after end)."""
    if done <= start:
        return 0.0
    if done >= end:
        return 1.0
    return ramp(round((done - start) * 1_000_000), round((end - start) * 1_000_000))


def _splice(module: nn.Module) -> SpliceMask:
    return next(p for p in module.parametrizations["weight"] if isinstance(p, SpliceMask))


def _freeze(module: nn.Module) -> None:
    _splice(module).frozen = True


def check_trainable(layers: Mapping[str, tuple[nn.Module, LayerPlan]], train_loader, config: CompressConfig) -> int:
    """Batches of the pruning schedule; a one-line error when the methods cannot run."""
    names = sorted(n for n, (_, p) in layers.items() if p.prune in METHODS)
    if not names:
        return 0
    if train_loader is None or config.prune_epochs == 0:
        raise CompressError(
            f"prune 'gmp'/'dns' (layers {', '.join(names)}) prune while training: pass a train loader and prune_epochs >= 1"
        )
    try:
        per_epoch = len(train_loader)
    except TypeError:
        raise CompressError("prune 'gmp'/'dns': the train loader must have a len() to plan the schedule") from None
    return per_epoch * config.prune_epochs * config.prune_steps
