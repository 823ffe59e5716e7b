"""A .dcz may hold a tensor its graph never reads (an older writer kept unused initializers): both backends load it."""

import numpy as np
from onnx import TensorProto, helper

from dcz import formats, runtime
from dcz.compressor.onnx_graph import make_placeholder


def test_tensor_the_graph_never_reads_is_ignored(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 4)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [x],
        [y],
        [make_placeholder("w", TensorProto.FLOAT, [16, 4]), make_placeholder("u", TensorProto.FLOAT, [8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "m.dcz"
    tensors = [formats.Raw("w", w), formats.Raw("u", np.zeros(8, np.float32))]
    formats.write(path, tensors, graph=model.SerializeToString(), graph_format="onnx")
    feed = np.ones((1, 16), np.float32)
    for backend in ("ort", "numpy"):
        np.testing.assert_allclose(runtime.load(path, backend=backend).run(feed)[0], feed @ w, rtol=1e-5)
