"""An inline initializer whose values onnx cannot read (here: element type UNDEFINED) is the runtime's error,
naming it, not onnx's TypeError (an atheris finding)."""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper

from dcz.runtime.errors import DczRuntimeError
from dcz.runtime.numpy_exec.executor import NumpyExecutor


def test_undefined_element_type_is_named():
    bad = TensorProto(name="k", data_type=TensorProto.UNDEFINED, dims=[1])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Add", ["x", "k"], ["y"])], "g", [x], [y], [bad])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(DczRuntimeError, match="initializer 'k'"):
        NumpyExecutor(model, {})
