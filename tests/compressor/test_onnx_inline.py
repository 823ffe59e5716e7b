"""Graph surgery keeps graphs valid: tensors read as constants stay inline; -1 dims mean dynamic."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dcz import formats as dcz_formats
from dcz import runtime
from dcz.compressor.onnx_graph import is_placeholder
from dcz.compressor.onnx_in import compress_onnx

RNG = np.random.default_rng(0)
W = RNG.normal(size=(32, 3, 3, 3)).astype(np.float32)  # large enough that storing it apart pays (never_larger)


def resize_model() -> onnx.ModelProto:
    """Conv -> Resize with float scales (an initializer of 4 values) -> Reshape; input dim 0 is -1."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["c", "", "scales"], ["r"], mode="nearest"),
        helper.make_node("Mul", ["r", "gain"], ["m"]),
        helper.make_node("Reshape", ["m", "shape"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(W, "w"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        numpy_helper.from_array(np.array(1.5, np.float32), "gain"),  # a scalar: stays inline
        numpy_helper.from_array(np.array([0, -1], np.int64), "shape"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    return model


def test_constant_read_tensors_stay_inline_and_ort_loads(tmp_path):
    out = tmp_path / "m.dcz"
    compress_onnx(resize_model(), out_path=out)
    with runtime.load(out, backend=None) as loaded:
        inits = {t.name: t for t in onnx.load_from_string(loaded.graph).graph.initializer}
    assert is_placeholder(inits["w"])
    assert not any(is_placeholder(inits[n]) for n in ("scales", "gain", "shape"))
    x = RNG.normal(size=(2, 3, 8, 8)).astype(np.float32)  # batch 2 against the graph's -1
    with runtime.load(out, backend="ort") as model:
        (y,) = model.run(x)
        assert y.shape == (2, 32 * 16 * 16)


def unused_initializer_model() -> onnx.ModelProto:
    """MatMul reads `w`; `unused` is an initializer nothing reads (exporters leave such tensors)."""
    inits = [
        numpy_helper.from_array(RNG.normal(size=(64, 32)).astype(np.float32), "w"),
        numpy_helper.from_array(RNG.normal(size=(64, 64)).astype(np.float32), "unused"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_unused_initializers_are_dropped_and_both_backends_load(tmp_path):
    out = tmp_path / "m.dcz"
    compress_onnx(unused_initializer_model(), out_path=out)
    with dcz_formats.open(out) as file:
        assert "unused" not in file
        assert file.metadata["compress.dropped_unused"] == ["unused"]
    x = np.ones((1, 64), np.float32)
    ort_y = runtime.load(out).run(x)
    np.testing.assert_allclose(runtime.load(out, backend="numpy").run(x)[0], ort_y[0], rtol=1e-5, atol=1e-5)
