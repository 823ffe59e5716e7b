"""A graph ONNX Runtime refuses is one DczRuntimeError and nothing on stdout: ORT's Python layer prints an
"EP Error" banner and retries unless its fallback is off (an atheris finding: a refused node whose name is not UTF-8)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from dcz.runtime.errors import DczRuntimeError
from dcz.runtime.ort_backend import OrtSession


def _graph(op: str) -> tuple[object, bytes]:
    """A one-node graph, and its bytes with the node's name made invalid UTF-8."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    node = helper.make_node(op, ["x"], ["y"], name="QQQQ")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    data = model.SerializeToString()
    assert data.count(b"QQQQ") == 1
    return model, data.replace(b"QQQQ", b"\xbe\xbe\xbe\xbe")


def test_refused_graph_prints_nothing(capfd):
    # ORT's refusal names the node; its message is then not UTF-8 either, which Python's layer fails to decode
    model, data = _graph("NoSuchOp")
    with pytest.raises(DczRuntimeError, match="ONNX Runtime refused the graph"):
        OrtSession(model, {}, serialized=data)
    out, err = capfd.readouterr()
    assert "EP Error" not in out + err


def test_good_graph_still_runs():
    model, data = _graph("Relu")
    session = OrtSession(model, {}, serialized=data)
    (y,) = session.run({"x": np.array([-1.0], np.float32)})
    assert y.tolist() == [0.0]
