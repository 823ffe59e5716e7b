"""runtime.load: both backends on a .dcz written by formats, lazy decoding, inputs, export_onnx."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from rt_onnx_builders import (
    lenet_300_100_graph,
    lenet_300_100_weights,
    lenet_dcz_tensors,
    lenet_reference,
)

from dcz import formats, runtime
from dcz.runtime import DczRuntimeError

X = np.random.default_rng(1).random((5, 1, 28, 28), dtype=np.float32)


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """(path, effective weights) of a LeNet-300-100 .dcz with SparseShared weights at 10% density."""
    weights = lenet_300_100_weights(density=0.1)
    tensors, effective = lenet_dcz_tensors(weights)
    path = tmp_path_factory.mktemp("lenet") / "lenet.dcz"
    graph = lenet_300_100_graph(weights).SerializeToString()
    formats.write(path, tensors, graph=graph, metadata={"user.note": "test"})
    return path, effective


BACKENDS = [
    {"backend": "ort"},
    {"backend": "ort", "low_memory": True},
    {"backend": "numpy"},
    {"backend": "numpy", "sparse": True},
]


@pytest.mark.parametrize("options", BACKENDS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_backends_match_the_reference(lenet, options):
    path, effective = lenet
    with runtime.load(path, **options) as model:
        (logits,) = model.run(X)
    assert logits.shape == (5, 10) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, lenet_reference(effective, X), atol=1e-5, rtol=0)


@pytest.mark.parametrize("options", BACKENDS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_a_version_1_1_file_runs_the_same(lenet, tmp_path, options):
    """The same network with chunked Huffman streams (format 1.1): same logits on every backend."""
    path, effective = lenet
    weights = lenet_300_100_weights(density=0.1)
    tensors, _ = lenet_dcz_tensors(weights)
    chunked = tmp_path / "chunked.dcz"
    formats.write(chunked, tensors, graph=lenet_300_100_graph(weights).SerializeToString(), chunk_symbols=64)
    assert formats.open(chunked).version == (1, 1)
    with runtime.load(chunked, **options) as model:
        (logits,) = model.run(X)
    np.testing.assert_allclose(logits, lenet_reference(effective, X), atol=1e-5, rtol=0)


def test_sparse_option_computes_fc_layers_from_csr(lenet):
    path, _ = lenet
    model = runtime.load(path, backend="numpy", sparse=True)
    assert model._engine.sparse_nodes == ["fc1", "fc2", "fc3"]
    model.run(X[:1])
    # The dense weights were dropped once their CSR form existed; only the biases stay decoded.
    assert sorted(model.tensors.decoded) == ["fc1.bias", "fc2.bias", "fc3.bias"]


def test_model_exposes_graph_metadata_report_and_io_names(lenet):
    path, _ = lenet
    model = runtime.load(path, backend=None)
    assert model.input_names == ["input"] and model.output_names == ["logits"]
    assert model.metadata["user.note"] == "test"
    assert onnx.load_from_string(model.graph).graph.node[0].op_type == "Flatten"
    assert model.report.file_bytes == path.stat().st_size
    assert sorted(model.tensors) == sorted(formats.open(path).names)
    with pytest.raises(DczRuntimeError, match="backend=None"):
        model.run(X)


def test_tensors_decode_lazily_on_first_use(lenet):
    path, effective = lenet
    model = runtime.load(path, backend=None)
    assert model.tensors.decoded == []
    w = model.tensors["fc2.weight"]
    assert model.tensors.decoded == ["fc2.weight"]
    np.testing.assert_array_equal(w, effective["fc2.weight"])
    assert model.tensors["fc2.weight"] is w  # decoded once
    assert not w.flags.writeable


def test_lazy_false_decodes_everything_at_load(lenet):
    path, _ = lenet
    assert len(runtime.load(path, backend=None, lazy=False).tensors.decoded) == 6


def test_numpy_backend_decodes_on_first_run(lenet):
    path, _ = lenet
    model = runtime.load(path, backend="numpy")
    assert model.tensors.decoded == []
    model.run(X[:1])
    assert len(model.tensors.decoded) == 6


def test_ort_keeps_one_copy_of_the_weights(lenet):
    """ORT copies add_external_initializers values (probed); the decoded arrays are then dropped."""
    from dcz.runtime.ort_backend import ort_copies_external_initializers

    path, effective = lenet
    model = runtime.load(path, backend="ort")
    assert model._engine.weights_copied == ort_copies_external_initializers()
    if model._engine.weights_copied:
        assert model.tensors.decoded == []
    np.testing.assert_array_equal(model.tensors["fc1.weight"], effective["fc1.weight"])  # re-decoded on demand
    low = runtime.load(path, backend="ort", low_memory=True)
    assert not low._engine.weights_copied and len(low.tensors.decoded) == 6


def test_load_from_bytes(lenet):
    path, effective = lenet
    (logits,) = runtime.load(path.read_bytes(), backend="ort").run(X)
    np.testing.assert_allclose(logits, lenet_reference(effective, X), atol=1e-5, rtol=0)


def test_inputs_by_name_and_checked(lenet):
    path, _ = lenet
    model = runtime.load(path, backend="numpy")
    (by_name,) = model.run({"input": X})
    (by_array,) = model.run(X)
    np.testing.assert_array_equal(by_name, by_array)
    with pytest.raises(DczRuntimeError, match="unknown input 'image'"):
        model.run({"image": X})
    with pytest.raises(DczRuntimeError, match="rank 4"):
        model.run(X[0])
    with pytest.raises(DczRuntimeError, match="dim 2 is 27"):
        model.run(X[:, :, :27])
    with pytest.raises(DczRuntimeError, match="float64"):
        model.run(X.astype(np.float64))


def test_ort_options_threads_and_providers(lenet):
    path, _ = lenet
    model = runtime.load(path, backend="ort", threads=1, inter_op_threads=1, providers=["CPUExecutionProvider"])
    assert model._engine.providers == ["CPUExecutionProvider"]
    assert model._engine.session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(DczRuntimeError, match="NoSuchExecutionProvider.*available"):
        runtime.load(path, backend="ort", providers=["NoSuchExecutionProvider"])


@pytest.mark.parametrize(
    "bad",
    [
        {"backend": "tvm"},
        {"threads": -1},
        {"backend": "ort", "sparse": True},
        {"backend": "numpy", "providers": ["CPUExecutionProvider"]},
        {"backend": "numpy", "low_memory": True},
    ],
)
def test_bad_arguments_are_refused(lenet, bad):
    with pytest.raises(DczRuntimeError):
        runtime.load(lenet[0], **bad)


@pytest.mark.parametrize("external", [False, True])
def test_export_onnx_gives_an_equivalent_dense_model(lenet, tmp_path, external):
    path, effective = lenet
    out = runtime.export_onnx(path, tmp_path / "lenet.onnx", external_data=external)
    assert (tmp_path / "lenet.onnx.data").exists() == external
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["lenet.onnx"] + (["lenet.onnx.data"] if external else [])
    )
    dense = onnx.load(out)
    assert all(init.data_location == onnx.TensorProto.DEFAULT for init in dense.graph.initializer) or external
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": X})
    np.testing.assert_allclose(logits, lenet_reference(effective, X), atol=1e-5, rtol=0)


def test_export_onnx_switches_to_external_data_past_the_protobuf_limit(lenet, tmp_path, monkeypatch):
    import dcz.runtime.export as export

    monkeypatch.setattr(export, "_INLINE_LIMIT", 1000)  # stands in for 2 GiB
    out = runtime.export_onnx(lenet[0], tmp_path / "big.onnx")
    assert (tmp_path / "big.onnx.data").stat().st_size > 1000
    assert out.stat().st_size < 10_000  # the graph only


def test_export_onnx_failure_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.dcz"
    bad.write_bytes(b"DCZ not really")
    with pytest.raises(formats.FormatError):
        runtime.export_onnx(bad, tmp_path / "out.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.dcz"]
