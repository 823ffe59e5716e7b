"""A model over protobuf's 2 GB limit, saved with ONNX external data: compress with the defaults, run the `.dcz`.

    nice -n 10 python -m tools.bench.bench_external_2gb [--dim 8192] [--layers 9] [--workdir DIR] [--keep]

Builds a chain of `--layers` MatMul (+ bias, Relu) layers of `--dim` x `--dim` float32 weights, each weight
generated and appended to the external data file one at a time (the ModelProto itself is a few KB), so
the default 9 x 8192^2 is 2.42 GB of weights. Then, each in a fresh subprocess (its own peak RSS):
the dense reference in ONNX Runtime (from the path), `compress_onnx` with the defaults (the
`dcz compress MODEL.onnx` path), the `.dcz` in ONNX Runtime and in the NumPy backend. Prints a
markdown table (bytes, seconds, peak RSS, relative L2 error of the outputs against the dense model);
the work folder is deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BATCH = 4
DATA = "weights.bin"


def build(folder: Path, dim: int, layers: int) -> Path:
    """model.onnx + weights.bin in `folder`: weights written one at a time (never all in memory)."""
    import onnx
    from onnx import TensorProto, helper

    inits, nodes, offset = [], [], 0
    with open(folder / DATA, "wb") as data:
        for i in range(layers):
            rng = np.random.default_rng(i)
            weight = rng.standard_normal((dim, dim), dtype=np.float32)
            weight *= np.float32(np.sqrt(2.0 / dim))  # He scale: activations keep their size through the chain
            data.write(weight.tobytes())
            proto = TensorProto(name=f"w{i}", data_type=TensorProto.FLOAT, dims=(dim, dim))
            proto.data_location = TensorProto.EXTERNAL
            for key, value in (("location", DATA), ("offset", str(offset)), ("length", str(weight.nbytes))):
                proto.external_data.add(key=key, value=value)
            offset += weight.nbytes
            del weight
            bias = (np.random.default_rng(1000 + i).standard_normal(dim) * 0.01).astype(np.float32)
            inits += [proto, onnx.numpy_helper.from_array(bias, f"b{i}")]
            src = "x" if i == 0 else f"r{i - 1}"
            last = i == layers - 1
            nodes += [
                helper.make_node("MatMul", [src, f"w{i}"], [f"m{i}"]),
                helper.make_node("Add", [f"m{i}", f"b{i}"], ["y" if last else f"a{i}"]),
            ]
            if not last:
                nodes.append(helper.make_node("Relu", [f"a{i}"], [f"r{i}"]))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (BATCH, dim))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (BATCH, dim))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="bench_external_2gb")
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stage(name: str, folder: Path) -> dict:
    """One stage in this process: its wall seconds and peak RSS; outputs saved as .npy in `folder`."""
    dim = int(json.loads((folder / "shape.json").read_text())["dim"])
    x = np.random.default_rng(7).standard_normal((BATCH, dim), dtype=np.float32)
    start = time.perf_counter()
    figures: dict = {}
    if name == "dense":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        figures["load_s"] = time.perf_counter() - start
        np.save(folder / "dense.npy", session.run(None, {"x": x})[0])
    elif name == "compress":
        from dcz.compressor.onnx_in import compress_onnx

        compress_onnx(folder / "model.onnx", out_path=folder / "model.dcz")
    else:
        from dcz import runtime

        dcz_bytes = os.path.getsize(folder / "model.dcz")
        model = runtime.load(folder / "model.dcz", backend=name, threads=1, max_dense_bytes=2 * dcz_bytes * 8)
        figures["load_s"] = time.perf_counter() - start
        np.save(folder / f"{name}.npy", model.run({model.input_names[0]: x})[0])
    figures["seconds"] = time.perf_counter() - start
    figures["peak_rss_mib"] = peak_rss_mib()
    return figures


def run_stage(name: str, folder: Path) -> dict:
    cmd = [sys.executable, "-m", "tools.bench.bench_external_2gb", "--stage", name, "--workdir", str(folder)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def rel_error(reference: np.ndarray, output: np.ndarray) -> float:
    return float(np.linalg.norm(output - reference) / np.linalg.norm(reference))


def report(folder: Path, figures: dict[str, dict], build_s: float) -> str:
    dense = os.path.getsize(folder / "model.onnx") + os.path.getsize(folder / DATA)
    dcz = os.path.getsize(folder / "model.dcz") if (folder / "model.dcz").exists() else 0
    reference = np.load(folder / "dense.npy") if (folder / "dense.npy").exists() else None
    lines = [
        f"dense: model.onnx {os.path.getsize(folder / 'model.onnx'):,} B + {DATA} {os.path.getsize(folder / DATA):,} B"
        f" = {dense:,} B (built in {build_s:.0f} s); .dcz {dcz:,} B = {dense / max(dcz, 1):.2f}x",
        "",
        "| stage | seconds | load s | peak RSS MiB | rel. L2 error vs dense |",
        "|---|---:|---:|---:|---|",
    ]
    for name, fig in figures.items():
        if "error" in fig:
            lines.append(f"| {name} | failed: {fig['error']} | | | |")
            continue
        err = "-"
        if name in ("ort", "numpy") and reference is not None and (folder / f"{name}.npy").exists():
            err = f"{rel_error(reference, np.load(folder / f'{name}.npy')):.4f}"
        load = f"{fig['load_s']:.1f}" if "load_s" in fig else "-"
        lines.append(f"| {name} | {fig['seconds']:.1f} | {load} | {fig['peak_rss_mib']:,.0f} | {err} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=8192)
    parser.add_argument("--layers", type=int, default=9)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--stage", choices=("dense", "compress", "ort", "numpy"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        print(json.dumps(stage(args.stage, args.workdir)))
        return 0
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="dcz_2gb_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        (folder / "shape.json").write_text(json.dumps({"dim": args.dim, "layers": args.layers}))
        start = time.perf_counter()
        build(folder, args.dim, args.layers)
        build_s = time.perf_counter() - start
        figures = {}
        for name in ("dense", "compress", "ort", "numpy"):
            figures[name] = run_stage(name, folder)
            print(name, figures[name], flush=True)
        print(report(folder, figures, build_s))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
