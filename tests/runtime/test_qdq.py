"""int8 QDQ rebuild (runtime/qdq.py): linear weights + calibrated activations run in ORT, agree with NumPy."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dcz import runtime
from dcz.compressor.onnx_in import compress_onnx
from dcz.runtime.errors import DczRuntimeError
from dcz.runtime.qdq import integer_weight, to_qdq

pytest.importorskip("onnxruntime")
RNG = np.random.default_rng(5)


def _cnn() -> onnx.ModelProto:
    inits = [
        numpy_helper.from_array(RNG.normal(0, 0.3, (8, 1, 3, 3)).astype(np.float32), "wc"),
        numpy_helper.from_array(RNG.normal(0, 0.1, (8,)).astype(np.float32), "bc"),
        numpy_helper.from_array(RNG.normal(0, 0.1, (10, 8 * 6 * 6)).astype(np.float32), "wf"),
        numpy_helper.from_array(RNG.normal(0, 0.1, (10,)).astype(np.float32), "bf"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "wc", "bc"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_int8_file_runs_qdq_in_ort_and_agrees_with_numpy(tmp_path, method):
    # per tensor: the runtime rebuilds the QDQ graph (per channel: the stored graph is one, test below)
    x = RNG.random((40, 1, 8, 8), dtype=np.float32)
    path = tmp_path / "m.dcz"
    config = {"global": {"quantize": "int8"}, "min_weights": 1}
    compress_onnx(_cnn(), config, out_path=path, calib={"x": x}, calib_method=method)
    ort_model = runtime.load(path, backend="ort")
    assert set(ort_model.metadata["compress.activations"]) >= {"x", "r"}
    got = ort_model.run(x)[0]
    want = runtime.load(path, backend="numpy").run(x)[0]
    # activation rounding: the int8 run differs from the float (dequantized) run by a few activation steps
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
    assert not np.array_equal(got, want)  # activations really were quantized


def test_weight_only_int8_is_exact_against_the_float_graph(tmp_path):
    # also the QDQ rebuild of weights alone: DequantizeLinear(int8) gives back the stored floats exactly
    model = _cnn()
    result = compress_onnx(model, {"global": {"quantize": "int8"}})
    from dcz import formats

    with formats.loads(result.dcz) as dcz:
        arrays = {n: dcz.tensor(n) for n in dcz.names}
        qdq_model, rest = to_qdq(model, arrays, dcz.metadata)
    assert "wf" not in rest and qdq_model.graph.node[0].op_type == "DequantizeLinear"  # wc: raw (72 weights)
    path = tmp_path / "w.dcz"
    compress_onnx(_cnn(), {"global": {"quantize": "int8"}}, out_path=path)
    x = RNG.random((4, 1, 8, 8), dtype=np.float32)
    got = runtime.load(path, backend="ort").run(x)[0]
    want = runtime.load(path, backend="numpy").run(x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_integer_weight_refuses_a_weight_off_its_grid():
    info = {"signed": True, "scale": [0.5], "zero_point": [0]}
    assert integer_weight("w", np.array([[1.0, -0.5]], np.float32), info).tolist() == [[2, -1]]
    with pytest.raises(DczRuntimeError, match="not on its grid"):
        integer_weight("w", np.array([[0.3]], np.float32), info)


def test_to_qdq_leaves_files_without_8_bit_grids_alone():
    model = _cnn()
    out, arrays = to_qdq(model, {}, {"compress.linear": {"wc": {"bits": 4}}})
    assert [n.op_type for n in out.graph.node] == [n.op_type for n in model.graph.node] and arrays == {}


def test_int4_weights_with_static_activations_run_int8_kernels(tmp_path):
    # an int4 grid's levels are int8 values: the QDQ graph carries them as int8 for ORT's int8 kernels
    x = RNG.random((40, 1, 8, 8), dtype=np.float32)
    path = tmp_path / "m4.dcz"
    compress_onnx(_cnn(), {"global": {"quantize": "int4"}}, out_path=path, calib={"x": x}, calib_method="minmax")
    from dcz import formats

    with formats.open(path) as dcz:
        arrays = {n: dcz.tensor(n) for n in dcz.names}
        graph = onnx.load_from_string(runtime.load(path, backend="numpy").onnx_model.SerializeToString())
        qdq_model, _ = to_qdq(graph, arrays, dcz.metadata)
    q = {i.name: numpy_helper.to_array(i) for i in qdq_model.graph.initializer}["wf__dcz_q"]
    assert q.dtype == np.int8 and -8 <= q.min() and q.max() <= 7 and len(np.unique(q)) > 8
    got = runtime.load(path, backend="ort").run(x)[0]
    want = runtime.load(path, backend="numpy").run(x)[0]
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max() and not np.array_equal(got, want)


def test_per_channel_int8_is_stored_as_int8_behind_dequantize_linear_with_axis(tmp_path):
    # no codebook per channel: the graph is the QDQ graph, its weights decode straight to int8 (compressor/onnx_qdq_graph)
    x = RNG.random((40, 1, 8, 8), dtype=np.float32)
    path, model = tmp_path / "pc.dcz", _cnn()
    float_out = runtime.load(compress_onnx(model, {"min_weights": 10**9}).dcz, backend="numpy").run(x)[0]
    config = {"global": {"quantize": "int8", "per_channel": True}, "min_weights": 1}
    compress_onnx(model, config, out_path=path, calib={"x": x}, calib_method="minmax")
    loaded = runtime.load(path, backend=None)
    assert "compress.activations" not in loaded.metadata and loaded.metadata["compress.linear"]["wf"]["axis"] == 0
    nodes = loaded.onnx_model.graph.node
    weight_dq = [n for n in nodes if n.op_type == "DequantizeLinear" and n.output[0] in ("wc", "wf")]
    assert [n.output[0] for n in weight_dq] == ["wf"]  # wc (72 weights) stays raw: 256 levels cost more
    assert all([a.i for a in n.attribute if a.name == "axis"] == [0] for n in weight_dq)
    assert sum(n.op_type == "QuantizeLinear" for n in nodes) >= 2  # the calibrated activations
    got = runtime.load(path, backend="ort").run(x)[0]
    want = runtime.load(path, backend="numpy").run(x)[0]  # the NumPy executor runs the same QDQ graph
    assert np.abs(got - want).max() <= 0.01 * np.abs(want).max()
    assert np.abs(got - float_out).max() <= 0.05 * np.abs(float_out).max()
