"""Pruning rules, masks as parametrizations, iterative schedule."""

import pytest
import torch
from torch import nn

from dcz.compressor import CompressConfig, CompressError
from dcz.compressor.prune import current_mask, prune_step, ramp

torch.set_num_threads(1)  # tiny models: extra threads only contend on the shared CI cores


def _layers(config_dict, *modules):
    config = CompressConfig.from_dict(config_dict)
    return {f"m{i}.weight": (m, config.for_layer(f"m{i}.weight", type(m).__name__)) for i, m in enumerate(modules)}


def _linear(values):
    layer = nn.Linear(values.shape[1], values.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(values)
    return layer


def test_sparsity_prunes_exactly_the_smallest_fraction():
    layer = _linear(torch.arange(1.0, 21.0).reshape(4, 5) * torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0]))
    layers = _layers({"global": {"prune": "sparsity", "sparsity": 0.25}}, layer)
    prune_step(layers, {}, 1, 1)
    mask = current_mask(layer)
    assert int(mask.sum()) == 15 and not mask.flatten()[:5].any()
    assert torch.count_nonzero(layer.weight) == 15


def test_threshold_and_quality_rules():
    values = torch.tensor([[0.1, -0.2, 0.3, -0.4], [0.5, -0.6, 0.7, -0.8]])
    threshold = _linear(values)
    prune_step(_layers({"global": {"prune": "threshold", "threshold": 0.35}}, threshold), {}, 1, 1)
    assert current_mask(threshold).tolist() == [[False, False, False, True], [True, True, True, True]]
    quality = _linear(values)
    std = float(values.std())
    prune_step(_layers({"global": {"prune": "quality", "quality": 1.0}}, quality), {"m0.weight": std}, 1, 1)
    assert torch.equal(current_mask(quality), values.abs() >= std)


def test_global_uses_one_threshold_across_layers():
    big, small = _linear(torch.full((2, 4), 1.0)), _linear(torch.full((2, 4), 0.01))
    prune_step(_layers({"global": {"prune": "global", "sparsity": 0.5}}, big, small), {}, 1, 1)
    assert current_mask(big).all() and not current_mask(small).any()


def test_global_layers_must_agree_on_sparsity():
    a, b = _linear(torch.ones(2, 2)), _linear(torch.ones(2, 2))
    layers = _layers(
        {"global": {"prune": "global", "sparsity": 0.5}, "by_name": {"m1.weight": {"sparsity": 0.2}}}, a, b
    )
    with pytest.raises(CompressError, match="different sparsities"):
        prune_step(layers, {}, 1, 1)


def test_pruned_weights_get_no_gradient_and_stay_zero():
    torch.manual_seed(0)
    layer = nn.Linear(10, 6)
    layers = _layers({"global": {"prune": "sparsity", "sparsity": 0.5}}, layer)
    prune_step(layers, {}, 1, 1)
    mask = current_mask(layer)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        layer(torch.randn(8, 10)).pow(2).sum().backward()
        original = layer.parametrizations.weight.original
        assert torch.all(original.grad[~mask] == 0)
        optimizer.step()
    assert torch.all(layer.weight[~mask] == 0) and torch.all(layer.weight[mask] != 0)


def test_iterative_schedule_reaches_target_and_masks_only_shrink():
    torch.manual_seed(0)
    layer = nn.Linear(50, 40)
    layers = _layers({"global": {"prune": "sparsity", "sparsity": 0.9}}, layer)
    previous = torch.ones(40, 50, dtype=torch.bool)
    densities = []
    for step in range(1, 4):
        densities.append(prune_step(layers, {}, step, 3)["m0.weight"])
        mask = current_mask(layer)
        assert not (mask & ~previous).any()
        previous = mask.clone()
        with torch.no_grad():  # training moves survivors; pruned ones must stay pruned anyway
            layer.parametrizations.weight.original.add_(torch.randn(40, 50) * 0.1)
    assert densities[0] > densities[1] > densities[2] == pytest.approx(0.1)
    assert ramp(0, 3) == 0 and ramp(3, 3) == 1
