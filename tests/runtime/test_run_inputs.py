"""Model.run's input handling: the fast path for well-formed arrays, the checked path for the rest."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import dcz.runtime.validate as validate
from dcz import formats, runtime
from dcz.runtime import DczRuntimeError
from dcz.runtime.onnx_graph import ValueSpec
from dcz.runtime.validate import InputChecker

X = np.random.default_rng(2).random((3, 4), dtype=np.float32)


def _two_input_dcz(path):
    """y = (a @ W) + b: inputs a (batch, 4) float32 and b (batch, 2) float32; W stored in the .dcz."""
    weight = np.arange(8, dtype=np.float32).reshape(4, 2) / 8
    placeholder = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 2], data_location=TensorProto.EXTERNAL)
    entry = placeholder.external_data.add()
    entry.key, entry.value = "location", "dcz"
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "W"], ["ab"]), helper.make_node("Add", ["ab", "b"], ["y"])],
        "two",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [placeholder],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    formats.write(path, [formats.Raw("W", weight)], graph=model.SerializeToString())
    return weight


def _one_input_dcz(path):
    """y = x @ W with x (batch, 4)."""
    weight = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    placeholder = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 3], data_location=TensorProto.EXTERNAL)
    entry = placeholder.external_data.add()
    entry.key, entry.value = "location", "dcz"
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [placeholder],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    formats.write(path, [formats.Raw("W", weight)], graph=model.SerializeToString())
    return weight


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    path = tmp_path_factory.mktemp("one") / "one.dcz"
    return path, _one_input_dcz(path)


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    path = tmp_path_factory.mktemp("two") / "two.dcz"
    return path, _two_input_dcz(path)


@pytest.fixture
def no_slow_path(monkeypatch):
    """Make the checked path fail loudly: whatever still works went through the fast path."""

    def refuse(inputs, specs):
        raise AssertionError("normalize_inputs was called")

    monkeypatch.setattr(validate, "normalize_inputs", refuse)


@pytest.mark.parametrize("backend", ["ort", "numpy"])
def test_well_formed_inputs_take_the_fast_path(one, two, backend, no_slow_path):
    path, weight = one
    model = runtime.load(path, backend=backend)
    for batch in (1, 5, 1):  # the shape cache must not pin a batch size
        x = X[:1].repeat(batch, 0)
        (y,) = model.run(x)
        np.testing.assert_allclose(y, x @ weight, rtol=1e-6)
        (y,) = model.run({"x": x})
        np.testing.assert_allclose(y, x @ weight, rtol=1e-6)
    path, weight = two
    model = runtime.load(path, backend=backend)
    b = np.ones((3, 2), np.float32)
    (y,) = model.run({"a": X, "b": b})
    np.testing.assert_allclose(y, X @ weight + 1, rtol=1e-6)


@pytest.mark.parametrize("backend", ["ort", "numpy", "ort-low_memory"])
def test_strided_and_byte_swapped_arrays_give_the_same_result(one, backend):
    path, weight = one
    options = {"backend": "ort", "low_memory": True} if backend == "ort-low_memory" else {"backend": backend}
    model = runtime.load(path, **options)
    wide = np.random.default_rng(3).random((6, 8), dtype=np.float32)
    strided = wide[::2, ::2]  # not C-contiguous: passes the fast path as is
    assert not strided.flags.c_contiguous
    (y,) = model.run(strided)
    np.testing.assert_allclose(y, np.ascontiguousarray(strided) @ weight, rtol=1e-6)
    swapped = X.astype(">f4")  # same values, another dtype object: the checked path converts it
    (y,) = model.run(swapped)
    np.testing.assert_allclose(y, X @ weight, rtol=1e-6)


@pytest.mark.parametrize("backend", ["ort", "numpy"])
def test_bad_inputs_still_name_the_input(two, backend):
    path, _ = two
    model = runtime.load(path, backend=backend)
    a, b = X, np.ones((3, 2), np.float32)
    with pytest.raises(DczRuntimeError, match="unknown input 'c'"):
        model.run({"a": a, "b": b, "c": b})
    with pytest.raises(DczRuntimeError, match="missing input 'b'"):
        model.run({"a": a})
    with pytest.raises(DczRuntimeError, match="unknown input 'c'"):
        model.run({"a": a, "c": b})  # right count, wrong name
    with pytest.raises(DczRuntimeError, match="input 'b': got dtype float64"):
        model.run({"a": a, "b": b.astype(np.float64)})
    with pytest.raises(DczRuntimeError, match="input 'b': dim 1 is 3"):
        model.run({"a": a, "b": np.ones((3, 3), np.float32)})
    with pytest.raises(DczRuntimeError, match="input 'a': got 1-D"):
        model.run({"a": a[0], "b": b})
    with pytest.raises(DczRuntimeError, match="2 inputs"):
        model.run(a)
    (y,) = model.run({"a": a.tolist(), "b": b})  # lists are cast on the checked path
    assert y.shape == (3, 2)


def test_checker_fast_path_agrees_with_the_checked_path():
    """Every input the fast path accepts, normalize_inputs accepts too, with the same arrays."""
    specs = [ValueSpec("x", np.dtype(np.float32), (None, 2, 3))]
    checker = InputChecker(specs)
    rng = np.random.default_rng(4)
    cases = [rng.random(s, dtype=np.float32) for s in [(1, 2, 3), (4, 2, 3), (0, 2, 3)]]
    for x in cases:
        fast = checker(x)
        np.testing.assert_array_equal(fast["x"], validate.normalize_inputs(x, specs)["x"])
        assert fast["x"] is x  # no copy on the fast path
    for bad in [
        np.zeros((4, 3, 2), np.float32),
        np.zeros((2, 3), np.float32),
        np.zeros((1, 2, 3, 1), np.float32),
        np.zeros((1, 2, 3), np.float64),
        np.zeros((1, 2, 3), np.int32),
    ]:
        checker(np.zeros((1, 2, 3), np.float32))  # primes the shape cache with a good shape
        with pytest.raises(DczRuntimeError, match="input 'x'"):
            checker(bad)


def test_fixed_batch_dim_is_checked_on_the_fast_path():
    checker = InputChecker([ValueSpec("x", np.dtype(np.float32), (1, 4))])
    assert checker(X[:1])["x"] is not None
    with pytest.raises(DczRuntimeError, match="dim 0 is 3"):
        checker(X)


def test_closed_or_backendless_model_refuses_to_run(one):
    path, _ = one
    with pytest.raises(DczRuntimeError, match="backend=None"):
        runtime.load(path, backend=None).run(X)
    model = runtime.load(path)
    model.run(X)
    model.close()
    with pytest.raises(DczRuntimeError, match="closed"):
        model.run(X)


def test_ort_run_errors_are_wrapped(one):
    """An input the graph accepts by its declared dims but ORT rejects still gives DczRuntimeError."""
    path, _ = one
    model = runtime.load(path)
    onnx_graph = model.onnx_model
    assert isinstance(onnx_graph, onnx.ModelProto)
    with pytest.raises(DczRuntimeError, match="ONNX Runtime failed"):
        model._engine.run({"x": np.zeros((2, 5), np.float32)})


def test_shapes_left_to_the_engine_are_explained_when_it_refuses():
    """With engine_checks_shapes the fast path checks the dtype only; `explain` gives the named error."""
    checker = InputChecker([ValueSpec("x", np.dtype(np.float32), (None, 4))], engine_checks_shapes=True)
    wrong = np.zeros((2, 5), np.float32)
    assert checker(wrong)["x"] is wrong  # ORT refuses it before running; Model.run then calls explain
    with pytest.raises(DczRuntimeError, match="input 'x': dim 1 is 5"):
        checker.explain(wrong)
    checker.explain(X)  # well-formed: no error
    with pytest.raises(DczRuntimeError, match="float64"):
        checker(X.astype(np.float64))  # dtypes stay ours to check: ORT would take '>f4' as is


def test_ort_backend_names_the_input_for_every_bad_shape(one):
    path, _ = one
    model = runtime.load(path, backend="ort")
    for bad, message in [
        (X[0], "input 'x': got 1-D"),
        (X[:, :3], "input 'x': dim 1 is 3"),
        (X[None], "input 'x': got 3-D"),
    ]:
        with pytest.raises(DczRuntimeError, match=message):
            model.run(bad)
        with pytest.raises(DczRuntimeError, match=message):
            model.run({"x": bad})
