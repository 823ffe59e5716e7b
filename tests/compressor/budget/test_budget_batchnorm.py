"""BatchNorm statistics re-estimated on the calibration data after the allocation (budget.batchnorm):
the statistics match the compressed model's own activations, the dense ones are restored after
a measurement, and fit_budget writes them (no bytes) when given calibration data, never on noise."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from dcz.compressor.budget import BudgetConfig  # noqa: E402
from dcz.compressor.budget.batchnorm import (  # noqa: E402
    batchnorm_buffers,
    reestimate_batchnorm,
    restore_batchnorm,
)
from dcz.compressor.budget.candidates import CandidateGrid  # noqa: E402
from dcz.compressor.budget.fit import fit_budget  # noqa: E402

GRID = CandidateGrid(sparsities=(0.0, 0.8, 0.95), label_bits=(1, 2, 4), gap_bits=(3,))


def _net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(288, 10))
    x = torch.randn(200, 1, 8, 8)
    with torch.no_grad():  # running statistics of the dense model on this data
        net.train()(x)
    return net.eval(), x


def test_reestimated_statistics_are_those_of_the_activations_and_restorable():
    net, x = _net()
    saved = batchnorm_buffers(net)
    with torch.no_grad():
        net[0].weight.mul_(3.0)  # the replaced weights scale the conv output
    assert reestimate_batchnorm(net, x) == 1 and not net.training
    with torch.no_grad():
        conv = net[0](x)
    torch.testing.assert_close(net[1].running_mean, conv.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(net[1].running_var, conv.var((0, 2, 3)), rtol=1e-3, atol=1e-5)
    restore_batchnorm(net, saved)
    torch.testing.assert_close(net[1].running_mean, saved[0][0])


@pytest.mark.parametrize("batchnorm", [True, False])
def test_fit_budget_writes_reestimated_statistics_only_with_calibration_data(batchnorm):
    net, x = _net()
    dense_mean = net[1].running_mean.clone()
    config = BudgetConfig(budget_bytes=3500, candidates=GRID, uniform=False, finetune_epochs=0, batchnorm=batchnorm)
    result = fit_budget(net, x[:1], config, calib=x)
    assert result.file_bytes <= 3500
    moved = not torch.allclose(result.model[1].running_mean, dense_mean)
    assert moved == batchnorm
    if batchnorm:
        reference = copy.deepcopy(result.model)
        reestimate_batchnorm(reference, x)
        torch.testing.assert_close(result.model[1].running_mean, reference[1].running_mean)
    noise = fit_budget(net, x[:1], config)  # no calibration data: the noise stand-in never sets statistics
    np.testing.assert_array_equal(noise.model[1].running_mean.numpy(), dense_mean.numpy())
