"""Training-time pruning: gradual magnitude pruning (gmp) and dynamic network surgery (dns)."""

import pytest
import torch
from torch import nn

from dcz.compressor import CompressConfig, CompressError, compress
from dcz.compressor.finetune import accuracy
from dcz.compressor.prune import current_mask
from dcz.compressor.prune_methods import ScheduledPruning, SpliceMask

torch.set_num_threads(1)


def _plans(config, *modules):
    return {f"m{i}.weight": (m, config.for_layer(f"m{i}.weight", "Linear")) for i, m in enumerate(modules)}


def _task(seed=0, n=512):
    """4 classes decided by 3 of the 32 inputs: pruning must find and keep those."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 32, generator=g)
    y = 2 * (x[:, 0] > 0).long() + (x[:, 1] + x[:, 2] > 0).long()
    return x, y


class Batches:
    def __init__(self, x, y, size=32):
        self.x, self.y, self.size = x, y, size

    def __len__(self):
        return (len(self.x) + self.size - 1) // self.size

    def __iter__(self):
        for i in range(0, len(self.x), self.size):
            yield self.x[i : i + self.size], self.y[i : i + self.size]


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))


def _trained():
    model, (x, y) = _mlp(), _task()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        for xb, yb in Batches(x, y):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    return model


@pytest.mark.parametrize("method", ["gmp", "dns"])
def test_methods_reach_each_layers_target_and_keep_accuracy(method):
    model, (x, y) = _trained(), _task()
    xt, yt = _task(seed=1)
    dense = accuracy(model, xt, yt)
    config = {
        "global": {"prune": method, "sparsity": 0.9, "share": False},
        "by_name": {"2.weight": {"sparsity": 0.7}},
        "prune_steps": 1,
        "prune_epochs": 12,
        "lr": 3e-3,
    }
    result = compress(model, x[:1], config, train_loader=Batches(x, y), progress=False)
    kept = {n: float(s.mask.mean()) for n, s in result.layers.items()}
    assert kept == {"0.weight": pytest.approx(0.1, abs=1e-3), "2.weight": pytest.approx(0.3, abs=1e-3)}
    # 90% of the first layer gone: the 4 informative inputs must have survived for this to hold
    assert accuracy(result.model, xt, yt) >= dense - 1.0
    assert accuracy(result.model, xt, yt) > 90.0


def test_same_seed_same_masks():
    x, y = _task()
    config = {"global": {"prune": "dns", "sparsity": 0.8, "share": False}, "prune_epochs": 3, "seed": 3}
    runs = [compress(_trained(), x[:1], config, train_loader=Batches(x, y), progress=False) for _ in range(2)]
    for name, state in runs[0].layers.items():
        assert (state.mask == runs[1].layers[name].mask).all()


def test_gmp_masks_only_shrink_along_the_schedule():
    layer = nn.Linear(20, 20)
    config = CompressConfig.from_dict({"global": {"prune": "gmp", "sparsity": 0.9}, "gmp": {"every": 2, "end": 0.5}})
    schedule = ScheduledPruning(_plans(config, layer), config, total_batches=20, seed=0)
    previous, densities = torch.ones(20, 20, dtype=torch.bool), []
    for _ in range(20):
        with torch.no_grad():
            layer.parametrizations.weight.original.add_(torch.randn(20, 20)) if current_mask(
                layer
            ) is not None else None
        schedule.after_batch()
        mask = current_mask(layer)
        if mask is not None:
            assert not (mask & ~previous).any()
            previous = mask.clone()
            densities.append(float(mask.float().mean()))
    assert densities[-1] == pytest.approx(0.1) and densities[0] > 0.5 and schedule.finished


def test_dns_revives_grown_weights_and_hysteresis_keeps_the_middle():
    layer = nn.Linear(10, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1.0, 11.0).reshape(1, 10))
    config = CompressConfig.from_dict(
        {"global": {"prune": "dns", "sparsity": 0.5}, "dns": {"gamma": 0.0, "end": 0.0, "freeze": 1.0}}
    )
    schedule = ScheduledPruning(_plans(config, layer), config, total_batches=100, seed=0)
    schedule.after_batch()  # threshold t = 5 (5 of 10 below or at it): cut < 4.5, revive > 5.5
    assert current_mask(layer).flatten().tolist() == [False] * 4 + [True] * 6  # 5.0 is in the band: kept
    original = layer.parametrizations.weight.original
    with torch.no_grad():
        original[0, 0] = 20.0  # a cut weight grew back (it kept learning under the mask)
        original[0, 9] = 0.1
    schedule.after_batch()
    mask = current_mask(layer).flatten().tolist()
    assert mask[0] and not mask[9]
    # straight-through: a cut weight still gets a gradient, the output reads it as zero
    original.grad = None
    layer.train()
    out = layer(torch.ones(1, 10))
    out.sum().backward()
    assert original.grad[0, 9] != 0
    assert float(out.detach()) == pytest.approx(float((original.detach() * current_mask(layer)).sum()))
    assert isinstance(layer.parametrizations.weight[0], SpliceMask)
    assert schedule.finish()["m0.weight"] == pytest.approx(0.5)
    assert layer.parametrizations.weight[0].frozen


def test_config_keys_are_strict_and_round_trip():
    config = CompressConfig.from_dict({"global": {"prune": "dns"}, "dns": {"hysteresis": 0.2}, "gmp": {"every": 4}})
    assert CompressConfig.from_dict(config.to_dict()) == config
    assert "dns" not in CompressConfig.from_dict({}).to_dict()  # defaults stay out of the file's metadata
    with pytest.raises(CompressError, match=r"config.dns: unknown key 'hysterisis'"):
        CompressConfig.from_dict({"dns": {"hysterisis": 0.2}})
    with pytest.raises(CompressError, match=r"config.gmp.end"):
        CompressConfig.from_dict({"gmp": {"start": 0.5, "end": 0.2}})


def test_methods_need_training():
    x, _ = _task()
    with pytest.raises(CompressError, match="train loader and prune_epochs >= 1"):
        compress(_mlp(), x[:1], {"global": {"prune": "gmp", "sparsity": 0.5}}, progress=False)


def test_anneal_decays_the_rate_only_after_the_dns_masks_freeze():
    x, y = _task()
    rates, optimizers = [], []

    def factory(params, lr):
        optimizers.append(torch.optim.Adam(params, lr=lr))
        return optimizers[-1]

    class Recording(Batches):
        def __iter__(self):
            for batch in super().__iter__():
                if optimizers:
                    rates.append(optimizers[-1].param_groups[0]["lr"])
                yield batch

    config = {
        "global": {"prune": "dns", "sparsity": 0.8, "share": False},
        "dns": {"end": 0.5, "freeze": 0.75},
        "prune_epochs": 4,
        "lr": 1e-2,
        "lr_schedule": "anneal",
    }
    compress(_trained(), x[:1], config, train_loader=Recording(x, y), optimizer_factory=factory, progress=False)
    per_epoch = len(Batches(x, y))
    frozen = 3 * per_epoch  # freeze at 0.75 of 4 epochs
    assert rates[:frozen] == [1e-2] * frozen  # rate read before each batch: constant up to the freeze
    assert all(a > b for a, b in zip(rates[frozen:], rates[frozen + 1 :])) and rates[-1] < 1e-3
