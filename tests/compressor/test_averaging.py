"""Weight averaging over the settled part of recovery (compressor.averaging, config.average)."""

import pytest
import torch
from torch import nn

from dcz.compressor import CompressConfig, CompressError, compress
from dcz.compressor.averaging import WeightAverage
from dcz.compressor.prune import current_mask
from tests.compressor.test_prune_methods import Batches, _task, _trained

torch.set_num_threads(1)


@pytest.mark.parametrize("method", ["swa", "ema"])
def test_average_of_the_steps_after_the_skipped_share(method):
    model = nn.Linear(1, 1, bias=False)
    average = WeightAverage(model, method, decay=0.5, start=0.5)
    model.weight.data.fill_(100.0)
    average.step()  # not settled: ignored
    average.settle(4)  # 4 batches left, the first 2 skipped
    for value in (7.0, 9.0, 1.0, 3.0):
        model.weight.data.fill_(value)
        average.step()
    assert average.apply()
    expected = 2.0 if method == "swa" else 0.5 * 1.0 + 0.5 * 3.0
    assert float(model.weight.detach()) == pytest.approx(expected)


def test_nothing_averaged_changes_nothing():
    model = nn.Linear(2, 2)
    before = [p.detach().clone() for p in model.parameters()]
    assert not WeightAverage(model, "swa").apply()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


CONFIG = {
    "global": {"prune": "dns", "sparsity": 0.8, "bits": 4},
    "dns": {"end": 0.5, "freeze": 0.75},
    "prune_epochs": 4,
    "share_epochs": 2,
    "lr": 1e-2,
    "average_start": 0.25,
}


@pytest.fixture(scope="module")
def trained_and_plain():
    x, y = _task()
    model = _trained()
    plain = compress(model, x[:1], CONFIG, train_loader=Batches(x, y), progress=False)
    return model, plain


def test_pipeline_averages_after_the_masks_freeze_and_keeps_them(trained_and_plain):
    model, plain = trained_and_plain
    x, y = _task()
    config = {**CONFIG, "average": "swa"}
    averaged = compress(model, x[:1], config, train_loader=Batches(x, y), progress=False)
    again = compress(model, x[:1], config, train_loader=Batches(x, y), progress=False)
    for name, state in averaged.layers.items():
        if state.mask is not None:  # the masks are the frozen ones, whatever the averaging
            assert (state.mask == plain.layers[name].mask).all()
            assert abs(state.mask.mean() - 0.2) < 0.01
        assert (state.codebook == again.layers[name].codebook).all()  # reproducible
    moved = [n for n, s in averaged.layers.items() if not (s.codebook == plain.layers[n].codebook).all()]
    assert moved  # the centroids are the average's, not the last step's


def test_averaging_config_is_strict_and_left_out_when_unset():
    assert "average" not in CompressConfig().to_dict()
    config = CompressConfig.from_dict({"average": "ema", "average_decay": 0.99, "label_smoothing": 0.1})
    assert CompressConfig.from_dict(config.to_dict()) == config
    for bad, key in (({"average": "mean"}, "config.average"), ({"average_decay": 1.0}, "config.average_decay")):
        with pytest.raises(CompressError, match=key):
            CompressConfig.from_dict(bad)


def test_label_smoothing_refuses_a_custom_loss():
    x, y = _task()
    config = {"global": {"prune": "sparsity", "sparsity": 0.5}, "prune_epochs": 1, "label_smoothing": 0.1}
    with pytest.raises(CompressError, match="label_smoothing"):
        compress(
            _trained(), x[:1], config, train_loader=Batches(x, y), loss_fn=nn.functional.cross_entropy, progress=False
        )


def test_pruned_weights_stay_zero_after_averaging():
    x, y = _task()
    config = {
        "global": {"prune": "gmp", "sparsity": 0.7, "share": False},
        "gmp": {"end": 0.5},
        "prune_epochs": 4,
        "lr": 1e-2,
        "average": "swa",
    }
    result = compress(_trained(), x[:1], config, train_loader=Batches(x, y), progress=False)
    for module in (m for m in result.model.modules() if isinstance(m, nn.Linear)):
        mask = current_mask(module)
        assert mask is not None and torch.all(module.weight[~mask] == 0)
