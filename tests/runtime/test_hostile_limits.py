"""Hostile graphs and files at the runtime's door: refused with the package's own error, quickly, and a
loaded model does not depend on its file staying unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from rt_onnx_builders import inline, make_model, placeholder, value

from dcz import formats, runtime
from dcz.runtime import DczRuntimeError


def numpy_model(tmp_path, nodes, inputs, outputs, inits=(), tensors=()):
    path = tmp_path / "m.dcz"
    formats.write(path, list(tensors), graph=make_model(nodes, inputs, outputs, inits).SerializeToString())
    return runtime.load(path, backend="numpy")


def test_missing_required_input_is_refused_at_load(tmp_path):
    node = helper.make_node("Relu", [""], ["y"], name="act")
    with pytest.raises(DczRuntimeError, match=r"node 'act' \(Relu\) lacks required input #0"):
        numpy_model(tmp_path, [node], [value("x", [1, 2])], [value("y", [1, 2])])
    conv = helper.make_node("Conv", ["x"], ["y"], name="c1")
    with pytest.raises(DczRuntimeError, match=r"node 'c1' \(Conv\) lacks required input #1"):
        numpy_model(tmp_path, [conv], [value("x", [1, 1, 4, 4])], [value("y", None)])


def test_stride_zero_names_node_and_op(tmp_path):
    w = np.ones((1, 1, 2, 2), np.float32)
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="c0", strides=[0, 1])
    model = numpy_model(tmp_path, [conv], [value("x", [1, 1, 4, 4])], [value("y", None)], [inline("w", w)])
    with pytest.raises(DczRuntimeError, match=r"node 'c0'.*strides \[0, 1\] must hold 2 values >= 1"):
        model.run({"x": np.ones((1, 1, 4, 4), np.float32)})


def test_huge_pad_is_refused_before_allocating(tmp_path):
    pads = inline("p", np.array([0, 0, 0, 2**31], np.int64))
    node = helper.make_node("Pad", ["x", "p"], ["y"], name="pad")
    model = numpy_model(tmp_path, [node], [value("x", [1, 1])], [value("y", None)], [pads])
    with pytest.raises(DczRuntimeError, match=r"node 'pad'.*8,589,934,596 bytes, over the"):
        model.run({"x": np.ones((1, 1), np.float32)})


def test_any_numpy_failure_becomes_the_runtime_error(tmp_path):
    node = helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")
    model = numpy_model(tmp_path, [node], [value("x", [1, 4])], [value("y", None)], [inline("s", np.array([3]))])
    with pytest.raises(DczRuntimeError, match=r"node 'rs' \(Reshape\)"):
        model.run({"x": np.ones((1, 4), np.float32)})


@pytest.mark.parametrize("backend", ["numpy", "ort", None])
def test_dense_budget_at_load(tmp_path, backend):
    """A sparse [1, 2^30] weight (4 GiB dense) in a ~1 KB file: refused when opened, before decoding."""
    mask = np.zeros((1, 8), bool)
    mask[0, 0] = True
    from tools.dev.hostile_files import header_of, with_header

    graph = make_model(
        [helper.make_node("Identity", ["w"], ["y"])],
        [],
        [value("y", None)],
        [placeholder("w", np.zeros((1, 2**30), np.float32)[:, :0].reshape(1, 0))],
    )
    data = formats.dumps([formats.Sparse("w", np.ones((1, 8), np.float32), mask, 2)], graph=graph.SerializeToString())
    obj = header_of(data)
    obj["tensors"][0]["shape"] = [1, 2**30]
    with pytest.raises(formats.FormatError, match="tensor 'w' declares 4,294,967,296 dense bytes"):
        runtime.load(with_header(data, obj), backend=backend)


def test_loaded_model_survives_its_file_truncated_in_place(tmp_path):
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    path = tmp_path / "m.dcz"
    graph = make_model([node], [value("x", [1, 3])], [value("y", [1, 4])], [placeholder("w", w)])
    formats.write(path, [formats.Raw("w", w)], graph=graph.SerializeToString())
    model = runtime.load(path, backend="numpy", lazy=True)  # nothing decoded yet
    with open(path, "r+b") as f:  # as `cp` or `rsync --inplace` would: same inode, shorter
        f.truncate(10)
    out = model.run({"x": np.ones((1, 3), np.float32)})[0]
    np.testing.assert_array_equal(out, w.sum(axis=0, keepdims=True))


def test_formats_open_without_mmap_reads_once(tmp_path):
    path = tmp_path / "t.dcz"
    formats.write(path, [formats.Raw("r", np.arange(5, dtype=np.float32))])
    f = formats.open(path, mmap=False)
    path.write_bytes(b"")
    np.testing.assert_array_equal(f.tensor("r"), np.arange(5, dtype=np.float32))


def external(name, location="secret.bin", dims=(2,)):
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(dims))
    t.data_location = TensorProto.EXTERNAL
    entry = t.external_data.add()
    entry.key, entry.value = "location", location
    return t


def _constant_graph(location):
    node = helper.make_node("Constant", [], ["y"], name="k", value=external("v", location))
    return make_model([node], [], [value("y", [2])])


def _if_graph(location):
    branch = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["o"])], "b", [], [value("o", [2])], [external("s", location)]
    )
    node = helper.make_node("If", ["c"], ["y"], name="branch", then_branch=branch, else_branch=branch)
    return make_model([node], [value("c", [], TensorProto.BOOL)], [value("y", [2])])


def _sparse_graph(location):
    sparse = helper.make_sparse_tensor(external("sv", location), inline("si", np.array([0], np.int64)), [2])
    model = make_model([helper.make_node("Identity", ["sv"], ["y"])], [], [value("y", [2])])
    model.graph.sparse_initializer.append(sparse)
    return model


@pytest.mark.parametrize("build", [_constant_graph, _if_graph, _sparse_graph])
@pytest.mark.parametrize("location", ["secret.bin", "../../../../etc/passwd", "dcz"])
def test_external_data_outside_top_level_placeholders_is_refused(tmp_path, build, location):
    (tmp_path / "secret.bin").write_bytes(b"\x00" * 8)
    path = tmp_path / "m.dcz"
    formats.write(path, [], graph=build(location).SerializeToString())
    for backend in ("numpy", "ort", None):
        with pytest.raises(DczRuntimeError, match=f"external data at '{location}'"):
            runtime.load(path, backend=backend)
    with pytest.raises(DczRuntimeError, match="external data"):
        runtime.export_onnx(path, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_graph_node_cap(tmp_path):
    from dcz.runtime.onnx_graph import MAX_GRAPH_NODES

    nodes = [helper.make_node("Identity", [f"t{i}"], [f"t{i + 1}"]) for i in range(MAX_GRAPH_NODES + 1)]
    graph = make_model(nodes, [value("t0", [1])], [value(f"t{MAX_GRAPH_NODES + 1}", [1])])
    data = formats.dumps([], graph=graph.SerializeToString())
    with pytest.raises(DczRuntimeError, match="more than 100,000 nodes"):
        runtime.load(data, backend=None)


def test_export_with_external_data_and_only_small_tensors(tmp_path):
    w = np.ones((2, 3), np.float32)
    graph = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [value("x", [1, 2])],
        [value("y", [1, 3])],
        [placeholder("w", w)],
    )
    path = tmp_path / "m.dcz"
    formats.write(path, [formats.Raw("w", w)], graph=graph.SerializeToString())
    out = runtime.export_onnx(path, tmp_path / "o.onnx", external_data=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.dcz", "o.onnx"]
    import onnxruntime as ort

    y = ort.InferenceSession(str(out)).run(None, {"x": np.ones((1, 2), np.float32)})[0]
    np.testing.assert_array_equal(y, np.full((1, 3), 2, np.float32))


@pytest.mark.parametrize(
    "case, error, fragment",
    [
        ("graph_300k_nodes", "DczRuntimeError", "more than 100,000 nodes"),
        ("wide_sparse_model", "DenseBudgetError", "declares 4,294,967,296 dense bytes"),
    ],
)
def test_hostile_model_is_refused_within_bounds(case, error, fragment):
    """runtime.load on both backends, in a fresh process: < 1 s of CPU and < 100 MB over the baseline."""
    from tools.dev.hostile_files import probe_in_subprocess

    result = probe_in_subprocess(case)
    assert result["outcome"] == error and fragment in result["message"], result
    assert result["cpu_s"] < 1.0 and result["peak_added"] < 100 << 20, result


def test_runtime_caps_the_sum_formats_each_tensor():
    tensors = [formats.Raw(n, np.zeros(10, np.float32)) for n in ("a", "b")]
    ph = [placeholder(n, np.zeros(10, np.float32)) for n in ("a", "b")]
    graph = make_model([helper.make_node("Add", ["a", "b"], ["y"])], [], [value("y", [10])], ph)
    data = formats.dumps(tensors, graph=graph.SerializeToString())
    assert formats.loads(data, max_dense_bytes=40).names == ["a", "b"]
    with pytest.raises(DczRuntimeError, match="declare 80 dense bytes together, over the 79-byte budget") as info:
        runtime.load(data, backend=None, max_dense_bytes=79)
    assert isinstance(info.value, formats.DenseBudgetError) and (info.value.declared, info.value.tensor) == (80, None)
    assert "max_dense_bytes=" in str(info.value)
    assert runtime.load(data, backend="numpy", max_dense_bytes=80).run({})[0].shape == (10,)
