"""Agreement of the runtime's backends with torch on a LeNet .dcz, over the MNIST test set.

    python -m tools.dev.check_agreement FILE.dcz [FILE.dcz ...] [--mnist ../shared/data/mnist]

The torch model is rebuilt from the file itself: `dcz.demo.models.lenet_300_100()` or `lenet5()`
(picked by the stored tensor names) with the decoded weights loaded, i.e. exactly the compressed
model the file stores. Prints, per backend (ORT, NumPy), the max |logit difference| against torch in
float32 and in float64, the largest |logit|, and how many of the 10,000 digits change top-1. The
float64 column and torch's own batch-1 vs batch-N difference show how much of the gap is float32
rounding order (which no backend can remove) rather than the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dcz import (
    formats,  # noqa: E402
    runtime,  # noqa: E402
)

DEFAULT_MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"


def torch_model_of(path: Path):
    import onnx
    import torch
    from onnx import numpy_helper

    from dcz.demo import models
    from dcz.runtime.onnx_graph import graph_bytes

    with formats.open(path) as f:
        weights = f.tensors()
        graph = onnx.load_from_string(graph_bytes(f.graph_format, f.graph))
    # small tensors (biases under 64 values) stay inline in the graph
    inline = {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer if t.data_location != 1}
    weights.update({k: v for k, v in inline.items() if k.endswith((".weight", ".bias"))})
    model = (models.lenet5() if "conv1.weight" in weights else models.lenet_300_100()).eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    return model


def check(path: Path, x: np.ndarray) -> list[str]:
    import torch

    torch.set_num_threads(1)
    model = torch_model_of(path)
    with torch.no_grad():
        ref32 = model(torch.from_numpy(x)).numpy()
        n_one = min(1000, len(x))  # one digit at a time: torch's own float32 spread across batch sizes
        ref32_one = np.concatenate([model(torch.from_numpy(x[i : i + 1])).numpy() for i in range(n_one)])
        ref64 = model.double()(torch.from_numpy(x).double()).numpy()
    lines = [
        f"{path.name}: max |logit| {np.abs(ref32).max():.2f}; torch float32 vs float64 "
        f"{np.abs(ref32 - ref64).max():.2e}; torch batch 1 vs batch {len(x)} (first {n_one:,} digits) "
        f"{np.abs(ref32_one - ref32[:n_one]).max():.2e}"
    ]
    for backend in ("ort", "numpy"):
        with runtime.load(path, backend=backend) as m:
            out = np.concatenate([m.run(x[i : i + 1000])[0] for i in range(0, len(x), 1000)])
        lines.append(
            f"  {backend:5s} vs torch float32 {np.abs(out - ref32).max():.2e}, vs float64 "
            f"{np.abs(out - ref64).max():.2e}; top-1 differs on {int((out.argmax(1) != ref32.argmax(1)).sum())} "
            f"of {len(x)} digits"
        )
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="check_agreement", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST, help="folder of the MNIST test IDX files")
    args = parser.parse_args(argv)
    from dcz.demo.datasets import load_mnist_idx

    x, _ = load_mnist_idx(args.mnist)
    for path in args.files:
        print("\n".join(check(path, x)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
