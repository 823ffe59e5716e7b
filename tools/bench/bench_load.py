"""Load one model file the way a user would, run one inference, report time and peak RSS as JSON.

Run in a fresh subprocess per measurement (by tools/bench.py) so that peak RSS belongs to this one
load alone. The clock starts after the imports (they are the same for every row of a kind and are
reported separately as `rss_imports_mib`) and stops when the first inference has returned.

    python -m tools.bench.bench_load KIND PATH INPUT.npy [--eval X.npy Y.npy] [--threads 1]

KIND: onnx (file on disk), onnx.zip (zipfile member read into memory), onnx.zst (zstd frame),
dcz (runtime.load with the ORT backend).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

KINDS = ("onnx", "onnx.zip", "onnx.zst", "dcz")


def _peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB.

    VmHWM (/proc/self/status) rather than ru_maxrss: Linux carries ru_maxrss over fork + exec, so a
    child of a 3 GB parent would report 3 GB; VmHWM belongs to this process image alone.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _ort_session(model: str | bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


class _OrtRunner:
    """Uniform `run(x) -> logits` over an ORT session."""

    def __init__(self, session):
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


class _DczRunner:
    """Uniform `run(x) -> logits` over runtime.load's Model."""

    def __init__(self, model):
        self.model = model

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.model.run(x)[0]


def _read_member(path: Path) -> bytes:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.read(archive.namelist()[0])


def _read_zstd(path: Path) -> bytes:
    import zstandard

    with open(path, "rb") as handle:
        return zstandard.ZstdDecompressor().decompress(handle.read())


def import_for(kind: str) -> None:
    """Import what loading this kind needs, before the clock starts."""
    import onnxruntime  # noqa: F401

    if kind == "onnx.zst":
        import zstandard  # noqa: F401
    if kind == "dcz":
        from dcz import runtime  # noqa: F401


def load(kind: str, path: Path, threads: int):
    """Open `path` as a user of this format would and return a runner."""
    if kind == "onnx":
        return _OrtRunner(_ort_session(str(path), threads))
    if kind == "onnx.zip":
        return _OrtRunner(_ort_session(_read_member(path), threads))
    if kind == "onnx.zst":
        return _OrtRunner(_ort_session(_read_zstd(path), threads))
    if kind == "dcz":
        from dcz import runtime

        return _DczRunner(runtime.load(str(path), backend="ort", threads=threads))
    raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def accuracy(runner, images: np.ndarray, labels: np.ndarray, batch: int = 1000) -> float:
    """Top-1 accuracy in percent."""
    correct = 0
    for start in range(0, len(images), batch):
        logits = runner.run(np.ascontiguousarray(images[start : start + batch], dtype=np.float32))
        correct += int((np.argmax(logits, axis=1) == labels[start : start + batch]).sum())
    return 100.0 * correct / len(images)


def measure(kind: str, path: Path, example: np.ndarray, threads: int = 1, eval_paths=None) -> dict:
    """Load + first inference, timed; peak RSS read right after, before the evaluation set is even read."""
    import_for(kind)
    rss_imports = _peak_rss_mib()
    start = time.perf_counter()
    runner = load(kind, path, threads)
    output = runner.run(example)
    seconds = time.perf_counter() - start
    result = {
        "kind": kind,
        "load_first_s": seconds,
        "peak_rss_mib": _peak_rss_mib(),
        "rss_imports_mib": rss_imports,
        "output_shape": list(np.asarray(output).shape),
    }
    if eval_paths is not None:
        images, labels = (np.load(p, allow_pickle=False) for p in eval_paths)
        result["accuracy"] = accuracy(runner, images, labels)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("path", type=Path)
    parser.add_argument("input", type=Path, help="example input batch (.npy)")
    parser.add_argument("--eval", nargs=2, type=Path, metavar=("X", "Y"), help="images and labels (.npy) for top-1")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    example = np.load(args.input, allow_pickle=False)
    print(json.dumps(measure(args.kind, args.path, example, args.threads, args.eval)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
