"""Damaged or mismatched files are refused before any inference, naming what is wrong."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from rt_onnx_builders import lenet_300_100_graph, lenet_300_100_weights, lenet_dcz_tensors, placeholder

from dcz import formats, runtime
from dcz.runtime import DczRuntimeError

BACKENDS = ["ort", "numpy"]


@pytest.fixture(scope="module")
def parts():
    weights = lenet_300_100_weights(density=0.2)
    tensors, _ = lenet_dcz_tensors(weights)
    return weights, tensors, lenet_300_100_graph(weights)


def write(tmp_path, tensors, graph, name="m.dcz"):
    path = tmp_path / name
    formats.write(path, tensors, graph=graph if isinstance(graph, bytes) else graph.SerializeToString())
    return path


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cut", [0.5, 0.9, 0.999])
def test_truncated_file_gives_format_error(tmp_path, parts, backend, cut):
    _, tensors, graph = parts
    data = write(tmp_path, tensors, graph).read_bytes()
    bad = tmp_path / "cut.dcz"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(formats.FormatError):
        runtime.load(bad, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_flipped_byte_is_caught_or_harmless(tmp_path, parts, backend):
    """A flipped byte anywhere: FormatError at load (CRC, structure), never a crash or a wrong answer."""
    _, tensors, graph = parts
    good = write(tmp_path, tensors, graph)
    data = bytearray(good.read_bytes())
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    (want,) = runtime.load(good, backend=backend).run(x)
    positions = np.random.default_rng(7).choice(len(data), size=25, replace=False)
    for pos in positions:
        flipped = bytearray(data)
        flipped[pos] ^= 0x40
        path = tmp_path / "flip.dcz"
        path.write_bytes(bytes(flipped))
        try:
            model = runtime.load(path, backend=backend)
        except (formats.FormatError, DczRuntimeError):
            continue
        # Only padding bytes may change silently; then the answer must be unchanged.
        (got,) = model.run(x)
        np.testing.assert_array_equal(got, want, err_msg=f"flipped byte {pos} changed the output silently")


def _graph_with(parts, edit):
    weights, _, _ = parts
    model = lenet_300_100_graph(weights)
    edit(model)
    return model


@pytest.mark.parametrize("backend", BACKENDS)
def test_graph_names_a_tensor_the_file_lacks(tmp_path, parts, backend):
    _, tensors, graph = parts
    path = write(tmp_path, [t for t in tensors if t.name != "fc2.weight"], graph)
    with pytest.raises(DczRuntimeError, match="'fc2.weight'.*does not store it"):
        runtime.load(path, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_file_stores_a_tensor_the_graph_does_not_use(tmp_path, parts, backend):
    _, tensors, graph = parts
    path = write(tmp_path, list(tensors) + [formats.Raw("stray", np.zeros(3, np.float32))], graph)
    with pytest.raises(DczRuntimeError, match="'stray'"):
        runtime.load(path, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_shape_disagreeing_with_graph_is_named(tmp_path, parts, backend):
    _, tensors, _ = parts

    def edit(model):
        for init in model.graph.initializer:
            if init.name == "fc3.bias":
                init.CopyFrom(placeholder("fc3.bias", np.zeros(11, np.float32)))

    path = write(tmp_path, tensors, _graph_with(parts, edit))
    with pytest.raises(DczRuntimeError, match=r"'fc3.bias'.*shape \(10,\).*\(11,\)"):
        runtime.load(path, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dtype_disagreeing_with_graph_is_named(tmp_path, parts, backend):
    _, tensors, _ = parts

    def edit(model):
        for init in model.graph.initializer:
            if init.name == "fc1.bias":
                init.data_type = onnx.TensorProto.FLOAT16

    path = write(tmp_path, tensors, _graph_with(parts, edit))
    with pytest.raises(DczRuntimeError, match="'fc1.bias'.*float32.*float16"):
        runtime.load(path, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_external_data_pointing_elsewhere_is_refused(tmp_path, parts, backend):
    _, tensors, _ = parts

    def edit(model):
        model.graph.initializer[0].external_data[0].value = "/etc/passwd"

    path = write(tmp_path, tensors, _graph_with(parts, edit))
    with pytest.raises(DczRuntimeError, match="/etc/passwd"):
        runtime.load(path, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("graph", [b"", b"\x00garbage\xff" * 10])
def test_missing_or_garbage_graph(tmp_path, parts, backend, graph):
    _, tensors, _ = parts
    path = write(tmp_path, tensors, graph)
    with pytest.raises(DczRuntimeError, match="graph"):
        runtime.load(path, backend=backend)


def test_ort_rejecting_a_graph_is_a_runtime_error(tmp_path, parts):
    """A node ORT cannot build (shape clash inside the graph) surfaces as DczRuntimeError, not ORT's type."""
    _, tensors, _ = parts

    def edit(model):
        model.graph.node[1].attribute[0].i = 0  # fc1 Gemm transB=0: (batch,784) @ (300,784) is invalid

    path = write(tmp_path, tensors, _graph_with(parts, edit))
    x = np.zeros((1, 1, 28, 28), np.float32)
    with pytest.raises(DczRuntimeError):
        runtime.load(path, backend="ort").run(x)
    with pytest.raises(DczRuntimeError, match="fc1"):
        runtime.load(path, backend="numpy").run(x)


def test_graph_with_newer_ir_version_runs_in_ort(tmp_path, parts):
    """onnx stamps its newest IR version; ORT may be older. The runtime adapts the in-memory copy."""
    weights, tensors, _ = parts

    def edit(model):
        model.ir_version = onnx.IR_VERSION

    path = write(tmp_path, tensors, _graph_with(parts, edit))
    x = np.zeros((1, 1, 28, 28), np.float32)
    (a,) = runtime.load(path, backend="ort").run(x)
    (b,) = runtime.load(path, backend="numpy").run(x)
    np.testing.assert_allclose(a, b, atol=1e-5)
