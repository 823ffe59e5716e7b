"""int8 weights behind DequantizeLinear (a QDQ model from onnxruntime's quantize_static) are stored
losslessly: the .dcz computes exactly what the quantized model computes, on both backends."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dcz import runtime
from dcz.compressor.onnx_in import compress_onnx
from dcz.runtime.numpy_exec import NumpyExecutor

quantization = pytest.importorskip("onnxruntime.quantization")


def float_model(rng, weights) -> onnx.ModelProto:
    """Conv -> Relu -> Flatten -> MatMul, weights drawn by `weights(shape)`."""
    inits = [
        numpy_helper.from_array(weights((32, 8, 3, 3)), "conv.w"),
        numpy_helper.from_array(rng.normal(size=(32,)).astype(np.float32), "conv.b"),
        numpy_helper.from_array(weights((32 * 6 * 6, 64)) * np.float32(0.05), "fc.w"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc.w"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = helper.make_model(
        helper.make_graph(nodes, "qdq", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    return model


def quantized(tmp_path, weights, inputs, rng):
    """A per-channel int8 QDQ model made by onnxruntime.quantization.quantize_static."""
    source, target = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    onnx.save(float_model(rng, weights), source)

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{"x": x} for x in inputs])

        def get_next(self):
            return next(self.feeds, None)

    quantization.quantize_static(
        str(source),
        str(target),
        Reader(),
        quant_format=quantization.QuantFormat.QDQ,
        per_channel=True,
        weight_type=quantization.QuantType.QInt8,
    )
    return target


def numpy_outputs(model_path, x):
    """The NumPy executor on the plain .onnx (every initializer inline): the reference for the .dcz."""
    return NumpyExecutor(onnx.load(model_path), {}).run({"x": x})[0]


def test_trained_like_int8_weights_stored_exactly(tmp_path):
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(1, 8, 8, 8)).astype(np.float32) for _ in range(4)]
    # Heavy-tailed like trained weights (outliers set the per-channel scale): most integers sit near 0.
    source = quantized(tmp_path, lambda shape: rng.standard_t(3, size=shape).astype(np.float32), inputs, rng)
    out = tmp_path / "qdq.dcz"
    result = compress_onnx(source, out_path=out)
    stored = {entry.name for entry in result.plan.tensors}
    # The large matrix moves to the .dcz (read back through a Cast to int8); the 2,304-weight conv
    # is smaller zlib-compressed in the graph than as an entry of its own, so it stays there.
    assert stored == {"fc.w_quantized.float32"}, result.plan.kept_raw
    assert "already quantized" in result.plan.kept_raw["conv.w_quantized"]
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    step = next(numpy_helper.to_array(t) for t in onnx.load(source).graph.initializer if t.name == "y_scale")
    for x in inputs:
        with runtime.load(out, backend="ort") as loaded:
            by_ort = loaded.run({"x": x})[0]
        np.testing.assert_array_equal(by_ort, session.run(None, {"x": x})[0])
        with runtime.load(out, backend="numpy") as loaded:
            by_numpy = loaded.run({"x": x})[0]
        np.testing.assert_array_equal(by_numpy, numpy_outputs(source, x))
        # The NumPy QDQ ops agree with ORT's kernels up to a rounding flip of one output step.
        np.testing.assert_allclose(by_numpy, by_ort, rtol=0, atol=1.01 * float(step))


def test_high_entropy_int8_weights_stay_in_graph(tmp_path):
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(1, 8, 8, 8)).astype(np.float32) for _ in range(2)]
    # Gaussian weights fill the int8 range (~7.4 bits of entropy): coded labels would not beat zlib.
    source = quantized(tmp_path, lambda shape: rng.normal(size=shape).astype(np.float32), inputs, rng)
    result = compress_onnx(source, out_path=tmp_path / "qdq.dcz")
    assert "already quantized" in result.plan.kept_raw["fc.w_quantized"]
    import onnxruntime as ort

    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    with runtime.load(tmp_path / "qdq.dcz", backend="ort") as loaded:
        np.testing.assert_array_equal(loaded.run({"x": inputs[0]})[0], session.run(None, {"x": inputs[0]})[0])
