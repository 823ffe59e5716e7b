"""ONNX models saved with external data (the layout of models over 2 GB): compressed from their
path, the .dcz computes what the model computes; a ModelProto whose data was not loaded is refused
in one line naming the initializer."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dcz import runtime
from dcz.compressor.errors import CompressError
from dcz.compressor.onnx_in import compress_onnx


def mlp(rng) -> onnx.ModelProto:
    inits = [
        numpy_helper.from_array(rng.normal(size=(64, 128)).astype(np.float32), "fc1.w"),
        numpy_helper.from_array(rng.normal(size=(128, 10)).astype(np.float32), "fc2.w"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "fc1.w"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "fc2.w"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])
    graph = helper.make_graph(nodes, "mlp", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_external_data_model_compresses_from_its_path(tmp_path):
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    path = tmp_path / "mlp.onnx"
    onnx.save(
        mlp(rng), path, save_as_external_data=True, all_tensors_to_one_file=True, location="mlp.data", size_threshold=0
    )
    assert (tmp_path / "mlp.data").stat().st_size > path.stat().st_size  # the weights really are outside
    out = tmp_path / "mlp.dcz"
    result = compress_onnx(path, out_path=out)
    assert {"fc1.w", "fc2.w"} <= set(result.layers)
    x = rng.normal(size=(2, 64)).astype(np.float32)
    dense = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for backend in ("ort", "numpy"):
        with runtime.load(out, backend=backend) as loaded:
            np.testing.assert_allclose(loaded.run({"x": x})[0], dense, rtol=0.05, atol=0.05 * np.abs(dense).max())


def test_external_data_not_loaded_is_refused_naming_the_initializer(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp(np.random.default_rng(1)), path, save_as_external_data=True, location="mlp.data", size_threshold=0)
    model = onnx.load(path, load_external_data=False)
    with pytest.raises(CompressError, match=r"initializer 'fc1.w' holds no values \(its data is external"):
        compress_onnx(model)
