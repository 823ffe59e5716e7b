"""Issue 4, item 1: the runtime loads and runs a .dcz in a fresh interpreter where torch and
scikit-learn cannot even be imported, and afterwards neither is in sys.modules."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from rt_onnx_builders import lenet_300_100_graph, lenet_300_100_weights, lenet_dcz_tensors

from dcz import formats

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys
    for banned in ("torch", "sklearn", "scipy"):
        sys.modules[banned] = None  # any import attempt raises ImportError
    import numpy as np
    import importlib, pkgutil
    from dcz import runtime
    for info in pkgutil.walk_packages(runtime.__path__, "dcz.runtime."):
        importlib.import_module(info.name)
    x = np.zeros((2, 1, 28, 28), np.float32)
    outs = [runtime.load(sys.argv[1], backend=b, sparse=s).run(x)[0] for b, s in (("ort", False), ("numpy", False), ("numpy", True))]
    runtime.export_onnx(sys.argv[1], sys.argv[2])
    assert all(o.shape == (2, 10) for o in outs)
    loaded = [m for m in ("torch", "sklearn", "scipy", "dcz.compressor") if sys.modules.get(m) is not None]
    print("LOADED:" + ",".join(loaded))
    """
)


def test_runtime_runs_without_torch_or_sklearn(tmp_path):
    weights = lenet_300_100_weights()
    tensors, _ = lenet_dcz_tensors(weights)
    path = tmp_path / "m.dcz"
    formats.write(path, tensors, graph=lenet_300_100_graph(weights).SerializeToString())
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path), str(tmp_path / "m.onnx")], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "LOADED:"


def test_runtime_extra_lists_no_torch_or_sklearn():
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("runtime = [", 1)[1].split("]", 1)[0]
    assert "onnxruntime" in block and "torch" not in block and "scikit" not in block
