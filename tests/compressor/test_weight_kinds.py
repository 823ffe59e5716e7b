"""Every common weight kind is found and compressed, and the graph still computes the same thing.

ConvTranspose, depthwise Conv, Gemm with transA/transB, MatMul with the weight on the left,
a Gather embedding table, and a float16 weight (widened to float32 for the codebook, cast back in
the graph) in one hand-built model, checked in ONNX Runtime against the dense model.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from dcz import runtime
from dcz.compressor.onnx_in import compress_onnx

RNG = np.random.default_rng(0)
WEIGHTS = {
    "deconv.w": RNG.normal(size=(16, 128, 3, 3)),  # ConvTranspose: (in, out, k, k)
    "dw.w": RNG.normal(size=(128, 1, 5, 5)),  # depthwise Conv, group 128
    "gemm.w": RNG.normal(size=(64, 32)),  # Gemm transA=1, transB=0: y = a^T w
    "left.w": RNG.normal(size=(256, 64)),  # MatMul(left.w, x): the weight on the left
    "emb.w": RNG.normal(size=(500, 32)),  # Gather embedding table
}
HALF = RNG.normal(size=(32, 32)).astype(np.float16)  # a float16 MatMul weight


def build() -> onnx.ModelProto:
    nodes = [
        helper.make_node("ConvTranspose", ["img", "deconv.w"], ["up"], kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("Conv", ["up", "dw.w"], ["dw"], kernel_shape=[5, 5], group=128),
        helper.make_node("Gemm", ["a", "gemm.w"], ["g"], transA=1),
        helper.make_node("MatMul", ["left.w", "x"], ["l"]),
        helper.make_node("Gather", ["emb.w", "ids"], ["e"]),
        helper.make_node("Cast", ["e"], ["e16"], to=TensorProto.FLOAT16),
        helper.make_node("MatMul", ["e16", "half.w"], ["h"]),
    ]
    inits = [numpy_helper.from_array(w.astype(np.float32), n) for n, w in WEIGHTS.items()]
    inits.append(numpy_helper.from_array(HALF, "half.w"))
    f = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("img", f, [1, 16, 5, 5]),
        helper.make_tensor_value_info("a", f, [64, 3]),
        helper.make_tensor_value_info("x", f, [64, 5]),
        helper.make_tensor_value_info("ids", TensorProto.INT64, [6]),
    ]
    types = {"dw": f, "g": f, "l": f, "h": TensorProto.FLOAT16}
    outputs = [helper.make_tensor_value_info(n, t, None) for n, t in types.items()]
    model = helper.make_model(helper.make_graph(nodes, "kinds", inputs, outputs, inits))
    model.opset_import[0].version = 17
    model.ir_version = 8
    return model


def feeds() -> dict:
    return {
        "img": RNG.normal(size=(1, 16, 5, 5)).astype(np.float32),
        "a": RNG.normal(size=(64, 3)).astype(np.float32),
        "x": RNG.normal(size=(64, 5)).astype(np.float32),
        "ids": np.array([0, 7, 499, 3, 3, 250], np.int64),
    }


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    out = tmp_path_factory.mktemp("kinds") / "kinds.dcz"
    return compress_onnx(build(), out_path=out), out


def test_every_weight_kind_is_compressed(compressed):
    result, _ = compressed
    assert set(result.layers) == {*WEIGHTS, "half.w"}
    assert result.plan.kept_raw == {}
    assert all(s.sqnr_db >= 38 for s in result.layers.values())


def test_outputs_match_the_dense_model_and_half_stays_half(compressed):
    _, out = compressed
    x = feeds()
    dense = ort.InferenceSession(build().SerializeToString(), providers=["CPUExecutionProvider"])
    expected = dense.run(None, x)
    with runtime.load(out) as model:
        got = model.run(x)
    for want, have in zip(expected, got):
        assert have.dtype == want.dtype
        error = np.linalg.norm(have.astype(np.float64) - want) / np.linalg.norm(want.astype(np.float64))
        assert error < 0.02


def recurrent_model(op_type: str, gates: int) -> onnx.ModelProto:
    """X -> LSTM / GRU / RNN (hidden 32) with float32 W and R, plus a float16 weight behind a Cast."""
    hidden, size = 32, 16
    w = RNG.normal(size=(1, gates * hidden, size)).astype(np.float32)
    r = RNG.normal(size=(1, gates * hidden, hidden)).astype(np.float32) / 4
    half = RNG.normal(size=(hidden, 64)).astype(np.float16)
    nodes = [
        helper.make_node(op_type, ["x", "w", "r"], ["", "h"], hidden_size=hidden),
        helper.make_node("Cast", ["half"], ["half32"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["h", "half32"], ["y"]),
    ]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(r, "r"), numpy_helper.from_array(half, "half")]
    graph = helper.make_graph(
        nodes,
        "rnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 2, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph)
    model.opset_import[0].version = 17
    model.ir_version = 8
    return model


@pytest.mark.parametrize("op_type, gates", [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_recurrent_weights_and_a_weight_behind_a_cast(op_type, gates, tmp_path):
    model = recurrent_model(op_type, gates)
    result = compress_onnx(model, out_path=tmp_path / "rnn.dcz")
    assert {"w", "r", "half"} <= set(result.layers) | set(result.plan.kept_raw)
    assert {"w", "half"} <= set(result.layers)  # (RNN's r, 1 x 32 x 32, is too small for a codebook)
    x = {"x": RNG.normal(size=(5, 2, 16)).astype(np.float32)}
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    with runtime.load(tmp_path / "rnn.dcz") as loaded:
        got = loaded.run(x)[0]
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.05  # recurrence amplifies: 2.6% for LSTM
