"""Weights inside If branches (silero-vad's layout): found, moved to the main graph and compressed; the graph
stays valid (onnx.checker, ONNX Runtime on both branches); constants read inside a branch stay inline;
a name defined in two sibling branches is left where it is."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from dcz import formats, runtime
from dcz.compressor.onnx_graph import find_weights, is_placeholder
from dcz.compressor.onnx_in import compress_onnx
from dcz.compressor.onnx_subgraphs import all_graphs, hoist_to_main

RNG = np.random.default_rng(3)
HIDDEN, FEATURES, STEPS = 32, 32, 5
W_IH = RNG.normal(0, 0.2, (4 * HIDDEN, FEATURES)).astype(np.float32)  # main graph, sliced in the branch
W_HH = RNG.normal(0, 0.2, (1, 4 * HIDDEN, HIDDEN)).astype(np.float32)  # a Constant node in the branch
W_FC = RNG.normal(0, 0.2, (HIDDEN, 48)).astype(np.float32)  # an initializer of the branch
W_OTHER = RNG.normal(0, 0.2, (FEATURES, 48)).astype(np.float32)  # a Constant of the other branch


def const(name, array):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(array), name))


def lstm_branch() -> onnx.GraphProto:
    """x (STEPS, 1, FEATURES) -> LSTM whose W is weight_ih with its two gate halves swapped by Slice + Concat
    (as PyTorch exports its gate order), R a Constant -> last hidden state -> Reshape (shape read as a
    constant inside the branch) -> MatMul with the branch's own initializer."""
    nodes = [
        const("half", np.array([2 * HIDDEN], np.int64)),
        const("zero", np.array([0], np.int64)),
        const("end", np.array([4 * HIDDEN], np.int64)),
        helper.make_node("Slice", ["w_ih", "zero", "half"], ["first"]),
        helper.make_node("Slice", ["w_ih", "half", "end"], ["second"]),
        helper.make_node("Concat", ["second", "first"], ["w_gates"], axis=0),
        helper.make_node("Unsqueeze", ["w_gates", "axis0"], ["w_lstm"]),
        const("w_hh", W_HH),
        helper.make_node("LSTM", ["x", "w_lstm", "w_hh"], ["", "h"], hidden_size=HIDDEN),
        helper.make_node("Reshape", ["h", "flat"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w_fc"], ["then_y"]),
    ]
    return helper.make_graph(
        nodes,
        "then",
        [],
        [helper.make_tensor_value_info("then_y", TensorProto.FLOAT, [1, 48])],
        [numpy_helper.from_array(W_FC, "w_fc")],
    )


def other_branch(name: str = "w_other") -> onnx.GraphProto:
    nodes = [
        const(name, W_OTHER),
        helper.make_node("ReduceSum", ["x", "axes0"], ["mean"], keepdims=0),
        helper.make_node("MatMul", ["mean", name], ["else_y"]),
    ]
    out = helper.make_tensor_value_info("else_y", TensorProto.FLOAT, [1, 48])
    return helper.make_graph(nodes, "else", [], [out])


def if_model(else_branch=None) -> onnx.ModelProto:
    inits = [
        numpy_helper.from_array(W_IH, "w_ih"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array([0], np.int64), "axes0"),
        numpy_helper.from_array(np.array([1, HIDDEN], np.int64), "flat"),
    ]
    node = helper.make_node(
        "If", ["cond"], ["y"], then_branch=lstm_branch(), else_branch=else_branch or other_branch(), name="if"
    )
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [STEPS, 1, FEATURES]),
        helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
    ]
    graph = helper.make_graph(
        [node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 48])], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def feeds(cond: bool) -> dict:
    x = np.sin(np.arange(STEPS * FEATURES, dtype=np.float32)).reshape(STEPS, 1, FEATURES)
    return {"x": x, "cond": np.array(cond)}


def test_weights_in_branches_are_found_through_slice_and_concat():
    found = {w.name: (w.op_type, w.origin) for w in find_weights(if_model())}
    assert found == {
        "w_ih": ("LSTM", "initializer"),
        "w_hh": ("LSTM", "constant"),
        "w_fc": ("MatMul", "constant"),
        "w_other": ("MatMul", "constant"),
    }


def test_hoisting_keeps_the_model_valid_and_its_outputs():
    model = if_model()
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    hoist_to_main(model, ["w_hh", "w_fc", "w_other"])
    onnx.checker.check_model(model, full_check=True)
    assert {t.name for t in model.graph.initializer} >= {"w_hh", "w_fc", "w_other"}
    assert not any(n.op_type == "Constant" and n.output[0] == "w_hh" for g in all_graphs(model) for n in g.node)
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for cond in (True, False):
        np.testing.assert_array_equal(after.run(None, feeds(cond))[0], before.run(None, feeds(cond))[0])


def test_branch_weights_are_compressed_and_both_branches_run(tmp_path):
    model = if_model()
    out = tmp_path / "if.dcz"
    compress_onnx(model, out_path=out)
    with formats.open(out) as stored:
        assert set(stored.metadata["compress.layers"]) == {"w_ih", "w_hh", "w_fc", "w_other"}
    dense = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with runtime.load(out) as loaded:
        graph = onnx.load_from_string(loaded.graph)
        placeholders = {t.name for t in graph.graph.initializer if is_placeholder(t)}
        assert placeholders >= {"w_ih", "w_hh", "w_fc", "w_other"}
        assert "flat" not in placeholders and "axis0" not in placeholders  # read as constants in the branch
        for cond in (True, False):
            want = dense.run(None, feeds(cond))[0]
            got = loaded.run(feeds(cond))[0]
            assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.05
    exported = runtime.export_onnx(out, tmp_path / "if.onnx")
    onnx.checker.check_model(onnx.load(str(exported)), full_check=True)


def test_a_name_defined_in_two_branches_stays_where_it_is(tmp_path):
    """Sibling branches may each define the same name: moving either would leave the other's a duplicate."""
    model = if_model(else_branch=other_branch(name="w_hh"))
    names = {w.name for w in find_weights(model)}
    assert "w_hh" not in names and {"w_ih", "w_fc"} <= names
    out = tmp_path / "dup.dcz"
    compress_onnx(model, out_path=out)
    dense = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with runtime.load(out) as loaded:
        for cond in (True, False):
            want = dense.run(None, feeds(cond))[0]
            assert np.linalg.norm(loaded.run(feeds(cond))[0] - want) / np.linalg.norm(want) < 0.05


@pytest.mark.parametrize("backend", ["numpy"])
def test_numpy_backend_refuses_naming_the_if(tmp_path, backend):
    out = tmp_path / "if.dcz"
    compress_onnx(if_model(), out_path=out)
    with pytest.raises(runtime.DczRuntimeError, match=r"\(If\)"):
        runtime.load(out, backend=backend)


def test_constant_reads_inside_branches_count():
    from dcz.compressor.onnx_inline import constant_read

    assert {"flat", "axes0", "axis0", "zero", "half", "end"} <= constant_read(if_model())
