"""`dcz run FILE --input x.npy [--backend ort|numpy] [--output out.npy]`: inference from a .dcz."""

from __future__ import annotations

from pathlib import Path

from dcz._cli.commands._common import (
    add_command,
    add_max_dense_bytes,
    dense_budget,
    existing_file,
    naming_file,
    output_path,
    usage_error,
)
from dcz._cli.errors import CliError, require

DESCRIPTION = """\
Run a .dcz model on inputs stored as NumPy files, with ONNX Runtime (default) or the pure NumPy
executor. Weights are decoded from the file in memory: no dense copy is written anywhere.
Needs only the runtime extra: pip install 'dcz[runtime]'.

--input takes a .npy (fed to the model's first input) or a .npz (arrays named after the model's
inputs). float64 arrays are cast to float32. Files are read with allow_pickle=False.
--output writes a .npy (first output) or a .npz (every output, by name).

examples:
  dcz run lenet.dcz --input digits.npy
  dcz run lenet.dcz --input digits.npy --backend numpy --output logits.npy"""


def register(subparsers, common) -> None:
    parser = add_command(subparsers, common, "run", "run a .dcz model on a .npy/.npz input", DESCRIPTION, run)
    parser.add_argument("file", help="the .dcz file")
    parser.add_argument(
        "--input", "-i", required=True, metavar="X.npy", help="input array (.npy) or arrays by name (.npz)"
    )
    parser.add_argument(
        "--backend", choices=("ort", "numpy"), default="ort", help="ONNX Runtime (default) or NumPy executor"
    )
    parser.add_argument("--output", "-o", metavar="OUT.npy", help="save the outputs (.npy: first output, .npz: all)")
    parser.add_argument("--threads", type=int, metavar="N", help="intra-op threads (ONNX Runtime)")
    add_max_dense_bytes(parser)


def load_inputs(path: Path, input_names: list[str]) -> dict:
    """The model's inputs by name, read safely from .npy / .npz."""
    np = require("numpy", "dcz run")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise CliError(
            f"cannot read {path} as a NumPy array: {exc}", "save it with numpy.save (no object arrays)"
        ) from exc
    if isinstance(loaded, np.ndarray):
        arrays = {input_names[0]: loaded}
    else:
        with loaded:
            missing = [name for name in input_names if name not in loaded.files]
            if missing:
                raise CliError(
                    f"{path} has no array named {missing[0]!r} (it has {loaded.files})",
                    f"name the arrays {input_names}",
                )
            arrays = {name: loaded[name] for name in input_names}
    return {name: a.astype(np.float32) if a.dtype == np.float64 else a for name, a in arrays.items()}


def save_outputs(path: Path, names: list[str], outputs: list) -> None:
    np = require("numpy", "dcz run")
    if path.suffix == ".npz":
        np.savez(path, **dict(zip(names, outputs)))
    else:
        np.save(path, outputs[0])


def summarize(name: str, array) -> str:
    line = f"{name}: shape {tuple(array.shape)}, dtype {array.dtype}"
    if array.ndim == 2 and array.shape[1] > 1 and array.dtype.kind == "f":
        top = array.argmax(axis=1)
        shown = " ".join(str(int(c)) for c in top[:20]) + (" ..." if len(top) > 20 else "")
        line += f"; argmax per row: {shown}"
    return line


def run(args) -> int:
    model_path = existing_file(args.file, ".dcz file")
    input_path = existing_file(args.input, "input file")
    out_path = output_path(args.output) if args.output else None
    runtime = require("dcz.runtime", "dcz run")
    options = {"backend": args.backend, **dense_budget(args)}
    if args.threads is not None and args.threads < 0:
        raise usage_error(
            f"argument --threads: must be >= 0 (0: ONNX Runtime's default), got {args.threads}", "e.g. --threads 1"
        )
    if args.threads:
        options["threads"] = args.threads
    with naming_file(model_path):
        model = runtime.load(model_path, **options)
    inputs = load_inputs(input_path, list(model.input_names))
    with naming_file(model_path):  # lazy decoding may meet damage only now
        outputs = model.run(inputs)
    for name, array in zip(model.output_names, outputs):
        print(summarize(name, array))
    if out_path is not None:
        save_outputs(out_path, list(model.output_names), outputs)
        print(f"wrote {out_path}")
    return 0
