"""Your own training loop: dcz.Pruner / dcz.Palettizer driven by a user-written loop on scikit-learn digits.

The pruned (and shared) model must reach its target sparsity, stay near the dense accuracy, and write a
.dcz whose runtime outputs (ONNX Runtime and NumPy) match the torch model's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn.utils import parametrize

import dcz
from dcz.compressor.errors import CompressError

SPARSITY = 0.8


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = torch.from_numpy((x[order] / 16.0).astype(np.float32)), torch.from_numpy(y[order]).long()
    return x[:1400], y[:1400], x[1400:], y[1400:]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def _train_one_epoch(model, optimizer, x, y, seed: int) -> None:
    """The user's own loop: nothing DCZ-specific in it."""
    model.train()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    for start in range(0, len(x), 64):
        batch = order[start : start + 64]
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
        optimizer.step()
    model.eval()


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return 100.0 * float((model(x).argmax(1) == y).float().mean())


@pytest.fixture(scope="module")
def dense(digits):
    x, y, xt, yt = digits
    model = _net()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(8):
        _train_one_epoch(model, optimizer, x, y, epoch)
    return model, _accuracy(model, xt, yt)


def _pruned(dense_model, digits, config):
    x, y, _, _ = digits
    pruner = dcz.Pruner(dense_model, config)
    model = pruner.prepare()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    densities = []
    for epoch in range(config["prune_steps"] + 3):  # three epochs past the schedule: masks stay
        _train_one_epoch(model, optimizer, x, y, 100 + epoch)
        densities.append(pruner.step())
    return pruner, model, densities


def _check_file(result, path, xt):
    result.save(path)
    with torch.no_grad():
        expected = result.model(xt).numpy()
    for backend in ("ort", "numpy"):
        (got,) = dcz.load(path, backend=backend).run(xt.numpy())
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_pruner_reaches_the_target_in_a_user_loop(dense, digits, tmp_path):
    dense_model, dense_accuracy = dense
    x, y, xt, yt = digits
    before = {k: v.clone() for k, v in dense_model.state_dict().items()}
    config = {"global": {"prune": "sparsity", "sparsity": SPARSITY}, "prune_steps": 3}
    pruner, model, densities = _pruned(dense_model, digits, config)
    # the cubic schedule: density falls step by step, then holds at the target
    firsts = [d["0.weight"] for d in densities]
    assert firsts[0] > firsts[1] > firsts[2] == firsts[3] == firsts[4] == firsts[5]
    for name, density in pruner.density().items():
        assert density == pytest.approx(1 - SPARSITY, abs=1e-3), name
    result = pruner.finalize(xt[:1])
    assert not any(parametrize.is_parametrized(m) for m in result.model.modules())
    for name in ("0.weight", "2.weight", "4.weight"):
        weight = result.model.get_parameter(name)
        assert float((weight == 0).float().mean()) == pytest.approx(SPARSITY, abs=1e-3)
        assert result.layers[name].pruned and not result.layers[name].shared
    accuracy = _accuracy(result.model, xt, yt)
    assert accuracy >= dense_accuracy - 2.0, (accuracy, dense_accuracy)
    assert all(torch.equal(v, dense_model.state_dict()[k]) for k, v in before.items())  # the user's model untouched
    _check_file(result, tmp_path / "pruned.dcz", xt)
    with dcz.open(tmp_path / "pruned.dcz") as f:
        assert f.info("0.weight").encoding == "sparse"


def test_palettizer_trains_centroids_after_the_pruner(dense, digits, tmp_path):
    dense_model, dense_accuracy = dense
    x, y, xt, yt = digits
    config = {"global": {"prune": "sparsity", "sparsity": SPARSITY, "bits": 4}, "prune_steps": 3}
    _, pruned_model, _ = _pruned(dense_model, digits, config)
    palettizer = dcz.Palettizer(pruned_model, config)
    model = palettizer.prepare()
    assert palettizer.bits() == {"0.weight": 4, "2.weight": 4, "4.weight": 4}
    trainable = [p for p in model.parameters() if p.requires_grad]
    centroids = [p for n, p in model.named_parameters() if n.endswith("centroids")]
    assert {id(p) for p in centroids} <= {id(p) for p in trainable} and len(centroids) == 3
    start = [c.detach().clone() for c in centroids]
    optimizer = torch.optim.Adam(trainable, lr=1e-3)
    for epoch in range(2):
        _train_one_epoch(model, optimizer, x, y, 200 + epoch)
    assert all(not torch.equal(a, b) for a, b in zip(start, centroids))  # the loop trained them
    result = palettizer.finalize(xt[:1])
    for name in ("0.weight", "2.weight", "4.weight"):
        weight = result.model.get_parameter(name).detach()
        assert float((weight == 0).float().mean()) == pytest.approx(SPARSITY, abs=1e-3)  # masks kept
        assert len(torch.unique(weight[weight != 0])) <= 16
        assert result.layers[name].pruned and result.layers[name].shared
    accuracy = _accuracy(result.model, xt, yt)
    assert accuracy >= dense_accuracy - 3.0, (accuracy, dense_accuracy)
    _check_file(result, tmp_path / "shared.dcz", xt)
    with dcz.open(tmp_path / "shared.dcz") as f:
        assert f.info("0.weight").encoding == "sparse_shared"


def test_lifecycle_errors_are_one_line(dense):
    model, _ = dense
    pruner = dcz.Pruner(model, {"global": {"prune": "sparsity", "sparsity": 0.5}})
    with pytest.raises(CompressError, match=r"Pruner.step\(\): call prepare\(\) first"):
        pruner.step()
    pruner.prepare()
    with pytest.raises(CompressError, match="already called"):
        pruner.prepare()
    pruner.finalize(torch.zeros(1, 64))
    with pytest.raises(CompressError, match="already finalized"):
        pruner.step()
    with pytest.raises(CompressError, match="prunes no layer"):
        dcz.Pruner(model, {}).prepare()
    with pytest.raises(CompressError, match="prune 'gmp' runs inside compress"):
        dcz.Pruner(model, {"global": {"prune": "gmp", "sparsity": 0.5}}).prepare()
    with pytest.raises(CompressError, match="must be a torch.nn.Module"):
        dcz.Palettizer("model.onnx")


def test_pruner_inplace_keeps_the_optimizer_s_parameters(dense, digits):
    """prepare(inplace=True) parametrizes the given model: an optimizer made before still trains it."""
    import copy

    model = copy.deepcopy(dense[0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = dcz.Pruner(model, {"global": {"prune": "sparsity", "sparsity": 0.5}})
    assert pruner.prepare(inplace=True) is model
    pruner.step()
    x, y, _, _ = digits
    _train_one_epoch(model, optimizer, x, y, 7)
    assert pruner.density()["0.weight"] == pytest.approx(0.5, abs=1e-3)
    weight = pruner.finalize(x[:1]).model.get_parameter("0.weight")
    assert float((weight == 0).float().mean()) == pytest.approx(0.5, abs=1e-3)


def test_a_second_pruner_keeps_the_first_one_s_masks(dense):
    first = dcz.Pruner(dense[0], {"global": {"prune": "sparsity", "sparsity": 0.5}})
    model = first.prepare()
    first.step()
    pruned_first = ~model.get_submodule("0").parametrizations["weight"][0].mask.clone()
    second = dcz.Pruner(model, {"global": {"prune": "sparsity", "sparsity": 0.7}})
    second.prepare(inplace=True)
    assert second.density()["0.weight"] == pytest.approx(0.5, abs=1e-3)  # prepare did not reset the masks
    second.step()
    mask = model.get_submodule("0").parametrizations["weight"][0].mask
    assert second.density()["0.weight"] == pytest.approx(0.3, abs=1e-3)
    assert not (mask & pruned_first).any()  # masks only shrink
