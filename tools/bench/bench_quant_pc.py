"""Per-channel int8 rows and an interleaved batch-256 timing on the digits CNN of bench_quant.

Per-channel grids are stored as int8 tensors behind DequantizeLinear(axis 0) (compressor/onnx_qdq_graph):
bytes and held-out accuracy next to ONNX Runtime's quantize_static (per tensor and per channel).
Timing: every round runs each model once (5 calls of batch 256, ORT, one thread), the order rotated
round by round, so load changes hit all models alike; per-round ratios against the float model of the
same round give a median and a spread (this machine is shared and noisy).

    python -m tools.bench.bench_quant_pc --rounds 41 --mnist /work/shared/data/mnist
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import dcz
from tools.bench import bench_quant as bq

MODES = [
    ("dcz int8 + PTQ entropy", {"quantize": "int8"}, "entropy"),
    ("dcz int8 per-channel + PTQ entropy", {"quantize": "int8", "per_channel": True}, "entropy"),
    (
        "dcz int8 per-channel + PTQ entropy + 50% pruned",
        {"quantize": "int8", "per_channel": True, "prune": "sparsity", "sparsity": 0.5},
        "entropy",
    ),
    ("dcz int8 per-channel weight-only", {"quantize": "int8", "per_channel": True}, None),
    ("dcz int4 per-channel weight-only", {"quantize": "int4", "per_channel": True}, None),
]
TIMED = ["float32 ONNX (ORT)", "ORT quantize_static QDQ entropy", "dcz int8 + PTQ entropy", MODES[1][0]]


def accuracy(run, x, y) -> float:
    preds = np.concatenate([run(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
    return 100.0 * float(np.mean(preds == y))


def interleaved(runners: dict, names: list[str], batch: np.ndarray, rounds: int) -> dict[str, np.ndarray]:
    """ms per batch of each model, one entry per round; the order rotates so no model always runs first."""
    for name in names:
        runners[name](batch)
    times = {name: [] for name in names}
    for k in range(rounds):
        for name in names[k % len(names) :] + names[: k % len(names)]:
            start = time.perf_counter()
            for _ in range(5):
                runners[name](batch)
            times[name].append((time.perf_counter() - start) / 5 * 1000)
    return {name: np.array(t) for name, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--mnist", type=Path, default=bq.MNIST)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    x_train, y_train = bq.load_mnist_5k()
    x_test, y_test = bq.load_mnist_idx(args.mnist, "t10k")
    calib = x_train[:1000]
    net = bq.train(x_train, y_train, args.epochs)
    runners, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        float_path = os.path.join(tmp, "float.onnx")
        Path(float_path).write_bytes(bq.to_onnx(net))
        calib_npz = os.path.join(tmp, "calib.npz")
        np.savez(calib_npz, x=calib)
        runners[TIMED[0]] = bq.ort_runner(float_path)
        rows.append((TIMED[0], os.path.getsize(float_path), accuracy(runners[TIMED[0]], x_test, y_test), ""))
        for per_channel in (False, True):
            label = TIMED[1] + (" per-channel" if per_channel else "")
            dst = os.path.join(tmp, f"ort_{per_channel}.onnx")
            bq.ort_static(float_path, dst, calib, "entropy", per_channel=per_channel)
            runners[label] = bq.ort_runner(dst)
            rows.append((label, os.path.getsize(dst), accuracy(runners[label], x_test, y_test), ""))
        for label, config, method in MODES:
            out = os.path.join(tmp, f"{len(rows)}.dcz")
            options = {} if method is None else {"calib": calib_npz, "calib_method": method}
            dcz.compress(float_path, config={"global": config}, out=out, **options)
            runners[label] = bq.dcz_runner(out)
            note = ""
            if "per-channel + PTQ" in label:
                note = f"NumPy backend {accuracy(bq.dcz_runner(out, 'numpy'), x_test, y_test):.2f}%"
            rows.append((label, os.path.getsize(out), accuracy(runners[label], x_test, y_test), note))
        times = interleaved(runners, TIMED, x_test[:256], args.rounds)
    print_tables(rows, times, args.rounds)
    return 0


def print_tables(rows, times, rounds) -> None:
    ort_bytes, float_acc = rows[1][1], rows[0][2]
    print("| mode | bytes | vs ORT static entropy | accuracy % | delta pp | note |\n|---|---:|---:|---:|---:|---|")
    for label, size, acc, note in rows:
        print(f"| {label} | {size:,} | {size / ort_bytes:.2f}x | {acc:.2f} | {acc - float_acc:+.2f} | {note} |")
    base = times[TIMED[0]]
    print(f"\n| model | median ms | ratio vs float: median | IQR | min-max | ({rounds} rounds) |")
    print("|---|---:|---:|---:|---:|---|")
    for name, t in times.items():
        ratio = t / base
        q1, med, q3 = np.percentile(ratio, [25, 50, 75])
        print(
            f"| {name} | {np.median(t):.2f} | {med:.3f} | {q1:.3f}-{q3:.3f} | {ratio.min():.3f}-{ratio.max():.3f} | |"
        )
    print(f"\nload average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    raise SystemExit(main())
