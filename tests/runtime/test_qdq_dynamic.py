"""Dynamic int8 (runtime/qdq_dynamic.py): integer MatMul / Gemm in ORT, close to the float (NumPy) run."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_builders import dense_model

from dcz import runtime
from dcz.compressor.errors import CompressError
from dcz.compressor.onnx_in import compress_onnx
from dcz.runtime.qdq_dynamic import to_dynamic

pytest.importorskip("onnxruntime")
RNG = np.random.default_rng(11)


def _mlp() -> onnx.ModelProto:
    weights = {
        "w1": RNG.normal(0, 0.2, (32, 512)).astype(np.float32),  # Gemm transB: (N, K)
        "b1": RNG.normal(0, 0.1, (32,)).astype(np.float32),
        "w2": RNG.normal(0, 0.2, (32, 64)).astype(np.float32),  # MatMul: (K, N)
    }
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    return dense_model(nodes, {"x": ["n", 512]}, {"y": ["n", 64]}, weights)


@pytest.mark.parametrize("per_channel", [False, True])
def test_dynamic_file_runs_integer_matmuls_close_to_the_float_run(tmp_path, per_channel):
    path = tmp_path / "d.dcz"
    config = {"global": {"quantize": "int8", "per_channel": per_channel}, "min_weights": 1}
    compress_onnx(_mlp(), config, out_path=path, dynamic=True)
    x = RNG.normal(0, 1, (16, 512)).astype(np.float32)
    got = runtime.load(path, backend="ort").run(x)[0]
    want = runtime.load(path, backend="numpy").run(x)[0]
    # run-time activation rounding (255 levels over each batch's range): a few steps of error, never zero
    assert np.abs(got - want).max() <= 0.03 * np.abs(want).max()
    assert not np.array_equal(got, want)
    assert runtime.load(path, backend="ort").metadata["compress.dynamic"] is True


def test_rebuild_uses_integer_ops_and_drops_the_float_weights():
    result = compress_onnx(_mlp(), {"global": {"quantize": "int8"}, "min_weights": 1}, dynamic=True)
    from dcz import formats

    with formats.loads(result.dcz) as dcz:
        arrays = {n: dcz.tensor(n) for n in dcz.names}
        model, rest = to_dynamic(onnx.load_from_string(result.graph), arrays, dcz.metadata)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MatMulInteger") == 2 and ops.count("DynamicQuantizeLinear") == 2
    assert "w1" not in rest and "w2" not in rest  # b1 stays (inline or external)
    assert {i.name for i in model.graph.initializer}.isdisjoint({"w1", "w2"})


def test_dynamic_needs_int8_weights_and_no_calibration():
    with pytest.raises(CompressError, match="8-bit linear weights"):
        compress_onnx(_mlp(), {"global": {"quantize": "int4"}, "min_weights": 1}, dynamic=True)
    with pytest.raises(CompressError, match="not both"):
        compress_onnx(_mlp(), {"global": {"quantize": "int8"}}, dynamic=True, calib={"x": np.zeros((4, 512))})


def test_a_batched_matmul_weight_stays_float_and_the_file_runs():
    """A 3-D constant MatMul weight (batched matmul) has no MatMulInteger form here: it runs float."""
    w = RNG.normal(0, 0.2, (4, 64, 32)).astype(np.float32)
    model = dense_model(
        [helper.make_node("MatMul", ["x", "w3"], ["y"])], {"x": [4, "n", 64]}, {"y": [4, "n", 32]}, {"w3": w}
    )
    result = compress_onnx(model, {"global": {"quantize": "int8"}, "min_weights": 1}, dynamic=True)
    from dcz import formats

    with formats.loads(result.dcz) as dcz:
        arrays = {n: dcz.tensor(n) for n in dcz.names}
        rebuilt, rest = to_dynamic(onnx.load_from_string(result.graph), arrays, dcz.metadata)
    assert [n.op_type for n in rebuilt.graph.node] == ["MatMul"] and "w3" in rest
    x = RNG.normal(0, 1, (4, 8, 64)).astype(np.float32)
    got = runtime.load(result.dcz, backend="ort").run(x)[0]
    want = runtime.load(result.dcz, backend="numpy").run(x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
