"""`dcz compress MODEL`: prune, share weights and Huffman-code a PyTorch or ONNX model into a .dcz."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

from dcz._cli.commands._common import (
    add_command,
    budget_arg,
    existing_file,
    loss_arg,
    output_path,
    resolve_budget,
    shape_arg,
    usage_error,
)
from dcz._cli.commands.info import stage_table
from dcz._cli.errors import CliError, require

DESCRIPTION = """\
Compress a model to .dcz: prune small weights, share the survivors through a k-means codebook per
layer (n-bit labels), Huffman-code labels and relative indices. With --train DATA.npz (arrays x
and y, PyTorch models) the pruned weights and then the shared centroids are fine-tuned on your data
for --epochs each (the paper's retraining); without it, compression is post-training.

MODEL is either
  a safetensors checkpoint model.safetensors, model.safetensors.index.json (shards) or a folder:
                           a weights-only .dcz, tensor by tensor on --workers cores (or a Dask
                           cluster: --scheduler), 2-D float tensors palettized at --bits (default 4)
                           with one codebook per --group-rows rows, --outliers kept exactly
                           (0.045,embeddings.*=0.015: a fraction per tensor-name pattern);
                           --huffman-labels: entropy-coded labels;
                           --accurate: 5-bit per-tensor codebooks, Huffman labels, 0.5% outliers;
                           --bits 4,encoder.*=5: bits per tensor-name pattern (first match wins);
                           --calib MOMENTS.npz: each Linear weight's input second moment E[x x^T]
                           (one (cols, cols) array named after the tensor; made from your torch
                           model and calibration batches by dcz.compressor.linear_input_moments
                           and save_moments): labels chosen with
                           GPTQ-style error feedback and codebooks refitted by least squares on the
                           layer output (--no-error-feedback: the refit only);
                           the rest kept raw
  an .onnx file            compressed without torch (Conv / Gemm / MatMul weights), or
  package.module:factory   a function returning a torch.nn.Module; give --weights (a state dict
                           file, loaded with torch.load(weights_only=True)) and --input-shape.

Settings are resolved per layer: by name, then layer type (Linear, Conv2d, Gemm, ...) or family
(conv / fc), then global, then the defaults: bits chosen per layer to keep its weight SQNR >= 38 dB
(raw when no codebook is smaller or reaches it), gaps 8-bit conv / 5-bit fc as in the paper.
--bits and --gap-bits take one number for every layer, or KEY=N pairs where KEY is conv, fc, a layer
type or a layer name. --config takes the same settings as a TOML or JSON file:

  [global]                       # or "global": {...} in JSON
  prune = "quality"              # none | threshold | sparsity | quality | global
  quality = 1.0
  [by_type.conv]
  bits = 8
  [by_name."fc1.weight"]
  sparsity = 0.92

A setting given on the command line applies to every layer, replacing the file's values for it;
KEY=N pairs replace just those entries.

examples:
  dcz compress model.onnx --sparsity 0.9 -o model.dcz
  dcz compress model.onnx --quantize int8 --calib digits.npz --calib-method entropy -o model.dcz
  dcz compress model.onnx --calib digits.npz --max-loss 0.5 -o model.dcz     smallest file within 0.5 pp
  dcz compress model.onnx --calib sentences.npz --budget 9MB -o model.dcz   least damage in 9 MB
  dcz compress model.onnx --quantize int8 --dynamic -o model.dcz
  dcz compress dcz.demo.models:lenet5 --input-shape 1,1,28,28 --quality 0.5 -o lenet5.dcz
  dcz compress mypkg.nets:make_lenet --weights lenet.pt --input-shape 1,1,28,28 \\
      --bits conv=8,fc=5 --config layers.toml -o lenet.dcz
  dcz compress mypkg.nets:make_lenet --weights lenet.pt --input-shape 1,1,28,28 \\
      --sparsity 0.92 --train digits.npz --epochs 2 -o lenet.dcz"""


def register(subparsers, common) -> None:
    parser = add_command(
        subparsers,
        common,
        "compress",
        "compress a PyTorch or ONNX model, or a safetensors checkpoint, to .dcz",
        DESCRIPTION,
        run,
    )
    parser.add_argument(
        "model", help="model.onnx, package.module:factory for a PyTorch model, or a safetensors checkpoint"
    )
    parser.add_argument("-o", "--output", metavar="OUT.dcz", help="file to write (default: the model's name + .dcz)")
    parser.add_argument("--weights", metavar="STATE.pt", help="state dict for a PyTorch model (loaded weights-only)")
    parser.add_argument(
        "--input-shape", type=shape_arg, metavar="N,C,H,W", help="example input shape for a PyTorch model"
    )
    parser.add_argument(
        "--input-dtype",
        choices=INPUT_DTYPES,
        default="float32",
        help="example input dtype (int64 for token ids: a dynamic sequence length is exported)",
    )
    prune = parser.add_mutually_exclusive_group()
    prune.add_argument("--threshold", type=float, metavar="T", help="prune weights with |w| < T")
    prune.add_argument(
        "--sparsity", type=float, metavar="S", help="prune the fraction S (0..1) of each layer's weights"
    )
    prune.add_argument("--quality", type=float, metavar="Q", help="prune |w| < Q x the layer's standard deviation")
    parser.add_argument(
        "--bits", metavar="N|KEY=N,...", help="label bits (codebook of 2^N entries), e.g. 5 or conv=8,fc=5"
    )
    parser.add_argument(
        "--gap-bits", metavar="N|KEY=N,...", help="bits per relative index of the sparse encoding, e.g. conv=8,fc=5"
    )
    parser.add_argument("--no-share", action="store_true", help="prune only (no weight sharing)")
    parser.add_argument(
        "--quantize",
        metavar="kmeans|int8|int4|uint8|...",
        help="weight sharing: kmeans (the paper's codebook) or a linear grid int2..int8 / uint2..uint8",
    )
    parser.add_argument("--per-channel", action="store_true", help="linear grids: one scale per output channel")
    symmetry = parser.add_mutually_exclusive_group()
    symmetry.add_argument("--symmetric", action="store_true", help="linear grids: zero point 0 (the default)")
    symmetry.add_argument("--affine", action="store_true", help="linear grids: zero point fitted to the range")
    parser.add_argument(
        "--calib-method",
        choices=("minmax", "entropy", "percentile"),
        help="with --quantize int8 and --calib (ONNX): static int8 activation scales by ORT's calibrator "
        "(default entropy)",
    )
    parser.add_argument(
        "--dynamic",
        action="store_true",
        help="with --quantize int8: activations quantized at run time (no calibration data; MatMul / Gemm run "
        "integer kernels in ONNX Runtime)",
    )
    parser.add_argument("--no-huffman", action="store_true", help="fixed-width streams (the paper's P+Q stage)")
    parser.add_argument(
        "--range-coding",
        action="store_true",
        help="also try format 1.3's adaptive range coding per stream, kept where smaller (4-7%% off sparse "
        "LeNet-size files; readers before format 1.3 cannot open the file)",
    )
    parser.add_argument(
        "--compact-container",
        action="store_true",
        help="write format 1.4's compact container and the graph as onnx.deflate (~1 KB less: 5-15%% off files "
        "of a few KB; readers before format 1.4 cannot open the file)",
    )
    parser.add_argument("--config", metavar="FILE", help="per-layer settings, .toml or .json")
    parser.add_argument("--seed", type=int, help="seed for k-means initialisation (default 0)")
    parser.add_argument(
        "--budget",
        type=budget_arg,
        metavar="SIZE",
        help="fit the file into SIZE bytes, e.g. 64KB, or a share of the dense model, e.g. 1/10 or 10%% (of the "
        ".onnx file; of the float32 weights for a PyTorch model): the solver picks each layer's sparsity and bits",
    )
    parser.add_argument(
        "--max-loss",
        type=loss_arg,
        metavar="X",
        help="with --calib: the smallest file whose loss on the calibration data stays within X "
        "(percentage points of top-1 when the data has labels y; relative output error without); "
        "PyTorch models: --train adds centroid fine-tuning, which lets smaller allocations pass",
    )
    parser.add_argument(
        "--calib",
        metavar="X.npy",
        help="with --budget / --max-loss on an ONNX model (required): an .npz of arrays named after the inputs "
        "(x for a single input) and optional integer labels y, damage measured by ONNX Runtime; "
        "on a PyTorch model (.npy of inputs, or .npz with x and optional integer labels y): with --max-loss "
        "(required) the data the loss is measured on, with --budget the samples that weigh each layer's damage; "
        "with --quantize (.npy or .npz, one array per input): static int8 activation scales; "
        "safetensors checkpoints: an .npz of input second moments E[x x^T], one (cols, cols) array per 2-D tensor, "
        "to refit its codebooks on the layer output",
    )
    parser.add_argument(
        "--train",
        metavar="DATA.npz",
        help="fine-tune on this data: an .npz with arrays x (inputs) and y (int labels); PyTorch models only",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help="with --train: epochs after pruning and after sharing, and of quantization-aware training with "
        "--quantize intN (default 1; with --budget: centroid epochs)",
    )
    parser.add_argument("--batch-size", type=int, default=64, metavar="N", help="with --train: batch size (default 64)")
    ckpt = parser.add_argument_group("safetensors checkpoints")
    ckpt.add_argument("--workers", type=int, metavar="N", help="threads compressing tensors (default: all cores)")
    ckpt.add_argument(
        "--scheduler", metavar="ADDRESS", help="Dask distributed scheduler address, or 'local' for a local cluster"
    )
    ckpt.add_argument(
        "--group-rows",
        type=group_rows,
        metavar="R",
        help="rows per codebook, or 'tensor': one codebook per tensor (default: >= 32 weights/centroid)",
    )
    ckpt.add_argument("--sensitivity", choices=("magnitude",), help="weigh k-means by |w| (large weights kept closer)")
    ckpt.add_argument(
        "--outliers",
        metavar="F",
        help="fraction of each tensor's largest weights kept exactly (0..0.1); F,PATTERN=F,... per tensor-name "
        "pattern (first match wins)",
    )
    ckpt.add_argument(
        "--huffman-labels",
        action="store_true",
        help="Huffman-code the labels (smaller only where a codebook's labels are skewed, as with --accurate; "
        "~9 bytes per weight of the largest tensor while encoding)",
    )
    ckpt.add_argument(
        "--accurate", action="store_true", help="32-entry per-tensor codebooks, Huffman labels, 0.5%% outliers exact"
    )
    ckpt.add_argument("--iterations", type=int, metavar="N", help="Lloyd iterations per codebook (default 8, 1..1000)")
    ckpt.add_argument(
        "--no-error-feedback",
        action="store_true",
        help="with --calib: nearest-centroid labels, only the codebooks refitted (default: labels chosen GPTQ-style, "
        "each column's output error moved onto the columns not yet labelled)",
    )
    ckpt.add_argument("--no-progress", action="store_true", help="no progress bar (shown only on a terminal)")


# --- configuration ---------------------------------------------------------------------------


def read_config_file(path: str) -> dict:
    """Plain dict from a .toml or .json file; one-line errors with the position of a syntax error."""
    path = existing_file(path, "config file")
    text = path.read_bytes()
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI (compress extra)
                tomllib = require("tomli", "reading TOML config files")
            data = tomllib.loads(text.decode("utf-8"))
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise CliError(f"config file {path} must end in .toml or .json", "rename it after its format")
    except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        if isinstance(exc, CliError):
            raise
        raise CliError(f"cannot parse config file {path}: {exc}", "fix the syntax at that position") from exc
    if not isinstance(data, dict):
        raise CliError(f"config file {path} must hold a table/object at the top", "see 'dcz compress --help'")
    return data


TYPE_KEYS = ("conv", "fc")


def parse_per_layer(option: str, text: str) -> tuple[int | None, dict[str, int]]:
    """'5' -> (5, {}); 'conv=8,fc=5,fc1.weight=6' -> (None, {'conv': 8, 'fc': 5, 'fc1.weight': 6})."""
    text = text.strip()
    if "=" not in text:
        return _bits(option, text), {}
    pairs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise usage_error(f"{option} {text!r}: {item!r} is not KEY=N", "write e.g. conv=8,fc=5")
        pairs[key.strip()] = _bits(option, value)
    return None, pairs


def _bits(option: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise usage_error(f"{option}: {value!r} is not a whole number of bits", "write e.g. 5 or conv=8,fc=5") from None


def is_type_key(key: str) -> bool:
    """conv / fc families and layer type names (Linear, Conv2d, Gemm, ...) go to by_type."""
    return key in TYPE_KEYS or (key[:1].isupper() and "." not in key)


def flag_overrides(args) -> tuple[dict, dict, dict, dict]:
    """What the flags set, for CompressConfig.with_overrides: (every layer, by_type, by_name, whole run).
    The command line wins over a config file; --epochs is left to epoch_settings."""
    config = require("dcz.compressor.config", "dcz compress")
    everywhere: dict = {}
    per_layer: dict = {"by_type": {}, "by_name": {}}
    for method in config.PRUNE_PARAMETERS:  # each names its prune method: --sparsity 0.9 prunes by sparsity
        value = getattr(args, method)
        if value is not None:
            everywhere.update({"prune": method, method: value})
    if args.no_share:
        everywhere["share"] = False
    if args.quantize is not None:
        everywhere["quantize"] = args.quantize
    if args.per_channel:
        everywhere["per_channel"] = True
    if args.symmetric or args.affine:
        everywhere["symmetric"] = bool(args.symmetric)
    for option, key in (("--bits", "bits"), ("--gap-bits", "gap_bits")):
        text = getattr(args, key)
        if text is None:
            continue
        bits, pairs = parse_per_layer(option, text)
        if bits is not None:
            everywhere[key] = bits
        for name, value in pairs.items():
            per_layer["by_type" if is_type_key(name) else "by_name"].setdefault(name, {})[key] = value
    run = {} if args.seed is None else {"seed": args.seed}
    return everywhere, per_layer["by_type"], per_layer["by_name"], run


def epoch_settings(args, base) -> dict:
    """Training epochs: only with data (--train); --epochs N, else 1 where the config file sets none."""
    if not args.train:
        return {}
    keys = ("prune_epochs", "share_epochs")
    if args.quantize not in (None, "kmeans"):  # linear grids: quantization-aware training (compressor.qat)
        keys += ("qat_epochs",)
    return (
        {key: args.epochs for key in keys} if args.epochs is not None else {k: 1 for k in keys if not getattr(base, k)}
    )


# The config key each command-line flag sets, so a wrong value is reported against the flag.
FLAG_OF_KEY = {
    "bits": "--bits",
    "gap_bits": "--gap-bits",
    "sparsity": "--sparsity",
    "threshold": "--threshold",
    "quality": "--quality",
    "seed": "--seed",
    "prune_epochs": "--epochs",
    "share_epochs": "--epochs",
    "qat_epochs": "--epochs",
}


def flag_error(exc: ValueError) -> CliError:
    """A config error caused by the command line alone, as a usage error naming the flag.

    'config.by_type['conv'].bits: must be an integer in 1..8, got 9' -> 'argument --bits: must be ...'."""
    where, _, reason = str(exc).partition(": ")
    key = where.rpartition(".")[2]
    flag = FLAG_OF_KEY.get(key, "--" + key.replace("_", "-"))  # the other flags are spelled after their key
    return usage_error(f"argument {flag}: {reason or exc}", "see 'dcz compress --help'")


def build_config(args) -> Any:
    compressor = require("dcz.compressor", "dcz compress")
    everywhere, by_type, by_name, run = flag_overrides(args)
    defaults = compressor.CompressConfig()
    try:  # the flags on their own first: a wrong value there is a wrong command line (exit 2)
        defaults.with_overrides(everywhere, by_type, by_name, **run, **epoch_settings(args, defaults))
    except compressor.CompressError as exc:
        raise flag_error(exc) from exc
    base = compressor.CompressConfig.from_dict(read_config_file(args.config)) if args.config else defaults
    return base.with_overrides(everywhere, by_type, by_name, **run, **epoch_settings(args, base))


# --- models ----------------------------------------------------------------------------------


def load_factory(spec: str):
    """The callable named by 'package.module:factory' (checked by check_model_spec; the current
    folder importable, as python -m does)."""
    module_name, _, attribute = spec.partition(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise CliError(
                f"cannot import module {module_name!r} (no module named {exc.name!r})",
                "check the name and that it is importable from here",
            ) from exc
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module failed while importing
        raise CliError(
            f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}",
            f"check it with: python -c 'import {module_name}'",
        ) from exc
    factory = module
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise CliError(
                f"module {module_name!r} has no attribute {attribute!r}",
                "name a function that returns a torch.nn.Module",
            )
    if not callable(factory):
        raise CliError(f"{spec} is not callable", "name a function or class that returns a torch.nn.Module")
    return factory


def load_state_dict(torch, path: str) -> dict:
    path = existing_file(path, "weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds (UnpicklingError, RuntimeError ...)
        raise CliError(
            f"cannot load weights from {path}: {exc}", "save them with torch.save(model.state_dict(), path)"
        ) from exc
    if isinstance(state, dict) and set(state) == {"state_dict"}:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CliError(
            f"{path} holds a {type(state).__name__}, not a state dict", "save model.state_dict(), not the model"
        )
    return state


INPUT_DTYPES = ("float32", "float16", "int64", "int32")


def build_torch_model(args):
    torch = require("torch", "compressing a PyTorch model")
    if args.input_shape is None:
        raise usage_error(
            "a PyTorch model needs --input-shape (the example input for export)", "add e.g. --input-shape 1,1,28,28"
        )
    model = load_factory(args.model)()
    if not isinstance(model, torch.nn.Module):
        raise CliError(
            f"{args.model} returned a {type(model).__name__}, not a torch.nn.Module",
            "name a factory of a torch.nn.Module",
        )
    if args.weights:
        try:
            model.load_state_dict(load_state_dict(torch, args.weights))
        except RuntimeError as exc:
            raise CliError(
                f"weights {args.weights} do not fit {args.model}: {exc}", "check that they were saved from this model"
            ) from exc
    return model.eval(), torch.zeros(args.input_shape, dtype=getattr(torch, args.input_dtype))


def default_output(model: str) -> Path:
    if model.endswith(".onnx"):
        return Path(Path(model).stem + ".dcz")
    return Path(model.rpartition(":")[2].split(".")[-1] + ".dcz")


# --- the command -----------------------------------------------------------------------------


def compress_onnx(args, config, out: Path) -> None:
    onnx_in = require("dcz.compressor.onnx_in", "compressing an ONNX model")
    if args.budget is not None or args.max_loss is not None:
        fit_onnx_target(args, out)
        return
    calibration = {}
    if args.calib:  # static int8 activation scales (compressor.qdq)
        calibration = {"calib": str(existing_file(args.calib, "calibration data")), "calib_method": args.calib_method}
        calibration["calib_method"] = calibration["calib_method"] or "entropy"
    if args.dynamic:  # activations quantized at run time (runtime/qdq_dynamic.py)
        calibration["dynamic"] = True
    onnx_in.compress_onnx(
        str(existing_file(args.model, "ONNX model")),
        config,
        out_path=str(out),
        huffman=not args.no_huffman,
        range_coding=args.range_coding,
        compact_container=args.compact_container,
        **calibration,
    )


def fit_onnx_target(args, out: Path) -> None:
    """--budget / --max-loss on an ONNX model: calibrated search, damage measured by ONNX Runtime."""
    onnx_search = require("dcz.compressor.budget.onnx_search", "--budget / --max-loss on an ONNX model")
    if not args.calib:
        raise usage_error(
            "--budget and --max-loss on an ONNX model measure damage on calibration data",
            "add --calib DATA.npz (arrays named after the model's inputs, optional integer labels y)",
        )
    model = existing_file(args.model, "ONNX model")
    budget = resolve_budget(args.budget, model.stat().st_size)
    if budget != args.budget:
        print(f"search: --budget {args.budget} of {model.stat().st_size:,} B = {budget:,} B", file=sys.stderr)
        args.budget = budget  # the fit line of the final report
    config = onnx_search.OnnxSearchConfig(budget_bytes=budget, max_loss=args.max_loss)
    result = onnx_search.fit_onnx(
        str(model),
        args.calib,
        config,
        out_path=str(out),
        progress=lambda message: print(f"search: {message}", file=sys.stderr),
        bar=False if args.no_progress else None,
    )
    print(result.summary())


def compress_torch(args, config, out: Path) -> None:
    model, example = build_torch_model(args)
    if args.budget is not None:
        fit_to_budget(args, model, example, out)
        return
    if args.max_loss is not None:
        fit_to_loss(args, model, example, out)
        return
    compressor = require("dcz.compressor", "dcz compress")
    result = compressor.compress(model, example, config, train_loader=train_loader(args, example))
    calibration = {}
    if args.calib:  # static int8 activation scales measured on the exported graph (compressor.qdq)
        calibration = {"calib": load_calibration_array(args.calib), "calib_method": args.calib_method or "minmax"}
    metadata = {"compress.dynamic": True} if args.dynamic else None
    result.save(
        out,
        huffman=not args.no_huffman,
        metadata=metadata,
        range_coding=args.range_coding,
        compact_container=args.compact_container,
        **calibration,
    )


def load_calibration_array(path: str):
    np = require("numpy", "--calib")
    try:
        data = np.load(existing_file(path, "calibration data"), allow_pickle=False)
        if not isinstance(data, np.ndarray):
            with data:
                data = data["x"] if "x" in data.files else data[data.files[0]]
    except (OSError, ValueError, KeyError, IndexError) as error:
        raise CliError(
            f"--calib {path}: not a readable .npy / .npz ({error})".splitlines()[0], "give an .npy"
        ) from None
    return np.asarray(data, dtype=np.float32)


def train_loader(args, example):
    if not args.train:
        return None
    from dcz._cli.commands.train_data import loader

    return loader(args.train, tuple(example.shape), args.batch_size, args.seed or 0)


BUDGET_CONFLICTS = ("quantize", "threshold", "sparsity", "quality", "bits", "gap_bits", "config")


def load_torch_calib(path: str):
    """--calib for a PyTorch model: an .npy of inputs, or an .npz with x (inputs) and optional integer y."""
    torch = require("torch", "--calib")
    np = require("numpy", "--calib")
    source = existing_file(path, "--calib file")
    try:
        data = np.load(source, allow_pickle=False)
        if isinstance(data, np.ndarray):
            arrays = {"x": data}
        else:
            with data:
                arrays = {name: data[name] for name in ("x", "y") if name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise CliError(
            f"--calib {path}: not a readable .npy / .npz ({error})".splitlines()[0], "give an .npz"
        ) from None
    x, y = arrays.get("x"), arrays.get("y")
    if x is None:
        raise CliError(f"--calib {path}: no array 'x' (the inputs)", "save it with np.savez(path, x=..., y=...)")
    if x.dtype.kind not in "fiu" or (y is not None and (y.dtype.kind not in "iu" or y.shape != x.shape[:1])):
        got = f"x {x.dtype} {x.shape}" + ("" if y is None else f", y {y.dtype} {y.shape}")
        raise CliError(
            f"--calib {path}: x must be numbers and y one integer label per row of x (got {got})",
            "save float inputs x and int64 labels y",
        )
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return inputs if y is None else (inputs, torch.from_numpy(y.astype(np.int64)))


def fit_to_loss(args, model, example, out: Path) -> None:
    """--max-loss: compressor.budget.loss_target.fit_max_loss finds the smallest file within the loss."""
    loss_target = require("dcz.compressor.budget.loss_target", "--max-loss")
    if not args.calib:
        raise usage_error(
            "--max-loss measures the loss on calibration data",
            "add --calib DATA.npz (x: inputs, y: optional integer labels)",
        )
    result = loss_target.fit_max_loss(
        model,
        example,
        args.max_loss,
        calib=load_torch_calib(args.calib),
        train_loader=train_loader(args, example),
        finetune_epochs=args.epochs if args.epochs is not None else 1,
        seed=args.seed or 0,
        progress=lambda message: print(f"search: {message}", file=sys.stderr),
        bar=False if args.no_progress else None,
    )
    result.save(out)
    print(result.to_text())
    print()


def fit_to_budget(args, model, example, out: Path) -> None:
    """--budget: compressor.budget.fit.fit_budget chooses per-layer sparsity and bits; prints its allocation."""
    budget = require("dcz.compressor.budget", "--budget")
    fit = require("dcz.compressor.budget.fit", "--budget")
    calib = load_torch_calib(args.calib) if args.calib else None
    loader = train_loader(args, example)
    dense = sum(4 * t.numel() for t in model.state_dict().values() if t.is_floating_point())
    budget_bytes = resolve_budget(args.budget, dense)
    if budget_bytes != args.budget:
        print(f"budget: --budget {args.budget} of {dense:,} B (float32 weights) = {budget_bytes:,} B", file=sys.stderr)
        args.budget = budget_bytes  # the fit line of the final report
    config = budget.BudgetConfig(
        budget_bytes=budget_bytes,
        seed=args.seed or 0,
        finetune_epochs=args.epochs if args.epochs is not None else 1,
    )
    result = fit.fit_budget(
        model,
        example,
        config,
        calib=calib,
        train_loader=loader,
        progress=lambda message: print(f"budget: {message}", file=sys.stderr),
    )
    result.save(out)
    print(result.to_text())
    print()


def is_checkpoint(spec: str) -> bool:
    """A safetensors file, a shard index, or a folder holding them."""
    return spec.endswith((".safetensors", ".safetensors.index.json")) or Path(spec).is_dir()


def per_pattern(option: str, text: str | None, parse, example: str) -> tuple:
    """'V,PATTERN=V,...' -> (V or None, ((PATTERN, V), ...)): tensor-name patterns (fnmatch), first match wins."""
    if text is None:
        return None, ()
    value, pairs = None, []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, given = item.rpartition("=")
        if sep and not key.strip():
            raise usage_error(f"{option} {text!r}: {item!r} is not PATTERN=VALUE", f"write e.g. {example}")
        if sep:
            pairs.append((key.strip(), parse(given)))
        else:
            value = parse(item)
    return value, tuple(pairs)


def checkpoint_bits(text: str | None) -> tuple[int | None, tuple]:
    """'4' -> (4, ()); '4,encoder.*=5' -> (4, (('encoder.*', 5),))."""
    return per_pattern("--bits", text, lambda v: _bits("--bits", v), "4,encoder.*=5")


def checkpoint_outliers(text: str | None) -> tuple[float | None, tuple]:
    """'0.01' -> (0.01, ()); '0.045,embeddings.*=0.015' -> (0.045, (('embeddings.*', 0.015),))."""

    def fraction(value: str) -> float:
        try:
            return float(value)
        except ValueError:
            raise usage_error(
                f"--outliers: {value!r} is not a fraction", "write e.g. 0.01 or 0.04,embeddings.*=0.01"
            ) from None

    return per_pattern("--outliers", text, fraction, "0.04,embeddings.*=0.01")


def group_rows(text: str) -> int:
    """--group-rows: a positive whole number, or 'tensor' (one codebook for all of a tensor's rows)."""
    if text == "tensor":
        return 1 << 30
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of rows or 'tensor'") from None


def compress_checkpoint(args, out: Path) -> None:
    checkpoint = require("dcz.compressor.checkpoint", "compressing a safetensors checkpoint")
    bits, bits_for = checkpoint_bits(args.bits)
    outliers, outliers_for = checkpoint_outliers(args.outliers)
    chosen = dict(
        bits=bits,
        bits_for=bits_for or None,
        group_rows=args.group_rows,
        sensitivity=args.sensitivity,
        outliers=outliers,
        outliers_for=outliers_for or None,
        huffman=True if args.huffman_labels else None,
        iterations=args.iterations,
        error_feedback=False if args.no_error_feedback else None,
    )
    base = checkpoint.ACCURATE if args.accurate else checkpoint.Settings()
    settings = dataclasses.replace(base, **{k: v for k, v in chosen.items() if v is not None})
    summary = checkpoint.compress_checkpoint(
        args.model,
        out,
        settings,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=False if args.no_progress else None,
        calib=existing_file(args.calib, "--calib input moments") if args.calib else None,
    )
    ratio = summary["dense_bytes"] / max(summary["file_bytes"], 1)
    print(
        f"{summary['tensors']} tensors, {summary['dense_bytes']:,} -> {summary['file_bytes']:,} bytes "
        f"({ratio:.2f}x) in {summary['seconds']:.1f} s"
    )


def check_model_spec(spec: str) -> None:
    if spec.endswith(".onnx") or is_checkpoint(spec):
        return
    if spec.endswith((".pt", ".pth", ".bin", ".ckpt")):
        raise usage_error(
            f"model {spec!r} is a weights file: whole pickled models are not loaded (unsafe)",
            "give package.module:factory and pass the state dict with --weights",
        )
    module, _, factory = spec.partition(":")
    if not module or not factory:
        raise usage_error(
            f"model {spec!r} is neither an .onnx file nor package.module:factory", "see 'dcz compress --help'"
        )


def check_option_mix(args) -> None:
    check_model_spec(args.model)
    if args.weights and args.model.endswith(".onnx"):
        raise usage_error("--weights is for PyTorch models; an .onnx file carries its weights", "drop --weights")
    quantizing = args.quantize not in (None, "kmeans")
    if args.max_loss is not None and args.budget is not None:
        raise usage_error("--budget and --max-loss are two targets; give one", "drop one of them")
    if args.calib and args.budget is None and args.max_loss is None and not quantizing:
        raise usage_error(
            "--calib only matters with --budget, or with --quantize",
            "add --budget SIZE or --quantize int8, or drop --calib",
        )
    if args.calib_method and not (args.calib and quantizing):
        raise usage_error("--calib-method only matters with --calib and --quantize", "add them or drop --calib-method")
    if args.dynamic and (args.calib or args.quantize not in ("int8", "uint8")):
        raise usage_error(
            "--dynamic quantizes activations at run time: it needs --quantize int8 and no --calib",
            "use --quantize int8 --dynamic, or --calib DATA for static activation scales",
        )
    if (args.per_channel or args.symmetric or args.affine) and not quantizing:
        raise usage_error(
            "--per-channel / --symmetric / --affine shape linear grids", "add --quantize int8 (or int4...)"
        )
    if args.train and args.model.endswith(".onnx"):
        raise usage_error(
            "--train fine-tunes PyTorch models; an .onnx model is compressed post-training",
            "drop --train, or give package.module:factory",
        )
    if (args.epochs is not None or args.batch_size != 64) and not args.train:
        raise usage_error("--epochs and --batch-size only matter with --train", "add --train DATA.npz")
    if args.epochs is not None and args.epochs < 0 or args.batch_size < 1:
        raise usage_error("--epochs must be >= 0 and --batch-size >= 1", "see 'dcz compress --help'")
    if args.budget is not None or args.max_loss is not None:
        given = [name for name in BUDGET_CONFLICTS if getattr(args, name) is not None]
        given += [name for name in ("no_share", "no_huffman") if getattr(args, name)]
        if args.range_coding:
            raise usage_error(
                "--range-coding is not available with --budget / --max-loss (their solvers size Huffman streams)",
                "drop --range-coding",
            )
        if args.compact_container:
            raise usage_error(
                "--compact-container is not available with --budget / --max-loss (their solvers size format 1.0)",
                "drop --compact-container",
            )
        if given:
            option = "--" + given[0].replace("_", "-")
            raise usage_error(
                f"--budget / --max-loss choose every layer's sparsity and bits; {option} conflicts with them",
                f"drop {option}",
            )


def print_weight_error(metadata: dict) -> None:
    """The one-line weight-error summary, and a warning on stderr past the safe bound."""
    sqnr = metadata.get("compress.weight_sqnr_db")
    if not isinstance(sqnr, dict):
        return
    safe = require("dcz.compressor.safe", "dcz compress")
    kept = {**(metadata.get("compress.kept_raw") or {}), **(metadata.get("compress.skipped") or {})}
    line, warning = safe.weight_summary(sqnr, kept)
    print(line)
    if warning:
        print(warning, file=sys.stderr)


CHECKPOINT_ONLY = (
    "workers",
    "scheduler",
    "group_rows",
    "sensitivity",
    "outliers",
    "huffman_labels",
    "accurate",
    "iterations",
    "no_error_feedback",
)
CHECKPOINT_ALLOWED = ("model", "output", "bits", "calib", "no_progress", *CHECKPOINT_ONLY)


def run_checkpoint(args) -> int:
    defaults = {"input_dtype": "float32", "batch_size": 64}
    for key, value in vars(args).items():
        if key in CHECKPOINT_ALLOWED or key in ("command", "handler", "debug") or callable(value):
            continue
        if value not in (None, False, defaults.get(key)):
            option = "--" + key.replace("_", "-")
            raise usage_error(f"{option} does not apply to a safetensors checkpoint", f"drop {option}")
    if args.workers is not None and args.workers < 1:
        raise usage_error("--workers must be >= 1", "see 'dcz compress --help'")
    stem = Path(args.model.removesuffix(".index.json")).name.removesuffix(".safetensors")
    out = output_path(args.output or Path(stem + ".dcz"), "output file")
    compress_checkpoint(args, out)
    print(f"wrote {out}")
    return 0


def check_training_methods(args, config) -> None:
    """prune 'gmp' / 'dns' (from --config) prune while fine-tuning a PyTorch model: say which flags that takes."""
    tables = [config.global_config, *config.by_type.values(), *config.by_name.values()]
    methods = sorted({table.prune for table in tables} & {"gmp", "dns"})
    if not methods or args.model.endswith(".onnx"):  # ONNX models refuse them layer by layer
        return
    if not args.train or args.epochs == 0:
        raise usage_error(
            f"--config: prune {' / '.join(map(repr, methods))} prunes while training",
            "add --train DATA.npz (and --epochs N >= 1), or use prune sparsity / threshold / quality",
        )


def run(args) -> int:
    if is_checkpoint(args.model):
        return run_checkpoint(args)
    for key in CHECKPOINT_ONLY:
        if getattr(args, key, None) not in (None, False):
            option = "--" + key.replace("_", "-")
            raise usage_error(f"{option} is for safetensors checkpoints", f"drop {option}")
    check_option_mix(args)
    out = output_path(args.output or default_output(args.model), "output file")
    config = build_config(args)
    check_training_methods(args, config)
    if args.model.endswith(".onnx"):
        compress_onnx(args, config, out)
    else:
        compress_torch(args, config, out)
        if not args.weights:
            print(
                f"warning: {args.model} was compressed with the weights its factory made (no --weights given): "
                "unless the factory loads trained weights itself, the file holds its initial (random) weights",
                file=sys.stderr,
            )
    formats = require("dcz.formats", "dcz compress")
    with formats.open(out, max_dense_bytes=sys.maxsize) as written:  # our own file: no budget to guard
        report = written.size_report()
        print(stage_table(written, report))
        metadata = dict(written.metadata)
    print(f"\nwrote {out} ({report.file_bytes:,} bytes)")
    print_weight_error(metadata)
    if args.budget is not None:
        verdict = "fits" if report.file_bytes <= args.budget else "DOES NOT FIT"
        print(f"budget {args.budget:,} bytes: {verdict}")
    return 0
