"""How the ORT backend hands weights over: copied initializers or in place, and in-place buffers kept alive."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from onnx import TensorProto, helper
from rt_onnx_builders import lenet_300_100_graph, lenet_300_100_weights, lenet_dcz_tensors, lenet_reference

import dcz.runtime.ort_backend as ort_backend
from dcz import formats, runtime
from dcz.runtime.ort_backend import in_place_weights, ort_copies_external_initializers

X = np.random.default_rng(5).random((4, 1, 28, 28), dtype=np.float32)
FC_WEIGHTS = {"fc1.weight", "fc2.weight", "fc3.weight"}


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    weights = lenet_300_100_weights(density=0.1)
    tensors, effective = lenet_dcz_tensors(weights)
    path = tmp_path_factory.mktemp("lenet") / "lenet.dcz"
    formats.write(path, tensors, graph=lenet_300_100_graph(weights).SerializeToString())
    return path, effective


def test_small_weights_are_copied_initializers_by_default(lenet):
    path, effective = lenet
    model = runtime.load(path)
    assert model._engine.in_place == []  # LeNet's largest weight is 0.9 MiB, far below IN_PLACE_BYTES
    np.testing.assert_allclose(model.run(X)[0], lenet_reference(effective, X), atol=1e-5, rtol=0)


def test_large_fc_weights_go_in_place(lenet, monkeypatch):
    path, effective = lenet
    monkeypatch.setattr(ort_backend, "IN_PLACE_BYTES", 100_000)  # fc1 (940 KB) and fc2 (120 KB); not fc3 (4 KB)
    model = runtime.load(path)
    assert model._engine.in_place == ["fc1.weight", "fc2.weight"]
    # ORT reads those from our arrays: they stay decoded; the copied ones are dropped.
    kept = set(model.tensors.decoded)
    assert {"fc1.weight", "fc2.weight"} <= kept
    if ort_copies_external_initializers():
        assert kept == {"fc1.weight", "fc2.weight"}
    np.testing.assert_allclose(model.run(X)[0], lenet_reference(effective, X), atol=1e-5, rtol=0)
    np.testing.assert_allclose(model.run({"input": X[:1]})[0], lenet_reference(effective, X[:1]), atol=1e-5, rtol=0)


def test_low_memory_false_keeps_every_weight_an_initializer(lenet, monkeypatch):
    path, effective = lenet
    monkeypatch.setattr(ort_backend, "IN_PLACE_BYTES", 0)  # everything FC would go in place by default
    model = runtime.load(path, low_memory=False)
    assert model._engine.in_place == []
    np.testing.assert_allclose(model.run(X)[0], lenet_reference(effective, X), atol=1e-5, rtol=0)
    with pytest.raises(runtime.DczRuntimeError, match="backend='ort' only"):
        runtime.load(path, backend="numpy", low_memory=False)


@pytest.mark.parametrize(
    "options", [{"low_memory": True}, {"in_place_bytes": 0}], ids=["low_memory", "all-fc-in-place"]
)
def test_in_place_weights_outlive_every_other_reference(lenet, monkeypatch, options):
    """The session must keep our buffers alive itself: drop the model's decoded arrays, collect, scribble
    over freshly allocated memory of the same sizes, and the results must not change."""
    path, effective = lenet
    if "in_place_bytes" in options:
        monkeypatch.setattr(ort_backend, "IN_PLACE_BYTES", options["in_place_bytes"])
        options = {}
    model = runtime.load(path, **options)
    assert set(model._engine.in_place) >= FC_WEIGHTS
    want = lenet_reference(effective, X)
    sizes = [model.tensors[n].shape for n in model.tensors]
    for name in list(model.tensors):
        model.tensors.release(name)
    gc.collect()
    junk = [np.full(shape, np.nan, np.float32) for _ in range(20) for shape in sizes]
    np.testing.assert_allclose(model.run(X)[0], want, atol=1e-5, rtol=0)
    del junk


def test_in_place_only_for_large_weights_read_by_gemm_or_matmul_alone():
    def placeholder(name, dims):
        t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims, data_location=TensorProto.EXTERNAL)
        entry = t.external_data.add()
        entry.key, entry.value = "location", "dcz"
        return t

    nodes = [
        helper.make_node("Conv", ["x", "conv.w"], ["c"]),
        helper.make_node("Flatten", ["c"], ["f"]),
        helper.make_node("MatMul", ["f", "fc.w"], ["m"]),
        helper.make_node("Gemm", ["m", "shared.w"], ["g"], transB=1),
        helper.make_node("Add", ["g", "shared.w"], ["y"]),
        helper.make_node("Gemm", ["g", "small.w"], ["z"]),
    ]
    shapes = {"conv.w": [8, 1, 3, 3], "fc.w": [8, 8], "shared.w": [8, 8], "small.w": [8, 2]}
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [placeholder(n, d) for n, d in shapes.items()],
    )
    model = helper.make_model(graph)
    arrays = {n: np.zeros(d, np.float32) for n, d in shapes.items()}
    assert in_place_weights(model, arrays, min_bytes=100) == {"fc.w"}  # conv: Conv; shared: also Add; small: 64 B
    assert in_place_weights(model, arrays, min_bytes=0) == {"fc.w", "small.w"}


@pytest.fixture
def graphs_given_to_ort(monkeypatch):
    """Record the model bytes every InferenceSession is created from."""
    seen = []
    real = ort_backend.ort.InferenceSession

    def spy(graph, *args, **kwargs):
        seen.append(graph)
        return real(graph, *args, **kwargs)

    monkeypatch.setattr(ort_backend.ort, "InferenceSession", spy)
    return seen


def test_stored_graph_goes_to_ort_as_is(lenet, graphs_given_to_ort, monkeypatch):
    path, _ = lenet
    stored = formats.open(path).graph
    runtime.load(path)
    assert graphs_given_to_ort[-1] == stored  # no parse + re-serialize round trip
    monkeypatch.setattr(ort_backend, "IN_PLACE_BYTES", 0)
    runtime.load(path)
    assert graphs_given_to_ort[-1] != stored  # weights in place: the adapted graph is serialized


@pytest.mark.parametrize("backend", ["ort", "numpy"])
def test_local_functions_are_inlined_before_any_backend(tmp_path, graphs_given_to_ort, backend):
    """y = Scale2(x @ W) with Scale2 a model-local function: ORT gets the inlined graph, not the stored one."""
    weight = np.arange(6, dtype=np.float32).reshape(3, 2)
    two = helper.make_node("Constant", [], ["two"], value=helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]))
    scale2 = helper.make_function(
        "local",
        "Scale2",
        ["a"],
        ["b"],
        [two, helper.make_node("Mul", ["a", "two"], ["b"])],
        [helper.make_opsetid("", 17)],
    )
    placeholder = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[3, 2], data_location=TensorProto.EXTERNAL)
    entry = placeholder.external_data.add()
    entry.key, entry.value = "location", "dcz"
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Scale2", ["m"], ["y"], domain="local")],
        "f",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        [placeholder],
    )
    model = helper.make_model(
        graph, functions=[scale2], opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]
    )
    model.ir_version = 8
    path = tmp_path / "f.dcz"
    formats.write(path, [formats.Raw("W", weight)], graph=model.SerializeToString())
    x = np.ones((2, 3), np.float32)
    (y,) = runtime.load(path, backend=backend).run(x)
    np.testing.assert_allclose(y, 2 * (x @ weight))
    if backend == "ort":
        assert graphs_given_to_ort[-1] != model.SerializeToString()
