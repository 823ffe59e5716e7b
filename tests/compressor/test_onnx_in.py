"""ONNX in, .dcz out, without torch: a model this project's exporter did not make (issue 3, item 3).

The model is built here with onnx.helper: Conv (initializer weight) -> Relu -> Flatten ->
Gemm (initializer weight, transB) -> Relu -> MatMul (weight in a Constant node) -> Add -> Reshape
(int64 shape initializer). Its compressed `.dcz` is decoded through `formats`, run in ONNX Runtime
and compared with an independent numpy forward pass using the compressed weights.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dcz import formats
from dcz.compressor.errors import CompressError
from dcz.compressor.onnx_graph import fill_placeholders, find_weights, is_placeholder
from dcz.compressor.onnx_in import compress_onnx, global_masks
from dcz.runtime.onnx_graph import graph_bytes

ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(7)
W_CONV = RNG.normal(0, 0.3, (6, 1, 3, 3)).astype(np.float32)
B_CONV = RNG.normal(0, 0.1, (6,)).astype(np.float32)
W_GEMM = RNG.normal(0, 0.1, (48, 6 * 6 * 6)).astype(np.float32)  # transB=1: (out, in)
B_GEMM = RNG.normal(0, 0.1, (48,)).astype(np.float32)
W_MATMUL = RNG.normal(0, 0.2, (48, 10)).astype(np.float32)  # (in, out), in a Constant node
B_OUT = RNG.normal(0, 0.1, (10,)).astype(np.float32)


def build_model() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], kernel_shape=[3, 3], name="conv"),
        helper.make_node("Relu", ["c"], ["r1"]),
        helper.make_node("Flatten", ["r1"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc1.w", "fc1.b"], ["g"], transB=1, name="fc1"),
        helper.make_node("Relu", ["g"], ["r2"]),
        helper.make_node("Constant", [], ["fc2.w"], value=numpy_helper.from_array(W_MATMUL, "fc2.w")),
        helper.make_node("MatMul", ["r2", "fc2.w"], ["m"], name="fc2"),
        helper.make_node("Add", ["m", "fc2.b"], ["a"]),
        helper.make_node("Reshape", ["a", "shape"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(a, n)
        for a, n in [
            (W_CONV, "conv.w"),
            (B_CONV, "conv.b"),
            (W_GEMM, "fc1.w"),
            (B_GEMM, "fc1.b"),
            (B_OUT, "fc2.b"),
            (np.array([-1, 10], dtype=np.int64), "shape"),
        ]
    ]
    graph = helper.make_graph(
        nodes,
        "handmade",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnx.helper")
    model.ir_version = 8  # onnxruntime here reads IR <= 13; helper defaults to the newest
    onnx.checker.check_model(model)
    return model


def numpy_forward(x: np.ndarray, w_conv, w_gemm, w_matmul) -> np.ndarray:
    """The model's maths in numpy (the independent reference)."""
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))  # N,1,6,6,3,3
    conv = np.einsum("ncijkl,ockl->noij", windows, w_conv) + B_CONV[None, :, None, None]
    hidden = np.maximum(conv, 0).reshape(x.shape[0], -1) @ w_gemm.T + B_GEMM
    return np.maximum(hidden, 0) @ w_matmul + B_OUT


CONFIG = {
    "by_type": {
        "conv": {"prune": "sparsity", "sparsity": 0.3, "bits": 4},
        "fc": {"prune": "sparsity", "sparsity": 0.8, "bits": 3},
    }
}
X = RNG.random((5, 1, 8, 8), dtype=np.float32)


def decoded_model(dcz: formats.DczFile) -> onnx.ModelProto:
    graph = onnx.load_from_string(graph_bytes(dcz.graph_format, dcz.graph))
    return fill_placeholders(graph, {name: dcz.tensor(name) for name in dcz.names})


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.fixture(scope="module")
def compressed():
    return compress_onnx(build_model(), CONFIG)


def test_finds_weights_in_initializers_and_constant_nodes():
    found = {w.name: (w.op_type, w.origin) for w in find_weights(build_model())}
    assert found == {
        "conv.w": ("Conv", "initializer"),
        "fc1.w": ("Gemm", "initializer"),
        "fc2.w": ("MatMul", "constant"),
    }


def test_compressed_dcz_runs_like_the_numpy_reference(compressed):
    layers = compressed.layers
    assert set(layers) == {"conv.w", "fc1.w", "fc2.w"}
    with formats.loads(compressed.dcz) as dcz:
        for name, state in layers.items():
            assert dcz.info(name).encoding == "sparse_shared"
            np.testing.assert_array_equal(dcz.tensor(name), state.weight())
        got = run(decoded_model(dcz), X)
    want = numpy_forward(X, *(layers[n].weight() for n in ("conv.w", "fc1.w", "fc2.w")))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # and compression changed the outputs (the test would pass vacuously otherwise)
    assert np.abs(want - numpy_forward(X, W_CONV, W_GEMM, W_MATMUL)).max() > 1e-3


def test_pruning_and_sharing_follow_the_config(compressed):
    conv, fc1 = compressed.layers["conv.w"], compressed.layers["fc1.w"]
    assert conv.mask.sum() == W_CONV.size - round(0.3 * W_CONV.size)
    assert fc1.mask.sum() == W_GEMM.size - round(0.8 * W_GEMM.size)
    assert conv.label_bits == 4 and conv.codebook.size <= 16
    assert fc1.label_bits == 3 and len(np.unique(fc1.weight()[fc1.mask])) <= 8
    # the survivors are the largest weights
    assert np.abs(W_GEMM[fc1.mask]).min() >= np.abs(W_GEMM[~fc1.mask]).max()


def test_graph_keeps_placeholders_and_inline_int_constants(compressed):
    graph = onnx.load_from_string(compressed.graph)
    inits = {t.name: t for t in graph.graph.initializer}
    stored = {"conv.w", "fc1.w", "fc2.w"}  # the biases (< 64 values) stay inline, as the int shape does
    assert {n for n, t in inits.items() if is_placeholder(t)} == stored
    assert not any(is_placeholder(inits[b]) for b in ("conv.b", "fc1.b", "fc2.b"))
    assert not is_placeholder(inits["shape"]) and numpy_helper.to_array(inits["shape"]).tolist() == [-1, 10]
    assert inits["fc2.w"].data_type == TensorProto.FLOAT and list(inits["fc2.w"].dims) == [48, 10]
    assert not any(n.op_type == "Constant" for n in graph.graph.node)
    assert not any(t.raw_data or t.float_data for t in inits.values() if is_placeholder(t))


def test_placeholder_graph_runs_in_ort_with_external_initializers(compressed):
    """The convention the runtime relies on: ORT takes the arrays through add_external_initializers."""
    with formats.loads(compressed.dcz) as dcz:
        names = list(dcz.names)
        values = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(dcz.tensor(n))) for n in names]
        options = ort.SessionOptions()
        options.add_external_initializers(names, values)
        session = ort.InferenceSession(compressed.graph, options, providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, {"x": X})[0], run(decoded_model(dcz), X), atol=0, rtol=0)


def test_skipped_layer_is_kept_raw_and_named(tmp_path):
    config = {"global": {"prune": "sparsity", "sparsity": 0.5}, "by_name": {"fc2.w": {"skip": True}}}
    out = tmp_path / "m.dcz"
    result = compress_onnx(build_model(), config, out_path=out)
    assert result.dcz is None and out.exists()
    assert result.plan.kept_raw == {"fc2.w": "config: skip"}
    assert "fc2.w" in result.report.to_markdown() and "config: skip" in result.report.to_markdown()
    with formats.open(out) as dcz:
        assert dcz.info("fc2.w").encoding == "raw"
        np.testing.assert_array_equal(dcz.tensor("fc2.w"), W_MATMUL)
        assert dcz.metadata["compress.kept_raw"] == {"fc2.w": "config: skip"}


def test_same_inputs_give_identical_bytes():
    assert compress_onnx(build_model(), CONFIG).dcz == compress_onnx(build_model(), CONFIG).dcz


def test_global_pruning_reaches_overall_sparsity():
    weights = {"a": W_GEMM, "b": W_MATMUL}
    masks = global_masks(weights, 0.9)
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == W_GEMM.size + W_MATMUL.size - round(0.9 * (W_GEMM.size + W_MATMUL.size))
    threshold = min(np.abs(w[masks[n]]).min() for n, w in weights.items())
    assert all(np.abs(w[~masks[n]]).max() <= threshold for n, w in weights.items())


@pytest.mark.parametrize(
    "config, key",
    [
        ({"by_name": {"fc9.w": {"bits": 4}}}, "fc9.w"),
        ({"global": {"bits": 0}}, "bits"),
        ({"global": {"sparsity": 1.0}}, "sparsity"),
        ({"global": {"colour": 1}}, "colour"),
    ],
)
def test_bad_config_fails_with_one_line_naming_the_key(config, key):
    with pytest.raises(CompressError) as error:
        compress_onnx(build_model(), config)
    message = str(error.value)
    assert key in message and "\n" not in message


def test_unreadable_model_is_a_compress_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not a protobuf at all\xff\xff")
    with pytest.raises(CompressError, match="bad.onnx"):
        compress_onnx(bad, CONFIG)


def test_onnx_in_never_imports_torch(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(build_model(), str(path))
    code = (
        "import sys\nfrom compressor.onnx_in import compress_onnx\n"
        f"compress_onnx({str(path)!r}, {CONFIG!r}, out_path={str(tmp_path / 'm.dcz')!r})\n"
        "print(','.join(m for m in ('torch', 'sklearn') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_sparsity_selection_equals_a_stable_sort_with_ties():
    from dcz.compressor.onnx_in import _keep_smallest_removed

    values = np.random.default_rng(5).integers(0, 6, size=(13, 11)).astype(np.float32)  # many ties
    for sparsity in (0.0, 0.1, 0.37, 0.5, 0.93):
        remove = int(round(sparsity * values.size))
        want = np.ones(values.size, dtype=bool)
        want[np.argsort(values.ravel(), kind="stable")[:remove]] = False
        np.testing.assert_array_equal(_keep_smallest_removed(values, sparsity), want.reshape(values.shape))


def test_weight_reached_through_transpose_is_compressed():
    """MatMul(x, Transpose(W)): the initializer W is still the layer's weight."""
    w = RNG.normal(0, 0.2, (10, 48)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]), helper.make_node("MatMul", ["x", "wt"], ["y"])],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 48])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    result = compress_onnx(model, {"global": {"prune": "sparsity", "sparsity": 0.5, "bits": 4}})
    assert set(result.layers) == {"w"} and result.layers["w"].layer_type == "MatMul"
    x = RNG.random((3, 48), dtype=np.float32)
    with formats.loads(result.dcz) as dcz:
        session = ort.InferenceSession(decoded_model(dcz).SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, {"x": x})[0], x @ result.layers["w"].weight().T, atol=1e-5)


def test_codebook_per_group_of_rows_round_trips():
    config = {
        "by_name": {
            "conv.w": {"prune": "sparsity", "sparsity": 0.2, "bits": 2, "group_rows": 2},
            "fc1.w": {"prune": "none", "bits": 3, "group_rows": 16},
        }
    }
    result = compress_onnx(build_model(), config)
    conv, fc1 = result.layers["conv.w"], result.layers["fc1.w"]
    assert conv.codebook.shape == (3, 4) and fc1.codebook.shape == (3, 8) and fc1.mask is None
    with formats.loads(result.dcz) as dcz:
        assert dcz.info("conv.w").groups == 3 and dcz.info("fc1.w").encoding == "shared"
        for name in ("conv.w", "fc1.w"):
            np.testing.assert_array_equal(dcz.tensor(name), result.layers[name].weight())
        got = run(decoded_model(dcz), X)
    want = numpy_forward(X, conv.weight(), fc1.weight(), result.layers["fc2.w"].weight())
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_a_dcz_graph_or_unloaded_external_data_is_refused(compressed):
    with pytest.raises(CompressError, match="already a .dcz graph"):
        compress_onnx(compressed.graph, CONFIG)
    model = build_model()
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    del tensor.float_data[:]
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "weights.bin"
    with pytest.raises(CompressError, match="external"):
        compress_onnx(model.SerializeToString(), CONFIG)
