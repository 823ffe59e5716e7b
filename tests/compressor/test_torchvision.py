"""Issue 3, item 2: ResNet-18 and MobileNetV2 (tools/bench/archs.py, torchvision's architectures) with BatchNorm and residual connections compress, and
their `.dcz` (decoded through `formats`, run in ONNX Runtime) gives the compressed torch model's outputs.

Randomly initialised (nothing is downloaded), post-training compression (no data needed). BatchNorm
running statistics are randomised so that folding BN into the convolutions changes the weights.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from dcz import formats
from dcz.compressor.onnx_graph import fill_placeholders
from dcz.runtime.onnx_graph import graph_bytes

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from tools.bench import archs  # noqa: E402 - needs torch

CONFIG = {"global": {"prune": "quality", "quality": 1.2}}  # ~70% pruned (|w| < 1.2 std, no sort); bits: paper defaults


def random_model(name: str):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return archs.randomise_batchnorm(getattr(archs, name)(num_classes=10).eval())


def compress_export_run(name: str, tmp_path, side: int = 32):
    from dcz.compressor.pipeline import compress

    model = random_model(name)
    result = compress(model, torch.zeros(1, 3, side, side), CONFIG, progress=False)
    path = tmp_path / f"{name}.dcz"
    result.save(path)
    x = np.random.default_rng(0).random((3, 3, side, side), dtype=np.float32)
    with torch.no_grad():
        want = result.model(torch.from_numpy(x)).numpy()
        dense = model(torch.from_numpy(x)).numpy()
    with formats.open(path) as dcz:
        graph = fill_placeholders(
            onnx.load_from_string(graph_bytes(dcz.graph_format, dcz.graph)), {n: dcz.tensor(n) for n in dcz.names}
        )
        encodings = {n: dcz.info(n).encoding for n in dcz.names}
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    return result, graph, encodings, got, want, dense, runtime_output(path, x)


def runtime_output(path, x):
    """The product path: runtime.load (no torch inside), ONNX Runtime backend; None if absent."""
    try:
        from dcz import runtime
    except ImportError:
        return None
    out = runtime.load(path, backend="ort").run(x)
    out = next(iter(out.values())) if isinstance(out, dict) else out
    return np.asarray(out[0] if isinstance(out, (list, tuple)) else out)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_dcz_gives_the_compressed_torch_outputs(name, tmp_path):
    result, graph, encodings, got, want, dense, through_runtime = compress_export_run(name, tmp_path)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    if through_runtime is not None:
        np.testing.assert_allclose(through_runtime, want, atol=1e-5, rtol=0)
    assert np.abs(want - dense).max() > 1e-4 * np.abs(dense).max()  # compression did change the model
    # every conv / fc weight is stored pruned + shared, BN was folded away, residual adds remain
    # (pruned only where a codebook would not be smaller than the kept values: small depthwise layers)
    assert "sparse_shared" in {encodings[n] for n in result.layers} <= {"sparse_shared", "sparse"}
    ops = {node.op_type for node in graph.graph.node}
    assert "BatchNormalization" not in ops and "Add" in ops
    assert result.folded and not result.skipped
