"""Your own training loop: prepare / step / finalize, beside the one-call `compress()`.

For programs that own their training loop (their optimizer, scheduler, data, logging), as
coremltools' `MagnitudePruner` / `DKMPalettizer` and torch.ao.pruning's sparsifiers offer it. The
same PruneMask and SharedWeight parametrizations and the same `CompressConfig` as `compress()`::

    pruner = Pruner(model, config)              # config: CompressConfig or dict, prune_steps = schedule length
    model = pruner.prepare()                    # a copy with a mask on every layer the config prunes
    optimizer = torch.optim.Adam(model.parameters())
    for epoch in range(epochs):
        train_one_epoch(model, optimizer)       # yours
        pruner.step()                           # next step of the cubic schedule: masks shrink
    palettizer = Palettizer(model, config)      # optional: weight sharing on the pruned model
    model = palettizer.prepare()                # k-means codebooks; centroids are the trainable Parameters
    optimizer = torch.optim.Adam(p for p in model.parameters() if p.requires_grad)
    train_one_epoch(model, optimizer)           # trains the centroids (the paper's trained quantization)
    result = palettizer.finalize(example_input) # or pruner.finalize(...) without weight sharing
    result.save("model.dcz")                    # the Compressed that compress() returns

`finalize` bakes masks and codebooks into plain weights (no parametrizations left: `result.model`
is an ordinary module computing exactly what the `.dcz` stores) and records each layer's
LayerState. Hand a pruned model to a Palettizer before finalizing the Pruner: the Palettizer keeps
the masks (pruned weights stay exactly zero and are stored sparse); a finalized model's zeros
would be clustered like any other weight.

This module imports torch only inside its methods, so that `dcz.Pruner` / `dcz.Palettizer` (and
`from dcz import *`) cost no torch import until a program builds one.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from dcz.compressor.config import CompressConfig, LayerPlan, as_config
from dcz.compressor.errors import CompressError
from dcz.compressor.result import Compressed

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    Layers = dict[str, tuple[nn.Module, LayerPlan]]


class _Stage:
    """What Pruner and Palettizer share: the model, its layers by the config, and the lifecycle."""

    def __init__(self, model: nn.Module, config: CompressConfig | dict | None = None) -> None:
        from torch import nn

        if not isinstance(model, nn.Module):
            raise CompressError(f"model: must be a torch.nn.Module, got {type(model).__name__}")
        self.config = as_config(config)
        self._given = model
        self.model: nn.Module | None = None
        self.layers: Layers = {}  # the layers this stage acts on
        self.skipped: dict[str, str] = {}  # weights kept raw whatever happens, with the reason
        self._found: Layers = {}  # every compressible layer (a Pruner's masks survive a Palettizer)
        self._reasons: dict[str, str] = {}  # why a found layer ends up neither pruned nor shared
        self._finalized = False

    def prepare(self, inplace: bool = False) -> nn.Module:
        """Attach the parametrizations; returns the model to train (a copy unless `inplace`)."""
        if self.model is not None:
            raise CompressError(f"{type(self).__name__}.prepare() was already called")
        from dcz.compressor.pipeline import find_layers

        model = self._given if inplace else copy.deepcopy(self._given)
        self._found, self.skipped = find_layers(model, self.config)
        self.layers = {name: lp for name, lp in self._found.items() if self._wants(lp[1])}
        self._attach(model)
        self.model = model
        return model

    def finalize(self, example_input: Any) -> Compressed:
        """Bake into plain weights and remove the parametrizations; returns the Compressed to `.save()`.

        example_input: a tensor (or tuple) the model runs on, for the ONNX export at `.save()`.
        """
        from dcz.compressor.pipeline import collect_states

        model = self._prepared("finalize")
        model.eval()
        states, skipped = collect_states(self._found, self._reasons, dict(self.skipped))
        for module in model.modules():
            _bake(module)
        self._finalized = True
        return Compressed(model=model, example_input=example_input, layers=states, skipped=skipped, config=self.config)

    def _prepared(self, method: str) -> nn.Module:
        if self.model is None:
            raise CompressError(f"{type(self).__name__}.{method}(): call prepare() first")
        if self._finalized:
            raise CompressError(f"{type(self).__name__}.{method}(): already finalized")
        return self.model

    def _wants(self, plan: LayerPlan) -> bool:
        raise NotImplementedError

    def _attach(self, model: nn.Module) -> None:
        raise NotImplementedError


class Pruner(_Stage):
    """Magnitude pruning driven by your loop: `step()` advances the config's iterative schedule.

    The layers and rules come from the config as in `compress()` (prune: sparsity, threshold,
    quality or global). Each `step()` takes the cubic schedule (Zhu & Gupta) one of
    `config.prune_steps` steps closer to the targets, among the weights that survived the last
    step; calls after the last step keep the final masks. Call it every epoch or every N batches.
    """

    def __init__(self, model: nn.Module, config: CompressConfig | dict | None = None) -> None:
        super().__init__(model, config)
        self.steps_taken = 0
        self._dense_std: dict[str, float] = {}

    def _wants(self, plan: LayerPlan) -> bool:
        from dcz.compressor.prune_methods import METHODS

        if plan.prune in METHODS:
            raise CompressError(
                f"layer {plan.name}: prune {plan.prune!r} runs inside compress()'s own training; "
                "Pruner.step() runs the prune_steps schedule of the rules sparsity, threshold, quality, global"
            )
        return plan.prune != "none"

    def _attach(self, model: nn.Module) -> None:
        import torch

        from dcz.compressor.prune import current_mask, set_mask

        if not self.layers:
            raise CompressError("Pruner: the config prunes no layer of this model (set prune: sparsity, ...)")
        with torch.no_grad():
            for name, (module, _) in self.layers.items():
                self._dense_std[name] = float(module.weight.std())
                if current_mask(module) is None:  # a model pruned before keeps its masks: they only shrink
                    set_mask(module, torch.ones_like(module.weight, dtype=torch.bool))

    def step(self) -> dict[str, float]:
        """One step of the schedule; returns each pruned layer's density (fraction of weights kept)."""
        from dcz.compressor.prune import prune_step

        self._prepared("step")
        self.steps_taken += 1
        steps = self.config.prune_steps
        return prune_step(self.layers, self._dense_std, min(self.steps_taken, steps), steps)

    def density(self) -> dict[str, float]:
        """Each pruned layer's fraction of weights kept by its current mask."""
        from dcz.compressor.prune import current_mask

        self._prepared("density")
        return {name: float(current_mask(module).float().mean()) for name, (module, _) in self.layers.items()}


class Palettizer(_Stage):
    """Weight sharing (k-means codebooks, or linear grids) whose centroids your loop trains.

    `prepare()` clusters every layer the config shares (keeping a Pruner's masks) into a
    SharedWeight parametrization: labels and mask are fixed buffers, the centroids an nn.Parameter
    whose gradient sums over its cluster; the original weights are frozen. There is no schedule, so
    no `step()`: train with an optimizer over the parameters that require grad, then `finalize()`.
    """

    def _wants(self, plan: LayerPlan) -> bool:
        return plan.share

    def _attach(self, model: nn.Module) -> None:
        from dcz.compressor.share import share_layer
        from dcz.compressor.share_small import share_bias

        unshared = {}
        for index, (name, (module, plan)) in enumerate(self.layers.items()):
            if isinstance(reason := share_layer(module, plan, seed=self.config.seed + index), str):
                unshared[name] = reason
            elif self.config.bias_bits is not None:
                share_bias(module, self.config.bias_bits, seed=self.config.seed + index)
        self._reasons.update(unshared)
        self.layers = {name: lp for name, lp in self.layers.items() if name not in unshared}

    def bits(self) -> dict[str, int]:
        """Each shared layer's bits per label."""
        from dcz.compressor.share import shared_weight

        self._prepared("bits")
        return {name: shared_weight(module).bits for name, (module, _) in self.layers.items()}


def _bake(module: nn.Module) -> None:
    """Replace every parametrized tensor of `module` by its current value, as a plain tensor."""
    import torch
    from torch.nn.utils import parametrize

    if not parametrize.is_parametrized(module):
        return
    for tensor_name in list(module.parametrizations.keys()):
        with torch.no_grad():
            value = getattr(module, tensor_name).detach().clone()
        parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=False)
        getattr(module, tensor_name).data = value
