"""Small hand-made ONNX graphs for tests in every folder (no torch needed); importable from any test
as `onnx_builders` (pytest puts tests/, the folder of conftest.py, on sys.path).
tests/runtime/rt_onnx_builders.py adds the runtime's placeholders and LeNet graphs on top."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # what onnxruntime 1.17+ reads


def make_model(nodes, inputs, outputs, initializers=(), opset=OPSET) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    return model


def value(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def inline(name, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def dense_model(nodes, inputs: dict, outputs: dict, weights: dict[str, np.ndarray], opset=OPSET) -> onnx.ModelProto:
    """A float graph from {input: shape}, {output: shape} and {initializer name: array} (kept in the graph)."""
    return make_model(
        nodes,
        [value(name, shape) for name, shape in inputs.items()],
        [value(name, shape) for name, shape in outputs.items()],
        [inline(name, array) for name, array in weights.items()],
        opset,
    )
