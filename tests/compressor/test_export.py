"""torch model + LayerStates -> .dcz: the graph computes what the compressed torch model computes.

Each test decodes the `.dcz` through `formats` (independently of the runtime), fills the
placeholders and runs the graph in ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from dcz import formats
from dcz.compressor.errors import CompressError
from dcz.compressor.kmeans import cluster_weights
from dcz.compressor.onnx_graph import compacted_graph, fill_placeholders, is_placeholder
from dcz.compressor.report import Report
from dcz.compressor.state import LayerState
from dcz.runtime.onnx_graph import graph_bytes

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
from dcz.compressor.export import export_dcz, export_graph, export_onnx_dense  # noqa: E402  (needs torch)

torch.set_num_threads(1)


class SmallNet(torch.nn.Module):
    """Conv + BatchNorm + a residual add + Linear: the shapes that matter, in a few thousand weights."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.fc = torch.nn.Linear(8 * 4 * 4, 32)
        self.out = torch.nn.Linear(32, 10)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        h = torch.nn.functional.max_pool2d(h + self.conv2(h), 2)
        return self.out(torch.relu(self.fc(h.flatten(1))))


def compress_in_place(model, names, sparsity=0.6, bits=4) -> dict[str, LayerState]:
    """Prune by magnitude + k-means share the named weights, writing the result into the model."""
    params = dict(model.named_parameters())
    states = {}
    for name in names:
        weight = params[name].detach().numpy()
        mask = np.abs(weight) > np.quantile(np.abs(weight), sparsity)
        book, labels = cluster_weights(weight, mask, bits)
        layer_type = "Conv2d" if weight.ndim == 4 else "Linear"
        states[name] = LayerState(name, layer_type, weight.shape, mask, book, labels, bits, 5)
        with torch.no_grad():
            params[name].copy_(torch.from_numpy(states[name].weight()))
    return states


def decoded(dcz) -> onnx.ModelProto:
    return fill_placeholders(
        onnx.load_from_string(graph_bytes(dcz.graph_format, dcz.graph)), {n: dcz.tensor(n) for n in dcz.names}
    )


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = SmallNet().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
    states = compress_in_place(model, ["conv.weight", "conv2.weight", "fc.weight", "out.weight"])
    return model, states


EXAMPLE = torch.zeros(1, 1, 8, 8)


def test_dcz_outputs_equal_the_compressed_torch_model(net, tmp_path):
    model, states = net
    path = tmp_path / "net.dcz"
    sizes = export_dcz(model, EXAMPLE, states, path)
    assert sizes.file_bytes == path.stat().st_size
    x = np.random.default_rng(1).random((7, 1, 8, 8), dtype=np.float32)  # batch 7: the batch axis is dynamic
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    with formats.open(path) as dcz:
        for name, state in states.items():
            assert dcz.info(name).encoding == "sparse_shared"
            np.testing.assert_array_equal(dcz.tensor(name), state.weight())
        got = run(decoded(dcz), x)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_graph_follows_the_placeholder_convention(net):
    model, states = net
    graph, plan = export_graph(model, EXAMPLE, states)
    inits = {t.name: t for t in graph.graph.initializer}
    stored = {t.name for t in plan.tensors}
    assert set(states) <= stored
    assert not {"conv.bias", "fc.bias", "out.bias"} & stored  # < 64 values: inline (SMALL_ELEMENTS)
    for name in stored:
        assert is_placeholder(inits[name]) and not inits[name].raw_data
    assert all(not is_placeholder(t) for n, t in inits.items() if n not in stored)
    assert graph.opset_import[0].version == 17
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert plan.kept_raw == {} and plan.compressed == {n: n for n in states}


def test_batchnorm_is_kept_exact_not_fused_into_shared_weights(net):
    graph, _ = export_graph(net[0], EXAMPLE, net[1])
    assert any(node.op_type == "BatchNormalization" for node in graph.graph.node)


def test_weight_without_state_is_kept_raw_and_named(net, tmp_path):
    model, states = net
    partial = {k: v for k, v in states.items() if k != "out.weight"}
    path = tmp_path / "partial.dcz"
    export_dcz(
        model,
        EXAMPLE,
        partial,
        path,
        accuracies={"dense": 0.9, "quantized": 0.895},
        kept_raw={"out.weight": "fewer than min_weights=1000 weights"},
    )
    report = Report.from_dcz(path)
    assert report.kept_raw == {"out.weight": "fewer than min_weights=1000 weights"}
    assert report.accuracies == {"dense": 0.9, "quantized": 0.895}
    with formats.open(path) as dcz:
        assert dcz.info("out.weight").encoding == "raw"
        np.testing.assert_array_equal(dcz.tensor("out.weight"), model.out.weight.detach().numpy())


def test_raw_small_false_keeps_biases_inline(net):
    graph, plan = export_graph(net[0], EXAMPLE, net[1], raw_small=False)
    assert {t.name for t in plan.tensors} == set(net[1])
    bias = next(t for t in graph.graph.initializer if t.name == "fc.bias")
    assert not is_placeholder(bias) and len(onnx.numpy_helper.to_array(bias)) == 32


def test_same_inputs_give_identical_bytes(net, tmp_path):
    a, b = tmp_path / "a.dcz", tmp_path / "b.dcz"
    export_dcz(net[0], EXAMPLE, net[1], a)
    export_dcz(net[0], EXAMPLE, net[1], b)
    assert a.read_bytes() == b.read_bytes()


def test_parametrized_model_exports_under_plain_names(tmp_path):
    """Masks applied as torch parametrizations: states may use either parameter name."""
    from torch.nn.utils import parametrize

    class Mask(torch.nn.Module):
        def __init__(self, mask):
            super().__init__()
            self.register_buffer("mask", mask)

        def forward(self, w):
            return w * self.mask

    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    mask = torch.rand(16, 20) > 0.5
    parametrize.register_parametrization(model[0], "weight", Mask(mask))
    weight = model[0].weight.detach().numpy()
    state = LayerState("0.weight", "Linear", weight.shape, mask=mask.numpy(), values=weight, gap_bits=4)
    path = tmp_path / "p.dcz"
    export_dcz(model, torch.zeros(1, 20), {"0.parametrizations.weight.original": state}, path)
    x = np.random.default_rng(2).random((3, 20), dtype=np.float32)
    with formats.open(path) as dcz:
        assert dcz.info("0.weight").encoding == "sparse"
        with torch.no_grad():
            np.testing.assert_allclose(run(decoded(dcz), x), model(torch.from_numpy(x)).numpy(), atol=1e-5)
    assert parametrize.is_parametrized(model[0])  # the user's model is untouched


def test_transposed_weight_is_found_by_value(tmp_path):
    """x @ W.t() is constant-folded into a new, renamed initializer holding W.T."""

    class TMatMul(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(12, 24))

        def forward(self, x):
            return x @ self.w.t()

    torch.manual_seed(2)
    model = TMatMul().eval()
    states = compress_in_place(model, ["w"], sparsity=0.5, bits=3)
    path = tmp_path / "t.dcz"
    export_dcz(model, torch.zeros(2, 24), states, path)
    x = np.random.default_rng(3).random((4, 24), dtype=np.float32)
    with formats.open(path) as dcz:
        (name,) = [n for n in dcz.names if dcz.info(n).encoding == "sparse_shared"]
        assert dcz.info(name).shape == (24, 12)
        with torch.no_grad():
            np.testing.assert_allclose(run(decoded(dcz), x), model(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_stale_state_is_refused(net, tmp_path):
    model, states = net
    stale = dict(states)
    other = states["fc.weight"]
    stale["fc.weight"] = LayerState(
        other.name,
        other.layer_type,
        other.shape,
        other.mask,
        other.codebook * 2,
        other.labels,
        other.label_bits,
        other.gap_bits,
    )
    with pytest.raises(CompressError, match="fc.weight.*stale"):
        export_dcz(model, EXAMPLE, stale, tmp_path / "x.dcz")
    assert not (tmp_path / "x.dcz").exists()


def test_unknown_parameter_is_refused(net, tmp_path):
    with pytest.raises(CompressError, match="nope.weight"):
        export_dcz(net[0], EXAMPLE, {"nope.weight": net[1]["fc.weight"]}, tmp_path / "x.dcz")


def test_failed_write_leaves_no_file(net, tmp_path):
    model, states = net
    bad = dict(states)
    s = states["fc.weight"]
    bad["fc.weight"] = LayerState(s.name, s.layer_type, s.shape, s.mask, s.codebook, s.labels, 9, s.gap_bits)
    path = tmp_path / "bad.dcz"
    with pytest.raises(CompressError, match="label_bits|bits"):
        export_dcz(model, EXAMPLE, bad, path)
    assert list(tmp_path.iterdir()) == []


def test_dense_onnx_baseline_matches_and_is_larger(net, tmp_path):
    model, states = net
    dense = export_onnx_dense(model, EXAMPLE, states, tmp_path / "dense.onnx")
    x = np.random.default_rng(4).random((2, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(run(onnx.load_from_string(dense), x), model(torch.from_numpy(x)).numpy(), atol=1e-5)
    sizes = export_dcz(model, EXAMPLE, states, tmp_path / "net.dcz")
    assert sizes.file_bytes * 3 < len(dense)


@pytest.mark.parametrize("backend", ["ort", "numpy"])
def test_runtime_runs_the_exported_file(net, tmp_path, backend):
    """The contract end to end: what the compressor writes, the runtime (no torch inside) runs."""
    runtime = pytest.importorskip("dcz.runtime")
    model, states = net
    path = tmp_path / "net.dcz"
    export_dcz(model, EXAMPLE, states, path)
    x = np.random.default_rng(5).random((3, 1, 8, 8), dtype=np.float32)
    out = runtime.load(path, backend=backend).run(x)
    out = next(iter(out.values())) if isinstance(out, dict) else out
    out = out[0] if isinstance(out, (list, tuple)) else out  # run() gives one array per graph output
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(out), model(torch.from_numpy(x)).numpy(), atol=1e-5, rtol=0)


def test_equal_weights_deduplicated_by_the_exporter_are_covered(tmp_path):
    """The TorchScript exporter stores equal initializers once (Identity for the others). 32 x 32: at 8 x 8
    the .dcz would be larger than the dense export, which then keeps every weight inline (never_larger)."""

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(32, 32), torch.nn.Linear(32, 32)
            with torch.no_grad():
                self.b.weight.copy_(self.a.weight)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    torch.manual_seed(3)
    model = Twin().eval()
    states = compress_in_place(model, ["a.weight", "b.weight"], sparsity=0.5, bits=2)
    path = tmp_path / "twin.dcz"
    export_dcz(model, torch.zeros(1, 32), states, path)
    x = np.random.default_rng(6).random((2, 32), dtype=np.float32)
    with formats.open(path) as dcz:
        assert sum(dcz.info(n).encoding == "sparse_shared" for n in dcz.names) == 1
        with torch.no_grad():
            np.testing.assert_allclose(run(decoded(dcz), x), model(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_a_name_is_trusted_only_with_equal_values():
    """An exporter may keep a parameter's name on a folded tensor: values decide."""
    from onnx import helper, numpy_helper

    from dcz.compressor.export import _match_initializers

    state = LayerState("w", "Linear", (3, 4), values=np.arange(12, dtype=np.float32).reshape(3, 4))
    folded = numpy_helper.from_array(state.weight() * 2, "w")
    renamed = numpy_helper.from_array(state.weight().T.copy(), "onnx::MatMul_7")
    graph = helper.make_model(helper.make_graph([], "g", [], [], [folded, renamed]))
    matches = _match_initializers(graph, {"w": state})
    assert list(matches) == ["onnx::MatMul_7"] and matches["onnx::MatMul_7"].transposed


def test_several_inputs_and_outputs_get_a_batch_axis_each(tmp_path):
    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(6, 5), torch.nn.Linear(4, 5)

        def forward(self, x, z):
            h = self.a(x) + self.b(z)
            return h, torch.relu(h)

    torch.manual_seed(4)
    model = TwoHeads().eval()
    states = compress_in_place(model, ["a.weight", "b.weight"], sparsity=0.3, bits=2)
    graph, _ = export_graph(model, (torch.zeros(1, 6), torch.zeros(1, 4)), states)
    assert [i.name for i in graph.graph.input] == ["input_0", "input_1"]
    assert [o.name for o in graph.graph.output] == ["output_0", "output_1"]
    assert all(v.type.tensor_type.shape.dim[0].dim_param == "batch" for v in [*graph.graph.input, *graph.graph.output])


def test_wrong_example_input_is_one_clear_error(net, tmp_path):
    with pytest.raises(CompressError, match="example_input") as error:
        export_dcz(net[0], torch.zeros(1, 3, 8, 8), net[1], tmp_path / "x.dcz")
    assert "\n" not in str(error.value) and not (tmp_path / "x.dcz").exists()


def test_layer_the_pipeline_cannot_compress_is_shared_at_export(tmp_path):
    """An unknown layer's table: skipped by the pipeline, shared at export, never dropped; outputs agree."""
    from dcz.compressor.pipeline import compress

    class Table(torch.nn.Module):  # a layer type the pipeline does not know
        def __init__(self):
            super().__init__()
            self.table = torch.nn.Parameter(torch.randn(50, 16))

        def forward(self, tokens):
            return torch.nn.functional.embedding(tokens, self.table)

    class Bag(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = Table()
            self.fc = torch.nn.Linear(16, 4)

        def forward(self, tokens):
            return self.fc(self.embed(tokens).mean(dim=1))

    torch.manual_seed(5)
    tokens = torch.randint(0, 50, (3, 7))
    result = compress(
        Bag().eval(), tokens, {"global": {"prune": "sparsity", "sparsity": 0.5, "bits": 3}}, progress=False
    )
    path = tmp_path / "bag.dcz"
    result.save(path)
    report = Report.from_dcz(path)
    # the pipeline skipped it; the export shares it with the safe defaults (share_left_over), by name
    assert "embed.table" not in report.kept_raw and "embed.table" in result.skipped
    with formats.open(path) as dcz:
        assert dcz.info("embed.table").encoding == "shared" and dcz.info("fc.weight").encoding == "sparse_shared"
        session = ort.InferenceSession(decoded(dcz).SerializeToString(), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": tokens.numpy()})[0]
    with torch.no_grad():  # the table's sharing error (>= 38 dB SQNR) is the only difference
        want = result.model(tokens).numpy()
    assert 0 < np.linalg.norm(got - want) / np.linalg.norm(want) < 0.02


def test_compressed_weights_never_reach_the_exporter_by_value(net, monkeypatch):
    """Parameters matched by name: no dense weight is put into the copy, and no value matching runs."""
    import dcz.compressor.export as export

    model, states = net
    monkeypatch.setattr(export, "_set_weights", lambda *a: pytest.fail("fell back to the by-value export"))
    graph, plan = export_graph(model, EXAMPLE, states)
    assert set(plan.compressed) == set(states)
    for tensor in graph.graph.initializer:
        if tensor.name in states:
            assert is_placeholder(tensor) and tuple(tensor.dims) == states[tensor.name].shape
    assert not [i.name for i in graph.graph.input if i.name in states]  # initializers, not inputs


def test_exporter_shape_inference_is_restored_even_after_a_failure(net):
    original = torch._C._jit_pass_onnx_graph_shape_type_inference

    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            return torch.linalg.eigvals(self.fc(x))  # not exportable at opset 17

    model = Broken().eval()
    states = compress_in_place(model, ["fc.weight"], sparsity=0.5, bits=2)
    with pytest.raises(CompressError):
        export_graph(model, torch.zeros(4, 4), states)
    assert torch._C._jit_pass_onnx_graph_shape_type_inference is original
    export_graph(net[0], EXAMPLE, net[1])
    assert torch._C._jit_pass_onnx_graph_shape_type_inference is original


@pytest.mark.parametrize("backend", ["ort", "numpy"])
def test_compact_file_is_smaller_and_computes_the_same(net, tmp_path, backend):
    runtime = pytest.importorskip("dcz.runtime")
    model, states = net
    plain, compact = tmp_path / "plain.dcz", tmp_path / "compact.dcz"
    export_dcz(model, EXAMPLE, states, plain)
    export_dcz(model, EXAMPLE, states, compact, compact_graph=True)
    assert compact.stat().st_size < plain.stat().st_size
    x = np.random.default_rng(2).random((3, 1, 8, 8), dtype=np.float32)
    want = runtime.load(plain, backend=backend).run(x)
    got = runtime.load(compact, backend=backend).run(x)
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))


def test_defaults_and_names_go_inputs_outputs_and_initializers_stay(net):
    model, states = net
    graph, _ = export_graph(model, EXAMPLE, states)
    small = compacted_graph(graph)
    assert [n.op_type for n in small.graph.node] == [n.op_type for n in graph.graph.node]
    assert {i.name for i in small.graph.initializer} == {i.name for i in graph.graph.initializer}
    assert [v.name for v in small.graph.output] == [v.name for v in graph.graph.output]
    assert all(n.name == "" for n in small.graph.node)
    convs = [n for n in small.graph.node if n.op_type == "Conv"]
    assert all({a.name for a in n.attribute} <= {"kernel_shape", "pads"} for n in convs)  # padding=1 stays
    assert any(a.name == "pads" and list(a.ints) == [1, 1, 1, 1] for a in convs[0].attribute)
    assert len(small.SerializeToString()) < len(graph.SerializeToString())


def test_attribute_that_differs_from_its_default_is_kept():
    node = helper.make_node("Gemm", ["x", "w"], ["y"], alpha=2.0, beta=1.0, transB=1, name="fc")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor("w", onnx.TensorProto.FLOAT, [2, 2], [1.0, 0.0, 0.0, 1.0])],
    )
    small = compacted_graph(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert {a.name: helper.get_attribute_value(a) for a in small.graph.node[0].attribute} == {"alpha": 2.0, "transB": 1}


def test_lean_metadata_keeps_what_is_given_and_what_runs_the_file(net, tmp_path):
    model, states = net
    full, lean = tmp_path / "full.dcz", tmp_path / "lean.dcz"
    export_dcz(model, EXAMPLE, states, full, accuracies={"dense": 0.9})
    export_dcz(model, EXAMPLE, states, lean, {"user.note": "x"}, accuracies={"dense": 0.9}, lean_metadata=True)
    assert lean.stat().st_size < full.stat().st_size
    with formats.open(full) as f, formats.open(lean) as g:
        assert "source.framework" in f.metadata and "compress.layers" in f.metadata
        assert not any(k.startswith("source.") or k == "compress.layers" for k in g.metadata)
        assert g.metadata["user.note"] == "x" and g.metadata["compress.accuracy"] == {"dense": 0.9}
        for name in f.names:
            np.testing.assert_array_equal(g.tensor(name), f.tensor(name))
